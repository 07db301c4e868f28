"""IMG-FSTAB-DATA-DISK and IMG-FSTAB-UUID fixes: before the rule reports, the plan says what
changes, after (the guest rebuilt from the planned files) the rule passes and the other rules
say what they said before."""

from __future__ import annotations

from pathlib import Path

from imageport.configure.edits import ChangeKind, OpKind
from imageport.configure.fixes.fstab import MARKER, comment_out, replace_specs
from imageport.rules.boot import ConsoleRule
from imageport.rules.catalogue import RULES
from imageport.rules.layout import FstabDataDiskRule, StableNamesRule
from support import guest_fixtures as gf
from support import rhel_boot as rhel
from support.configure_trees import applied
from support.fix_runs import findings, plan, shown
from support.guest_images import guest_image

DATA = FstabDataDiskRule.id
UUID = StableNamesRule.id


def others(path: Path, *fixed: str) -> list[str]:
    """Every other rule's findings on the guest at ``path`` (their messages: the evidence may
    quote an edited line)."""
    found = findings(path, *(r for r in RULES if r.id not in fixed))
    return [f"{f.rule_id}: {f.message}" for f in found]


# -- the text transformations ------------------------------------------------------------------


def test_comment_out_keeps_the_line_after_the_marker_and_every_other_byte() -> None:
    text = "# head\r\nUUID=a\t/\text4\tdefaults 0 1\r\n  /dev/vdb1  /data ext4 defaults 0 2\nlast"
    out = comment_out(text, {3, 9})
    assert out == (
        "# head\r\nUUID=a\t/\text4\tdefaults 0 1\r\n"
        f"{MARKER}/dev/vdb1  /data ext4 defaults 0 2\nlast"
    )


def test_replace_specs_changes_only_the_device_field_of_matching_lines() -> None:
    text = "/dev/sda3\t/\text4 defaults 1 1\n  /dev/sda4   /boot ext4 defaults 1 2\n/dev/sda9 /x\n"
    out = replace_specs(
        text, {1: ("/dev/sda3", "UUID=r"), 2: ("/dev/sda4", "UUID=b"), 3: ("/dev/sda2", "UUID=x")}
    )
    assert out == "UUID=r\t/\text4 defaults 1 1\n  UUID=b   /boot ext4 defaults 1 2\n/dev/sda9 /x\n"


# -- the real Debian image with seeded defects -------------------------------------------------


def test_the_debian_defects_image_gets_its_data_disk_line_commented_out() -> None:
    result = plan(guest_image("gpt-bios-esp-ext4-defects"), {DATA, UUID})
    (change,) = result.changes
    assert (change.rule, change.path, change.kind) == (DATA, "/etc/fstab", ChangeKind.EDITED)
    assert "/data" in change.why and "not on this disk" in change.why
    removed, added = change.diff
    assert removed.startswith("-UUID=") and "/data" in removed
    assert added == "+" + MARKER + removed[1:]
    assert [op.path for op in result.operations] == ["/etc/fstab"]
    assert result.notes == ()


# -- synthetic guests: before, plan, after -------------------------------------------------------


def test_a_data_disk_line_is_commented_out_and_the_rule_then_passes() -> None:
    before = gf.synthetic_guest(data_disk=True)
    (finding,) = findings(before, FstabDataDiskRule())
    assert "/dev/vdb1" in finding.message
    result = plan(before, {DATA})
    (change,) = result.changes
    assert change.diff == (f"-{gf.DATA_DISK_LINE}", f"+{MARKER}{gf.DATA_DISK_LINE}")
    root, boot = applied(result.operations, gf.CLOUD_READY, {"grub/grub.cfg": gf.READY_GRUB_CFG})
    after = gf.build_guest(
        "fix-datadisk", root=root, boot=boot, fstab=gf.GOOD_FSTAB + gf.DATA_DISK_LINE + "\n"
    )
    assert findings(after, FstabDataDiskRule()) == []
    # the line named /dev/vdb1, so IMG-FSTAB-UUID reported it too: gone with it
    assert [f.evidence for f in findings(before, StableNamesRule())] == [
        (f"/etc/fstab:7: {gf.DATA_DISK_LINE}",)
    ]
    assert findings(after, StableNamesRule()) == []
    assert others(after, DATA, UUID) == others(before, DATA, UUID)


def test_the_systems_own_mounts_on_another_disk_are_noted_not_commented_out() -> None:
    fstab = gf.GOOD_FSTAB.replace(f"UUID={gf.BOOT_UUID} /boot", "/dev/vdb1 /boot")
    guest = gf.build_guest("fix-bootelsewhere", fstab=fstab)
    assert findings(guest, FstabDataDiskRule())  # the rule reports it ...
    result = plan(guest, {DATA})
    assert result.operations == ()  # ... but commenting /boot out would not make it boot
    (note,) = result.notes
    assert "/boot" in note.text and "IMG-BOOT-SAME-DISK" in note.text


def rhel9(name: str, *, fstab: str = rhel.FSTAB, boot: gf.Tree = rhel.BOOT) -> Path:
    return gf.build_guest(name, root={**rhel.ROOT, "etc/fstab": fstab}, boot=boot)


