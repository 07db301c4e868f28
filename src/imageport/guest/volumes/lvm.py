"""LVM2 physical volumes, volume groups and logical volumes, read-only, without device-mapper.

Layout learned from the LVM2 documentation and on-disk format notes (``lib/format_text/
layout.h`` and ``lib/label/label.h`` describe it; read, not copied) and checked against PVs
written by ``pvcreate``/``vgcreate``/``lvcreate`` 2.03. All integers are little-endian.

* **Label** (one of the first 4 sectors): ``LABELONE``, the sector it sits in (u64), a CRC
  (u32, over the rest of the sector from byte 20), the offset of the PV header within the
  sector (u32), and the type ``LVM2 001``.
* **PV header**: the PV UUID (32 ASCII characters, printed 6-4-4-4-4-4-6 with dashes), the
  device size (u64 bytes), then two zero-terminated lists of ``(offset, size)`` byte ranges:
  data areas, then metadata areas.
* **Metadata area header** (512 bytes at each metadata area's offset): CRC (over bytes
  4..511), the magic ``" LVM2 x[5A%r0N*>"``, version 1, the area's start and size, then
  ``raw_locn`` entries (offset within the area, size, CRC of the text, flags; bit 0 =
  ignored). The text is a circular buffer: when ``offset + size`` passes the end of the area
  it continues just after the 512-byte header.
* **CRC**: the CRC-32 polynomial of zlib, but started at ``0xF597A6CF`` with no final
  inversion.

The text metadata is parsed by :mod:`~imageport.guest.volumes.lvm_metadata` and turned into the VG
model (and LVs readable through their segments) by :mod:`imageport.guest.volumes.lvm_volumes`. PVs
are grouped by VG UUID; the metadata copy with the highest ``seqno`` wins. Nothing here activates
anything or opens a host device: the device paths recorded in the metadata are only reported.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from imageport import limits
from imageport.errors import (
    CorruptImageError,
    ImageportError,
    LimitExceededError,
    UnsupportedImageError,
)
from imageport.guest.fs.signature import Signature
from imageport.guest.volumes.blockdev import BlockDevice, read_exact_dev
from imageport.guest.volumes.lvm_metadata import MAX_TEXT_BYTES, ConfigSection, parse_metadata
from imageport.guest.volumes.lvm_volumes import (
    MAX_PVS,
    LogicalVolume,
    LogicalVolumeDevice,
    PvRecord,
    Segment,
    StripeArea,
    VolumeGroup,
    build_volume_group,
    lvm_uuid,
)

__all__ = [
    "LogicalVolume",
    "LogicalVolumeDevice",
    "PhysicalVolume",
    "PvRecord",
    "Segment",
    "StripeArea",
    "VolumeGroup",
    "lvm_crc",
    "lvm_uuid",
    "probe",
    "read_physical_volume",
    "read_volume_group",
    "read_volume_groups",
]

SECTOR = 512
LABEL_ID = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
#: The label is looked for in this many sectors from the start of the device.
LABEL_SCAN_SECTORS = 4
MDA_MAGIC = b" LVM2 x[5A%r0N*>"
MDA_HEADER_SIZE = 512
INITIAL_CRC = 0xF597A6CF
RAW_LOCN_IGNORED = 1

#: Metadata areas read per PV (LVM writes one or two).
MAX_MDAS = 4

_LABEL = struct.Struct("<8sQII8s")
_LOCN = struct.Struct("<QQ")
_MDA_HEADER = struct.Struct("<I16sIQQ")
_RAW_LOCN = struct.Struct("<QQII")


def lvm_crc(data: bytes, initial: int = INITIAL_CRC) -> int:
    """LVM's CRC-32: zlib's polynomial started at ``initial`` without the final inversion."""
    return zlib.crc32(data, initial ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


# -- on-disk structures --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelHeader:
    """The 32-byte ``LABELONE`` header."""

    sector: int
    crc: int
    pv_header_offset: int
    type: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> LabelHeader:
        _id, sector, crc, offset, ltype = _LABEL.unpack_from(data)
        return cls(sector, crc, offset, ltype)


@dataclass(frozen=True, slots=True)
class DiskArea:
    """A byte range on the PV (``disk_locn``)."""

    offset: int
    size: int


def _locn_list(sector: bytes, pos: int) -> tuple[tuple[DiskArea, ...], int]:
    """A zero-terminated ``disk_locn`` list starting at ``pos``; bounded by the sector."""
    out: list[DiskArea] = []
    while True:
        if pos + _LOCN.size > len(sector):
            raise CorruptImageError("LVM PV header: area list runs past the label sector")
        offset, size = _LOCN.unpack_from(sector, pos)
        pos += _LOCN.size
        if offset == 0:
            return tuple(out), pos
        out.append(DiskArea(offset, size))


@dataclass(frozen=True, slots=True)
class PvHeader:
    """The PV header that follows the label."""

    uuid: str  #: formatted with dashes
    device_size: int
    data_areas: tuple[DiskArea, ...]
    metadata_areas: tuple[DiskArea, ...]

    @classmethod
    def from_sector(cls, sector: bytes, offset: int) -> PvHeader:
        if not _LABEL.size <= offset <= len(sector) - 40:
            raise CorruptImageError(f"LVM label: PV header offset {offset} is out of range")
        raw_uuid = sector[offset : offset + 32].decode("ascii", "replace")
        (size,) = struct.unpack_from("<Q", sector, offset + 32)
        data, pos = _locn_list(sector, offset + 40)
        meta, _ = _locn_list(sector, pos)
        return cls(lvm_uuid(raw_uuid), size, data, meta)


@dataclass(frozen=True, slots=True)
class RawLocation:
    """Where the current metadata text lies in a metadata area."""

    offset: int
    size: int
    checksum: int
    flags: int


@dataclass(frozen=True, slots=True)
class MdaHeader:
    """The header of one metadata area."""

    checksum: int
    magic: bytes
    version: int
    start: int
    size: int
    raw_locations: tuple[RawLocation, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> MdaHeader:
        crc, magic, version, start, size = _MDA_HEADER.unpack_from(data)
        locs: list[RawLocation] = []
        pos = _MDA_HEADER.size
        while pos + _RAW_LOCN.size <= len(data):
            loc = RawLocation(*_RAW_LOCN.unpack_from(data, pos))
            if loc.offset == 0:
                break
            locs.append(loc)
            pos += _RAW_LOCN.size
        return cls(crc, magic, version, start, size, tuple(locs))


@dataclass(frozen=True, slots=True)
class PhysicalVolume:
    """What one device's LVM label says: its PV UUID and the metadata texts found on it."""

    device: BlockDevice = field(repr=False, compare=False)
    label_sector: int
    header: PvHeader
    metadata: tuple[bytes, ...]  #: valid metadata texts, one per metadata area
    errors: tuple[ImageportError, ...] = ()  #: why some metadata areas were not usable

    @property
    def uuid(self) -> str:
        return self.header.uuid


