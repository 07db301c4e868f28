"""Console logs of each kind of boot read as the stages and the outcome a person would name.

The lines are the ones the real programs print (SeaBIOS, OVMF, GRUB 2.06, Linux 6.1, Debian's
initramfs-tools and dracut, systemd 252, cloud-init 22.4), cut to what matters.
"""

from __future__ import annotations

from imageport.boot.console import clean_lines
from imageport.boot.summary import describe
from imageport.boot.verdict import Verdict, classify, is_settled, systemd_unescape

SEABIOS_DISK = """SeaBIOS (version 1.16.2-debian-1.16.2-1)
Booting from Hard Disk...
Booting from 0000:7c00
"""
GRUB = """GNU GRUB  version 2.06-13+deb12u2
  Booting `Debian GNU/Linux 12'
"""
KERNEL = """[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP
[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-6.1.0-57-amd64 root=UUID=0d1f ro
[    9.144126] Run /init as init process
"""
ROOT = """[   15.998453] EXT4-fs (vda3): mounted filesystem with ordered data mode. Quota mode: none
[   17.775321] systemd[1]: systemd 252.39-1~deb12u2 running in system mode
Welcome to \x1b[1mDebian GNU/Linux 12 (bookworm)\x1b[0m!
"""
LOGIN = """[   74.4] cloud-init[255]: Cloud-init v. 22.4.2 running 'init-local' at Mon. Up 73.83 s
Debian GNU/Linux 12 imageport-guest ttyS0

imageport-guest login: """
CLOUD_FINISHED = (
    "[  101.2] cloud-init[301]: Cloud-init v. 22.4.2 finished at Mon, 07 Dec 2026 16:02:11 "
    "+0000. Datasource DataSourceNone.  Up 101.15 seconds\n"
)


def verdict(serial: str, firmware: str = "") -> Verdict:
    return classify(clean_lines(serial.encode()), clean_lines(firmware.encode()))


def reached(v: Verdict) -> list[str]:
    return [s.stage for s in v.stages if s.reached]


def test_a_good_boot_reaches_every_stage_with_its_evidence() -> None:
    v = verdict(GRUB + KERNEL + ROOT + LOGIN + CLOUD_FINISHED, SEABIOS_DISK)
    assert v.outcome == "login"
    assert reached(v) == [
        "firmware",
        "boot-loader",
        "kernel",
        "root-filesystem",
        "login",
        "cloud-init",
    ]
    evidence = {s.stage: s.evidence[0] for s in v.stages}
    assert evidence["firmware"].source == "firmware"
    assert evidence["firmware"].line == "Booting from 0000:7c00"
    assert evidence["kernel"].line.endswith(
        "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP"
    )
    assert "EXT4-fs (vda3): mounted filesystem" in evidence["root-filesystem"].line
    assert evidence["login"].line == "imageport-guest login:"
    assert v.why == () and is_settled(v)
    assert describe(v, ended="settled", seconds=101.4, timeout=300) == (
        "Reached a login prompt after 101 s; cloud-init finished."
    )


def test_login_while_cloud_init_runs_is_not_settled_until_it_finishes() -> None:
    v = verdict(GRUB + KERNEL + ROOT + LOGIN)
    assert v.outcome == "login" and v.cloud_init_started
    assert not is_settled(v)
    assert "cloud-init started but had not finished" in describe(
        v, ended="timeout", seconds=300, timeout=300
    )
    no_cloud = verdict(GRUB + KERNEL + ROOT + "host login: ")
    assert is_settled(no_cloud) and not no_cloud.reached("cloud-init")


def test_seabios_with_no_boot_code_finds_no_bootable_device() -> None:
    fw = SEABIOS_DISK.replace("Booting from 0000:7c00\n", "") + (
        "Boot failed: not a bootable disk\n\nenter handle_18:\n  NULL\nNo bootable device.\n"
    )
    v = verdict("", fw)
    assert v.outcome == "no-bootable-device" and is_settled(v)
    assert [e.line for e in v.why] == ["Boot failed: not a bootable disk", "No bootable device."]
    assert reached(v) == []  # it tried the disk, and found nothing to hand over to
    assert describe(v, ended="settled", seconds=4, timeout=300) == (
        "The firmware found no bootable device."
    )


