"""Name what is on a block device from its signature: filesystems, swap, LUKS, LVM ...

Every reader module provides ``probe(dev) -> Signature | None``; filesystems also
``open_fs(dev) -> Filesystem``. They are listed here explicitly, in the order they are tried.
Signatures without a reader here (swap, LUKS, others) are recognised by their magic so that the
report can name them.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass

from imageport.errors import ImageportError
from imageport.guest.fs import btrfs, ext, fat, xfs
from imageport.guest.fs.base import Filesystem
from imageport.guest.fs.signature import Signature
from imageport.guest.volumes import lvm
from imageport.guest.volumes.blockdev import BlockDevice

__all__ = ["FILESYSTEMS", "Signature", "detect", "open_filesystem"]


@dataclass(frozen=True, slots=True)
class FilesystemReader:
    kinds: tuple[str, ...]
    probe: Callable[[BlockDevice], Signature | None]
    open: Callable[[BlockDevice], Filesystem]


FILESYSTEMS: tuple[FilesystemReader, ...] = (
    FilesystemReader(("ext2", "ext3", "ext4"), ext.probe, ext.open_fs),
    FilesystemReader(("xfs",), xfs.probe, xfs.open_fs),
    FilesystemReader(("btrfs",), btrfs.probe, btrfs.open_fs),
    FilesystemReader(("vfat",), fat.probe, fat.open_fs),
)

_SWAP_MAGICS = (b"SWAPSPACE2", b"SWAP-SPACE")
_LUKS_MAGIC = b"LUKS\xba\xbe"


def _probe_swap(dev: BlockDevice) -> Signature | None:
    for page in (4096, 8192, 16384, 65536):
        if dev.size >= page and dev.read(page - 10, 10) in _SWAP_MAGICS:
            head = dev.read(1024, 64)
            ident = str(uuidlib.UUID(bytes=head[12:28])) if len(head) >= 28 else None
            label = head[28:44].split(b"\0", 1)[0].decode("utf-8", "replace") or None
            return Signature("swap", ident, label)
    return None


def _probe_luks(dev: BlockDevice) -> Signature | None:
    head = dev.read(0, 256)
    if head[:6] != _LUKS_MAGIC:
        return None
    version = int.from_bytes(head[6:8], "big")
    ident = head[168:208].split(b"\0", 1)[0].decode("ascii", "replace") or None
    return Signature("luks", ident, None, f"luks{version}")


_OTHER_PROBES: tuple[Callable[[BlockDevice], Signature | None], ...] = (
    lvm.probe,
    _probe_luks,
    _probe_swap,
)


def detect(dev: BlockDevice) -> Signature | None:
    """The signature of what ``dev`` holds, or None when nothing is recognised."""
    for probe in (*(r.probe for r in FILESYSTEMS), *_OTHER_PROBES):
        try:
            found = probe(dev)
        except ImageportError:
            continue
        if found is not None:
            return found
    return None


def open_filesystem(dev: BlockDevice, signature: Signature) -> Filesystem | None:
    """A reader for ``dev`` when ``signature`` names a filesystem we can read."""
    for reader in FILESYSTEMS:
        if signature.kind in reader.kinds:
            return reader.open(dev)
    return None
