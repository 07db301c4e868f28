"""VHD (Virtual PC / Hyper-V "Virtual Hard Disk", qemu's ``vpc``): fixed, dynamic, differencing.

Layout learned from Microsoft's "Virtual Hard Disk Image Format Specification" (v1.0, 2006)
and from qemu 7.2's ``block/vpc.c`` (read, not copied). All fields are big-endian.

* **Footer** (512 bytes, cookie ``conectix``): at the end of every VHD. Versions before
  Virtual PC 2004 wrote a 511-byte footer, so it may also start 511 bytes before the end.
  Dynamic and differencing disks keep a copy at offset 0. Its checksum is the one's complement
  of the byte sum of the footer with the checksum field zeroed. Disk type 2 = fixed, 3 =
  dynamic, 4 = differencing.
* **Fixed**: the file is the disk, followed by the footer.
* **Dynamic header** (1024 bytes, cookie ``cxsparse``, same checksum rule) at the footer's
  ``data_offset``: block size, BAT offset and entry count, and, for differencing disks, the
  parent's UTF-16BE name and eight *parent locators* (platform code, length, file offset).
* **BAT**: u32 sector numbers, ``0xFFFFFFFF`` = unallocated. An allocated block is a sector
  bitmap (``block_size / 4096`` bytes rounded up to 512) followed by the block's data.

Choices, and where qemu-img differs:

* **Which footer**: qemu reads the copy at offset 0 when it is there, else the end footer
  (then the disk must be fixed). We do the same: when the end footer is bad but the copy at 0 is
  good we use the copy (and say so in ``properties``); when the copy at 0 is bad, qemu refuses
  the file ("Incorrect header checksum") and so do we (damaged); two valid copies that differ
  are refused as ambiguous. The 511-byte end footer is accepted for fixed disks (qemu 7.2 does
  not look for it; the spec allows it).
* **Virtual size**: qemu 7.2 sizes the disk by the CHS geometry in the footer (cylinders x
  heads x sectors x 512) unless the creator application is ``win `` (Hyper-V), ``qem2`` (qemu
  with ``force_size``), ``d2v `` (Disk2vhd), ``CTXS`` (XenConverter) or ``tap\\0`` (XenServer),
  or the geometry is the maximum 65535/16/255; then it uses the footer's *current size*. So
  Virtual PC (``vpc ``) and older qemu (``qemu``) disks are sized by geometry, which can be
  smaller than the current size. We report exactly what ``qemu-img info`` reports and, when
  the two sizes differ, show both (``properties``: ``creator``, ``current size``,
  ``geometry size``, ``size from``), because a guest under Hyper-V would see the current size.
* **Sector bitmaps**: qemu ignores them when reading (it sets every bit when it allocates a
  block), so an allocated block reads its stored data even where its bitmap bit is clear. We
  match qemu-img: allocated blocks are read as stored, bitmaps are not consulted.
* **Dynamic header checksum**: qemu does not check it; we do, and call a mismatch damage.
* **Differencing disks**: qemu 7.2 opens them as plain dynamic disks (the parent's data is then
  missing). We never open a parent: a differencing disk is refused with a ``parent-locator``
  hazard that quotes the parent name and every locator (decoded, never opened).
"""

from __future__ import annotations

import dataclasses
import functools
import struct
from dataclasses import dataclass

from imageport import limits
from imageport.checksums import vhd_checksum
from imageport.disk.vhd import DynamicVhdDisk, FixedVhdDisk, VhdBat
from imageport.errors import CorruptImageError, LimitExceededError, TruncatedImageError
from imageport.formats.base import Container, FormatSpec, Hazard, ProbeWindow
from imageport.source import ByteSource, read_exact

SECTOR = 512
FOOTER_SIZE = 512
DYNAMIC_HEADER_SIZE = 1024
FOOTER_COOKIE = b"conectix"
DYNAMIC_COOKIE = b"cxsparse"
UNALLOCATED = 0xFFFFFFFF

DISK_FIXED = 2
DISK_DYNAMIC = 3
DISK_DIFFERENCING = 4
_VARIANTS = {DISK_FIXED: "fixed", DISK_DYNAMIC: "dynamic", DISK_DIFFERENCING: "differencing"}

#: qemu 7.2 refuses VHDs above 2040 GiB (``VHD_MAX_SECTORS``).
MAX_SECTORS = 0xFF000000
#: The largest CHS geometry; a disk at it is sized by the footer's current size.
MAX_GEOMETRY_SECTORS = 65535 * 16 * 255
#: Creator applications whose footer current size qemu 7.2 trusts over the geometry.
CURRENT_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")
#: Largest parent-locator text decoded for a message (a Windows path is at most 64 KiB).
MAX_LOCATOR_BYTES = 64 * 1024
_LOCATOR_COUNT = 8


