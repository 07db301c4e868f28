"""VHDX (Hyper-V "Virtual Hard Disk v2"): fixed, dynamic and differencing disks.

Layout learned from Microsoft's "VHDX Format Specification" v1.00 (MS-VHDX) and qemu 7.2's
``block/vhdx.c`` (read, not copied). All fields are little-endian; GUIDs use the Microsoft
mixed-endian byte order (``uuid.UUID.bytes_le``).

* **File type identifier** at 0: ``vhdxfile`` and the creator as UTF-16LE text.
* **Two headers** (4 KiB each, signature ``head``) at 64 KiB and 128 KiB, each with a CRC-32C
  over its 4 KiB (checksum field zeroed). The valid one with the higher sequence number is
  current; Disk2vhd writes two identical headers with equal numbers, which is accepted (as qemu
  does); two different valid headers with equal numbers are damage. The header names the log
  (``LogGuid``, offset, length).
* **Region table** (64 KiB, signature ``regi``, CRC-32C) at 192 KiB, a copy at 256 KiB: file
  ranges of the BAT and metadata regions (1 MiB aligned). Like qemu we read the first table;
  a bad copy is only noted.
* **Metadata region**: a table (signature ``metadata``, up to 2047 entries) of items: file
  parameters (block size 1-256 MiB, LeaveBlocksAllocated, HasParent), virtual disk size,
  logical and physical sector size, page 83 id, and, for differencing disks, the parent locator
  (UTF-16LE key/value pairs such as ``parent_linkage``, ``relative_path``,
  ``absolute_win32_path``).
* **BAT**: u64 entries, state in bits 0-2, file offset in MiB in bits 20-63; after every
  ``chunk_ratio = 2**23 * logical_sector_size / block_size`` payload entries comes one
  sector-bitmap entry (used only by differencing disks).

Safety: a non-zero ``LogGuid`` means the log may hold writes that must be replayed first; we
never replay it (that writes to the file) and refuse with a ``log-replay`` hazard. A disk with
HasParent is refused with a ``parent-locator`` hazard quoting the locator entries; the parent is
never opened. Every count, offset and length is checked before use; BAT entries are checked at
probe time (state, overlap with the headers, log, BAT and metadata, end of file), so a reader
never meets a bad entry. The virtual size is the metadata's virtual disk size, as qemu-img
reports it. qemu 7.2 opens only disks with 512-byte logical sectors ("Operation not
supported" otherwise), so a 4096-byte logical sector size is refused as unsupported too.
"""

from __future__ import annotations

import functools
import struct
import uuid
from dataclasses import dataclass

from imageport import limits
from imageport.checksums import crc32c
from imageport.disk import vhdx as vdisk
from imageport.errors import (
    CorruptImageError,
    ImageportError,
    LimitExceededError,
    TruncatedImageError,
    UnsupportedImageError,
)
from imageport.formats.base import Container, FormatSpec, Hazard, ProbeWindow
from imageport.source import ByteSource, read_exact

KiB = 1024
MiB = 1024 * KiB
SIGNATURE = b"vhdxfile"
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
HEADER_SIZE = 4 * KiB
REGION_TABLE_OFFSETS = (192 * KiB, 256 * KiB)
REGION_TABLE_SIZE = 64 * KiB
METADATA_TABLE_SIZE = 64 * KiB
MAX_TABLE_ENTRIES = 2047  #: region and metadata tables both hold at most 2047 entries
BLOCK_SIZE_MIN = 1 * MiB
BLOCK_SIZE_MAX = 256 * MiB
#: Largest parent locator item decoded for a message.
MAX_LOCATOR_BYTES = 64 * KiB
_SECTORS_PER_CHUNK = 1 << 23

