"""Kernel facts on synthetic guests (initrds made by cpio -H newc and zstd/gzip, ELF headers
written byte by byte), plus the parsers on strings and bytes.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

import builders
import guest_fixtures as gf
from imageport.errors import CorruptImageError
from imageport.formats import registry
from imageport.guest.boot import kernels
from imageport.guest.boot.initrd import read_initrd
from imageport.guest.facts.elf import ElfHeader
from imageport.guest.facts.inspect import GuestFacts, inspect_guest
from imageport.guest.volumes.blockdev import BytesDevice
from imageport.source import FileSource

DEB = "6.1.0-13-amd64"
EL7 = "3.10.0-1160.el7.x86_64"
MAC_RULE = 'SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"'
NET_RULES = f"# This file was automatically generated.\n\n# PCI device 0x1af4:0x1000\n{MAC_RULE}\n"
VIRTIO_KOS = {
    "kernel/drivers/block/virtio_blk.ko": b"ko",
    "kernel/drivers/scsi/virtio_scsi.ko": b"ko",
    "kernel/drivers/net/virtio_net.ko": b"ko",
    "kernel/drivers/virtio/virtio.ko": b"ko",
    "kernel/drivers/virtio/virtio_ring.ko": b"ko",
    "kernel/drivers/virtio/virtio_pci.ko": b"ko",
}
XEN_KOS = {
    "kernel/drivers/block/xen-blkfront.ko": b"ko",
    "kernel/drivers/net/xen-netfront.ko": b"ko",
}
OTHER_KOS = {
    "kernel/drivers/ata/ahci.ko": b"ko",
    "kernel/fs/ext4/ext4.ko": b"ko",
}
EM_386, EM_X86_64, EM_AARCH64, EM_PPC64 = 3, 62, 183, 21


def elf_header(bits: int, machine: int, order: str = "<") -> bytes:
    """A minimal valid ELF file header (and a little body) for ``machine``."""
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if order == "<" else 2, 1, 0]) + bytes(8)
    fixed = struct.pack(order + "HHI", 3, machine, 1)
    if bits == 32:
        rest = struct.pack(order + "IIIIHHHHHH", 0x1000, 52, 0, 0, 52, 32, 0, 40, 0, 0)
    else:
        rest = struct.pack(order + "QQQIHHHHHH", 0x1000, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    header = ident + fixed + rest
    return header + bytes(64 - len(header)) + b"\x90" * 200


def modules_tree(version: str, kos: Mapping[str, bytes]) -> dict[str, bytes]:
    return {f"lib/modules/{version}/{rel}": data for rel, data in kos.items()}


def make_initrd(name: str, tree: Mapping[str, bytes], compressor: list[str]) -> bytes:
    """``find . | cpio -o -H newc | <compressor>`` over ``tree``, cached across sessions."""
    final = builders.cached(f"kernels-initrd-{name}")
    if final.exists():
        return final.read_bytes()
    for tool in ("cpio", compressor[0]):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; it is needed to build the initrd fixtures")
    with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
        top = Path(tmp) / "tree"
        for rel, data in tree.items():
            path = top / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        paths = sorted(str(p.relative_to(top)) for p in top.rglob("*"))
        for p in [top, *(top / q for q in paths)]:
            os.utime(p, (1_700_000_000, 1_700_000_000))
        archive = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--reproducible", "--quiet"],
            input="\n".join(paths).encode(),
            cwd=top,
            capture_output=True,
            check=True,
        ).stdout
        packed = subprocess.run(compressor, input=archive, capture_output=True, check=True).stdout
        out = Path(tmp) / "initrd"
        out.write_bytes(packed)
        os.replace(out, final)
    return final.read_bytes()


ZSTD = ["zstd", "-q", "-c"]
GZIP = ["gzip", "-n", "-c"]


def config(*enabled: str, module: tuple[str, ...] = ()) -> str:
    lines = ["#", "# Automatically generated file; DO NOT EDIT.", "#", "CONFIG_64BIT=y"]
    lines += [f"CONFIG_{s}=y" for s in enabled] + [f"CONFIG_{s}=m" for s in module]
    if "XEN_BLKDEV_FRONTEND" not in enabled + module:
        lines.append("# CONFIG_XEN_BLKDEV_FRONTEND is not set")
    return "\n".join(lines) + "\n"


ALL_MODULE_SYMBOLS = (
    "VIRTIO",
    "VIRTIO_PCI",
    "VIRTIO_BLK",
    "SCSI_VIRTIO",
    "VIRTIO_NET",
    "XEN_BLKDEV_FRONTEND",
    "XEN_NETDEV_FRONTEND",
)


def good_guest() -> Path:
    """Debian 12: zstd initrd with every driver as a module, x86_64 userland, merged /usr."""
    initrd = make_initrd(
        "good-v1",
        {
            **modules_tree(DEB, {**VIRTIO_KOS, **XEN_KOS, **OTHER_KOS}),
            "conf/initramfs.conf": b"MODULES=most\n",
        },
        ZSTD,
    )
    return gf.build_guest(
        "kern-good",
        root={
            "usr/bin/sh": elf_header(64, EM_X86_64),
            "lib": gf.Symlink("usr/lib"),
            **{f"usr/{k}": v for k, v in modules_tree(DEB, VIRTIO_KOS).items()},
        },
        boot={f"initrd.img-{DEB}": initrd, f"config-{DEB}": config(module=ALL_MODULE_SYMBOLS)},
    )


CENTOS7_RELEASE = (
    'NAME="CentOS Linux"\nVERSION_ID="7"\nID="centos"\nID_LIKE="rhel fedora"\n'
    'PRETTY_NAME="CentOS Linux 7 (Core)"\n'
)


def novirtio_guest() -> Path:
    """CentOS 7 made on VMware: a gzip initramfs without virtio modules (Xen ones only), with
    a persistent-net rule inside and on disk; virtio_net is installed on the root only."""
    initrd = make_initrd(
        "novirtio-v1",
        {
            **modules_tree(EL7, {**XEN_KOS, **OTHER_KOS}),
            "etc/udev/rules.d/70-persistent-net.rules": NET_RULES.encode(),
        },
        GZIP,
    )
    return gf.build_guest(
        "kern-novirtio",
        root={
            "usr/lib/os-release": CENTOS7_RELEASE,
            "usr/bin/sh": elf_header(64, EM_X86_64),
            "etc/udev/rules.d/70-persistent-net.rules": NET_RULES,
            f"lib/modules/{EL7}/kernel/drivers/net/virtio_net.ko.xz": b"xz",
        },
        boot={
            "vmlinuz-6.1.0-13-amd64": None,
            f"vmlinuz-{EL7}": b"MZ" + bytes(900),
            f"initramfs-{EL7}.img": initrd,
            f"config-{EL7}": config(module=ALL_MODULE_SYMBOLS),
            "vmlinuz-0-rescue-0123456789abcdef": b"MZ" + bytes(900),
            "initramfs-0-rescue-0123456789abcdef.img": b"not read" * 10,
        },
    )


def builtin_guest() -> Path:
    """virtio built in (config =y), xen-netfront in modules.builtin, no modules in the initrd;
    aarch64 userland; an empty generator file and a comment-only rules file (both fine)."""
    initrd = make_initrd("builtin-v1", {"init": b"#!/bin/sh\n", "conf/x": b"x"}, ZSTD)
    return gf.build_guest(
        "kern-builtin",
        root={
            "usr/bin/sh": elf_header(64, EM_AARCH64),
            f"lib/modules/{DEB}/modules.builtin": "kernel/drivers/net/xen-netfront.ko\n",
            "etc/udev/rules.d/75-persistent-net-generator.rules": "",
            "etc/udev/rules.d/70-persistent-net.rules": "# nothing here\n\n",
        },
        boot={
            f"initrd.img-{DEB}": initrd,
            f"config-{DEB}": config(
                "VIRTIO", "VIRTIO_PCI", "VIRTIO_BLK", "SCSI_VIRTIO", "VIRTIO_NET"
            ),
        },
    )


def xen_guest() -> Path:
    """CentOS 5, i386 userland, GRUB's saved_entry picks the Xen kernel over a newer one."""
    return gf.build_guest(
        "kern-xen",
        root={
            "usr/lib/os-release": None,
            "etc/os-release": None,
            "etc/redhat-release": "CentOS release 5.11 (Final)\n",
            "usr/bin/sh": elf_header(32, EM_386),
        },
        boot={
            "vmlinuz-6.1.0-13-amd64": None,
            "vmlinuz-2.6.18-398.el5xen": b"\x7fELF" + bytes(900),
            "vmlinuz-2.6.18-400.el5": b"MZ" + bytes(900),
            "grub/grubenv": "# GRUB Environment Block\nsaved_entry=CentOS (2.6.18-398.el5xen)\n"
            + "#" * 900,
        },
    )