# -- reading a PV --------------------------------------------------------------------------


def _find_label(dev: BlockDevice) -> tuple[int, bytes, LabelHeader] | None:
    for n in range(LABEL_SCAN_SECTORS):
        if (n + 1) * SECTOR > dev.size:
            return None
        sector = dev.read(n * SECTOR, SECTOR)
        if len(sector) != SECTOR or sector[:8] != LABEL_ID:
            continue
        label = LabelHeader.from_bytes(sector)
        if label.sector != n or label.type != LABEL_TYPE:
            continue
        if lvm_crc(sector[20:]) != label.crc:
            continue
        return n, sector, label
    return None


def _read_metadata_area(dev: BlockDevice, area: DiskArea) -> bytes | None:
    """The current metadata text of one area (``None`` if it holds none), CRCs checked."""
    header_raw = read_exact_dev(dev, area.offset, MDA_HEADER_SIZE, "LVM metadata area header")
    mda = MdaHeader.from_bytes(header_raw)
    if mda.magic != MDA_MAGIC or mda.version != 1:
        raise CorruptImageError(f"LVM metadata area at {area.offset} has a bad magic or version")
    if lvm_crc(header_raw[4:]) != mda.checksum:
        raise CorruptImageError(f"LVM metadata area header at {area.offset} fails its CRC")
    if mda.start != area.offset or not MDA_HEADER_SIZE < mda.size <= dev.size - mda.start:
        raise CorruptImageError(
            f"LVM metadata area at {area.offset} declares start {mda.start} size {mda.size}"
        )
    if not mda.raw_locations:
        return None
    loc = mda.raw_locations[0]
    if loc.flags & RAW_LOCN_IGNORED:
        return None
    if loc.size > MAX_TEXT_BYTES:
        raise LimitExceededError(
            f"LVM metadata text is {loc.size} bytes, more than {MAX_TEXT_BYTES}"
        )
    if not MDA_HEADER_SIZE <= loc.offset < mda.size or loc.size > mda.size - MDA_HEADER_SIZE:
        raise CorruptImageError(
            f"LVM metadata text at {loc.offset}+{loc.size} lies outside its area ({mda.size})"
        )
    first = min(loc.size, mda.size - loc.offset)
    text = read_exact_dev(dev, mda.start + loc.offset, first, "LVM metadata text")
    if first < loc.size:  # the circular buffer wraps to just after the header
        text += read_exact_dev(
            dev, mda.start + MDA_HEADER_SIZE, loc.size - first, "LVM metadata text"
        )
    if lvm_crc(text) != loc.checksum:
        raise CorruptImageError(f"LVM metadata text in the area at {area.offset} fails its CRC")
    return text


