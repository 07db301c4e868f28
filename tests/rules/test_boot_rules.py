"""IMG-BOOT-MODE, IMG-BOOT-SAME-DISK and IMG-CONSOLE on synthetic guest disks, through the check.

BIOS boot uses GRUB's real bytes: ``boot.img`` from grub-pc-bin in sector 0 (pointing at LBA
2048, as ``grub-bios-setup`` patches it) and a ``grub-mkimage -O i386-pc`` core.img written
into the BIOS boot partition (partition 1, LBA 2048) of a :func:`guest_fixtures.build_guest` disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from imageport.findings import Finding, Severity
from imageport.rules.base import CheckOptions
from imageport.service.tools.check import check_image
from support import guest_fixtures as gf

CORE_LBA = 2048  #: where build_guest puts the BIOS boot partition
KERNEL = "vmlinuz-6.1.0-13-amd64"
DEFAULT_GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'


def grub_cfg(args: str) -> str:
    """A grub.cfg as update-grub writes it, for a separate /boot."""
    return f"""\
set default="0"
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple' {{
\tinsmod ext2
\tsearch --no-floppy --fs-uuid --set=root {gf.BOOT_UUID}
\tlinux\t/{KERNEL} {args}
\tinitrd\t/initrd.img-6.1.0-13-amd64
}}
"""


SERIAL = f"root=UUID={gf.ROOT_UUID} ro console=tty0 console=ttyS0,115200 quiet"
NO_SERIAL = f"root=UUID={gf.ROOT_UUID} ro quiet"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/install --test (it builds fixtures)")
    return path


def with_core(disk: Path) -> Path:
    """A copy of ``disk`` with GRUB's core.img in its BIOS boot partition (cached)."""
    final = disk.with_name(disk.stem + "-core.raw")
    if not final.exists():
        tmp = final.with_name(final.name + f".{os.getpid()}.tmp")
        subprocess.run(["cp", "--sparse=always", str(disk), str(tmp)], check=True)
        with open(tmp, "r+b") as f:
            f.seek(CORE_LBA * 512)
            f.write(gf.grub_core_img())
        os.replace(tmp, final)
    return final


def bios_guest(
    name: str,
    *,
    args: str = SERIAL,
    root: gf.Tree | None = None,
    fstab: str | None = None,
    with_esp: bool = True,
) -> Path:
    """A guest with GRUB for BIOS (and, unless ``with_esp=False``, the ESP's BOOTX64.EFI)."""
    disk = gf.build_guest(
        name,
        boot={"grub/grub.cfg": grub_cfg(args)},
        root={"etc/default/grub": DEFAULT_GRUB, **(root or {})},
        fstab=fstab,
        with_esp=with_esp,
        boot_code=gf.grub_boot_code(),
    )
    return with_core(disk)


def uefi_only_guest() -> Path:
    """GRUB on the ESP only: no boot code in sector 0."""
    return gf.build_guest("boot-uefi", bios_boot=False, boot={"grub/grub.cfg": grub_cfg(SERIAL)})


#: A kernel command line whose root= names a disk the server will not have.
ROOT_ON_VDB1 = "root=/dev/vdb1 ro console=ttyS0"


def root_on_another_disk() -> Path:
    return bios_guest("boot-rootvdb", args=ROOT_ON_VDB1)


def root_on_vda3() -> Path:
    """root= by device name, but the system disk's own third partition: on the same disk."""
    return bios_guest("boot-rootvda3", args="root=/dev/vda3 ro console=ttyS0")


def without_serial_console() -> Path:
    return bios_guest("boot-noconsole", args=NO_SERIAL)


def findings(path: Path, rule_id: str, options: CheckOptions | None = None) -> list[Finding]:
    return [f for f in check_image(path, options).findings if f.rule_id == rule_id]


def text(f: Finding) -> str:
    return f.message + " | " + " | ".join(f.evidence) + " | " + f.advice


BOOT_RULES = ("IMG-BOOT-MODE", "IMG-BOOT-SAME-DISK", "IMG-CONSOLE")


