"""What a block device holds, named from its superblock or header (a leaf module)."""

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