def test_ovmf_failing_to_load_the_disk_falls_back_to_its_shell() -> None:
    serial = (
        '\x1b[2J\x1b[01;01HBdsDxe: failed to load Boot0001 "UEFI Misc Device" from '
        "PciRoot(0x0)/Pci(0x2,0x0): Not Found\r\n"
        'BdsDxe: loading Boot0002 "EFI Internal Shell" from Fv(7CB8BDC9)/FvFile(7C04A583)\r\n'
        'BdsDxe: starting Boot0002 "EFI Internal Shell" from Fv(7CB8BDC9)/FvFile(7C04A583)\r\n'
        "\x1b[2J\x1b[01;01H\x1b[01;01HUEFI Interactive Shell v2.2\r\nEDK II\r\n"
        "\x1b[06;01H\x1b[1m\x1b[33m\x1b[40mShell> \x1b[0m"
    )
    v = verdict(serial)
    assert v.outcome == "no-bootable-device" and is_settled(v)
    assert v.why[0].line.startswith('BdsDxe: failed to load Boot0001 "UEFI Misc Device"')
    assert not v.reached("firmware")  # starting the shell is not handing over to the disk


def test_ovmf_starting_the_disk_counts_as_the_firmware_stage() -> None:
    serial = 'BdsDxe: starting Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)\r\n'
    v = verdict(serial + GRUB)
    assert reached(v) == ["firmware", "boot-loader"]
    assert v.outcome == "no-login" and not is_settled(v)
    assert describe(v, ended="timeout", seconds=60, timeout=60) == (
        "No login prompt within 60 s; the furthest stage: the boot loader started. The serial "
        "console stayed silent after the boot loader; the screenshot shows the screen."
    )


def test_grub_rescue_is_a_failed_boot_loader_with_its_error() -> None:
    serial = "error: no such device: 0d1f4f6a-8f5e.\nEntering rescue mode...\ngrub rescue> "
    v = verdict(serial, SEABIOS_DISK)
    assert v.outcome == "boot-loader-failed" and is_settled(v)
    assert [e.line for e in v.why][:2] == [
        "error: no such device: 0d1f4f6a-8f5e.",
        "Entering rescue mode...",
    ]
    assert reached(v) == ["firmware"]


def test_grub_without_a_configuration_stops_at_its_command_line() -> None:
    """What GRUB 2.06 printed on ``boot_disks.grub_disk("no-config")``: its modules are there,
    its grub.cfg is not."""
    serial = (
        "\x1b[H\x1b[J                             GNU GRUB  version 2.06-13+deb12u2\r\n\r\n"
        "   Minimal BASH-like line editing is supported. For the first word, TAB\r\n"
        "   lists possible command completions. Anywhere else TAB lists possible\r\n"
        "   device or file completions.\r\n\r\n\r\ngrub> "
    )
    v = verdict(serial, SEABIOS_DISK)
    assert v.outcome == "boot-loader-failed" and is_settled(v)
    assert reached(v) == ["firmware", "boot-loader"]
    assert [e.line for e in v.why] == [
        "   Minimal BASH-like line editing is supported. For the first word, TAB",
    ]
    assert verdict("grub> ls\n(hd0) (hd0,msdos1)\n", SEABIOS_DISK).outcome == "boot-loader-failed"
    assert verdict("echo grub> done\n").outcome == "no-login"  # not a prompt