BAT_GUID = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08").bytes_le
METADATA_GUID = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E").bytes_le
FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B").bytes_le
VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8").bytes_le
PAGE_83_DATA = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746").bytes_le
LOGICAL_SECTOR_SIZE = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F").bytes_le
PHYSICAL_SECTOR_SIZE = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556").bytes_le
PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C").bytes_le
_ITEM_NAMES = {
    FILE_PARAMETERS: "file parameters",
    VIRTUAL_DISK_SIZE: "virtual disk size",
    PAGE_83_DATA: "page 83 data",
    LOGICAL_SECTOR_SIZE: "logical sector size",
    PHYSICAL_SECTOR_SIZE: "physical sector size",
    PARENT_LOCATOR: "parent locator",
}
_REQUIRED_ITEMS = (
    FILE_PARAMETERS,
    VIRTUAL_DISK_SIZE,
    PAGE_83_DATA,
    LOGICAL_SECTOR_SIZE,
    PHYSICAL_SECTOR_SIZE,
)


def checksum_ok(block: bytes) -> bool:
    """True when the CRC-32C stored at offset 4 matches ``block`` with that field zeroed."""
    stored: int = struct.unpack_from("<I", block, 4)[0]
    return crc32c(block[:4] + b"\0\0\0\0" + block[8:]) == stored


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


@dataclass(frozen=True, slots=True)
class Header:
    """One of the two VHDX headers, with whether its signature, version and CRC are right."""

    LAYOUT = struct.Struct("<4sIQ16s16s16sHHIQ")

    signature: bytes
    checksum: int
    sequence_number: int
    file_write_guid: bytes
    data_write_guid: bytes
    log_guid: bytes
    log_version: int
    version: int
    log_length: int
    log_offset: int
    valid: bool

    @classmethod
    def from_bytes(cls, raw: bytes) -> Header:
        f = cls.LAYOUT.unpack_from(raw, 0)
        valid = f[0] == b"head" and f[7] == 1 and checksum_ok(raw)
        return cls(
            signature=f[0],
            checksum=f[1],
            sequence_number=f[2],
            file_write_guid=f[3],
            data_write_guid=f[4],
            log_guid=f[5],
            log_version=f[6],
            version=f[7],
            log_length=f[8],
            log_offset=f[9],
            valid=valid,
        )


@dataclass(frozen=True, slots=True)
class TableEntry:
    """A region table entry or a metadata table entry (GUID, where, how long, flags)."""

    REGION = struct.Struct("<16sQII")
    METADATA = struct.Struct("<16sIII4x")

    guid: bytes
    offset: int
    length: int
    #: Region entries: bit 0 = required. Metadata entries: bit 2 = required.
    flags: int

    @classmethod
    def region(cls, raw: bytes, offset: int) -> TableEntry:
        f = cls.REGION.unpack_from(raw, offset)
        return cls(guid=f[0], offset=f[1], length=f[2], flags=f[3])

    @classmethod
    def metadata(cls, raw: bytes, offset: int) -> TableEntry:
        f = cls.METADATA.unpack_from(raw, offset)
        return cls(guid=f[0], offset=f[1], length=f[2], flags=f[3])


@dataclass(frozen=True, slots=True)
class Metadata:
    """The metadata items that define the virtual disk."""

    block_size: int
    leave_blocks_allocated: bool
    has_parent: bool
    virtual_size: int
    logical_sector_size: int
    physical_sector_size: int
    page83: str
    #: Parent locator key/value pairs (decoded for messages), when there is a locator.
    parent_locator: tuple[tuple[str, str], ...] | None

    @property
    def chunk_ratio(self) -> int:
        return _SECTORS_PER_CHUNK * self.logical_sector_size // self.block_size


class _Regions:
    """File ranges already claimed (header section, log, BAT, metadata), to refuse overlaps."""

    def __init__(self, file_size: int) -> None:
        self.file_size = file_size
        self.claimed: list[tuple[int, int, str]] = [(0, 1 * MiB, "the header section")]

    def overlap(self, start: int, length: int) -> str | None:
        for lo, hi, name in self.claimed:
            if start < hi and lo < start + length:
                return name
        return None

    def claim(self, start: int, length: int, name: str) -> None:
        if start % MiB or length % MiB:
            raise CorruptImageError(f"VHDX {name} ({length} bytes at {start}) is not 1 MiB aligned")
        if start + length > self.file_size:
            raise TruncatedImageError(
                f"VHDX {name} ({length} bytes at {start}) lies beyond the end of the file "
                f"({self.file_size} bytes)"
            )
        other = self.overlap(start, length)
        if other is not None:
            raise CorruptImageError(f"VHDX {name} at {start} overlaps {other}")
        self.claimed.append((start, start + length, name))


