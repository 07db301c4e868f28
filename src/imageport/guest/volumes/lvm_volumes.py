"""The LVM2 volume group model, built from parsed text metadata, and reading LVs through it.

See :mod:`imageport.guest.volumes.lvm` for the on-disk format. The text metadata (LVM2's
``lib/format_text`` documents it; checked against ``vgcreate``/``lvcreate`` 2.03 output)
gives the VG's ``extent_size`` (512-byte sectors), ``physical_volumes`` (``id``,
``pe_start`` in sectors, ``pe_count``) and ``logical_volumes``, each with ``segmentN``
sections: ``start_extent``, ``extent_count``, ``type``, and for ``striped`` (a linear LV is
``striped`` with one stripe) ``stripe_count``, ``stripe_size`` (sectors) and
``stripes = ["pv0", first_extent, ...]``.

Striped segments map as device-mapper's ``dm-stripe`` does: the segment is cut into chunks of
``stripe_size``; chunk *n* goes to stripe ``n % stripes`` at row ``n // stripes`` (and, as
dm-stripe demands, each stripe's length is a whole number of chunks). Other segment types
(thin, raid, mirror, snapshot, cache, vdo ...) are recognised and named, not mapped.

What is wrong with one LV (a gap or overlap between segments, extents beyond a PV, a bad
stripe count, an unknown PV) is recorded in that LV's ``problems``; :meth:`LogicalVolume.device`
then refuses, while the VG's other LVs stay readable.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from imageport import limits
from imageport.errors import (
    CorruptImageError,
    ImageportError,
    LimitExceededError,
    TruncatedImageError,
    UnsupportedImageError,
)
from imageport.guest.volumes.blockdev import BlockDevice, read_exact_dev
from imageport.guest.volumes.lvm_metadata import ConfigSection

SECTOR = 512

#: Caps on what one VG's metadata may describe.
MAX_PVS = 1024
MAX_LVS = 4096
MAX_SEGMENTS = 65536  #: over all LVs of a VG
MAX_STRIPES = 128  #: LVM's own maximum
MAX_EXTENT_SECTORS = 1 << 32

#: Segment types that are recognised but not mapped.
UNSUPPORTED_SEGMENT_TYPES = frozenset(
    {
        "thin",
        "thin-pool",
        "mirror",
        "snapshot",
        "cache",
        "cache-pool",
        "writecache",
        "integrity",
        "vdo",
        "vdo-pool",
        "error",
        "zero",
        "raid0",
        "raid0_meta",
        "raid1",
        "raid4",
        "raid5",
        "raid5_la",
        "raid5_ra",
        "raid5_ls",
        "raid5_rs",
        "raid5_n",
        "raid6",
        "raid6_zr",
        "raid6_nr",
        "raid6_nc",
        "raid6_ls_6",
        "raid6_rs_6",
        "raid6_la_6",
        "raid6_ra_6",
        "raid6_n_6",
        "raid10",
        "raid10_near",
    }
)


def lvm_uuid(raw: str) -> str:
    """A 32-character LVM UUID as LVM prints it: 6-4-4-4-4-4-6 characters joined by dashes."""
    raw = raw.replace("-", "")
    if len(raw) != 32:
        return raw
    cuts = (0, 6, 10, 14, 18, 22, 26, 32)
    return "-".join(raw[a:b] for a, b in itertools.pairwise(cuts))


# -- the volume group ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PvRecord:
    """A PV as the VG metadata lists it."""

    key: str  #: ``pv0``, ``pv1`` ... (what segments refer to)
    uuid: str
    pe_start: int  #: bytes
    pe_count: int
    dev_size: int  #: bytes, as recorded
    device_hint: str  #: the host device path LVM last saw (informational, never opened)


@dataclass(frozen=True, slots=True)
class StripeArea:
    """Where one stripe (or the one linear area) of a segment starts."""

    pv: str  #: PV key
    start_extent: int


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of an LV: ``extent_count`` LV extents from ``start_extent``."""

    start_extent: int
    extent_count: int
    type: str  #: as written in the metadata: ``striped``, ``thin``, ``raid1`` ...
    stripe_size: int = 0  #: bytes (striped segments with more than one stripe)
    areas: tuple[StripeArea, ...] = ()

    @property
    def kind(self) -> str:
        """``linear`` for a one-stripe ``striped`` segment, else the metadata type."""
        return "linear" if self.type == "striped" and len(self.areas) == 1 else self.type

    @property
    def supported(self) -> bool:
        return self.type == "striped"

    def describe(self) -> str:
        end = self.start_extent + self.extent_count - 1
        text = f"{self.kind} extents {self.start_extent}-{end}"
        if not self.areas:
            return text
        per = self.extent_count // len(self.areas)
        ranges = " ".join(f"{a.pv}:{a.start_extent}-{a.start_extent + per - 1}" for a in self.areas)
        if len(self.areas) > 1:
            text += f" stripe_size {self.stripe_size}"
        return f"{text} on {ranges}"