def read_physical_volume(dev: BlockDevice) -> PhysicalVolume | None:
    """The LVM2 PV on ``dev`` with its metadata texts, or ``None`` if there is no valid label.

    A metadata area that cannot be used is recorded in ``errors`` (not raised), since another
    area or another PV of the VG may hold a good copy.
    """
    found = _find_label(dev)
    if found is None:
        return None
    n, sector, label = found
    header = PvHeader.from_sector(sector, label.pv_header_offset)
    texts: list[bytes] = []
    errors: list[ImageportError] = []
    for area in header.metadata_areas[:MAX_MDAS]:
        try:
            text = _read_metadata_area(dev, area)
        except ImageportError as exc:
            errors.append(exc)
            continue
        if text is not None:
            texts.append(text)
    return PhysicalVolume(dev, n, header, tuple(texts), tuple(errors))


def probe(dev: BlockDevice) -> Signature | None:
    """``lvm2`` with the PV UUID if ``dev`` carries a valid LVM2 label; never raises."""
    try:
        found = _find_label(dev)
        if found is None:
            return None
        _n, sector, label = found
        header = PvHeader.from_sector(sector, label.pv_header_offset)
    except (ImageportError, struct.error):
        return None
    return Signature(kind="lvm2", uuid=header.uuid, version=LABEL_TYPE.decode())


def _vg_section(root: ConfigSection) -> tuple[str, ConfigSection]:
    sections = root.sections()
    if len(sections) != 1:
        raise CorruptImageError(f"LVM metadata holds {len(sections)} top-level sections, not 1")
    return sections[0]


def read_volume_groups(devices: Sequence[BlockDevice]) -> tuple[VolumeGroup, ...]:
    """Every VG whose metadata is found on ``devices`` (PVs grouped by VG UUID).

    The metadata copy with the highest ``seqno`` wins. If LVM labels are found but no
    metadata copy is usable, the first reason is raised.
    """
    limits.cap(len(devices), MAX_PVS, "devices given")
    by_uuid: dict[str, BlockDevice] = {}
    errors: list[ImageportError] = []
    notes: list[str] = []
    parsed: dict[bytes, tuple[str, ConfigSection] | None] = {}
    candidates: dict[str, list[tuple[int, bytes, str, ConfigSection]]] = {}
    for dev in devices:
        try:
            pv = read_physical_volume(dev)
        except ImageportError as exc:
            errors.append(exc)
            continue
        if pv is None:
            continue
        errors += pv.errors
        if pv.uuid in by_uuid:
            notes.append(f"PV UUID {pv.uuid} found on two devices; the first used")
            continue
        by_uuid[pv.uuid] = dev
        for text in pv.metadata:
            if text not in parsed:
                try:
                    parsed[text] = _vg_section(parse_metadata(text))
                except ImageportError as exc:
                    errors.append(exc)
                    parsed[text] = None
            found = parsed[text]
            if found is None:
                continue
            name, sec = found
            try:
                key = (sec.get_str("id"), sec.get_int("seqno"))
            except ImageportError as exc:
                errors.append(exc)
                continue
            candidates.setdefault(key[0], []).append((key[1], text, name, sec))
    if not candidates and errors:
        raise errors[0]
    groups = []
    for copies in candidates.values():
        best = max(c[0] for c in copies)
        newest = [c for c in copies if c[0] == best]
        problems = list(notes)
        if len({c[2] for c in newest}) > 1 or len({c[1] for c in newest}) > 1:
            problems.append(f"metadata copies with seqno {best} differ; the first used")
        _seq, _text, name, sec = newest[0]
        groups.append(build_volume_group(name, sec, by_uuid, problems))
    return tuple(groups)


def read_volume_group(devices: Sequence[BlockDevice], name: str | None = None) -> VolumeGroup:
    """The one VG on ``devices`` (or the one called ``name``)."""
    groups = read_volume_groups(devices)
    if name is not None:
        groups = tuple(g for g in groups if g.name == name)
    if not groups:
        raise CorruptImageError("no LVM volume group found" + (f" named {name}" if name else ""))
    if len(groups) > 1:
        raise UnsupportedImageError(
            "several LVM volume groups found: " + ", ".join(g.name for g in groups)
        )
    return groups[0]
