"""A RHEL-family guest (Rocky Linux 9) whose dracut initrd was made host-only on VMware: no
virtio and no Xen front ends inside, while the kernel has them all as xz-compressed modules
under /usr/lib/modules (merged /usr: /lib is a link). For IMG-DRIVERS and its fix.

The layers are module-level :class:`~support.guest_fixtures.Tree` constants so a RHEL fixture
for several topics can be composed from them: :data:`RHEL9_ROOT` (root filesystem),
:data:`RHEL9_BOOT` (/boot, the initrd built by :func:`rhel9_initrd`), and the initrd's own
contents :data:`RHEL9_INITRD` (dracut's layout: ``usr/lib/dracut-lib.sh``, ``usr/lib/dracut/``,
``usr/sbin/modprobe``, the module indexes depmod leaves in it) with the early-microcode
archive :data:`RHEL9_EARLY` that dracut puts first, uncompressed. The initrd is packed by the
real ``cpio -o -H newc`` and ``xz --check=crc32`` as dracut does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support import builders
from support import guest_fixtures as gf
from support import kernel_fixtures as kt
from support.guest_fixtures import Symlink, Tree

EL9 = "5.14.0-362.8.1.el9_3.x86_64"
ROCKY9_OS_RELEASE = (
    'NAME="Rocky Linux"\nVERSION="9.3 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
    'VERSION_ID="9.3"\nPRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n'
)
XZ_MODULE = b"\xfd7zXZ\x00\x00\x04 a module, xz-compressed as RHEL ships them"

#: modules.dep lines of the kernel's installed modules (relative paths, as depmod writes).
_INSTALLED_DEP = {
    "kernel/drivers/virtio/virtio.ko.xz": (),
    "kernel/drivers/virtio/virtio_ring.ko.xz": (),
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz": (),
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz": (),
    "kernel/drivers/virtio/virtio_pci.ko.xz": (
        "kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz",
        "kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz",
        "kernel/drivers/virtio/virtio_ring.ko.xz",
        "kernel/drivers/virtio/virtio.ko.xz",
    ),
    "kernel/drivers/block/virtio_blk.ko.xz": (
        "kernel/drivers/virtio/virtio_ring.ko.xz",
        "kernel/drivers/virtio/virtio.ko.xz",
    ),
    "kernel/drivers/scsi/virtio_scsi.ko.xz": (
        "kernel/drivers/virtio/virtio_ring.ko.xz",
        "kernel/drivers/virtio/virtio.ko.xz",
    ),
    "kernel/net/core/failover.ko.xz": (),
    "kernel/drivers/net/net_failover.ko.xz": ("kernel/net/core/failover.ko.xz",),
    "kernel/drivers/net/virtio_net.ko.xz": (
        "kernel/drivers/net/net_failover.ko.xz",
        "kernel/net/core/failover.ko.xz",
        "kernel/drivers/virtio/virtio_ring.ko.xz",
        "kernel/drivers/virtio/virtio.ko.xz",
    ),
    "kernel/drivers/block/xen-blkfront.ko.xz": (),
    "kernel/drivers/net/xen-netfront.ko.xz": (),
    "kernel/drivers/scsi/vmw_pvscsi.ko.xz": (),
    "kernel/drivers/net/vmxnet3.ko.xz": (),
    "kernel/lib/libcrc32c.ko.xz": (),
    "kernel/fs/xfs/xfs.ko.xz": ("kernel/lib/libcrc32c.ko.xz",),
}
_INSTALLED_ALIAS = {
    "virtio_blk": ("virtio:d00000002v*",),
    "virtio_scsi": ("virtio:d00000008v*",),
    "virtio_net": ("virtio:d00000001v*",),
    "virtio_pci": ("pci:v00001AF4d*sv*sd*bc*sc*i*",),
    "xen_blkfront": ("xen:vbd",),
    "xen_netfront": ("xen:vif",),
    "vmw_pvscsi": ("pci:v000015ADd000007C0sv*sd*bc*sc*i*",),
    "vmxnet3": ("pci:v000015ADd000007B0sv*sd*bc*sc*i*",),
    "xfs": ("fs-xfs",),
}
_INSTALLED_SYMBOLS = {
    "virtio_ring": ("virtqueue_add_sgs", "vring_create_virtqueue"),
    "virtio": ("register_virtio_driver",),
    "failover": ("failover_register",),
    "libcrc32c": ("crc32c",),
}
#: What the VMware host-only initrd holds.
_IN_INITRD = (
    "kernel/drivers/scsi/vmw_pvscsi.ko.xz",
    "kernel/drivers/net/vmxnet3.ko.xz",
    "kernel/lib/libcrc32c.ko.xz",
    "kernel/fs/xfs/xfs.ko.xz",
)


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_")


def _dep(paths: tuple[str, ...] | list[str]) -> str:
    return "".join(f"{p}:" + "".join(f" {d}" for d in _INSTALLED_DEP[p]) + "\n" for p in paths)


def _aliases(paths: tuple[str, ...] | list[str]) -> str:
    names = {_name(p) for p in paths}
    return "# Aliases extracted from modules themselves.\n" + "".join(
        f"alias {a} {n}\n" for n, aliases in _INSTALLED_ALIAS.items() if n in names for a in aliases
    )


def _symbols(paths: tuple[str, ...] | list[str]) -> str:
    names = {_name(p) for p in paths}
    return "# Aliases for symbols, used by symbol_request().\n" + "".join(
        f"alias symbol:{s} {n}\n"
        for n, syms in _INSTALLED_SYMBOLS.items()
        if n in names
        for s in syms
    )


_HOME = f"usr/lib/modules/{EL9}"

RHEL9_EARLY: Tree = {
    "early_cpio": "1\n",
    "kernel/x86/microcode/GenuineIntel.bin": b"\x01\x00\x00\x00" + bytes(2044),
}
RHEL9_INITRD: Tree = {
    "bin": Symlink("usr/bin"),
    "sbin": Symlink("usr/sbin"),
    "lib": Symlink("usr/lib"),
    "lib64": Symlink("usr/lib64"),
    "init": Symlink("usr/lib/systemd/systemd"),
    "usr/lib/systemd/systemd": kt.elf_header(64, kt.EM_X86_64),
    "usr/bin/kmod": kt.elf_header(64, kt.EM_X86_64),
    "usr/sbin/modprobe": Symlink("../bin/kmod"),
    "usr/lib/dracut-lib.sh": "#!/bin/sh\ngetcmdline() { :; }\n",
    "usr/lib/dracut/build-parameter.txt": " --kver '" + EL9 + "' --hostonly",
    "usr/lib/dracut/hooks/cmdline/10-parse-kernel.sh": "#!/bin/sh\n",
    "etc/cmdline.d/.keep": "",
    f"{_HOME}/modules.dep": _dep(_IN_INITRD),
    f"{_HOME}/modules.alias": _aliases(_IN_INITRD),
    f"{_HOME}/modules.symbols": _symbols(_IN_INITRD),
    # depmod's binary indexes, stand-ins here: the fix must replace them (a later archive's
    # file wins), or the real modprobe cannot read them after
    f"{_HOME}/modules.dep.bin": b"not an index",
    f"{_HOME}/modules.alias.bin": b"not an index",
    f"{_HOME}/modules.symbols.bin": b"not an index",
    **{f"{_HOME}/{p}": XZ_MODULE for p in _IN_INITRD},
}
RHEL9_ROOT: Tree = {
    "usr/lib/os-release": ROCKY9_OS_RELEASE,
    "etc/redhat-release": "Rocky Linux release 9.3 (Blue Onyx)\n",
    "lib": Symlink("usr/lib"),
    "usr/bin/sh": kt.elf_header(64, kt.EM_X86_64),
    "etc/dracut.conf.d/01-dist.conf": 'hostonly="yes"\n',
    f"{_HOME}/modules.dep": _dep(list(_INSTALLED_DEP)),
    f"{_HOME}/modules.alias": _aliases(list(_INSTALLED_DEP)),
    f"{_HOME}/modules.symbols": _symbols(list(_INSTALLED_DEP)),
    **{f"{_HOME}/{p}": XZ_MODULE + p.encode() for p in _INSTALLED_DEP},
}


def rhel9_initrd(compressor: tuple[str, ...] = ("xz", "--check=crc32", "-c")) -> bytes:
    """The early archive (uncompressed) followed by the main one, compressed by
    ``compressor``, as dracut writes ``/boot/initramfs-<version>.img``. Cached."""
    final = builders.cached(f"rhel9-initrd-{compressor[0]}-v1")
    if final.exists():
        return final.read_bytes()
    for tool in ("cpio", compressor[0]):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; it is needed to build the RHEL initrd")
    with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
        gf.write_tree(Path(tmp) / "early", RHEL9_EARLY)
        gf.write_tree(Path(tmp) / "main", RHEL9_INITRD)
        early = kt.newc_of(Path(tmp) / "early")
        main = subprocess.run(
            list(compressor), input=kt.newc_of(Path(tmp) / "main"), capture_output=True, check=True
        ).stdout
        out = Path(tmp) / "initrd"
        out.write_bytes(early + main)
        os.replace(out, final)
    return final.read_bytes()


def rhel9_boot(compressor: tuple[str, ...] = ("xz", "--check=crc32", "-c")) -> Tree:
    """/boot of the RHEL 9 guest: its kernel, config and initrd (the base Debian kernel gone)."""
    return {
        "vmlinuz-6.1.0-13-amd64": None,
        "config-6.1.0-13-amd64": None,
        f"vmlinuz-{EL9}": b"MZ" + bytes(1000),
        f"config-{EL9}": kt.config(module=kt.ALL_MODULE_SYMBOLS),  # CONFIG_ATA_PIIX=y
        f"initramfs-{EL9}.img": rhel9_initrd(compressor),
    }


def rhel9_guest(root: Tree = RHEL9_ROOT, boot: Tree | None = None, name: str = "rhel9") -> Path:
    return gf.build_guest(name, root=root, boot=boot if boot is not None else rhel9_boot())
