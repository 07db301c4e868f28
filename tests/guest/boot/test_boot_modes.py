"""Boot facts: the configuration parsers on strings, and BIOS/UEFI evidence on real bytes.

BIOS boot code and core.img are GRUB's own: ``/usr/lib/grub/i386-pc/boot.img`` (grub-pc-bin)
and ``grub-mkimage -O i386-pc`` (grub-common). MBR disks are partitioned by sfdisk.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from imageport.disk.raw import RawDisk
from imageport.guest.boot.bootloader import (
    parse_bls_entry,
    parse_grub_cfg,
    parse_grubenv,
    parse_menu_lst,
    parse_shell_settings,
    parse_syslinux_cfg,
)
from imageport.guest.boot.modes import bios_evidence, is_grub_core, read_boot
from imageport.guest.facts.inspect import inspect_guest
from imageport.guest.volumes.blockdev import BytesDevice
from imageport.guest.volumes.partitions import read_partitions
from imageport.source import FileSource
from support import builders
from support import guest_fixtures as gf

MiB = 1 << 20

DEBIAN_GRUB_CFG = """\
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
else
   set default="0"
fi
function load_video {
  insmod all_video
}
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-x' {
\tload_video
\tlinux\t/vmlinuz-6.1.0-13-amd64 root=UUID=abc ro console=tty0 console=ttyS0,115200 quiet
\tinitrd\t/initrd.img-6.1.0-13-amd64
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-x' {
\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-12-amd64' $menuentry_id_option 'old' {
\t\tlinux\t/vmlinuz-6.1.0-12-amd64 root=/dev/vdb1 ro
\t}
\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-11-amd64' --id 'older' {
\t\tlinux\t/vmlinuz-6.1.0-11-amd64 root=UUID=abc ro
\t}
}
"""


def test_grub_cfg_default_is_the_first_entry_and_numbers_reach_into_submenus() -> None:
    cfg = parse_grub_cfg(DEBIAN_GRUB_CFG, "/boot/grub/grub.cfg")
    assert [e.kernel for e in cfg.entries] == [
        "/vmlinuz-6.1.0-13-amd64",
        "/vmlinuz-6.1.0-12-amd64",
        "/vmlinuz-6.1.0-11-amd64",
    ]
    d = cfg.default
    assert d is not None and d.title == "Debian GNU/Linux" and d.line_no == 11
    assert d.root == "UUID=abc" and d.consoles == ("tty0", "ttyS0,115200")
    assert d.where.startswith("/boot/grub/grub.cfg:11: linux\t/vmlinuz-6.1.0-13-amd64")
    for spec, kernel in (
        ("1>0", "6.1.0-12"),
        ("1>older", "6.1.0-11"),
        ("gnulinux-advanced-x>1", "6.1.0-11"),
        ("1", "6.1.0-12"),
    ):
        text = DEBIAN_GRUB_CFG.replace('set default="0"', f'set default="{spec}"')
        picked = parse_grub_cfg(text, "g").default
        assert picked is not None and kernel in picked.kernel, spec
    # ${saved_entry} resolves through grubenv; an unknown name falls back to the first entry
    rhel = DEBIAN_GRUB_CFG.replace('set default="0"', 'set default="${saved_entry}"')
    picked = parse_grub_cfg(rhel, "g", saved_entry="gnulinux-advanced-x").default
    assert picked is not None and picked.root == "/dev/vdb1"
    picked = parse_grub_cfg(rhel, "g", saved_entry="nope").default
    assert picked is not None and picked.title == "Debian GNU/Linux"


def test_grub_cfg_tolerates_garbage() -> None:
    for text in (
        "",
        "}}}}\n",
        "menuentry {\n" * 100,
        "linux\n",
        "set default='5>9>x'\nmenuentry 'a' {\nlinux16 /k 'unbalanced\n}\n",
        "\0\xff" * 1000,
    ):
        cfg = parse_grub_cfg(text, "g")
        assert len(cfg.entries) <= 1
    cfg = parse_grub_cfg("menuentry 'a' {\nlinux16 /k 'unbalanced root=/dev/sda1\n}\n", "g")
    assert cfg.default is not None and cfg.default.root == "/dev/sda1"


def test_bls_entries_with_kernelopts_from_grubenv() -> None:
    env = parse_grubenv(
        "# GRUB Environment Block\nsaved_entry=abc-5.14\n"
        "kernelopts=root=/dev/mapper/rl-root ro console=ttyS0,115200\n" + "#" * 600
    )
    assert env["saved_entry"] == "abc-5.14"
    entry = parse_bls_entry(
        "title Rocky Linux (5.14)\nversion 5.14\nlinux /vmlinuz-5.14\n"
        "initrd /initramfs-5.14.img\noptions $kernelopts crashkernel=auto\n",
        "/boot/loader/entries/abc-5.14.conf",
        env["kernelopts"],
    )
    assert entry is not None and entry.line_no == 5 and entry.title == "Rocky Linux (5.14)"
    assert entry.root == "/dev/mapper/rl-root" and entry.consoles == ("ttyS0,115200",)
    assert parse_bls_entry("title nothing\n", "x") is None


def test_syslinux_and_menu_lst_defaults() -> None:
    sys_cfg = parse_syslinux_cfg(
        "DEFAULT linux\nLABEL rescue\n  KERNEL /vmlinuz\n  APPEND root=/dev/sda1 single\n"
        "label linux\n  linux /vmlinuz-virt\n  append root=UUID=r console=ttyS0\n",
        "/x.conf",
    )
    assert sys_cfg.default is not None and sys_cfg.default.kernel == "/vmlinuz-virt"
    assert sys_cfg.default.line_no == 7 and sys_cfg.default.consoles == ("ttyS0",)
    menu = parse_menu_lst(
        "default 1\ntimeout 5\ntitle CentOS (2.6.32-754)\n root (hd0,0)\n"
        " kernel /vmlinuz-2.6.32-754 ro root=UUID=aa\n initrd /initramfs\n"
        "title CentOS (old)\n kernel /vmlinuz-old ro root=/dev/sdb1\n",
        "/boot/grub/grub.conf",
    )
    assert menu.default is not None and menu.default.root == "/dev/sdb1"
    assert menu.default.title == "CentOS (old)" and menu.default.line_no == 8


def test_default_grub_settings_are_unquoted() -> None:
    found = parse_shell_settings(
        'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
        'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"  # serial\n'
        "GRUB_CMDLINE_LINUX='net.ifnames=0'\n",
        "/etc/default/grub",
        ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"),
    )
    assert [(s.key, s.value, s.line_no) for s in found] == [
        ("GRUB_CMDLINE_LINUX", "net.ifnames=0", 4),
        ("GRUB_CMDLINE_LINUX_DEFAULT", "quiet", 2),
    ]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/install --test (it builds fixtures)")
    return path


def _mbr_disk(boot_code: bytes, gap: bytes = b"", active: bool = True, vbr: bool = True) -> bytes:
    final = builders.cached(f"boot-mbr-{active}.raw")
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as f:
            f.truncate(8 * MiB)
        flag = ", bootable" if active else ""
        subprocess.run(
            [_tool("sfdisk"), "-q", str(tmp)],
            input=f"label: dos\nstart=2048, type=83{flag}\n",
            text=True,
            check=True,
            capture_output=True,
        )
        os.replace(tmp, final)
    data = bytearray(final.read_bytes())
    data[:440] = boot_code[:440]
    data[512 : 512 + len(gap)] = gap
    if vbr:
        data[2048 * 512 + 510 : 2048 * 512 + 512] = b"\x55\xaa"
    return bytes(data)


def test_grub_core_img_is_recognised() -> None:
    core = gf.grub_core_img("msdos")
    assert is_grub_core(core[:512])
    assert not is_grub_core(gf.grub_boot_code(1) + bytes(72))
    assert not is_grub_core(bytes(512))


def test_grub_in_the_mbr_gap_boots_with_bios() -> None:
    disk = BytesDevice(_mbr_disk(gf.grub_boot_code(1), gf.grub_core_img("msdos")))
    table = read_partitions(disk)
    assert (table.scheme, table.mbr_boot_code, table.grub_core_lba) == ("mbr", "grub", 1)
    ev = bios_evidence(table, disk)
    assert ev.supported and ev.evidence == (
        "sector 0: GRUB boot.img, core.img at LBA 1 in the MBR gap",
    )


def test_grub_without_its_core_img_does_not_boot() -> None:
    disk = BytesDevice(_mbr_disk(gf.grub_boot_code(1)))
    ev = bios_evidence(read_partitions(disk), disk)
    assert not ev.supported and "does not hold GRUB's core.img" in ev.evidence[0]
    # an LBA beyond the disk is read safely
    disk = BytesDevice(_mbr_disk(gf.grub_boot_code(1 << 60)))
    assert not bios_evidence(read_partitions(disk), disk).supported


def test_generic_mbr_needs_an_active_partition_with_a_boot_sector() -> None:
    code = b"\xfa\x31\xc0" + bytes(100) + b"Missing OS\0Multiple active partitions\0" + bytes(300)
    disk = BytesDevice(_mbr_disk(code))
    ev = bios_evidence(read_partitions(disk), disk)
    assert ev.supported and "SYSLINUX MBR, chain-loads active partition 1" in ev.evidence[0]
    disk = BytesDevice(_mbr_disk(code, vbr=False))
    assert not bios_evidence(read_partitions(disk), disk).supported
    disk = BytesDevice(_mbr_disk(code, active=False))
    ev = bios_evidence(read_partitions(disk), disk)
    assert not ev.supported and "no partition is marked active" in ev.evidence[0]


def test_no_boot_code_means_no_bios() -> None:
    disk = BytesDevice(_mbr_disk(bytes(440)))
    ev = bios_evidence(read_partitions(disk), disk)
    assert not ev.supported and ev.evidence == ("sector 0: no boot code",)


def test_a_guest_without_bios_boot_code_boots_only_with_uefi() -> None:
    with FileSource(gf.build_guest("boot-uefi", bios_boot=False)) as src:
        guest = inspect_guest(RawDisk(src))
        boot = guest.derive(read_boot)
    assert boot.modes == ("uefi",)
    assert boot.uefi.evidence == ("ESP part2: EFI/BOOT/BOOTX64.EFI",)
    assert boot.bios.evidence == ("sector 0: no boot code",)
    assert boot.default is None and boot.configs == () and boot.kernel_in_boot
    assert "/boot/grub/grub.cfg" in boot.looked_at and boot.problems == ()


def test_esp_loaders_grub_cfg_and_bls_entries_are_read() -> None:
    path = gf.build_guest(
        "boot-esp-bls",
        esp={
            "EFI/BOOT/BOOTX64.EFI": None,
            "EFI/rocky/shimx64.efi": b"MZ" + bytes(100),
            "EFI/rocky/grub.cfg": 'set default="${saved_entry}"\nblscfg\n',
            "EFI/other/grubx64.efi": b"not a PE",
        },
        boot={
            "grub2/grubenv": "saved_entry=id-5.14.0\nkernelopts=root=UUID=r ro\n",
            "loader/entries/id-5.14.0.conf": "title Rocky\nlinux /vmlinuz-5.14.0\n"
            "options $kernelopts console=ttyS0\n",
            "loader/entries/id-0-rescue.conf": "title Rescue\nlinux /vmlinuz-0-rescue\n"
            "options $kernelopts\n",
        },
    )
    with FileSource(path) as src:
        boot = inspect_guest(RawDisk(src)).derive(read_boot)
    assert "uefi" in boot.modes
    assert boot.uefi.evidence == (
        "ESP part2: EFI/rocky/shimx64.efi (no EFI/BOOT fallback loader: needs an NVRAM entry)",
    )
    assert [c.kind for c in boot.configs] == ["bls"]
    assert boot.default is not None and boot.default.title == "Rocky"
    assert boot.default.args == ("root=UUID=r", "ro", "console=ttyS0")
    assert boot.default.where.startswith("/boot/loader/entries/id-5.14.0.conf:3: options")
