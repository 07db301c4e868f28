"""IMG-HW-BINDING's disk names (``/dev/disk/by-id``, ``/dev/disk/by-path``) on synthetic guest
disks, through the check's inspection; its MAC bindings are in test_network_rules."""

from __future__ import annotations

from pathlib import Path

from imageport.findings import Finding, Severity
from imageport.rules.base import CheckOptions, ImageFacts
from imageport.rules.engine import run_rules
from imageport.rules.hardware_binding import HardwareBindingRule
from imageport.service.tools.check import inspect_source
from imageport.source import FileSource
from support import guest_fixtures as gf

BY_ID = "/dev/disk/by-id/ata-VBOX_HARDDISK_VB3f2a1c9e-4d1f0b27"
BY_PATH = "/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:1:0"
#: two entries booting root by the old disk's ID, one resuming from a by-path swap
GRUB_CFG = f"""set default=0
menuentry 'Debian GNU/Linux' {{
    linux /vmlinuz-6.1.0-13-amd64 root={BY_ID}-part3 ro resume={BY_PATH}-part1 console=ttyS0
}}
menuentry 'Debian GNU/Linux (recovery mode)' {{
    linux /vmlinuz-6.1.0-13-amd64 root={BY_ID}-part3 ro single console=ttyS0
}}
"""


def disk_ids_guest() -> Path:
    """The cloud-ready guest moved from VirtualBox/VMware with its disks named by the old
    hardware: fstab (/ by-id, swap by-path), crypttab, initramfs-tools' resume, grub.cfg and
    /etc/default/grub."""
    fstab = (
        gf.GOOD_FSTAB.replace(f"UUID={gf.ROOT_UUID} /", f"{BY_ID}-part3 /")
        + f"{BY_PATH}-part1 none swap sw 0 0\n"
        + f"{BY_ID}-part9 /mnt/old ext4 noauto 0 0\n"  # not mounted at boot: not reported
    )
    return gf.build_guest(
        "diskids",
        root={
            **gf.CLOUD_READY,
            "etc/crypttab": (
                f"# <name> <device> <key> <options>\ncryptdata {BY_ID}-part5 none luks\n"
            ),
            "etc/initramfs-tools/conf.d/resume": f"RESUME={BY_PATH}-part1\n",
            "etc/default/grub": (
                'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
                f'GRUB_CMDLINE_LINUX="console=ttyS0 resume={BY_PATH}-part1"\n'
            ),
        },
        boot={"grub/grub.cfg": GRUB_CFG},
        fstab=fstab,
    )


def run(path: Path) -> list[Finding]:
    with FileSource(path) as src:
        found = inspect_source(src)
        facts = ImageFacts(found.container, found.allocated_bytes, CheckOptions(), found.guest)
        return list(run_rules((HardwareBindingRule(),), facts))


def test_by_id_and_by_path_names_are_reported_with_file_line_and_fix() -> None:
    found = run(disk_ids_guest())
    assert all(f.severity is Severity.WARNING for f in found)
    assert [f.evidence for f in found] == [
        (f"/etc/fstab:2: {BY_ID}-part3 / ext4 errors=remount-ro 0 1",),
        (f"/etc/fstab:7: {BY_PATH}-part1 none swap sw 0 0",),
        (f"/etc/crypttab:2: cryptdata {BY_ID}-part5 none luks",),
        (f"/etc/initramfs-tools/conf.d/resume:1: RESUME={BY_PATH}-part1",),
        (
            f"/boot/grub/grub.cfg:3: linux /vmlinuz-6.1.0-13-amd64 root={BY_ID}-part3 ro "
            f"resume={BY_PATH}-part1 console=ttyS0",
        ),
        (
            f"/boot/grub/grub.cfg:3: linux /vmlinuz-6.1.0-13-amd64 root={BY_ID}-part3 ro "
            f"resume={BY_PATH}-part1 console=ttyS0",
        ),
        (f'/etc/default/grub:3: GRUB_CMDLINE_LINUX="console=ttyS0 resume={BY_PATH}-part1"',),
    ]
    fstab, swap, crypttab, resume, root, grub_resume, defaults = found
    assert fstab.message == (
        f"/etc/fstab line 2 mounts a filesystem at boot from {BY_ID}-part3, a by-id name made "
        "from the old disk's model and serial number (or WWN); no disk of a new server has "
        "that name, so the boot waits for it, then stops in emergency mode."
    )
    assert fstab.advice == (
        f"Replace {BY_ID}-part3 with UUID=<uuid> (or LABEL=<label>) of that filesystem in "
        f"/etc/fstab (`blkid {BY_ID}-part3` on the old machine shows it)."
    )
    assert "a by-path name made from the old disk controller's bus address" in swap.message
    assert "UUID=<uuid> of the encrypted partition in /etc/crypttab" in crypttab.advice
    assert "RESUME=UUID=<uuid of the swap>" in resume.advice
    assert "update-initramfs -u -k all" in resume.advice
    # the two entries booting the same root= make one finding, counting the second
    assert root.message.startswith(
        f"/boot/grub/grub.cfg line 3 (and 1 more boot entry) gives the kernel root={BY_ID}-part3"
    )
    assert "the kernel never finds its root filesystem" in root.message
    assert "remove the name from GRUB_CMDLINE_LINUX in /etc/default/grub" in root.advice
    assert "`update-grub`" in root.advice  # Debian
    assert grub_resume.message.startswith(
        f"/boot/grub/grub.cfg line 3 gives the kernel resume={BY_PATH}-part1"
    )
    assert defaults.advice.startswith(
        f"In /etc/default/grub write resume=UUID=<uuid> instead of resume={BY_PATH}-part1"
    )


def test_names_by_uuid_label_partuuid_and_image_metadata_are_not_hardware_bindings() -> None:
    assert run(gf.synthetic_guest()) == []
    fstab = (
        gf.GOOD_FSTAB
        + "/dev/disk/by-uuid/0b4e3f0e-0000-4000-8000-000000000002 /srv ext4 nofail 0 2\n"
        + "/dev/disk/by-id/md-uuid-6c1d9f2e:0b4e3f0e:11223344:55667788 /raid ext4 nofail 0 2\n"
    )
    path = gf.build_guest(
        "diskids-uuid",
        root={
            **gf.CLOUD_READY,
            "etc/crypttab": "cryptdata /dev/disk/by-partuuid/0b4e3f0e-01 none luks\n"
            "cryptswap /dev/disk/by-id/dm-name-vg0-swap /dev/urandom swap\n",
            "etc/default/grub": 'GRUB_CMDLINE_LINUX="root=/dev/disk/by-label/rootfs"\n',
        },
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
        fstab=fstab,
    )
    assert run(path) == []
