"""Kernel facts on synthetic guests (initrds made by cpio -H newc and zstd/gzip, ELF headers
written byte by byte), plus the parsers on strings and bytes.
"""

from __future__ import annotations

import struct

import pytest

from imageport.errors import CorruptImageError
from imageport.guest.boot import kernels
from imageport.guest.boot.initrd import read_initrd
from imageport.guest.facts.elf import ElfHeader
from imageport.guest.volumes.blockdev import BytesDevice
from support import guest_fixtures as gf
from support.kernel_fixtures import (
    DEB,
    EL7,
    EM_386,
    EM_AARCH64,
    EM_PPC64,
    EM_X86_64,
    MAC_RULE,
    NET_RULES,
    ZSTD,
    builtin_guest,
    elf_header,
    good_guest,
    guest_of,
    ide_guest,
    make_initrd,
    nokernel_guest,
    novirtio_guest,
    open_guest,
    two_kernels_guest,
    xen_guest,
)


def test_debian_kernel_with_a_zstd_initrd() -> None:
    kf = guest_of(good_guest()).derive(kernels.read_kernels)
    assert [k.version for k in kf.kernels] == [DEB]
    k = kf.default
    assert k is not None and k.image == f"/boot/vmlinuz-{DEB}"
    assert kf.default_reason.startswith("the newest version")
    assert k.initrd is not None and k.initrd.path == f"/boot/initrd.img-{DEB}"
    assert k.initrd.read and k.initrd.error is None
    assert {"virtio_blk", "virtio_scsi", "xen_blkfront", "ahci"} <= k.initrd.modules
    assert k.initrd.module_count == 10
    assert all(k.available(d) for d in kernels.WATCHED_DRIVERS)
    # every driver a module, the IDE driver built in (CONFIG_ATA_PIIX=y)
    assert k.builtin == {"ata_piix"} and k.config_path == f"/boot/config-{DEB}"
    assert k.ide_available
    # found on the root through the lib -> usr/lib symlink
    assert k.on_disk == frozenset(n for n in kernels.WATCHED_DRIVERS if not n.startswith("xen"))
    assert kf.arch is not None and (kf.arch.name, kf.arch.bits) == ("x86_64", 64)
    assert kf.arch.path == "/usr/bin/sh"  # /bin/sh through the bin -> usr/bin symlink


def test_rhel_names_rescue_kernel_and_rules_in_the_initrd() -> None:
    guest = guest_of(novirtio_guest())
    kf = guest.derive(kernels.read_kernels)
    assert [k.version for k in kf.kernels] == [EL7, "0-rescue-0123456789abcdef"]
    k = kf.default
    assert k is not None and k.version == EL7 and not k.rescue and kf.kernels[1].rescue
    rescue = kf.kernels[1].initrd
    assert rescue is not None and not rescue.read and rescue.error is None  # never streamed
    assert k.initrd is not None and k.initrd.path == f"/boot/initramfs-{EL7}.img"
    assert "virtio_blk" not in k.initrd.modules and "xen_netfront" in k.initrd.modules
    assert k.on_disk == {"virtio_net"}
    assert [r.path for r in k.initrd.net_rules] == ["etc/udev/rules.d/70-persistent-net.rules"]
    rules = guest.derive(kernels.read_net_rules)
    assert [(r.path, r.line_no, r.line) for r in rules] == [
        ("/etc/udev/rules.d/70-persistent-net.rules", 4, MAC_RULE),
        (f"/boot/initramfs-{EL7}.img:etc/udev/rules.d/70-persistent-net.rules", 4, MAC_RULE),
    ]


def test_builtin_drivers_from_config_and_modules_builtin() -> None:
    guest = guest_of(builtin_guest())
    kf = guest.derive(kernels.read_kernels)
    k = kf.default
    assert k is not None
    assert k.builtin == {
        "virtio",
        "virtio_ring",
        "virtio_pci",
        "virtio_blk",
        "virtio_scsi",
        "virtio_net",
        "xen_netfront",
        "ata_piix",
    }
    assert k.builtin_path == f"/lib/modules/{DEB}/modules.builtin"
    assert k.initrd is not None and k.initrd.module_count == 0
    assert [d for d in kernels.WATCHED_DRIVERS if not k.available(d)] == ["xen_blkfront"]
    assert kf.arch is not None and kf.arch.name == "aarch64"
    assert guest.derive(kernels.read_net_rules) == ()


