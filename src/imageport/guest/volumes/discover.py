"""Find every volume on a disk: partitions, LVM logical volumes, and what each one holds.

The scan reads the partition table, probes each partition (or the whole disk when there is no
table) for a signature, gathers LVM physical volumes into volume groups and probes each logical
volume in turn. Nothing is activated, mounted or written.
"""

from __future__ import annotations

from dataclasses import dataclass

from imageport.errors import ImageportError
from imageport.guest.fs.detect import detect
from imageport.guest.fs.signature import Signature
from imageport.guest.volumes import lvm
from imageport.guest.volumes.blockdev import BlockDevice
from imageport.guest.volumes.lvm_volumes import LogicalVolume, VolumeGroup
from imageport.guest.volumes.partitions import Partition, PartitionTable, read_partitions


@dataclass(frozen=True, slots=True)
class Volume:
    """Something that can hold a filesystem: the whole disk, a partition, or a logical volume."""

    #: ``disk``, ``part2``, or ``vg0/root``: how the report names it.
    name: str
    device: BlockDevice
    signature: Signature | None
    partition: Partition | None = None
    volume_group: str | None = None
    logical_volume: str | None = None

    @property
    def kind(self) -> str:
        """What it holds, e.g. ``ext4``, ``lvm2``, ``swap``, or ``unknown``."""
        return self.signature.kind if self.signature else "unknown"


@dataclass(frozen=True, slots=True)
class StorageLayout:
    """Partitions, volume groups and the volumes found on one disk."""

    table: PartitionTable
    volumes: tuple[Volume, ...]
    volume_groups: tuple[VolumeGroup, ...]
    problems: tuple[str, ...]


def _probe(device: BlockDevice) -> Signature | None:
    try:
        return detect(device)
    except ImageportError:
        return None


def scan_storage(disk: BlockDevice) -> StorageLayout:
    """The layout of ``disk``; problems are collected, never raised."""
    table = read_partitions(disk)
    problems = list(table.problems)
    volumes: list[Volume] = []
    if table.partitions:
        for part in table.partitions:
            try:
                dev: BlockDevice = part.device()
            except ImageportError as exc:
                problems.append(f"partition {part.number}: {exc}")
                continue
            volumes.append(Volume(f"part{part.number}", dev, _probe(dev), partition=part))
    else:
        volumes.append(Volume("disk", disk, _probe(disk)))

    pvs = [v.device for v in volumes if v.kind == "lvm2"]
    groups: tuple[VolumeGroup, ...] = ()
    if pvs:
        try:
            groups = lvm.read_volume_groups(pvs)
        except ImageportError as exc:
            problems.append(f"LVM: {exc}")
    for vg in groups:
        problems.extend(f"VG {vg.name}: {p}" for p in vg.problems)
        for lv in vg.logical_volumes:
            volume = _lv_volume(vg, lv, problems)
            if volume is not None:
                volumes.append(volume)
    return StorageLayout(table, tuple(volumes), groups, tuple(problems))


def _lv_volume(vg: VolumeGroup, lv: LogicalVolume, problems: list[str]) -> Volume | None:
    try:
        dev = lv.device()
    except ImageportError as exc:
        problems.append(f"LV {vg.name}/{lv.name}: {exc}")
        return None
    return Volume(
        f"{vg.name}/{lv.name}", dev, _probe(dev), volume_group=vg.name, logical_volume=lv.name
    )
