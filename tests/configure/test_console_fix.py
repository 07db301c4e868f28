"""IMG-CONSOLE fix: the serial console added to the kernel command lines (grub.cfg, BLS
entries, RHEL 8's kernelopts) and to GRUB_CMDLINE_LINUX; before the rule reports, after it
passes."""

from __future__ import annotations

from imageport.configure.edits import ChangeKind
from imageport.rules.boot import ConsoleRule
from support import guest_fixtures as gf
from support import rhel_boot as rhel
from support.configure_trees import applied
from support.fix_runs import findings, plan
from support.guest_images import guest_image

RULE = ConsoleRule.id
SERIAL = "console=tty0 console=ttyS0,115200"
DEFAULT_GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'
#: update-grub's output with a normal and a recovery entry, and a third entry that already
#: has a serial console (it must stay as it is).
GRUB_CFG = f"""set default="0"
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple' {{
\tsearch --no-floppy --fs-uuid --set=root {gf.BOOT_UUID}
\tlinux\t/vmlinuz-6.1.0-13-amd64 root=UUID={gf.ROOT_UUID} ro quiet
\tinitrd\t/initrd.img-6.1.0-13-amd64
}}
submenu 'Advanced options for Debian GNU/Linux' {{
\tmenuentry 'Debian GNU/Linux, (recovery mode)' {{
\t\tlinux\t/vmlinuz-6.1.0-13-amd64 root=UUID={gf.ROOT_UUID} ro single console=tty0
\t}}
\tmenuentry 'Debian GNU/Linux, serial' {{
\t\tlinux\t/vmlinuz-6.1.0-13-amd64 root=UUID={gf.ROOT_UUID} ro console=ttyS0,115200
\t}}
}}
"""


def test_the_debian_defects_image_gets_the_serial_console_in_grub_cfg() -> None:
    result = plan(guest_image("gpt-bios-esp-ext4-defects"), {RULE})
    (change,) = result.changes
    assert (change.path, change.kind) == ("/boot/grub/grub.cfg", ChangeKind.EDITED)
    assert change.why == (
        f"added {SERIAL} to the kernel command line (1 kernel command line in /boot/grub/grub.cfg)"
    )
    old, new = change.diff
    assert old.endswith(" ro quiet") and new == f"+{old[1:]} {SERIAL}"


def test_debian_grub_cfg_entries_and_defaults_get_it_and_the_rule_then_passes() -> None:
    boot = {"grub/grub.cfg": GRUB_CFG}
    root = {"etc/default/grub": DEFAULT_GRUB}
    before = gf.build_guest("fix-console-deb", root=root, boot=boot)
    assert len(findings(before, ConsoleRule())) == 1
    result = plan(before, {RULE})
    cfg, defaults = result.changes
    assert cfg.diff == (
        f"-\tlinux\t/vmlinuz-6.1.0-13-amd64 root=UUID={gf.ROOT_UUID} ro quiet",
        f"+\tlinux\t/vmlinuz-6.1.0-13-amd64 root=UUID={gf.ROOT_UUID} ro quiet {SERIAL}",
        f"-\t\tlinux\t/vmlinuz-6.1.0-13-amd64 root=UUID={gf.ROOT_UUID} ro single console=tty0",
        f"+\t\tlinux\t/vmlinuz-6.1.0-13-amd64 root=UUID={gf.ROOT_UUID} ro single "
        "console=tty0 console=ttyS0,115200",
    )
    assert (defaults.path, defaults.diff) == (
        "/etc/default/grub",
        ('-GRUB_CMDLINE_LINUX=""', f'+GRUB_CMDLINE_LINUX="{SERIAL}"'),
    )
    new_root, new_boot = applied(result.operations, root, boot)
    after = gf.build_guest("fix-console-deb-after", root=new_root, boot=new_boot)
    assert findings(after, ConsoleRule()) == []


def test_rhel9_boot_entries_and_defaults_get_it_and_the_rule_then_passes() -> None:
    before = gf.build_guest("fix-console-rhel9", root=rhel.ROOT, boot=rhel.BOOT)
    assert len(findings(before, ConsoleRule())) == 1
    result = plan(before, {RULE})
    paths = sorted(c.path for c in result.changes)
    assert paths == sorted(
        ["/etc/default/grub"]
        + [f"/boot/{name}" for name in rhel.BOOT if name.startswith("loader/entries/")]
    )
    (defaults,) = (c for c in result.changes if c.path == "/etc/default/grub")
    assert defaults.diff[1] == (
        f'+GRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M rhgb quiet {SERIAL}"'
    )
    new_root, new_boot = applied(result.operations, rhel.ROOT, rhel.BOOT)
    after = gf.build_guest("fix-console-rhel9-after", root=new_root, boot=new_boot)
    assert findings(after, ConsoleRule()) == []


def test_rhel8_kernelopts_in_grubenv_get_it_and_the_rule_then_passes() -> None:
    before = gf.build_guest("fix-console-rhel8", root=rhel.ROOT, boot=rhel.RHEL8_BOOT)
    assert len(findings(before, ConsoleRule())) == 1
    result = plan(before, {RULE})
    assert sorted(c.path for c in result.changes) == ["/boot/grub2/grubenv", "/etc/default/grub"]
    (env,) = (op for op in result.operations if op.path == "/boot/grub2/grubenv")
    assert env.data is not None and len(env.data) == 1024
    new_root, new_boot = applied(result.operations, rhel.ROOT, rhel.RHEL8_BOOT)
    after = gf.build_guest("fix-console-rhel8-after", root=new_root, boot=new_boot)
    assert findings(after, ConsoleRule()) == []


def test_a_guest_with_a_serial_console_is_left_alone() -> None:
    result = plan(gf.synthetic_guest(), {RULE})
    assert result.changes == () and result.notes == ()


def test_defaults_that_have_it_already_are_not_given_it_twice() -> None:
    defaults = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet console=ttyS0,115200"\nGRUB_CMDLINE_LINUX=""\n'
    boot = {"grub/grub.cfg": GRUB_CFG}
    guest = gf.build_guest("fix-console-pending", root={"etc/default/grub": defaults}, boot=boot)
    result = plan(guest, {RULE})
    assert [c.path for c in result.changes] == ["/boot/grub/grub.cfg"]