def current_header(source: ByteSource) -> tuple[Header, str | None]:
    """The header in force, and a note when one copy is unusable."""
    raw1, raw2 = (read_exact(source, off, HEADER_SIZE, "VHDX header") for off in HEADER_OFFSETS)
    h1, h2 = Header.from_bytes(raw1), Header.from_bytes(raw2)
    if not h1.valid and not h2.valid:
        raise CorruptImageError("both VHDX headers are invalid (bad signature, version or CRC)")
    if h1.valid and h2.valid:
        # Disk2vhd writes two identical headers with the same sequence number (qemu allows it).
        if h1.sequence_number == h2.sequence_number and raw1 != raw2:
            raise CorruptImageError("two different VHDX headers carry the same sequence number")
        return (h1 if h1.sequence_number >= h2.sequence_number else h2), None
    bad = 1 if not h1.valid else 2
    return (h2 if bad == 1 else h1), f"header {bad} is invalid; used the other copy"


def read_regions(source: ByteSource, regions: _Regions) -> tuple[TableEntry, TableEntry, str]:
    """The BAT and metadata region entries of the first region table, and a note on the copy."""
    raw = read_exact(source, REGION_TABLE_OFFSETS[0], REGION_TABLE_SIZE, "VHDX region table")
    copy = read_exact(source, REGION_TABLE_OFFSETS[1], REGION_TABLE_SIZE, "VHDX region table 2")
    note = "copy valid" if copy[:4] == b"regi" and checksum_ok(copy) else "copy damaged"
    if raw[:4] != b"regi" or not checksum_ok(raw):
        raise CorruptImageError("the VHDX region table has a bad signature or CRC")
    count = limits.cap(
        struct.unpack_from("<I", raw, 8)[0], MAX_TABLE_ENTRIES, "VHDX region table entry count"
    )
    found: dict[bytes, TableEntry] = {}
    for i in range(count):
        entry = TableEntry.region(raw, 16 + 32 * i)
        if entry.guid == BAT_GUID:
            name = "BAT region"
        elif entry.guid == METADATA_GUID:
            name = "metadata region"
        elif entry.flags & 1:
            raise UnsupportedImageError(f"VHDX requires an unknown region {_guid(entry.guid)}")
        else:
            name = f"region {_guid(entry.guid)}"
        if entry.guid in found:
            raise CorruptImageError(f"the VHDX region table lists the {name} twice")
        regions.claim(entry.offset, entry.length, name)
        found[entry.guid] = entry
    if BAT_GUID not in found or METADATA_GUID not in found:
        raise CorruptImageError("the VHDX region table lacks the BAT or the metadata region")
    return found[BAT_GUID], found[METADATA_GUID], note


def _item(source: ByteSource, region: TableEntry, entry: TableEntry, need: int) -> bytes:
    name = _ITEM_NAMES.get(entry.guid, "metadata item")
    if entry.length < need:
        raise CorruptImageError(f"VHDX {name} is {entry.length} bytes, expected {need}")
    if entry.offset < METADATA_TABLE_SIZE or entry.offset + entry.length > region.length:
        raise CorruptImageError(f"VHDX {name} at {entry.offset} lies outside the metadata region")
    return read_exact(source, region.offset + entry.offset, need, f"VHDX {name}")