def test_a_kernel_panic_quotes_the_panic_and_the_lines_that_say_why() -> None:
    serial = (
        GRUB
        + KERNEL.replace("[    9.144126] Run /init as init process\n", "")
        + (
            '[    2.1] VFS: Cannot open root device "vda9" or unknown-block(0,0): error -6\n'
            '[    2.1] Please append a correct "root=" boot option; here are the available\n'
            "[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on "
            "unknown-block(0,0)\n"
            "[    2.1] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on "
            "unknown-block(0,0) ]---\n"
        )
    )
    v = verdict(serial)
    assert v.outcome == "kernel-panic" and is_settled(v)
    assert reached(v) == ["firmware", "boot-loader", "kernel"]
    assert any('VFS: Cannot open root device "vda9"' in e.line for e in v.why)
    assert any('Please append a correct "root="' in e.line for e in v.why)
    assert describe(v, ended="settled", seconds=20, timeout=300) == (
        "The kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs on "
        "unknown-block(0,0)."
    )


def test_initramfs_that_cannot_find_root_drops_to_a_shell_and_says_why() -> None:
    serial = (
        GRUB
        + KERNEL
        + (
            "Begin: Running /scripts/local-block ... done.\n"
            "Gave up waiting for root file system device.  Common problems:\n"
            " - Boot args (cat /proc/cmdline)\n"
            "   - Check rootdelay= (did the system wait long enough?)\n"
            " - Missing modules (cat /proc/modules; ls /dev)\n"
            "ALERT!  UUID=0d1f4f6a-8f5e does not exist.  Dropping to a shell!\n"
            "\n\nBusyBox v1.35.0 (Debian 1:1.35.0-4+b3) built-in shell (ash)\n"
            "(initramfs) "
        )
    )
    v = verdict(serial)
    assert v.outcome == "emergency-shell" and is_settled(v)
    assert not v.reached("root-filesystem")
    why = [e.line for e in v.why]
    assert why[0] == "Gave up waiting for root file system device.  Common problems:"
    assert " - Missing modules (cat /proc/modules; ls /dev)" in why
    assert why[-1] == "ALERT!  UUID=0d1f4f6a-8f5e does not exist.  Dropping to a shell!"
    assert describe(v, ended="settled", seconds=60, timeout=300).startswith(
        "The root filesystem was not mounted"
    )


def test_dracut_timeout_and_emergency_shell() -> None:
    serial = KERNEL + (
        "[  130.5] dracut-initqueue[312]: Warning: dracut-initqueue: timeout, still waiting for "
        "following initqueue hooks:\n"
        "[  130.6] dracut-initqueue[312]: Warning: /dev/mapper/rhel-root does not exist\n"
        'Generating "/run/initramfs/rdsosreport.txt"\n'
        "Entering emergency mode. Exit the shell to continue.\n"
        "dracut:/# "
    )
    v = verdict(serial)
    assert v.outcome == "emergency-shell"
    assert any("Warning: /dev/mapper/rhel-root does not exist" in e.line for e in v.why)


def test_a_start_job_waiting_for_a_missing_disk_names_the_disk() -> None:
    waiting = "".join(
        f"[{spin}] A start job is running for /dev/disk/by-uuid/9c1e-77ab ({n}s / 1min 30s)\r"
        for spin, n in (("*     ", 3), (" *    ", 4), ("  *   ", 5))
    )
    v = verdict(GRUB + KERNEL + ROOT + waiting)
    assert v.outcome == "waiting-for-disk" and not is_settled(v)
    assert len(v.why) == 1  # the redrawn line is one message
    assert describe(v, ended="timeout", seconds=40, timeout=40) == (
        "Still waiting for a disk when the boot was stopped after 40 s: "
        "/dev/disk/by-uuid/9c1e-77ab."
    )
    timed_out = waiting + (
        "[ TIME ] Timed out waiting for device dev-disk-by\\x2duuid-9c1e\\x2d77ab.device.\n"
        "[DEPEND] Dependency failed for data.mount - /data.\n"
        'You are in emergency mode. After logging in, type "journalctl -xb" to view\n'
        "Give root password for maintenance\n"
    )
    v = verdict(GRUB + KERNEL + ROOT + timed_out)
    assert v.outcome == "emergency-shell" and v.reached("root-filesystem")
    assert any("Dependency failed for data.mount" in e.line for e in v.why)
    assert describe(v, ended="settled", seconds=120, timeout=300) == (
        "The root filesystem was mounted, then systemd entered emergency mode."
    )