def test_bios_and_uefi_with_a_serial_console_pass_every_boot_rule() -> None:
    report = check_image(bios_guest("boot-both"))
    assert [f for f in report.findings if f.rule_id in BOOT_RULES] == []


def test_bios_only_passes_the_boot_mode_rule() -> None:
    assert findings(bios_guest("boot-bios", with_esp=False), "IMG-BOOT-MODE") == []


def test_uefi_only_fails_unless_the_platform_supports_uefi() -> None:
    path = uefi_only_guest()
    (f,) = findings(path, "IMG-BOOT-MODE")
    assert f.severity is Severity.ERROR and "boots only with UEFI" in f.message
    assert f.evidence[:2] == (
        "BIOS: sector 0: no boot code",
        "UEFI: ESP part2: EFI/BOOT/BOOTX64.EFI",
    )
    assert "apt-get install grub-pc-bin" in f.advice  # Debian's fix
    assert findings(path, "IMG-BOOT-MODE", CheckOptions(uefi=True)) == []


def test_no_boot_loader_at_all_fails() -> None:
    path = gf.build_guest("boot-none", bios_boot=False, with_esp=False)
    (f,) = findings(path, "IMG-BOOT-MODE")
    assert "No boot loader was found for BIOS or UEFI" in f.message
    assert "UEFI: no EFI system partition" in f.evidence
    assert findings(path, "IMG-BOOT-MODE", CheckOptions(uefi=True)) != []


def test_grub_boot_code_without_core_img_is_not_bios_bootable() -> None:
    # boot.img aimed at the ESP's first sector (LBA 4096), where no core.img is
    path = gf.build_guest(
        "boot-nocore", boot_code=gf.grub_boot_code(4096), boot={"grub/grub.cfg": grub_cfg(SERIAL)}
    )
    (f,) = findings(path, "IMG-BOOT-MODE")
    assert (
        "BIOS: sector 0: GRUB boot.img, core.img at LBA 4096 in partition 2 (efi-system), "
        "but that sector does not hold GRUB's core.img"
    ) in f.evidence


def test_boot_code_pointing_outside_any_partition_is_not_bios_bootable() -> None:
    # boot.img aimed at LBA 1 (the GPT header), core.img where it should have pointed
    path = with_core(gf.build_guest("boot-bios-ev", boot_code=gf.grub_boot_code(1), with_esp=False))
    (f,) = findings(path, "IMG-BOOT-MODE")
    assert (
        "BIOS: sector 0: GRUB boot.img, core.img at LBA 1 in no partition, but that sector "
        "does not hold GRUB's core.img" in f.evidence
    )


def test_a_serial_console_missing_is_a_warning_quoting_the_line() -> None:
    (f,) = findings(without_serial_console(), "IMG-CONSOLE")
    assert f.severity is Severity.WARNING
    assert f.evidence == (
        f"/boot/grub/grub.cfg:5: linux\t/{KERNEL} {NO_SERIAL}",
        "no console= argument",
    )
    assert "GRUB_CMDLINE_LINUX in /etc/default/grub" in f.advice and "update-grub" in f.advice


def test_console_set_in_default_grub_but_not_generated_is_named() -> None:
    default = DEFAULT_GRUB.replace('LINUX=""', 'LINUX="console=ttyS0,115200"')
    (f,) = findings(
        bios_guest("boot-pending", args=NO_SERIAL, root={"etc/default/grub": default}),
        "IMG-CONSOLE",
    )
    assert (
        '/etc/default/grub:3: GRUB_CMDLINE_LINUX="console=ttyS0,115200" (has it, but '
        "grub.cfg was not regenerated)"
    ) in f.evidence


def test_rhel_advice_uses_grubby() -> None:
    rocky = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n'
    (f,) = findings(
        bios_guest("boot-rhel", args=NO_SERIAL, root={"usr/lib/os-release": rocky}), "IMG-CONSOLE"
    )
    assert 'grubby --update-kernel=ALL --args="console=ttyS0,115200"' in f.advice


