"""Synthetic guests for the kernel facts and rules: initrds made by cpio -H newc and zstd/gzip,
module trees, kernel configs and ELF headers written byte by byte."""

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

from imageport.formats import registry
from imageport.guest.boot import kernels
from imageport.guest.facts.inspect import GuestFacts, inspect_guest
from imageport.source import FileSource
from support import builders
from support import guest_fixtures as gf

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


def newc_of(top: Path) -> bytes:
    """``find . | cpio -o -H newc --reproducible`` in ``top``, every entry dated alike (links
    included, not followed)."""
    paths = sorted(str(p.relative_to(top)) for p in top.rglob("*"))
    for p in [top, *(top / q for q in paths)]:
        os.utime(p, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    return subprocess.run(
        ["cpio", "-o", "-H", "newc", "--reproducible", "--quiet"],
        input="\n".join(paths).encode(),
        cwd=top,
        capture_output=True,
        check=True,
    ).stdout


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
        archive = newc_of(top)
        packed = subprocess.run(compressor, input=archive, capture_output=True, check=True).stdout
        out = Path(tmp) / "initrd"
        out.write_bytes(packed)
        os.replace(out, final)
    return final.read_bytes()


ZSTD = ["zstd", "-q", "-c"]
GZIP = ["gzip", "-n", "-c"]


def config(*enabled: str, module: tuple[str, ...] = (), ide: bool = True) -> str:
    """A kernel config with ``enabled`` built in and ``module`` as modules; with ``ide``, the
    IDE driver is built in too (``CONFIG_ATA_PIIX=y``, as in RHEL's and Ubuntu's kernels)."""
    lines = ["#", "# Automatically generated file; DO NOT EDIT.", "#", "CONFIG_64BIT=y"]
    if ide and "ATA_PIIX" not in enabled + module:
        lines.append("CONFIG_ATA_PIIX=y")
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


IDE_KO = {"kernel/drivers/ata/ata_piix.ko": b"ko"}


def ide_guest(where: str) -> Path:
    """Debian 12 with every virtio and Xen driver in its zstd initrd and ``ata_piix`` a module
    (``CONFIG_ATA_PIIX=m``) installed under /lib/modules, and, by ``where``: ``missing``, not in
    the initrd (an initrd made with ``MODULES=dep`` on a KVM machine); ``initrd``, in the
    initrd too; ``builtin``, built in by modules.builtin only (no module, no ``=y``)."""
    tree = {
        **modules_tree(DEB, {**VIRTIO_KOS, **XEN_KOS, **OTHER_KOS}),
        "conf/initramfs.conf": b"MODULES=dep\n",
    }
    if where == "initrd":
        tree.update(modules_tree(DEB, IDE_KO))
    initrd = make_initrd(f"ide-{where}-v1", tree, ZSTD)
    installed = IDE_KO if where != "builtin" else {}
    builtin = {"modules.builtin": b"kernel/drivers/ata/ata_piix.ko\n"} if where == "builtin" else {}
    ide_module = ("ATA_PIIX",) if where != "builtin" else ()
    return gf.build_guest(
        f"kern-ide-{where}",
        root={
            "usr/bin/sh": elf_header(64, EM_X86_64),
            "lib": gf.Symlink("usr/lib"),
            **{f"usr/{k}": v for k, v in modules_tree(DEB, {**VIRTIO_KOS, **installed}).items()},
            **{f"usr/{k}": v for k, v in modules_tree(DEB, builtin).items()},
        },
        boot={
            f"initrd.img-{DEB}": initrd,
            f"config-{DEB}": config(module=ALL_MODULE_SYMBOLS + ide_module, ide=False),
        },
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


def x86_64_ready_guest() -> Path:
    """The cloud-ready guest (passes every rule) with an x86_64 userland: a valid ELF header in
    /usr/bin/sh, where the synthetic guests have none, so that IMG-ARCH can tell its
    architecture."""
    return gf.build_guest(
        "ready-x86-64",
        root={**gf.CLOUD_READY, "usr/bin/sh": elf_header(64, EM_X86_64)},
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
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
