"""The guest editor on libguestfs' real appliance: what a plan asks for lands in the guest's
filesystems (read back with imageport's own readers), and a file that is not what the plan was
made from stops everything before any write. Two appliance launches (~35 s each under TCG)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.adapters.guestfs.editor import GuestfishEditor
from imageport.configure.edits import Edits, FileOp, OpKind
from imageport.configure.fixes import Fix
from imageport.configure.plan import plan_configuration
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.fs.base import FileType
from imageport.service.ports import GuestEditError
from support import guest_fixtures as gf
from support.kernel_fixtures import open_guest

pytestmark = pytest.mark.skipif(
    shutil.which("guestfish") is None,
    reason="guestfish is not installed (Debian libguestfs-tools; scripts/install --test adds it)",
)

FSTAB_EXTRA = "/dev/vdb1 /data ext4 defaults 0 2\n"


def _fixture() -> Path:
    return gf.build_guest(
        "editor",
        root={
            "etc/motd": "old motd\n",
            "etc/udev/rules.d/70-persistent-net.rules": "SUBSYSTEM==net\n",
            "etc/systemd/system/old.service": "[Service]\n",
            # the mount points, as a real guest has them (the appliance mounts on them)
            "boot/efi/.mountpoint": "",
        },
        boot={"efi/.mountpoint": ""},
        fstab=gf.GOOD_FSTAB + FSTAB_EXTRA,
    )


def _plan(guest: GuestFacts, edits: Edits) -> None:
    text = edits.read_text("/etc/fstab") or ""
    edits.write(
        "/etc/fstab",
        text.replace(FSTAB_EXTRA, "# " + FSTAB_EXTRA),
        rule="IMG-FSTAB-DATA-DISK",
        why="commented out /data",
    )
    edits.write(
        "/etc/cloud/cloud.cfg.d/99-test.cfg", "datasource_list: [ OpenStack ]\n", rule="T", why="w"
    )
    edits.write("/boot/extra.txt", b"\x00binary\xff", rule="T", why="on /boot", mode=0o600)
    edits.remove("/etc/udev/rules.d/70-persistent-net.rules", rule="IMG-NET-RULES", why="r")
    edits.mask("/etc/systemd/system/old.service", rule="T", why="masked")


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, tuple[FileOp, ...]]]:
    disk = tmp_path_factory.mktemp("editor") / "disk.raw"
    subprocess.run(["cp", "--sparse=always", str(_fixture()), str(disk)], check=True)
    with open_guest(disk) as guest:
        plan = plan_configuration(guest, fixes=[Fix(("T",), "test", _plan)], when="now")
    editor = GuestfishEditor()
    wrong = FileOp("/etc/motd", OpKind.WRITE, "0" * 64, b"new motd\n")
    with pytest.raises(GuestEditError, match="/etc/motd is not what the plan was made from"):
        editor.apply(disk, plan.mounts, (*plan.operations, wrong))
    with open_guest(disk) as guest:
        assert guest.files.read_text("/etc/fstab") == gf.GOOD_FSTAB + FSTAB_EXTRA, "written early"
    run = editor.apply(disk, plan.mounts, plan.operations)
    assert run.files_written == len(plan.operations) == 6
    assert 0 < run.launch_seconds < run.seconds
    yield disk, plan.operations


def test_edited_file_holds_the_plan(edited: tuple[Path, tuple[FileOp, ...]]) -> None:
    disk, _ = edited
    with open_guest(disk) as guest:
        assert guest.files.read_text("/etc/fstab") == gf.GOOD_FSTAB + "# " + FSTAB_EXTRA
        assert guest.files.read_text("/etc/motd") == "old motd\n"


def test_created_files_have_their_mode_and_root_owner(
    edited: tuple[Path, tuple[FileOp, ...]],
) -> None:
    disk, _ = edited
    with open_guest(disk) as guest:
        cfg = guest.files.stat("/etc/cloud/cloud.cfg.d/99-test.cfg")
        assert (cfg.mode & 0o7777, cfg.uid, cfg.gid) == (0o644, 0, 0)
        assert guest.files.read_file("/boot/extra.txt") == b"\x00binary\xff"
        assert guest.files.stat("/boot/extra.txt").mode & 0o7777 == 0o600


def test_removed_and_masked(edited: tuple[Path, tuple[FileOp, ...]]) -> None:
    disk, _ = edited
    with open_guest(disk) as guest:
        assert not guest.files.exists("/etc/udev/rules.d/70-persistent-net.rules")
        fs, ino, _ = guest.files.locate("/etc/systemd/system/old.service", follow=False)
        assert fs.stat_ino(ino).type is FileType.SYMLINK
        assert fs.readlink_ino(ino) == "/dev/null"


def test_the_guest_log_records_each_change(edited: tuple[Path, tuple[FileOp, ...]]) -> None:
    disk, _ = edited
    with open_guest(disk) as guest:
        log = guest.files.read_text("/var/log/imageport-configuration.log") or ""
        assert guest.files.stat("/var/log/imageport-configuration.log").mode & 0o777 == 0o640
    assert log.startswith("# imageport automatic configuration, now\n")
    assert "IMG-FSTAB-DATA-DISK edited /etc/fstab: commented out /data" in log
    assert "    +# /dev/vdb1 /data ext4 defaults 0 2" in log
    assert "IMG-NET-RULES removed /etc/udev/rules.d/70-persistent-net.rules: r" in log
    assert "T masked /etc/systemd/system/old.service: masked" in log