def test_the_cloud_ready_guest_has_a_serial_console() -> None:
    assert findings(gf.synthetic_guest(), "IMG-CONSOLE") == []


def test_no_kernel_command_line_is_a_warning() -> None:
    (f,) = findings(gf.build_guest("base"), "IMG-CONSOLE")
    assert "No kernel command line was found" in f.message
    assert "/boot/grub/grub.cfg" in f.evidence[0]


def test_boot_on_a_missing_disk_fails() -> None:
    fstab = gf.GOOD_FSTAB.replace(f"UUID={gf.BOOT_UUID} /boot", "/dev/vdb1 /boot")
    (f,) = findings(bios_guest("boot-elsewhere", fstab=fstab), "IMG-BOOT-SAME-DISK")
    assert "mounts /boot from /dev/vdb1, which is not on this disk" in f.message
    assert f.evidence == ("/etc/fstab:3: /dev/vdb1 /boot ext4 defaults 0 2",)


def test_no_boot_mount_and_no_kernel_in_the_root_fails() -> None:
    fstab = gf.GOOD_FSTAB.replace(f"UUID={gf.BOOT_UUID} /boot ext4 defaults 0 2\n", "")
    fstab = fstab.replace("UUID=1234-ABCD /boot/efi vfat umask=0077 0 1\n", "")
    (f,) = findings(bios_guest("boot-nokernel", fstab=fstab), "IMG-BOOT-SAME-DISK")
    assert "/boot holds no kernel and /etc/fstab mounts no /boot" in f.message
    # the kernel in the root's own /boot is enough
    path = bios_guest("boot-inroot", fstab=fstab, root={f"boot/{KERNEL}": b"MZ" + bytes(100)})
    assert findings(path, "IMG-BOOT-SAME-DISK") == []


def test_root_argument_naming_another_disk_fails_quoting_grub_cfg() -> None:
    (f,) = findings(root_on_another_disk(), "IMG-BOOT-SAME-DISK")
    assert "mounts the root from /dev/vdb1, which is not on this disk" in f.message
    assert f.evidence == (f"/boot/grub/grub.cfg:5: linux\t/{KERNEL} {ROOT_ON_VDB1}",)


def test_root_argument_naming_the_boot_partition_fails_and_vda3_passes() -> None:
    args = f"root=UUID={gf.BOOT_UUID} ro console=ttyS0"
    (f,) = findings(bios_guest("boot-rootboot", args=args), "IMG-BOOT-SAME-DISK")
    assert "names part4 (ext4), but the system is on part3" in f.message
    assert findings(root_on_vda3(), "IMG-BOOT-SAME-DISK") == []


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_real_debian_images() -> None:
    """The mmdebstrap-built layouts of docs/test-images.md (built once, then cached)."""
    from support import guest_images as gi

    def boot_findings(layout: str) -> list[str]:
        report = check_image(gi.guest_image(layout))
        return [
            f"{f.rule_id}: {f.message} | " + " | ".join(f.evidence)
            for f in report.findings
            if f.rule_id in BOOT_RULES
        ]

    assert boot_findings("gpt-bios-esp-ext4") == []
    assert boot_findings("mbr-boot-lvm-xfs") == []  # core.img in the MBR gap, root on LVM
    (mode,) = boot_findings("gpt-esp-btrfs")  # UEFI only, on purpose
    assert mode == (
        "IMG-BOOT-MODE: The image boots only with UEFI; the platform boots it with "
        "BIOS unless it is registered for UEFI. | BIOS: sector 0: no boot code | "
        "UEFI: ESP part1: EFI/BOOT/BOOTX64.EFI, EFI/debian/grubx64.efi"
    )
    (console,) = boot_findings("gpt-bios-esp-ext4-defects")
    assert console.startswith(
        "IMG-CONSOLE: The default kernel command line (Debian GNU/Linux 12) has no serial console"
    )
    assert "/boot/grub/grub.cfg:10: linux\t/boot/vmlinuz-" in console