def two_kernels_guest() -> Path:
    """The good guest plus an older kernel whose initrd lacks virtio (not the default)."""
    good = make_initrd("good-v1", {}, ZSTD)
    old = make_initrd("old-v1", modules_tree("5.10.0-9-amd64", OTHER_KOS), GZIP)
    return gf.build_guest(
        "kern-two",
        root={"usr/bin/sh": elf_header(64, EM_X86_64)},
        boot={
            f"initrd.img-{DEB}": good,
            f"config-{DEB}": config(module=ALL_MODULE_SYMBOLS),
            "vmlinuz-5.10.0-9-amd64": b"MZ" + bytes(900),
            "initrd.img-5.10.0-9-amd64": old,
        },
    )


def nokernel_guest() -> Path:
    return gf.build_guest("kern-none", boot={"vmlinuz-6.1.0-13-amd64": None, "x": "x"})


@contextmanager
def open_guest(path: Path) -> Iterator[GuestFacts]:
    with FileSource(path) as src:
        container = registry.probe(src)
        assert container.opener is not None
        yield inspect_guest(container.opener(src))


def guest_of(path: Path) -> GuestFacts:
    """The guest with its kernel and net-rules facts read (the file is closed after)."""
    with open_guest(path) as guest:
        guest.derive(kernels.read_kernels)
        guest.derive(kernels.read_net_rules)
        return guest


# --- readers on guests ----------------------------------------------------------------------


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
    assert k.builtin == frozenset() and k.config_path == f"/boot/config-{DEB}"
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
    }
    assert k.builtin_path == f"/lib/modules/{DEB}/modules.builtin"
    assert k.initrd is not None and k.initrd.module_count == 0
    assert [d for d in kernels.WATCHED_DRIVERS if not k.available(d)] == ["xen_blkfront"]
    assert kf.arch is not None and kf.arch.name == "aarch64"
    assert guest.derive(kernels.read_net_rules) == ()


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
