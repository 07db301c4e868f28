"""Name what is on a block device from its signature: filesystems, swap, LUKS, LVM ...

Each filesystem reader module provides ``probe(dev) -> Signature | None`` and
``open_fs(dev) -> Filesystem``; this module lists them explicitly (filled in as readers land).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Signature:
    """What a device holds, from its superblock or header."""

    #: ``ext4``, ``xfs``, ``btrfs``, ``vfat``, ``swap``, ``luks``, ``lvm2``, ``iso9660`` ...
    kind: str
    uuid: str | None = None  #: formatted as ``blkid`` prints it
    label: str | None = None
    version: str | None = None