@dataclass(frozen=True, slots=True)
class Footer:
    """The hard disk footer (the first 85 of its 512 bytes carry fields)."""

    LAYOUT = struct.Struct(">8sIIQI4sI4sQQHBBII16sB")
    CHECKSUM_OFFSET = 64

    cookie: bytes
    features: int
    format_version: int
    data_offset: int
    timestamp: int
    creator_app: bytes
    creator_version: int
    creator_os: bytes
    original_size: int
    current_size: int
    cylinders: int
    heads: int
    sectors_per_track: int
    disk_type: int
    checksum: int
    unique_id: bytes
    saved_state: int
    #: The checksum over the raw bytes matched ``checksum``.
    checksum_ok: bool

    @classmethod
    def from_bytes(cls, raw: bytes) -> Footer:
        """Parse a footer; ``raw`` is 512 bytes (a 511-byte footer padded with a zero byte)."""
        f = cls.LAYOUT.unpack_from(raw, 0)
        return cls(
            cookie=f[0],
            features=f[1],
            format_version=f[2],
            data_offset=f[3],
            timestamp=f[4],
            creator_app=f[5],
            creator_version=f[6],
            creator_os=f[7],
            original_size=f[8],
            current_size=f[9],
            cylinders=f[10],
            heads=f[11],
            sectors_per_track=f[12],
            disk_type=f[13],
            checksum=f[14],
            unique_id=f[15],
            saved_state=f[16],
            checksum_ok=vhd_checksum(raw, cls.CHECKSUM_OFFSET) == f[14],
        )

    @property
    def geometry_sectors(self) -> int:
        return self.cylinders * self.heads * self.sectors_per_track

    @property
    def creator(self) -> str:
        return self.creator_app.decode("latin-1").rstrip("\0 ") or "(none)"


@dataclass(frozen=True, slots=True)
class ParentLocator:
    """One of the eight parent locator entries of a dynamic header."""

    LAYOUT = struct.Struct(">4sIIIQ")

    platform_code: bytes
    data_space: int
    data_length: int
    reserved: int
    data_offset: int

    @classmethod
    def from_bytes(cls, raw: bytes, offset: int) -> ParentLocator:
        f = cls.LAYOUT.unpack_from(raw, offset)
        return cls(
            platform_code=f[0], data_space=f[1], data_length=f[2], reserved=f[3], data_offset=f[4]
        )

    @property
    def used(self) -> bool:
        return self.platform_code != b"\0\0\0\0"