@dataclass(frozen=True, slots=True)
class _PvMap:
    device: BlockDevice
    pe_start: int


@dataclass(frozen=True, slots=True)
class LogicalVolume:
    """An LV of a VG; :meth:`device` reads it through the PVs' extents."""

    name: str
    uuid: str
    extent_count: int
    size: int  #: bytes
    visible: bool
    status: tuple[str, ...]
    segments: tuple[Segment, ...]
    extent_size: int
    missing_pvs: tuple[str, ...] = ()  #: UUIDs of PVs this LV uses that are not among the devices
    problems: tuple[str, ...] = ()
    pv_maps: dict[str, _PvMap] = field(default_factory=dict, repr=False, compare=False)

    @property
    def unsupported(self) -> tuple[str, ...]:
        """Segment types this reader cannot map (``thin``, ``raid1`` ...), once each."""
        return tuple(dict.fromkeys(s.type for s in self.segments if not s.supported))

    def device(self) -> LogicalVolumeDevice:
        """The LV's bytes. Raises if a segment type is unsupported, a PV is missing, or the
        metadata is inconsistent (``problems``)."""
        if self.unsupported:
            raise UnsupportedImageError(
                f"LV {self.name} uses segment types this reader cannot map: "
                + ", ".join(self.unsupported)
            )
        if self.missing_pvs:
            raise CorruptImageError(
                f"LV {self.name} needs PVs not among the disks: " + ", ".join(self.missing_pvs)
            )
        if self.problems:
            raise CorruptImageError(f"LV {self.name}: " + "; ".join(self.problems))
        pieces = []
        for seg in self.segments:
            areas = tuple(
                (
                    self.pv_maps[a.pv].device,
                    self.pv_maps[a.pv].pe_start + a.start_extent * self.extent_size,
                )
                for a in seg.areas
            )
            pieces.append(
                _Piece(
                    seg.start_extent * self.extent_size,
                    seg.extent_count * self.extent_size,
                    seg.stripe_size,
                    areas,
                )
            )
        return LogicalVolumeDevice(self.name, pieces)


@dataclass(frozen=True, slots=True)
class VolumeGroup:
    """A volume group as its newest metadata describes it, tied to the devices found."""

    name: str
    uuid: str
    seqno: int
    extent_size: int  #: bytes
    physical_volumes: tuple[PvRecord, ...]
    logical_volumes: tuple[LogicalVolume, ...]
    missing_pvs: tuple[str, ...] = ()  #: UUIDs of PVs in the metadata but not among the devices
    problems: tuple[str, ...] = ()

    def logical_volume(self, name: str) -> LogicalVolume | None:
        return next((lv for lv in self.logical_volumes if lv.name == name), None)


def _pv_records(vg: ConfigSection, extent_size: int) -> dict[str, PvRecord]:
    sections = vg.section("physical_volumes").sections()
    limits.cap(len(sections), MAX_PVS, "PVs in a VG")
    out: dict[str, PvRecord] = {}
    for key, pv in sections:
        pe_start = pv.get_int("pe_start") * SECTOR
        pe_count = pv.get_int("pe_count")
        if pe_start < 0 or pe_count < 0:
            raise CorruptImageError(f"LVM metadata: PV {key} has a negative pe_start/pe_count")
        out[key] = PvRecord(
            key,
            lvm_uuid(pv.get_str("id")),
            pe_start,
            pe_count,
            pv.get_int("dev_size", 0) * SECTOR,
            pv.get_str("device", ""),
        )
    return out


