"""The staging API every fix plans through: what it records, what it refuses, the operations it
gives the editor (on a real synthetic guest's ext4 filesystems)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imageport.configure.edits import (
    MAX_CHANGES,
    ChangeKind,
    Edits,
    NotEditableError,
    OpKind,
    guest_path,
    sha256,
)
from imageport.configure.fixes import Fix
from imageport.configure.plan import plan_configuration
from imageport.guest.facts.inspect import GuestFacts
from support import guest_fixtures as gf
from support.kernel_fixtures import open_guest

MOTD = "welcome\n"


@pytest.fixture(scope="module")
def guest() -> Iterator[GuestFacts]:
    path = gf.build_guest(
        "edits",
        root={
            "etc/motd": MOTD,
            "etc/motd.link": gf.Symlink("motd"),
            "etc/conf.d/a.conf": "a=1\n",
            "etc/legacy": gf.Symlink("conf.d"),
        },
    )
    with open_guest(path) as g:
        yield g


def test_a_write_records_the_lines_and_stages_for_later_fixes(guest: GuestFacts) -> None:
    edits = Edits(guest.files)
    edits.write("/etc/motd", "welcome\nbe nice\n", rule="R1", why="added a line")
    assert edits.read_text("/etc/motd") == "welcome\nbe nice\n"
    edits.write("/etc/motd", "be nice\n", rule="R2", why="dropped a line")
    first, second = edits.changes
    assert (first.rule, first.kind, first.diff) == ("R1", ChangeKind.EDITED, ("+be nice",))
    assert (second.rule, second.diff) == ("R2", ("-welcome",))
    assert first.before_sha256 == sha256(MOTD.encode())
    (op,) = edits.operations()
    assert (op.path, op.kind, op.expect, op.data) == (
        "/etc/motd",
        OpKind.WRITE,
        sha256(MOTD.encode()),
        b"be nice\n",
    )


def test_a_write_that_changes_nothing_is_not_recorded_nor_written(guest: GuestFacts) -> None:
    edits = Edits(guest.files)
    edits.write("/etc/motd", MOTD, rule="R", why="same")
    assert edits.changes == [] and edits.operations() == ()
    edits.write("/etc/motd", "x\n", rule="R", why="changed")
    edits.write("/etc/motd", MOTD, rule="R", why="and back")
    assert len(edits.changes) == 2 and edits.operations() == ()


def test_a_created_file_expects_absence_and_carries_its_mode(guest: GuestFacts) -> None:
    edits = Edits(guest.files)
    edits.write("/etc/new.cfg", "k: v\n", rule="R", why="new", mode=0o600)
    (op,) = edits.operations()
    assert (op.expect, op.mode, edits.changes[0].kind) == ("absent", 0o600, ChangeKind.CREATED)


def test_directories_on_the_way_are_resolved_inside_the_guest(guest: GuestFacts) -> None:
    edits = Edits(guest.files)
    edits.write("/etc/legacy/a.conf", "a=2\n", rule="R", why="through a link")
    (op,) = edits.operations()
    assert op.path == "/etc/conf.d/a.conf"


def test_a_link_is_never_written_through_but_may_be_masked_or_removed(guest: GuestFacts) -> None:
    edits = Edits(guest.files)
    with pytest.raises(NotEditableError, match="symbolic link"):
        edits.write("/etc/motd.link", "x", rule="R", why="no")
    assert edits.is_link("/etc/motd.link")
    edits.mask("/etc/motd.link", rule="R", why="masked")
    (op,) = edits.operations()
    assert (op.kind, op.expect, op.target) == (OpKind.SYMLINK, "link", "/dev/null")
    edits.remove("/etc/motd.link", rule="R", why="removed")
    (op,) = edits.operations()
    assert (op.kind, op.expect) == (OpKind.REMOVE, "link")


def test_removing_a_missing_file_does_nothing(guest: GuestFacts) -> None:
    edits = Edits(guest.files)
    edits.remove("/etc/nothing-here", rule="R", why="gone")
    assert edits.changes == [] and edits.operations() == ()


def test_a_directory_is_not_editable(guest: GuestFacts) -> None:
    with pytest.raises(NotEditableError, match="not a regular file"):
        Edits(guest.files).write("/etc/conf.d", "x", rule="R", why="no")


@pytest.mark.parametrize(
    "path",
    ["etc/motd", "/etc/../etc/motd", "/etc//motd", "/etc/./motd", "/etc/mo\ntd", "/" + "a" * 300],
)
def test_insane_paths_are_refused(path: str) -> None:
    with pytest.raises(NotEditableError):
        guest_path(path)


def test_a_failing_fix_is_rolled_back_and_noted(guest: GuestFacts) -> None:
    def good(_: GuestFacts, edits: Edits) -> None:
        edits.write("/etc/motd", "good\n", rule="GOOD", why="kept")

    def bad(_: GuestFacts, edits: Edits) -> None:
        edits.write("/etc/motd", "bad\n", rule="BAD", why="dropped")
        edits.write("/etc/conf.d", "x", rule="BAD", why="fails")

    plan = plan_configuration(guest, fixes=[Fix(("GOOD",), "g", good), Fix(("BAD",), "b", bad)])
    assert [c.rule for c in plan.changes] == ["GOOD"]
    (op,) = plan.operations
    assert op.data == b"good\n"
    (note,) = plan.notes
    assert note.rule == "BAD" and "not fixed" in note.text and "/etc/conf.d" in note.text


def test_only_selects_fixes_by_rule_and_refuses_unknown_rules(guest: GuestFacts) -> None:
    def one(_: GuestFacts, edits: Edits) -> None:
        edits.write("/etc/motd", "1\n", rule="ONE", why="one")

    def two(_: GuestFacts, edits: Edits) -> None:
        edits.write("/etc/motd", "2\n", rule="TWO", why="two")

    fixes = [Fix(("ONE",), "1", one), Fix(("TWO",), "2", two)]
    assert [c.rule for c in plan_configuration(guest, {"TWO"}, fixes).changes] == ["TWO"]
    with pytest.raises(KeyError, match="NOPE"):
        plan_configuration(guest, {"NOPE"}, fixes)


def test_a_plan_holds_a_bounded_number_of_changes(guest: GuestFacts) -> None:
    edits = Edits(guest.files)
    with pytest.raises(NotEditableError, match=f"more than {MAX_CHANGES} changes"):
        for i in range(MAX_CHANGES + 1):
            edits.write(f"/etc/many-{i}", "x", rule="R", why="many")


def test_the_guest_log_is_staged_with_the_record_and_is_not_itself_a_change(
    guest: GuestFacts,
) -> None:
    def one(_: GuestFacts, edits: Edits) -> None:
        edits.write("/etc/motd", "1\n", rule="ONE", why="one")
        edits.note("ONE", "something left")

    plan = plan_configuration(guest, fixes=[Fix(("ONE",), "1", one)], when="2026-12-07T00:00:00Z")
    assert [c.rule for c in plan.changes] == ["ONE"]
    log = {op.path: op for op in plan.operations}["/var/log/imageport-configuration.log"]
    assert log.mode == 0o640 and log.data is not None
    text = log.data.decode()
    assert text.startswith("# imageport automatic configuration, 2026-12-07T00:00:00Z\n")
    assert "ONE edited /etc/motd: one\n    -welcome\n    +1\n" in text
    assert "ONE not changed: something left\n" in text
    assert plan_configuration(guest, fixes=[], when="now").operations == ()
