"""Virtual-disk and forensic formats the platform does not accept, named precisely.

Each is recognised by its magic and parsed just enough to report its variant and virtual size,
so that the IMG-FORMAT finding can say what the file is and how to convert it. Layouts learned
from qemu's ``block/parallels.c``, ``block/bochs.c``, ``block/cloop.c`` and ``block/dmg.c``,
Apple's UDIF "koly" trailer as documented by the libdmg/dmg2img projects, the libewf "Expert
Witness Compression Format" notes (EWF-E01 and EWF2-Ex01), and dissect.hypervisor's description of
Apple's ASIF header (all read for layout only).

* ``parallels``: ``WithoutFreeSpace`` (v1, 32-bit sector count) or ``WithouFreSpacExt`` (v2) at
  0; little-endian header: version u32 (must be 2) at 16, heads, cylinders, sectors per cluster,
  BAT entries, sectors u64 at 36, in-use marker u32 at 44, data offset at 48, flags at 52,
  header-extension offset u64 at 56. A ``DiskDescriptor.xml`` of an ``.hdd`` bundle is also
  named ``parallels``; the image files it lists are recorded as hazards (never opened).
* ``bochs``: ``Bochs Virtual HD Image`` at 0, type (``Redolog``) at 32, subtype (``Growing``,
  ``Undoable``, ``Volatile``) at 48, version u32 at 64 (0x00020000 or 0x00010000); the disk size
  u64 is at 88 (v2) or 84 (v1).
* ``cloop``: a shell-script preamble ``#!/bin/sh\\n#V2.0 Format\\n...`` (128 bytes), then the
  block size and block count as big-endian u32.
* ``dmg``: Apple UDIF, a 512-byte big-endian ``koly`` trailer in the last 512 bytes (version 4,
  header size 512; sector count u64 at 492). An encrypted DMG starts with ``encrcdsa``.
* ``ewf``: EnCase ``EVF\\x09\\x0d\\x0a\\xff\\x00`` (E01), ``EVF2\\r\\n\\x81\\x00`` (Ex01); for
  E01 the section chain from offset 13 is walked to the ``volume``/``disk`` section (sector
  count u64 at 16 and bytes per sector u32 at 12 of its data).
* ``asif``: Apple sparse image format, big-endian header ``shdw`` (version u32 at 4, header size
  at 8, sector count u64 at 48, chunk size u32 at 64, block size u16 at 68).

Virtual sizes agree with ``qemu-img info`` for parallels, bochs, cloop and dmg (qemu has no ewf
or asif driver).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from imageport import limits
from imageport.errors import CorruptImageError
from imageport.formats.base import Container, FormatSpec, Hazard, ProbeWindow, refused_spec
from imageport.source import ByteSource, read_exact

SECTOR = 512


def _virtual(value: int, what: str) -> int:
    return limits.cap(value, limits.MAX_VIRTUAL_SIZE, what)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


# -- Parallels -----------------------------------------------------------------------------

_PARALLELS_V1 = b"WithoutFreeSpace"
_PARALLELS_V2 = b"WithouFreSpacExt"
_PARALLELS_INUSE = 0x746F6E59


@dataclass(frozen=True, slots=True)
class ParallelsHeader:
    """The 64-byte little-endian Parallels image header."""

    magic: bytes
    version: int
    heads: int
    cylinders: int
    cluster_sectors: int
    bat_entries: int
    sectors: int
    in_use: int
    data_offset: int
    flags: int
    extension_offset: int

    LAYOUT = struct.Struct("<16sIIIIIQIIIQ")

    @classmethod
    def from_bytes(cls, data: bytes) -> ParallelsHeader:
        f = cls.LAYOUT.unpack_from(data, 0)
        return cls(
            magic=f[0], version=f[1], heads=f[2], cylinders=f[3], cluster_sectors=f[4],
            bat_entries=f[5], sectors=f[6], in_use=f[7], data_offset=f[8], flags=f[9],
            extension_offset=f[10],
        )  # fmt: skip


def _matches_parallels(window: ProbeWindow) -> bool:
    head = window.head
    if head[:16] in (_PARALLELS_V1, _PARALLELS_V2) and len(head) >= ParallelsHeader.LAYOUT.size:
        return int(struct.unpack_from("<I", head, 16)[0]) == 2
    return _is_parallels_descriptor(head)


def _inspect_parallels(source: ByteSource, window: ProbeWindow) -> Container:
    if window.head[:16] not in (_PARALLELS_V1, _PARALLELS_V2):
        return _inspect_parallels_descriptor(source, window)
    header = ParallelsHeader.from_bytes(
        read_exact(source, 0, ParallelsHeader.LAYOUT.size, "parallels header")
    )
    sectors = header.sectors
    if header.magic == _PARALLELS_V1:
        sectors &= 0xFFFFFFFF  # old images keep garbage in the upper half (as qemu masks it)
    if header.cluster_sectors == 0:
        raise CorruptImageError("parallels: zero sectors per cluster")
    properties = {
        "cluster size": str(header.cluster_sectors * SECTOR),
        "bat entries": str(header.bat_entries),
        "marked in use": "yes" if header.in_use == _PARALLELS_INUSE else "no",
    }
    if header.extension_offset:
        properties["header extension"] = f"at sector {header.extension_offset}"
    return Container(
        format="parallels",
        variant="v1 (WithoutFreeSpace)" if header.magic == _PARALLELS_V1 else "v2 (ext)",
        accepted=False,
        file_size=source.size,
        virtual_size=_virtual(sectors * SECTOR, "parallels virtual size"),
        properties=properties,
    )


_XML_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]{0,200}\?>\s*)?<Parallels_disk_image\b"
)
_XML_FILE = re.compile(rb"<File>([^<]{0,4096})</File>")
_XML_DISK_SIZE = re.compile(rb"<Disk_size>\s*(\d{1,20})\s*</Disk_size>")


def _is_parallels_descriptor(head: bytes) -> bool:
    return _XML_START.match(head[:1024]) is not None


def _inspect_parallels_descriptor(source: ByteSource, window: ProbeWindow) -> Container:
    limits.cap(source.size, limits.MAX_DESCRIPTOR_BYTES, "parallels DiskDescriptor.xml size")
    text = read_exact(source, 0, source.size, "parallels DiskDescriptor.xml")
    files = [m.group(1).decode("utf-8", "replace").strip() for m in _XML_FILE.finditer(text)]
    limits.cap(len(files), limits.MAX_EXTENTS, "image files named in DiskDescriptor.xml")
    hazards = tuple(
        Hazard("external-extent", f"DiskDescriptor.xml names the image file {name!r}")
        for name in files
    )
    size_match = _XML_DISK_SIZE.search(text)
    virtual_size = (
        _virtual(int(size_match.group(1)) * SECTOR, "parallels virtual size")
        if size_match
        else None
    )
    return Container(
        format="parallels",
        variant="hdd bundle descriptor (DiskDescriptor.xml)",
        accepted=False,
        file_size=source.size,
        virtual_size=virtual_size,
        hazards=hazards,
        properties={"image files": ", ".join(files) or "none"},
    )


# -- Bochs -----------------------------------------------------------------------------------

_BOCHS_MAGIC = b"Bochs Virtual HD Image"
_BOCHS_VERSIONS = {0x00020000: "v2", 0x00010000: "v1"}


@dataclass(frozen=True, slots=True)
class BochsHeader:
    """The Bochs redolog header: magic, type, subtype, version, sizes (little-endian)."""

    type: str
    subtype: str
    version: int
    catalog_entries: int
    extent_size: int
    disk_size: int

    LAYOUT = struct.Struct("<32s16s16sIIIII")

    @classmethod
    def from_bytes(cls, data: bytes) -> BochsHeader:
        _m, btype, subtype, version, _hdr, catalog, _bitmap, extent = cls.LAYOUT.unpack_from(data)
        disk_at = 84 if version == 0x00010000 else 88
        return cls(
            type=_cstr(btype),
            subtype=_cstr(subtype),
            version=version,
            catalog_entries=catalog,
            extent_size=extent,
            disk_size=struct.unpack_from("<Q", data, disk_at)[0],
        )


def _matches_bochs(window: ProbeWindow) -> bool:
    return window.head[:23] == _BOCHS_MAGIC + b"\0"


def _inspect_bochs(source: ByteSource, window: ProbeWindow) -> Container:
    header = BochsHeader.from_bytes(read_exact(source, 0, 96, "bochs header"))
    version = _BOCHS_VERSIONS.get(header.version)
    if version is None:
        raise CorruptImageError(f"bochs: unknown header version 0x{header.version:08x}")
    return Container(
        format="bochs",
        variant=f"{header.type.lower()} {header.subtype.lower()} ({version})",
        accepted=False,
        file_size=source.size,
        virtual_size=_virtual(header.disk_size, "bochs disk size"),
        properties={
            "catalog entries": str(header.catalog_entries),
            "extent size": str(header.extent_size),
        },
    )


# -- cloop -----------------------------------------------------------------------------------

_CLOOP_PREAMBLE = re.compile(rb"\A#!/bin/sh\n#V(\d)\.0 Format\nmodprobe cloop ")
_CLOOP_HEADER = struct.Struct(">II")  # block size, number of blocks, after 128 preamble bytes
_CLOOP_MAX_BLOCK = 64 * limits.MiB  # as qemu


def _matches_cloop(window: ProbeWindow) -> bool:
    return _CLOOP_PREAMBLE.match(window.head[:64]) is not None


def _inspect_cloop(source: ByteSource, window: ProbeWindow) -> Container:
    match = _CLOOP_PREAMBLE.match(window.head[:64])
    version = match.group(1).decode() if match else "?"
    block_size, blocks = _CLOOP_HEADER.unpack(read_exact(source, 128, 8, "cloop header"))
    if block_size == 0 or block_size % SECTOR or block_size > _CLOOP_MAX_BLOCK:
        raise CorruptImageError(f"cloop: block size {block_size} is not valid")
    return Container(
        format="cloop",
        variant=f"v{version}.0",
        accepted=False,
        file_size=source.size,
        virtual_size=_virtual(block_size * blocks, "cloop virtual size"),
        properties={"block size": str(block_size), "blocks": str(blocks)},
    )


# -- Apple DMG (UDIF) ------------------------------------------------------------------------

_KOLY = struct.Struct(">4sIII")  # signature, version, header size, flags
_KOLY_SECTORS = struct.Struct(">IQ")  # image variant, sector count, at 488
_DMG_ENCRYPTED = (b"encrcdsa", b"cdsaencr")


def _koly(window: ProbeWindow) -> bytes | None:
    trailer = window.tail_last(512)
    if len(trailer) == 512 and _KOLY.unpack_from(trailer)[0:3] == (b"koly", 4, 512):
        return trailer
    return None


def _matches_dmg(window: ProbeWindow) -> bool:
    return _koly(window) is not None or window.head[:8] in _DMG_ENCRYPTED


def _inspect_dmg(source: ByteSource, window: ProbeWindow) -> Container:
    trailer = _koly(window)
    if trailer is None:
        return Container(
            format="dmg",
            variant="encrypted",
            accepted=False,
            file_size=source.size,
            encryption="dmg",
            properties={"header": window.head[:8].decode("latin-1")},
        )
    _image_variant, sectors = _KOLY_SECTORS.unpack_from(trailer, 488)
    xml_offset, xml_length = struct.unpack_from(">QQ", trailer, 216)
    data_fork_length = struct.unpack_from(">Q", trailer, 32)[0]
    return Container(
        format="dmg",
        variant="udif",
        accepted=False,
        file_size=source.size,
        virtual_size=_virtual(sectors * SECTOR, "dmg sector count"),
        properties={
            "data fork length": str(data_fork_length),
            "property list": f"{xml_length} bytes at {xml_offset}",
        },
    )


# -- EWF (EnCase) ----------------------------------------------------------------------------

_EWF1 = b"EVF\x09\x0d\x0a\xff\x00"
_EWF2 = b"EVF2\x0d\x0a\x81\x00"
_EWF_SECTION = struct.Struct("<16sQQ40sI")  # type, next, size, padding, adler32
_EWF_VOLUME = struct.Struct("<B3xIIIQ")  # media type, chunks, sectors/chunk, bytes/sector, sectors
#: Sections walked in search of the volume section (it is the second or third in practice).
_EWF_MAX_SECTIONS = 64


def _matches_ewf(window: ProbeWindow) -> bool:
    return window.head[:8] in (_EWF1, _EWF2)


def _inspect_ewf(source: ByteSource, window: ProbeWindow) -> Container:
    if window.head[:8] == _EWF2:
        return Container(format="ewf", variant="ewf2 (Ex01)", accepted=False, file_size=source.size)
    segment = struct.unpack_from("<H", read_exact(source, 9, 2, "ewf segment number"))[0]
    properties = {"segment number": str(segment)}
    virtual_size: int | None = None
    offset = 13
    for _ in range(_EWF_MAX_SECTIONS):
        raw = read_exact(source, offset, _EWF_SECTION.size, "ewf section descriptor")
        stype, next_offset, _size, _pad, checksum = _EWF_SECTION.unpack(raw)
        if zlib.adler32(raw[:72]) != checksum:
            raise CorruptImageError(f"ewf: section descriptor at {offset} has a bad checksum")
        name = _cstr(stype)
        if name in ("volume", "disk"):
            data = read_exact(source, offset + _EWF_SECTION.size, _EWF_VOLUME.size, "ewf volume")
            _media, chunks, per_chunk, sector_bytes, sectors = _EWF_VOLUME.unpack(data)
            virtual_size = _virtual(sectors * sector_bytes, "ewf media size")
            properties.update(
                {"chunks": str(chunks), "sectors per chunk": str(per_chunk),
                 "bytes per sector": str(sector_bytes)}
            )  # fmt: skip
            break
        if name in ("next", "done") or next_offset <= offset:
            break
        offset = next_offset
    return Container(
        format="ewf",
        variant="ewf (E01)",
        accepted=False,
        file_size=source.size,
        virtual_size=virtual_size,
        properties=properties,
    )


# -- Apple ASIF ------------------------------------------------------------------------------

_ASIF_MAGIC = b"shdw"
_ASIF_HEADER = struct.Struct(">4sIII16x16sQQIHH")


@dataclass(frozen=True, slots=True)
class AsifHeader:
    """The big-endian ASIF header fields we report."""

    version: int
    header_size: int
    sectors: int
    max_sectors: int
    chunk_size: int
    block_size: int

    @classmethod
    def from_bytes(cls, data: bytes) -> AsifHeader:
        _m, version, hsize, _flags, _guid, sectors, max_sectors, chunk, block, _segs = (
            _ASIF_HEADER.unpack_from(data)
        )
        return cls(version, hsize, sectors, max_sectors, chunk, block)


def _matches_asif(window: ProbeWindow) -> bool:
    head = window.head
    return (
        head[:4] == _ASIF_MAGIC
        and len(head) >= _ASIF_HEADER.size
        and struct.unpack_from(">I", head, 4)[0] == 1
    )


def _inspect_asif(source: ByteSource, window: ProbeWindow) -> Container:
    header = AsifHeader.from_bytes(read_exact(source, 0, _ASIF_HEADER.size, "asif header"))
    if header.block_size not in (512, 1024, 2048, 4096):
        raise CorruptImageError(f"asif: block size {header.block_size} is not valid")
    return Container(
        format="asif",
        variant=f"v{header.version}",
        accepted=False,
        file_size=source.size,
        virtual_size=_virtual(header.sectors * header.block_size, "asif virtual size"),
        properties={
            "chunk size": str(header.chunk_size),
            "block size": str(header.block_size),
            "maximum size": str(header.max_sectors * header.block_size),
        },
    )


SPECS: tuple[FormatSpec, ...] = (
    refused_spec("parallels", "Parallels disk image", _matches_parallels, _inspect_parallels),
    refused_spec("bochs", "Bochs growing disk image", _matches_bochs, _inspect_bochs),
    refused_spec("cloop", "compressed loop image (Knoppix)", _matches_cloop, _inspect_cloop),
    refused_spec("dmg", "Apple disk image (UDIF)", _matches_dmg, _inspect_dmg),
    refused_spec("ewf", "EnCase forensic image (E01/Ex01)", _matches_ewf, _inspect_ewf),
    refused_spec("asif", "Apple sparse image format", _matches_asif, _inspect_asif),
)