def _segment(sec: ConfigSection, extent_size: int, problems: list[str]) -> Segment:
    start, count = sec.get_int("start_extent"), sec.get_int("extent_count")
    seg_type = sec.get_str("type")
    if start < 0 or count <= 0:
        raise CorruptImageError(f"segment at extent {start} has {count} extents")
    if seg_type != "striped":
        if seg_type not in UNSUPPORTED_SEGMENT_TYPES:
            problems.append(f"unknown segment type {seg_type[:40]!r}")
        return Segment(start, count, seg_type)
    stripes = sec.get_int("stripe_count")
    if not 1 <= stripes <= MAX_STRIPES:
        raise LimitExceededError(f"stripe count {stripes} (allowed 1..{MAX_STRIPES})")
    raw = sec.get_list("stripes")
    if len(raw) != 2 * stripes:
        raise CorruptImageError(f"{len(raw) // 2} stripes listed, stripe_count says {stripes}")
    areas = []
    for pv, first in zip(raw[::2], raw[1::2], strict=True):
        if not isinstance(pv, str) or not isinstance(first, int) or first < 0:
            raise CorruptImageError("a stripe is not a PV name and a start extent")
        areas.append(StripeArea(pv, first))
    stripe_size = 0
    if stripes > 1:
        sectors = sec.get_int("stripe_size")
        if sectors <= 0 or sectors & (sectors - 1) or sectors > MAX_EXTENT_SECTORS:
            raise CorruptImageError(f"stripe size of {sectors} sectors")
        stripe_size = sectors * SECTOR
        if count % stripes or (count // stripes * extent_size) % stripe_size:
            raise CorruptImageError(
                f"{count} extents do not divide into {stripes} stripes of {stripe_size} bytes"
            )
    return Segment(start, count, seg_type, stripe_size, tuple(areas))


def _logical_volume(
    name: str,
    sec: ConfigSection,
    pvs: dict[str, PvRecord],
    maps: dict[str, _PvMap],
    extent_size: int,
    budget: list[int],
) -> LogicalVolume:
    """One LV; what is wrong with it goes to its ``problems`` rather than failing the VG."""
    problems: list[str] = []
    segments: list[Segment] = []
    seg_secs = [(k, s) for k, s in sec.sections() if k.startswith("segment")]
    budget[0] -= len(seg_secs)
    if budget[0] < 0:
        raise LimitExceededError(f"more than {MAX_SEGMENTS} segments in the VG")
    uuid = lvm_uuid(sec.get_str("id", ""))
    status: tuple[str, ...] = ()
    try:
        status = sec.get_strings("status")
        if sec.get_int("segment_count", len(seg_secs)) != len(seg_secs):
            problems.append("segment_count does not match the segments listed")
    except ImageportError as exc:
        problems.append(str(exc))
    for key, seg_sec in seg_secs:
        try:
            segments.append(_segment(seg_sec, extent_size, problems))
        except ImageportError as exc:
            problems.append(f"{key}: {exc}")
    segments.sort(key=lambda s: s.start_extent)
    expected = 0
    for seg in segments:
        if seg.start_extent > expected:
            problems.append(f"gap before extent {seg.start_extent}")
        elif seg.start_extent < expected:
            problems.append(f"segments overlap at extent {seg.start_extent}")
        expected = max(expected, seg.start_extent + seg.extent_count)
    missing: dict[str, None] = {}
    for seg in segments:
        per = seg.extent_count // max(1, len(seg.areas))
        for area in seg.areas:
            pv = pvs.get(area.pv)
            if pv is None:
                problems.append(f"segment refers to unknown PV {area.pv[:40]!r}")
            elif area.start_extent + per > pv.pe_count:
                problems.append(
                    f"extents {area.start_extent}..{area.start_extent + per - 1} lie beyond "
                    f"PV {area.pv}'s {pv.pe_count} extents"
                )
            elif area.pv not in maps:
                missing[pv.uuid] = None
            elif (
                maps[area.pv].pe_start + (area.start_extent + per) * extent_size
                > maps[area.pv].device.size
            ):
                problems.append(f"extents of PV {area.pv} lie beyond the end of its device")
    total = sum(s.extent_count for s in segments)
    return LogicalVolume(
        name=name,
        uuid=uuid,
        extent_count=total,
        size=total * extent_size,
        visible="VISIBLE" in status,
        status=status,
        segments=tuple(segments),
        extent_size=extent_size,
        missing_pvs=tuple(missing),
        problems=tuple(problems),
        pv_maps=maps,
    )


def _allocation_overlaps(lvs: Sequence[LogicalVolume]) -> list[str]:
    """PV extents claimed by two LVs (or twice by one)."""
    used: list[tuple[str, int, int, str]] = []
    for lv in lvs:
        for seg in lv.segments:
            per = seg.extent_count // max(1, len(seg.areas))
            used += [(a.pv, a.start_extent, a.start_extent + per, lv.name) for a in seg.areas]
    used.sort()
    return [
        f"PV {a[0]} extent {b[1]} is used by LV {a[3]} and LV {b[3]}"
        for a, b in itertools.pairwise(used)
        if a[0] == b[0] and b[1] < a[2]
    ]


def build_volume_group(
    name: str, vg: ConfigSection, devices: dict[str, BlockDevice], problems: list[str]
) -> VolumeGroup:
    extent_sectors = vg.get_int("extent_size")
    if not 1 <= extent_sectors <= MAX_EXTENT_SECTORS:
        raise CorruptImageError(f"LVM VG {name}: extent size of {extent_sectors} sectors")
    extent_size = extent_sectors * SECTOR
    pvs = _pv_records(vg, extent_size)
    maps = {k: _PvMap(devices[p.uuid], p.pe_start) for k, p in pvs.items() if p.uuid in devices}
    lv_secs = vg.section("logical_volumes").sections() if vg.has("logical_volumes") else []
    limits.cap(len(lv_secs), MAX_LVS, "LVs in a VG")
    budget = [MAX_SEGMENTS]
    lvs = [_logical_volume(n, s, pvs, maps, extent_size, budget) for n, s in lv_secs]
    problems += _allocation_overlaps(lvs)
    return VolumeGroup(
        name=name,
        uuid=lvm_uuid(vg.get_str("id")),
        seqno=vg.get_int("seqno"),
        extent_size=extent_size,
        physical_volumes=tuple(pvs.values()),
        logical_volumes=tuple(lvs),
        missing_pvs=tuple(p.uuid for p in pvs.values() if p.uuid not in devices),
        problems=tuple(problems),
    )


# -- reading an LV -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Piece:
    """One segment of an LV mapped to devices: each area is (PV device, byte offset)."""

    start: int
    length: int
    stripe_size: int
    areas: tuple[tuple[BlockDevice, int], ...]

    def read(self, rel: int, count: int, out: list[bytes]) -> None:
        if len(self.areas) == 1:
            dev, base = self.areas[0]
            out.append(read_exact_dev(dev, base + rel, count, "LV data"))
            return
        stripes = len(self.areas)
        while count > 0:
            chunk, within = divmod(rel, self.stripe_size)
            row, index = divmod(chunk, stripes)
            take = min(self.stripe_size - within, count)
            dev, base = self.areas[index]
            out.append(read_exact_dev(dev, base + row * self.stripe_size + within, take, "LV data"))
            rel += take
            count -= take


class LogicalVolumeDevice:
    """A :class:`BlockDevice` that maps LV offsets onto PV extents (linear and striped)."""

    def __init__(self, name: str, pieces: Sequence[_Piece]) -> None:
        self.name = name
        self._pieces = tuple(pieces)
        self._starts = [p.start for p in self._pieces]
        self._size = sum(p.length for p in self._pieces)

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ImageportError(f"invalid read at {offset} length {length}")
        end = min(offset + length, self._size)
        limits.cap(max(0, end - offset), limits.MAX_READ_BYTES, "LV read length")
        out: list[bytes] = []
        pos = offset
        while pos < end:
            piece = self._pieces[bisect.bisect_right(self._starts, pos) - 1]
            take = min(end, piece.start + piece.length) - pos
            piece.read(pos - piece.start, take, out)
            pos += take
        data = b"".join(out)
        if len(data) != max(0, end - offset):
            raise TruncatedImageError(f"short read of LV {self.name} at {offset}")
        return data