def test_ide_driver_as_a_module_in_the_initrd_or_in_modules_builtin() -> None:
    missing = guest_of(ide_guest("missing")).derive(kernels.read_kernels).default
    assert missing is not None and missing.builtin == frozenset()
    assert "ata_piix" in missing.on_disk  # /lib/modules/<v>/kernel/drivers/ata/ata_piix.ko
    assert not missing.ide_available
    in_initrd = guest_of(ide_guest("initrd")).derive(kernels.read_kernels).default
    assert in_initrd is not None and in_initrd.available("ata_piix") and in_initrd.ide_available
    builtin = guest_of(ide_guest("builtin")).derive(kernels.read_kernels).default
    assert builtin is not None and builtin.builtin == {"ata_piix"} and builtin.ide_available
    assert "ata_piix" not in builtin.on_disk


def test_grubenv_saved_entry_picks_the_default() -> None:
    kf = guest_of(xen_guest()).derive(kernels.read_kernels)
    assert [k.version for k in kf.kernels] == ["2.6.18-400.el5", "2.6.18-398.el5xen"]
    assert kf.default is not None and kf.default.version == "2.6.18-398.el5xen"
    assert kf.default_reason == "/boot/grub/grubenv: saved_entry=CentOS (2.6.18-398.el5xen)"
    assert kf.default.xen_pv_only and not kf.kernels[0].xen_pv_only
    assert kf.default.release() == (2, 6, 18)
    assert kf.arch is not None and (kf.arch.name, kf.arch.bits) == ("i386", 32)


def test_no_kernel_and_a_fake_elf() -> None:
    kf = guest_of(nokernel_guest()).derive(kernels.read_kernels)
    assert kf.kernels == () and kf.default is None
    assert kf.arch is None  # the base fixture's /usr/bin/sh is "\x7fELF" and zeros


def test_initrd_is_streamed_in_ranges() -> None:
    """The initrd is read through read_ino in bounded ranges, never as one whole file."""
    lengths: list[int] = []

    class Spy(kernels.GuestFileDevice):
        def read(self, offset: int, length: int) -> bytes:
            lengths.append(length)
            return super().read(offset, length)

    with open_guest(good_guest()) as guest:
        fs, ino, _ = guest.files.locate(f"/boot/initrd.img-{DEB}")
        size = fs.stat_ino(ino).size
        contents = read_initrd(Spy(fs, ino, size))
        assert "virtio_blk" in contents.modules
        assert lengths and max(lengths) <= 1 << 20
        assert Spy(fs, ino, size).read(size - 1, 100) == fs.read_ino(ino, size - 1, 1)
        assert Spy(fs, ino, size).read(size + 5, 10) == b""


def test_a_corrupt_initrd_is_recorded_not_raised() -> None:
    path = gf.build_guest(
        "kern-badinitrd", boot={f"initrd.img-{DEB}": b"garbage" * 100, f"config-{DEB}": None}
    )
    k = guest_of(path).derive(kernels.read_kernels).default
    assert k is not None and k.initrd is not None
    assert not k.initrd.read and k.initrd.error is not None and "not an initrd" in k.initrd.error


def test_the_unpack_cap_is_shared_by_all_initrds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "MAX_UNPACKED_BYTES", 100)
    kf = guest_of(two_kernels_guest()).derive(kernels.read_kernels)
    new, old = kf.kernels
    assert new.initrd is not None and new.initrd.error is not None
    assert "more than 100 bytes" in new.initrd.error
    assert old.initrd is not None and not old.initrd.read and old.initrd.error is None