def test_systemd_252_waiting_for_a_device_known_only_from_fstab_names_its_unit() -> None:
    """What the Debian test image with ``LABEL=gone /data ext4 x-systemd.device-timeout=0`` in
    its fstab showed (``boot_disks.debian_variant("waits-for-disk")``)."""
    waiting = "".join(
        f"\r[{spin}] Job dev-disk-by\\x2dlabel-gone.device/start running ({n}s / no limit)"
        for spin, n in (("    **", 35), ("   ***", 35), ("  *** ", 36))
    )
    v = verdict(GRUB + KERNEL + ROOT + waiting)
    assert v.outcome == "waiting-for-disk" and not is_settled(v)
    assert len(v.why) == 1
    assert describe(v, ended="timeout", seconds=240, timeout=240) == (
        "Still waiting for a disk when the boot was stopped after 240 s: /dev/disk/by-label/gone."
    )
    later = "\r[   ***] Job dev-disk-by\\x2dlabel-gone.devic…tart running (3min 35s / no limit)"
    v = verdict(GRUB + KERNEL + ROOT + waiting + later)  # cut as the timer grew: the whole one
    assert describe(v, ended="timeout", seconds=240, timeout=240).endswith(
        ": /dev/disk/by-label/gone."
    )
    cut = "[    **] Job dev-disk-by\\x2dlabel-imageport\\…ice/start running (35s / no limit)\n"
    v = verdict(GRUB + KERNEL + ROOT + cut)  # a longer name, cut to 80 columns
    assert v.outcome == "waiting-for-disk"
    assert describe(v, ended="timeout", seconds=60, timeout=60).endswith(
        ": dev-disk-by-label-imageport\\…ice."
    )


def test_a_silent_serial_console_points_at_the_screenshot_and_the_cmdline() -> None:
    v = verdict(GRUB)  # GRUB writes to the serial port, the kernel (no console=ttyS0) does not
    text = describe(
        v,
        ended="timeout",
        seconds=90,
        timeout=90,
        console_hint="the default kernel command line (/boot/grub/grub.cfg:9) has no console=ttyS0",
    )
    assert text == (
        "No login prompt within 90 s; the furthest stage: the boot loader started. The serial "
        "console stayed silent after the boot loader (the default kernel command line "
        "(/boot/grub/grub.cfg:9) has no console=ttyS0); the screenshot shows the screen."
    )
    nothing = verdict("", SEABIOS_DISK)
    assert nothing.serial_silent and nothing.outcome == "no-login"
    assert "stayed silent throughout" in describe(nothing, ended="timeout", seconds=9, timeout=9)


def test_qemu_exiting_and_the_guest_stopping_are_said_so() -> None:
    v = verdict(GRUB + KERNEL)
    assert describe(v, ended="guest-stopped", seconds=30, timeout=300) == (
        "The guest powered off or rebooted before a login prompt; the furthest stage: the "
        "kernel started."
    )
    assert describe(
        v, ended="qemu-exited", seconds=1, timeout=300, qemu_message="kvm: MSR 0x10a"
    ).startswith("QEMU exited (kvm: MSR 0x10a)")


def test_a_later_stage_implies_the_earlier_ones_but_not_login() -> None:
    v = verdict(KERNEL + ROOT)  # GRUB drew on the screen only
    assert reached(v) == ["firmware", "boot-loader", "kernel", "root-filesystem"]
    assert v.stages[1].evidence == ()  # reached, with no line to quote
    assert not v.reached("login")


def test_grub_style_error_lines_after_the_kernel_are_not_boot_loader_errors() -> None:
    v = verdict(GRUB + KERNEL + "error: something in userspace\nhost login: ")
    assert v.outcome == "login" and v.why == ()


def test_systemd_unit_names_are_unescaped() -> None:
    assert systemd_unescape("dev-disk-by\\x2duuid-9c1e\\x2d77ab.device") == (
        "dev-disk-by-uuid-9c1e-77ab.device"
    )
    assert systemd_unescape("bad\\xZZ") == "bad\\xZZ"