@dataclass(frozen=True, slots=True)
class DynamicHeader:
    """The dynamic disk header of dynamic and differencing disks."""

    LAYOUT = struct.Struct(">8sQQIIII16sII512s")
    CHECKSUM_OFFSET = 36
    LOCATORS_OFFSET = 576

    cookie: bytes
    data_offset: int
    table_offset: int
    header_version: int
    max_table_entries: int
    block_size: int
    checksum: int
    parent_uuid: bytes
    parent_timestamp: int
    reserved: int
    parent_name_raw: bytes
    locators: tuple[ParentLocator, ...]
    checksum_ok: bool

    @classmethod
    def from_bytes(cls, raw: bytes) -> DynamicHeader:
        f = cls.LAYOUT.unpack_from(raw, 0)
        locators = tuple(
            ParentLocator.from_bytes(raw, cls.LOCATORS_OFFSET + i * ParentLocator.LAYOUT.size)
            for i in range(_LOCATOR_COUNT)
        )
        return cls(
            cookie=f[0],
            data_offset=f[1],
            table_offset=f[2],
            header_version=f[3],
            max_table_entries=f[4],
            block_size=f[5],
            checksum=f[6],
            parent_uuid=f[7],
            parent_timestamp=f[8],
            reserved=f[9],
            parent_name_raw=f[10],
            locators=locators,
            checksum_ok=vhd_checksum(raw, cls.CHECKSUM_OFFSET) == f[6],
        )

    @property
    def parent_name(self) -> str:
        raw = self.parent_name_raw
        for i in range(0, len(raw) - 1, 2):
            if raw[i : i + 2] == b"\0\0":
                raw = raw[:i]
                break
        return raw.decode("utf-16-be", errors="replace")

    @property
    def bitmap_size(self) -> int:
        """Bytes of the sector bitmap in front of every allocated block."""
        return ((self.block_size // (8 * SECTOR)) + SECTOR - 1) & ~(SECTOR - 1)


@dataclass(frozen=True, slots=True)
class FooterChoice:
    """The footer a reader uses, where it was found, and notes about the other copy."""

    footer: Footer
    at_start: bool
    #: Bytes the end footer occupies (512, 511, or 0 when only the copy at 0 was usable).
    end_length: int
    notes: tuple[str, ...]


def _find_end_footer(window: ProbeWindow) -> tuple[Footer | None, int]:
    """The footer at the end of the file (512- or 511-byte variant) and its length."""
    last = window.tail_last(FOOTER_SIZE)
    if len(last) == FOOTER_SIZE and last.startswith(FOOTER_COOKIE):
        return Footer.from_bytes(last), FOOTER_SIZE
    short = window.tail_last(FOOTER_SIZE - 1)
    if len(short) == FOOTER_SIZE - 1 and short.startswith(FOOTER_COOKIE):
        return Footer.from_bytes(short + b"\0"), FOOTER_SIZE - 1
    return None, 0


def choose_footer(window: ProbeWindow) -> FooterChoice:
    """Pick the footer qemu-img would use, refusing the combinations it refuses."""
    head = window.head_at(0, FOOTER_SIZE)
    start = (
        Footer.from_bytes(head)
        if len(head) == FOOTER_SIZE and head.startswith(FOOTER_COOKIE)
        else None
    )
    end, end_length = _find_end_footer(window)
    end_ok = end is not None and end.checksum_ok
    if start is None:
        if end is None:
            raise CorruptImageError("no VHD footer (cookie 'conectix') at the start or end")
        if not end.checksum_ok:
            raise CorruptImageError("the VHD footer checksum is wrong (the file is damaged)")
        if end.disk_type != DISK_FIXED:
            raise CorruptImageError(
                f"the footer says disk type {end.disk_type} but there is no footer copy at "
                "offset 0 (only fixed disks have none)"
            )
        return FooterChoice(end, at_start=False, end_length=end_length, notes=())
    if not start.checksum_ok:
        which = "s are both wrong" if not end_ok else " is wrong in the copy at offset 0"
        raise CorruptImageError(f"the VHD footer checksum{which} (the file is damaged)")
    if start.disk_type == DISK_FIXED:
        raise CorruptImageError("a footer copy at offset 0 claims a fixed disk (ambiguous file)")
    notes: list[str] = []
    if end is None:
        notes.append("no footer at the end of the file; used the copy at offset 0")
    elif not end.checksum_ok:
        notes.append("the end footer's checksum is wrong; used the copy at offset 0")
    elif window.tail_last(end_length) != head[:end_length]:
        raise CorruptImageError(
            "the footer at offset 0 and the footer at the end differ (ambiguous file)"
        )
    return FooterChoice(
        start, at_start=True, end_length=end_length if end_ok else 0, notes=tuple(notes)
    )


def qemu_size(footer: Footer) -> tuple[int, str]:
    """The virtual size qemu-img 7.2 reports for ``footer``, and which field it came from."""
    geometry = footer.geometry_sectors
    if footer.creator_app in CURRENT_SIZE_CREATORS or geometry == MAX_GEOMETRY_SECTORS:
        sectors, source = footer.current_size // SECTOR, "footer current size"
    else:
        sectors, source = geometry, "CHS geometry"
    if sectors > MAX_SECTORS:
        raise LimitExceededError(
            f"VHD virtual size {sectors * SECTOR} bytes is above the 2040 GiB qemu reads"
        )
    return sectors * SECTOR, source


def decode_locator(source: ByteSource, loc: ParentLocator) -> str:
    """A parent locator as text for a message (the path is never opened)."""
    code = loc.platform_code.decode("latin-1")
    if loc.data_length > MAX_LOCATOR_BYTES:
        return f"{code}: {loc.data_length}-byte locator (too long to show)"
    if loc.data_offset + loc.data_length > source.size:
        return f"{code}: locator at offset {loc.data_offset} lies beyond the end of the file"
    data = source.read_at(loc.data_offset, loc.data_length)
    if loc.platform_code in (b"W2ru", b"W2ku"):
        text = data.decode("utf-16-le", errors="replace").rstrip("\0")
    elif loc.platform_code == b"MacX":
        text = data.decode("utf-8", errors="replace").rstrip("\0")
    elif loc.platform_code in (b"Wi2r", b"Wi2k"):
        text = data.decode("latin-1").rstrip("\0")
    else:
        return f"{code}: {loc.data_length}-byte locator (binary)"
    return f"{code}: {text!r}"


def _parent_hazard(source: ByteSource, header: DynamicHeader) -> Hazard:
    parts = [f"parent name {header.parent_name!r}"]
    parts += [decode_locator(source, loc) for loc in header.locators if loc.used]
    return Hazard("parent-locator", "differencing VHD needs its parent disk: " + "; ".join(parts))


def read_bat(source: ByteSource, header: DynamicHeader, virtual_size: int) -> VhdBat:
    """Validate the dynamic header's numbers like qemu does, then read and check the BAT."""
    block_size = header.block_size
    if block_size < SECTOR or block_size & (block_size - 1):
        raise CorruptImageError(f"VHD block size {block_size} is not a power of two >= 512")
    limits.cap(block_size, limits.MAX_BLOCK_BYTES, "VHD block size")
    entries = limits.cap(header.max_table_entries, limits.MAX_TABLE_ENTRIES, "VHD BAT entries")
    if entries * block_size < virtual_size:
        raise CorruptImageError(
            f"the VHD BAT ({entries} entries of {block_size} bytes) is smaller than the disk"
        )
    raw = read_exact(source, header.table_offset, entries * 4, "VHD block allocation table")
    bat = VhdBat(raw=raw, entries=entries, block_size=block_size, bitmap_size=header.bitmap_size)
    span = header.bitmap_size + block_size
    for index, (sector,) in enumerate(struct.iter_unpack(">I", raw)):
        if sector != UNALLOCATED and sector * SECTOR + span > source.size:
            raise TruncatedImageError(
                f"VHD block {index} at offset {sector * SECTOR} lies beyond the end of the "
                f"file ({source.size} bytes)"
            )
    return bat


def _matches(window: ProbeWindow) -> bool:
    if window.head.startswith(FOOTER_COOKIE):
        return True
    return _find_end_footer(window)[0] is not None


def _inspect(source: ByteSource, window: ProbeWindow) -> Container:
    choice = choose_footer(window)
    footer = choice.footer
    variant = _VARIANTS.get(footer.disk_type)
    if variant is None:
        raise CorruptImageError(f"unknown VHD disk type {footer.disk_type}")
    virtual_size, size_from = qemu_size(footer)
    props: dict[str, str] = {
        "creator": f"{footer.creator} {footer.creator_version >> 16}."
        f"{footer.creator_version & 0xFFFF} ({footer.creator_os.decode('latin-1')})",
        "size from": size_from,
    }
    geometry_size = footer.geometry_sectors * SECTOR
    if geometry_size != footer.current_size:
        props["current size"] = str(footer.current_size)
        props["geometry size"] = str(geometry_size)
    if choice.notes:
        props["footer"] = "; ".join(choice.notes)
    base = Container(
        format="vhd",
        variant=variant,
        accepted=True,
        file_size=source.size,
        virtual_size=virtual_size,
        properties=props,
    )
    if footer.disk_type == DISK_FIXED:
        data_end = source.size - choice.end_length
        if virtual_size > data_end:
            raise TruncatedImageError(
                f"fixed VHD of {virtual_size} bytes holds only {data_end} bytes of data"
            )
        return dataclasses.replace(base, opener=functools.partial(FixedVhdDisk, size=virtual_size))
    limits.cap(footer.data_offset, source.size - DYNAMIC_HEADER_SIZE, "VHD dynamic header offset")
    header = DynamicHeader.from_bytes(
        read_exact(source, footer.data_offset, DYNAMIC_HEADER_SIZE, "VHD dynamic header")
    )
    if header.cookie != DYNAMIC_COOKIE:
        raise CorruptImageError(
            f"no VHD dynamic header (cookie 'cxsparse') at offset {footer.data_offset}"
        )
    if not header.checksum_ok:
        raise CorruptImageError("the VHD dynamic header checksum is wrong (the file is damaged)")
    props["block size"] = str(header.block_size)
    if footer.disk_type == DISK_DIFFERENCING:
        return dataclasses.replace(base, hazards=(_parent_hazard(source, header),))
    bat = read_bat(source, header, virtual_size)
    return dataclasses.replace(
        base, opener=functools.partial(DynamicVhdDisk, size=virtual_size, bat=bat)
    )


SPECS: tuple[FormatSpec, ...] = (
    FormatSpec(
        name="vhd",
        description="Microsoft VHD / Virtual PC disk (qemu 'vpc'): fixed, dynamic, differencing",
        accepted=True,
        matches=_matches,
        inspect=_inspect,
    ),
)