def parse_locator(raw: bytes) -> tuple[tuple[str, str], ...]:
    """The key/value pairs of a parent locator item (UTF-16LE strings), checked against ``raw``."""
    if len(raw) < 20:
        raise CorruptImageError("VHDX parent locator is shorter than its header")
    count: int = struct.unpack_from("<H", raw, 18)[0]
    limits.cap(count, (len(raw) - 20) // 12, "VHDX parent locator entry count")
    pairs = []
    for i in range(count):
        key_off, value_off, key_len, value_len = struct.unpack_from("<IIHH", raw, 20 + 12 * i)
        if key_off + key_len > len(raw) or value_off + value_len > len(raw):
            raise CorruptImageError(f"VHDX parent locator entry {i} points outside the locator")
        key = raw[key_off : key_off + key_len].decode("utf-16-le", errors="replace")
        value = raw[value_off : value_off + value_len].decode("utf-16-le", errors="replace")
        pairs.append((key, value))
    return tuple(pairs)


def read_metadata(source: ByteSource, region: TableEntry) -> Metadata:
    """Parse the metadata table and the items qemu requires, checking each value's range."""
    raw = read_exact(source, region.offset, METADATA_TABLE_SIZE, "VHDX metadata table")
    if raw[:8] != b"metadata":
        raise CorruptImageError("the VHDX metadata table has a bad signature")
    count = limits.cap(
        struct.unpack_from("<H", raw, 10)[0], MAX_TABLE_ENTRIES, "VHDX metadata entry count"
    )
    items: dict[bytes, TableEntry] = {}
    for i in range(count):
        entry = TableEntry.metadata(raw, 32 + 32 * i)
        if entry.guid in items:
            raise CorruptImageError(f"the VHDX metadata lists {_ITEM_NAMES.get(entry.guid)} twice")
        if entry.guid not in _ITEM_NAMES and entry.flags & 4:
            raise UnsupportedImageError(f"VHDX requires unknown metadata {_guid(entry.guid)}")
        items[entry.guid] = entry
    missing = [_ITEM_NAMES[g] for g in _REQUIRED_ITEMS if g not in items]
    if missing:
        raise CorruptImageError(f"VHDX metadata lacks: {', '.join(missing)}")
    block_size, bits = struct.unpack("<II", _item(source, region, items[FILE_PARAMETERS], 8))
    if not BLOCK_SIZE_MIN <= block_size <= BLOCK_SIZE_MAX or block_size & (block_size - 1):
        raise LimitExceededError(f"VHDX block size {block_size} is not a power of two in 1-256 MiB")
    size: int = struct.unpack("<Q", _item(source, region, items[VIRTUAL_DISK_SIZE], 8))[0]
    logical: int = struct.unpack("<I", _item(source, region, items[LOGICAL_SECTOR_SIZE], 4))[0]
    physical: int = struct.unpack("<I", _item(source, region, items[PHYSICAL_SECTOR_SIZE], 4))[0]
    page83 = _guid(_item(source, region, items[PAGE_83_DATA], 16))
    if logical not in (512, 4096) or physical not in (512, 4096):
        raise CorruptImageError(f"VHDX sector sizes {logical}/{physical} are not 512 or 4096")
    limits.cap(size, limits.MAX_VIRTUAL_SIZE, "VHDX virtual disk size")
    if size % logical:
        raise CorruptImageError(f"VHDX virtual size {size} is not a multiple of {logical}")
    locator = None
    if PARENT_LOCATOR in items:
        entry = items[PARENT_LOCATOR]
        limits.cap(entry.length, MAX_LOCATOR_BYTES, "VHDX parent locator length")
        locator = parse_locator(_item(source, region, entry, entry.length))
    return Metadata(
        block_size=block_size,
        leave_blocks_allocated=bool(bits & 1),
        has_parent=bool(bits & 2),
        virtual_size=size,
        logical_sector_size=logical,
        physical_sector_size=physical,
        page83=page83,
        parent_locator=locator,
    )


def read_bat(
    source: ByteSource, region: TableEntry, meta: Metadata, regions: _Regions
) -> vdisk.VhdxBat:
    """Read the BAT of a disk without a parent and check every payload entry."""
    ratio = meta.chunk_ratio
    blocks = -(-meta.virtual_size // meta.block_size)
    entries = blocks + (blocks - 1) // ratio if blocks else 0
    limits.cap(entries * 8, limits.MAX_TABLE_BYTES, "VHDX BAT size")
    if entries * 8 > region.length:
        raise CorruptImageError(f"the VHDX BAT region is too small for {entries} entries")
    raw = read_exact(source, region.offset, entries * 8, "VHDX block allocation table")
    for index, (entry,) in enumerate(struct.iter_unpack("<Q", raw)):
        if index % (ratio + 1) == ratio:
            continue  # a sector bitmap entry: only differencing disks use them
        block = index - index // (ratio + 1)
        state = entry & vdisk.STATE_MASK
        if state == vdisk.PAYLOAD_FULLY_PRESENT:
            _check_block(entry & vdisk.FILE_OFFSET_MASK, block, meta, regions)
        elif state not in (
            vdisk.PAYLOAD_NOT_PRESENT,
            vdisk.PAYLOAD_UNDEFINED,
            vdisk.PAYLOAD_ZERO,
            vdisk.PAYLOAD_UNMAPPED,
            vdisk.PAYLOAD_UNMAPPED_V095,
        ):
            raise CorruptImageError(f"VHDX BAT entry for block {block} has invalid state {state}")
    return vdisk.VhdxBat(raw=raw, block_size=meta.block_size, chunk_ratio=ratio)


def _check_block(offset: int, block: int, meta: Metadata, regions: _Regions) -> None:
    other = regions.overlap(offset, meta.block_size)
    if other is not None:
        raise CorruptImageError(f"VHDX block {block} at offset {offset} overlaps {other}")
    needed = min(meta.block_size, meta.virtual_size - block * meta.block_size)
    if offset + needed > regions.file_size:
        raise TruncatedImageError(
            f"VHDX block {block} at offset {offset} lies beyond the end of the file "
            f"({regions.file_size} bytes)"
        )


def _matches(window: ProbeWindow) -> bool:
    return window.head.startswith(SIGNATURE)


def _inspect(source: ByteSource, window: ProbeWindow) -> Container:
    hazards: list[Hazard] = []
    props: dict[str, str] = {}
    creator = window.head_at(8, 512).decode("utf-16-le", errors="replace").split("\0")[0]
    props["creator"] = creator or "(none)"
    try:
        return _parse(source, hazards, props)
    except (CorruptImageError, UnsupportedImageError) as exc:
        if not hazards:
            raise
        damage: ImageportError = exc
    return Container(
        format="vhdx",
        variant="damaged",
        accepted=True,
        file_size=source.size,
        hazards=tuple(hazards),
        damage=str(damage),
        properties=props,
    )


def _parse(source: ByteSource, hazards: list[Hazard], props: dict[str, str]) -> Container:
    header, note = current_header(source)
    props["header sequence"] = str(header.sequence_number)
    if note:
        props["header"] = note
    regions = _Regions(source.size)
    if header.log_guid != bytes(16):
        hazards.append(
            Hazard(
                "log-replay",
                f"the VHDX log (GUID {_guid(header.log_guid)}, {header.log_length} bytes at offset "
                f"{header.log_offset}) may hold writes that must be replayed; it is never replayed "
                "here (that would write to the image)",
            )
        )
    if header.log_length:
        regions.claim(header.log_offset, header.log_length, "log")
    bat_region, meta_region, copy_note = read_regions(source, regions)
    props["region table"] = copy_note
    meta = read_metadata(source, meta_region)
    props.update(
        {
            "block size": str(meta.block_size),
            "logical sector size": str(meta.logical_sector_size),
            "physical sector size": str(meta.physical_sector_size),
            "page 83 id": meta.page83,
        }
    )
    variant = (
        "differencing" if meta.has_parent else "fixed" if meta.leave_blocks_allocated else "dynamic"
    )
    if meta.has_parent:
        pairs = meta.parent_locator
        found = "; ".join(f"{k}={v!r}" for k, v in pairs) if pairs else "no parent locator"
        hazards.append(Hazard("parent-locator", f"differencing VHDX needs its parent: {found}"))
    opener = None
    if not hazards:
        if meta.logical_sector_size != 512:
            raise UnsupportedImageError(
                "VHDX with 4096-byte logical sectors (qemu-img 7.2 cannot open them either)"
            )
        bat = read_bat(source, bat_region, meta, regions)
        opener = functools.partial(vdisk.VhdxDisk, size=meta.virtual_size, bat=bat)
    return Container(
        format="vhdx",
        variant=variant,
        accepted=True,
        file_size=source.size,
        virtual_size=meta.virtual_size,
        hazards=tuple(hazards),
        properties=props,
        opener=opener,
    )


SPECS: tuple[FormatSpec, ...] = (
    FormatSpec(
        name="vhdx",
        description="Microsoft VHDX (Hyper-V) disk image: fixed, dynamic, differencing",
        accepted=True,
        matches=_matches,
        inspect=_inspect,
    ),
)