# --- parsers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "machine", "order", "name"),
    [
        (64, EM_X86_64, "<", "x86_64"),
        (64, EM_AARCH64, "<", "aarch64"),
        (32, EM_386, "<", "i386"),
        (32, EM_X86_64, "<", "x32"),
        (64, EM_PPC64, "<", "ppc64le"),
        (64, EM_PPC64, ">", "ppc64"),
        (64, 22, ">", "s390x"),
        (64, 243, "<", "riscv64"),
        (64, 9999, "<", "machine-9999"),
    ],
)
def test_elf_architecture(bits: int, machine: int, order: str, name: str) -> None:
    header = ElfHeader.from_bytes(elf_header(bits, machine, order))
    assert (header.architecture, header.bits, header.machine) == (name, bits, machine)
    assert header.byte_order == ("little" if order == "<" else "big")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x7fELF",
        b"MZ" + bytes(62),
        b"\x7fELF" + bytes(60),
        elf_header(64, EM_X86_64)[:40],  # cut short
        elf_header(64, EM_X86_64)[:4] + b"\x03" + elf_header(64, EM_X86_64)[5:],  # class 3
    ],
)
def test_elf_rejects_what_is_not_a_header(data: bytes) -> None:
    with pytest.raises(CorruptImageError):
        ElfHeader.from_bytes(data)


def test_elf_checks_the_header_size() -> None:
    bad = bytearray(elf_header(64, EM_X86_64))
    bad[52:54] = struct.pack("<H", 52)
    with pytest.raises(CorruptImageError, match="header size"):
        ElfHeader.from_bytes(bytes(bad))


def test_version_sort() -> None:
    versions = [
        "5.10.0-9-amd64",
        "6.1.0-13-amd64",
        "6.1.0-9-amd64",
        "0-rescue-abc",
        "5.14.0-70.13.1.el9_0.x86_64",
        "5.14.0-362.8.1.el9_3.x86_64",
    ]
    assert sorted(versions, key=kernels.version_key, reverse=True) == [
        "6.1.0-13-amd64",
        "6.1.0-9-amd64",
        "5.14.0-362.8.1.el9_3.x86_64",
        "5.14.0-70.13.1.el9_0.x86_64",
        "5.10.0-9-amd64",
        "0-rescue-abc",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NET_RULES, (4, MAC_RULE)),
        ("", None),
        ('# only comments\n#SUBSYSTEM=="net"\n\n', None),
        ('KERNEL=="eth*", NAME="eth0"\n', (1, 'KERNEL=="eth*", NAME="eth0"')),
        (
            'KERNEL=="eth*"\nSUBSYSTEM=="net", SYSFS{address}=="00:16:3e:00:00:01", NAME="eth0"\n',
            (2, 'SUBSYSTEM=="net", SYSFS{address}=="00:16:3e:00:00:01", NAME="eth0"'),
        ),
    ],
)
def test_quote_net_rules(text: str, expected: tuple[int, str] | None) -> None:
    item = kernels.quote_net_rules("/etc/udev/rules.d/70-persistent-net.rules", text)
    assert (None if item is None else (item.line_no, item.line)) == expected


def test_net_rules_names() -> None:
    assert kernels._is_net_rules_name("70-persistent-net.rules")
    assert kernels._is_net_rules_name("30-net_persistent_names.rules")
    assert not kernels._is_net_rules_name("75-persistent-net-generator.rules")
    assert not kernels._is_net_rules_name("60-persistent-storage.rules")


def test_xen_kernels() -> None:
    assert kernels._xen_pv_only("2.6.16.60-0.21-xen", {})[0]
    assert kernels._xen_pv_only("2.6.18-398.el5xen", {})[0]
    assert kernels._xen_pv_only("2.6.18-8.el5", {"CONFIG_X86_64_XEN": "y"})[0]
    assert not kernels._xen_pv_only("6.1.0-13-amd64", {"CONFIG_XEN": "y"})[0]
    assert not kernels._xen_pv_only("2.6.32-5-xen-amd64", {})[0]  # Debian pvops: runs HVM too


def test_file_device_over_bytes() -> None:
    # GuestFileDevice clips like every device; check with an in-memory initrd via BytesDevice
    data = make_initrd("good-v1", {}, ZSTD)
    assert read_initrd(BytesDevice(data)).modules_by_version[DEB] >= {"virtio_pci"}