def test_rhel9_device_names_become_uuids_in_fstab_and_the_boot_entries() -> None:
    before = rhel9("fix-rhel9-names")
    reported = shown(findings(before, StableNamesRule()))
    assert len(reported) == 4  # three fstab lines and the default entry's root=
    result = plan(before, {UUID})
    fstab, *entries = result.changes
    assert fstab.path == "/etc/fstab"
    assert fstab.why == (
        "named filesystems by UUID instead of device name: "
        f"/dev/sda3 -> UUID={gf.ROOT_UUID}, /dev/sda4 -> UUID={gf.BOOT_UUID}, "
        "/dev/sda2 -> UUID=1234-ABCD"
    )
    root_line = "/dev/sda3               /                       ext4    defaults        1 1"
    assert f"-{root_line}" in fstab.diff
    assert "+" + root_line.replace("/dev/sda3", f"UUID={gf.ROOT_UUID}") in fstab.diff
    assert sorted(c.path for c in entries) == sorted(
        f"/boot/{name}" for name in rhel.BOOT if name.startswith("loader/entries/")
    )
    for change in entries:
        assert change.diff == (
            f"-options {rhel.CMDLINE}",
            f"+options {rhel.CMDLINE.replace('/dev/sda3', 'UUID=' + gf.ROOT_UUID)}",
        )
    assert "/etc/default/grub" not in {op.path for op in result.operations}  # no root= there
    root, boot = applied(result.operations, rhel.ROOT, rhel.BOOT)
    after = gf.build_guest("fix-rhel9-names-after", root=root, boot=boot)
    assert findings(after, StableNamesRule()) == []
    assert others(after, UUID) == others(before, UUID)


def test_rhel8_root_is_changed_in_grubenv_kernelopts_keeping_its_1024_bytes() -> None:
    before = rhel9("fix-rhel8-names", boot=rhel.RHEL8_BOOT)
    assert any("root=/dev/sda3" in f for f in shown(findings(before, StableNamesRule())))
    result = plan(before, {UUID})
    (env,) = [op for op in result.operations if op.path == "/boot/grub2/grubenv"]
    assert env.kind is OpKind.WRITE and env.data is not None and len(env.data) == 1024
    assert f"kernelopts=root=UUID={gf.ROOT_UUID} ro crashkernel".encode() in env.data
    assert not any(op.path.startswith("/boot/loader/") for op in result.operations)
    root, boot = applied(result.operations, rhel.ROOT, rhel.RHEL8_BOOT)
    after = gf.build_guest("fix-rhel8-names-after", root=root, boot=boot)
    assert findings(after, StableNamesRule()) == []


def test_data_disk_and_device_names_together_leave_the_commented_line_alone() -> None:
    fstab = rhel.FSTAB + "/dev/vdb1 /data xfs defaults 0 0\n"
    result = plan(rhel9("fix-rhel9-both", fstab=fstab), {DATA, UUID})
    data, names = (c for c in result.changes if c.path == "/etc/fstab")
    assert data.rule == DATA and data.diff[-1] == f"+{MARKER}/dev/vdb1 /data xfs defaults 0 0"
    assert names.rule == UUID and not any("vdb1" in line for line in names.diff)


def test_root_naming_another_partition_is_noted_and_left() -> None:
    boot = {
        **rhel.BOOT,
        f"loader/entries/{rhel.MACHINE_ID}-{rhel.KERNEL}.conf": rhel.bls_entry(
            rhel.KERNEL, "root=/dev/sda4 ro"
        ),
    }
    result = plan(rhel9("fix-rhel9-rootboot", boot=boot), {UUID})
    assert not any(c.path.endswith(f"{rhel.KERNEL}.conf") for c in result.changes)
    assert any("root=/dev/sda4 does not name the root filesystem" in n.text for n in result.notes)


def test_all_fixes_on_rhel9_edit_each_file_once_and_clear_both_boot_rules() -> None:
    before = rhel9("fix-rhel9-all")
    result = plan(before)
    paths = [op.path for op in result.operations]
    assert len(paths) == len(set(paths))  # UUID then console staged in one write per file
    entry = f"/boot/loader/entries/{rhel.MACHINE_ID}-{rhel.KERNEL}.conf"
    assert [c.rule for c in result.changes if c.path == entry] == [UUID, ConsoleRule.id]
    root, boot = applied(result.operations, rhel.ROOT, rhel.BOOT)
    after = gf.build_guest("fix-rhel9-all-after", root=root, boot=boot)
    assert findings(after, StableNamesRule(), ConsoleRule()) == []


def test_root_in_a_syslinux_configuration_is_noted_not_changed() -> None:
    extlinux = (
        "DEFAULT linux\nLABEL linux\n  KERNEL /vmlinuz-6.1.0-13-amd64\n  APPEND root=/dev/sda3 ro\n"
    )
    guest = gf.build_guest("fix-syslinux-root", boot={"extlinux/extlinux.conf": extlinux})
    assert any("root=/dev/sda3" in f.message for f in findings(guest, StableNamesRule()))
    result = plan(guest, {UUID})
    assert result.operations == ()
    (note,) = result.notes
    assert "/boot/extlinux/extlinux.conf (syslinux)" in note.text


def test_an_fstab_that_is_a_link_is_noted_not_edited() -> None:
    fstab = gf.GOOD_FSTAB + gf.DATA_DISK_LINE + "\n"
    root: gf.Tree = {"etc/fstab": gf.Symlink("fstab.real"), "etc/fstab.real": fstab}
    result = plan(gf.build_guest("fix-fstab-link", root=root), {DATA})
    assert result.operations == ()
    (note,) = result.notes
    assert "symbolic link" in note.text
