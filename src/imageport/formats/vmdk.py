"""VMware VMDK: hosted sparse extents, descriptor files, and the ESX sparse headers.

Recognised by content:

* ``KDMV`` (hosted sparse extent, VMDK4): monolithicSparse, or streamOptimized when
  ``compressAlgorithm`` is deflate. A 512-byte little-endian header (layout in :data:`_KDMV`)
  locates an embedded text descriptor and the grain directory; with ``gdOffset`` all ones
  (GD_AT_END, streamOptimized) the real header is the copy in the *footer*: the last 1536 bytes
  are a footer marker sector, a header copy, and an end-of-stream marker sector. The variant is
  the descriptor's ``createType``. Read by :class:`imageport.disk.vmdk.SparseVmdkDisk`.
* A text *descriptor file* (``# Disk DescriptorFile``, or what qemu's probe takes for one). Its
  data lives in the extent files it names, so it is never self-contained: variant
  ``"<createType> (descriptor only)"``, one ``external-extent`` hazard per file named.
* ``COWD`` (vmfsSparse / ESX 2 sparse extent) and the seSparse header (uint64 magic
  ``0xcafebabe``): named, not read, reported as unsupported damage (qemu opens a COWD file
  alone only when descriptor text with a CID follows its header; it never opens an seSparse
  file alone, only as an extent named by a descriptor).

IMG-SAFE: an embedded descriptor may name only this file, as a single ``SPARSE`` extent with a
bare file name (qemu ignores the extent lines of an embedded descriptor and reads the file
itself). Any other extent, a path, several extents, ``parentFileNameHint`` (found, like qemu,
by substring search of the first 10 KiB after the header) or a ``parentCID`` other than
``ffffffff`` (a delta link) is a hazard. No path is ever opened.

Layout learned from VMware's "Virtual Disk Format 5.0" technote and qemu's ``block/vmdk.c``.
Virtual size is ``capacity * 512``, as ``qemu-img info`` reports. Deviations from qemu, all
stricter: a header whose newline-check bytes were altered (flag bit 0) is damaged; a
``compressAlgorithm`` other than 0 or 1 is unsupported; grain tables outside the file are
damage at probe time rather than at read time; data past the end of the file is an error (qemu
reads zeros); a sparse extent with no descriptor (part of a twoGbMaxExtentSparse disk, which
qemu cannot open alone either) is unsupported.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from imageport import limits
from imageport.disk.vmdk import GrainDirectory, SparseLayout, SparseVmdkDisk
from imageport.errors import CorruptImageError, TruncatedImageError, UnsupportedImageError
from imageport.formats import vmdk_descriptor as descriptor
from imageport.formats.base import Container, FormatSpec, Hazard, ProbeWindow
from imageport.source import ByteSource, read_exact

SECTOR = 512
KDMV_MAGIC = b"KDMV"
COWD_MAGIC = b"COWD"
SESPARSE_MAGIC = 0xCAFEBABE
SESPARSE_VERSION = 0x0000000200000001

FLAG_NEWLINE_CHECK = 1 << 0
FLAG_REDUNDANT_GD = 1 << 1
FLAG_ZEROED_GRAINS = 1 << 2
FLAG_COMPRESSED = 1 << 16
FLAG_MARKERS = 1 << 17
GD_AT_END = 0xFFFFFFFFFFFFFFFF
COMPRESS_NONE = 0
COMPRESS_DEFLATE = 1
NEWLINE_CHECK = b"\n \r\n"

MARKER_END_OF_STREAM = 0
MARKER_FOOTER = 3
FOOTER_BYTES = 3 * SECTOR

#: qemu's bounds: at most 512 GTEs per grain table, grains of at most 1 GiB.
MAX_GTES_PER_GT = 512
MAX_GRAIN_SECTORS = 0x200000

#: magic, version, flags, capacity, grainSize, descriptorOffset, descriptorSize, numGTEsPerGT,
#: rgdOffset, gdOffset, overHead, uncleanShutdown, 4 newline-check bytes, compressAlgorithm.
_KDMV = struct.Struct("<4sIIQQQQIQQQB4sH433x")
#: A stream marker: value (lba or sector count), size, type.
_MARKER = struct.Struct("<QII")
#: magic, version, flags, numSectors, grainSize, gdOffset, numGDEntries, freeSector.
_COWD = struct.Struct("<4sIIIIIII")
#: magic, version, capacity, grainSize, grainTableSize, flags (then offsets, not needed here).
_SESPARSE = struct.Struct("<QQQQQQ")


@dataclass(frozen=True, slots=True)
class SparseHeader:
    """The hosted sparse extent header (sector 0, and its copy in a stream's footer)."""

    version: int
    flags: int
    capacity: int
    grain_sectors: int
    descriptor_offset: int
    descriptor_sectors: int
    gtes_per_gt: int
    rgd_offset: int
    gd_offset: int
    overhead: int
    unclean_shutdown: int
    newline_check: bytes
    compress_algorithm: int

    @classmethod
    def from_bytes(cls, data: bytes, what: str) -> SparseHeader:
        f = _KDMV.unpack(data[: _KDMV.size])
        if f[0] != KDMV_MAGIC:
            raise CorruptImageError(f"{what} has no KDMV magic")
        return cls(*f[1:])

    def layout(self) -> SparseLayout:
        """Validate the numbers that size tables and loops, and say where the grains are."""
        if self.version > 3:
            raise UnsupportedImageError(f"VMDK sparse header version {self.version}")
        if self.flags & FLAG_NEWLINE_CHECK and self.newline_check != NEWLINE_CHECK:
            raise CorruptImageError(
                f"VMDK newline check bytes are {self.newline_check!r}, expected "
                f"{NEWLINE_CHECK!r} (file transferred in text mode?)"
            )
        if self.compress_algorithm not in (COMPRESS_NONE, COMPRESS_DEFLATE):
            raise UnsupportedImageError(f"VMDK compressAlgorithm {self.compress_algorithm}")
        gtes = limits.cap(self.gtes_per_gt, MAX_GTES_PER_GT, "VMDK GTEs per grain table", minimum=1)
        grain = limits.cap(self.grain_sectors, MAX_GRAIN_SECTORS, "VMDK grain sectors", minimum=1)
        grain_bytes = limits.cap(grain * SECTOR, limits.MAX_BLOCK_BYTES, "VMDK grain size")
        size = limits.cap(self.capacity * SECTOR, limits.MAX_VIRTUAL_SIZE, "VMDK capacity bytes")
        span = gtes * grain
        entries = (self.capacity + span - 1) // span
        limits.cap(entries, limits.MAX_TABLE_ENTRIES, "VMDK grain directory entries")
        return SparseLayout(
            virtual_size=size,
            grain_size=grain_bytes,
            gtes_per_gt=gtes,
            gd_offset=self.gd_offset * SECTOR,
            gd_entries=entries,
            compressed=self.compress_algorithm == COMPRESS_DEFLATE,
            markers=bool(self.flags & FLAG_MARKERS),
            zeroed_grains=bool(self.flags & FLAG_ZEROED_GRAINS),
        )


@dataclass(frozen=True, slots=True)
class Marker:
    """A streamOptimized marker sector: ``value`` (lba or sector count), ``size``, ``type``."""

    value: int
    size: int
    type: int

    @classmethod
    def from_bytes(cls, data: bytes) -> Marker:
        return cls(*_MARKER.unpack(data[: _MARKER.size]))


@dataclass(frozen=True, slots=True)
class CowdHeader:
    """The start of an ESX ``COWD`` sparse extent header (qemu's VMDK3Header)."""

    version: int
    flags: int
    sectors: int
    grain_sectors: int
    gd_offset: int
    gd_entries: int
    free_sector: int

    @classmethod
    def from_bytes(cls, data: bytes) -> CowdHeader:
        return cls(*_COWD.unpack(data[: _COWD.size])[1:])


@dataclass(frozen=True, slots=True)
class SeSparseHeader:
    """The start of an ESXi seSparse constant header."""

    magic: int
    version: int
    capacity: int
    grain_sectors: int
    grain_table_sectors: int
    flags: int

    @classmethod
    def from_bytes(cls, data: bytes) -> SeSparseHeader:
        return cls(*_SESPARSE.unpack(data[: _SESPARSE.size]))


# -- probing ----------------------------------------------------------------------------------


def _is_sesparse(head: bytes) -> bool:
    return len(head) >= 8 and int.from_bytes(head[:8], "little") == SESPARSE_MAGIC


def _matches(window: ProbeWindow) -> bool:
    head = window.head
    return (
        head[:4] in (KDMV_MAGIC, COWD_MAGIC)
        or _is_sesparse(head)
        or descriptor.looks_like_descriptor(head)
    )


def _inspect(source: ByteSource, window: ProbeWindow) -> Container:
    head = window.head
    if head[:4] == KDMV_MAGIC:
        return _inspect_hosted_sparse(source)
    if head[:4] == COWD_MAGIC:
        return _inspect_cowd(source)
    if _is_sesparse(head):
        return _inspect_sesparse(source)
    return _inspect_descriptor_file(source)


def _read_descriptor(source: ByteSource, header: SparseHeader) -> descriptor.Descriptor | None:
    if header.descriptor_offset == 0 or header.descriptor_sectors == 0:
        return None
    size = limits.cap(
        header.descriptor_sectors * SECTOR, limits.MAX_DESCRIPTOR_BYTES, "VMDK descriptor size"
    )
    offset = limits.cap(header.descriptor_offset * SECTOR, source.size, "VMDK descriptor offset")
    data = read_exact(source, offset, size, "VMDK embedded descriptor")
    descriptor.require_text(data, "VMDK embedded descriptor")
    desc = descriptor.parse(data)
    if not desc.settings and not desc.extents and not desc.suspicious_lines:
        return None  # an empty descriptor area: an extent of a multi-extent disk
    return desc


def _footer_header(source: ByteSource) -> SparseHeader:
    """The header copy in a streamOptimized footer (the last 1536 bytes of the file)."""
    end = -(-source.size // SECTOR) * SECTOR
    data = read_exact(source, end - FOOTER_BYTES, FOOTER_BYTES, "VMDK stream footer")
    footer_marker = Marker.from_bytes(data[:SECTOR])
    eos = Marker.from_bytes(data[2 * SECTOR :])
    if footer_marker.size != 0 or footer_marker.type != MARKER_FOOTER:
        raise CorruptImageError("VMDK stream footer marker is missing (GD_AT_END needs one)")
    if (eos.value, eos.size, eos.type) != (0, 0, MARKER_END_OF_STREAM):
        raise CorruptImageError("VMDK end-of-stream marker is missing after the footer")
    header = SparseHeader.from_bytes(data[SECTOR : 2 * SECTOR], "VMDK stream footer")
    if header.gd_offset == GD_AT_END:
        raise CorruptImageError("VMDK stream footer also puts the grain directory at the end")
    return header


def _sparse_properties(
    header: SparseHeader, desc: descriptor.Descriptor | None, in_footer: bool
) -> dict[str, str]:
    props = {
        "version": str(header.version),
        "flags": f"0x{header.flags:08x}",
        "grain size": str(header.grain_sectors * SECTOR),
        "GTEs per grain table": str(header.gtes_per_gt),
        "compression": {0: "none", 1: "deflate"}.get(header.compress_algorithm, "unknown"),
        "grain markers": "yes" if header.flags & FLAG_MARKERS else "no",
        "zeroed grains": "yes" if header.flags & FLAG_ZEROED_GRAINS else "no",
        "grain directory": "in footer" if in_footer else f"sector {header.gd_offset}",
    }
    if header.flags & FLAG_REDUNDANT_GD:
        props["redundant grain directory"] = f"sector {header.rgd_offset} (not consulted)"
    if header.unclean_shutdown:
        props["unclean shutdown"] = "yes"
    if desc is not None:
        props.update(_descriptor_properties(desc))
    return props


def _descriptor_properties(desc: descriptor.Descriptor) -> dict[str, str]:
    keys = {
        "createType": "create type",
        "CID": "CID",
        "parentCID": "parent CID",
        "ddb.adapterType": "adapter type",
        "ddb.virtualHWVersion": "hardware version",
        "ddb.toolsVersion": "tools version",
    }
    props = {label: value for key, label in keys.items() if (value := desc.get(key)) is not None}
    props["extents"] = str(len(desc.extents))
    return props


def _inspect_hosted_sparse(source: ByteSource) -> Container:
    header = SparseHeader.from_bytes(read_exact(source, 0, SECTOR, "VMDK header"), "VMDK header")
    desc = _read_descriptor(source, header)
    if header.capacity == 0 and desc is not None:
        # qemu then opens the embedded text as a descriptor file: every extent is another file.
        return _descriptor_container(
            source,
            desc,
            source.read_at(0, descriptor.QEMU_DESC_SCAN_BYTES),
            "descriptor in a sparse header",
        )
    region = source.read_at(SECTOR, descriptor.QEMU_DESC_SCAN_BYTES)
    in_footer = header.gd_offset == GD_AT_END
    effective = _footer_header(source) if in_footer else header
    layout = effective.layout()
    if source.size < effective.overhead * SECTOR:
        raise TruncatedImageError(
            f"VMDK file is truncated: {source.size} bytes, the header's overhead is "
            f"{effective.overhead} sectors"
        )
    directory = GrainDirectory.read(source, layout)
    hazards: list[Hazard] = []
    if desc is not None:
        hazards += descriptor.extent_hazards(desc, embedded_self=True)
        hazards += descriptor.parent_hazards(desc, region)
        variant = desc.create_type or (
            "streamOptimized" if layout.compressed else "monolithicSparse"
        )
    else:
        hint = descriptor.raw_parent_hint(region)
        if hint is not None:
            hazards.append(Hazard("backing-file", f'the file names a parent: "{hint}"'))
        variant = "sparse extent (no descriptor)"
    damage = None
    if desc is None:
        damage = (
            "unsupported: a sparse extent without a descriptor is one part of a multi-extent "
            "disk (qemu cannot open it alone either)"
        )
    return Container(
        format="vmdk",
        variant=variant,
        accepted=True,
        file_size=source.size,
        virtual_size=layout.virtual_size,
        hazards=tuple(hazards),
        damage=damage,
        properties=_sparse_properties(effective, desc, in_footer),
        opener=None
        if damage
        else functools.partial(SparseVmdkDisk, layout=layout, directory=directory),
    )


def _descriptor_container(
    source: ByteSource, desc: descriptor.Descriptor, region: bytes, what: str
) -> Container:
    if not desc.extents and not desc.suspicious_lines:
        raise CorruptImageError(f"VMDK {what} lists no extents")
    hazards = descriptor.extent_hazards(desc, embedded_self=False)
    hazards += descriptor.parent_hazards(desc, region)
    size = limits.cap(desc.total_sectors * SECTOR, limits.MAX_VIRTUAL_SIZE, "VMDK extent total")
    return Container(
        format="vmdk",
        variant=f"{desc.create_type or 'no createType'} ({what})",
        accepted=True,
        file_size=source.size,
        virtual_size=size,
        hazards=tuple(hazards),
        properties=_descriptor_properties(desc),
    )


def _inspect_descriptor_file(source: ByteSource) -> Container:
    data = source.read_at(0, limits.MAX_DESCRIPTOR_BYTES)
    descriptor.require_text(data, "VMDK descriptor file")
    desc = descriptor.parse(data)
    region = data[: descriptor.QEMU_DESC_SCAN_BYTES]
    return _descriptor_container(source, desc, region, "descriptor only")


def _bounded(size: int) -> int | None:
    """``size`` when it is a plausible virtual size, else None (only shown, never used)."""
    return size if size <= limits.MAX_VIRTUAL_SIZE else None


def _inspect_cowd(source: ByteSource) -> Container:
    header = CowdHeader.from_bytes(read_exact(source, 0, _COWD.size, "VMDK COWD header"))
    hazards: list[Hazard] = []
    hint = descriptor.raw_parent_hint(source.read_at(SECTOR, descriptor.QEMU_DESC_SCAN_BYTES))
    if hint is not None:
        hazards.append(Hazard("backing-file", f'the file names a parent: "{hint}"'))
    return Container(
        format="vmdk",
        variant="vmfsSparse (COWD)",
        accepted=True,
        file_size=source.size,
        virtual_size=_bounded(header.sectors * SECTOR),
        hazards=tuple(hazards),
        damage="unsupported: COWD (ESX vmfsSparse) extents are not read here",
        properties={
            "version": str(header.version),
            "flags": f"0x{header.flags:08x}",
            "grain size": str(header.grain_sectors * SECTOR),
        },
    )


def _inspect_sesparse(source: ByteSource) -> Container:
    header = SeSparseHeader.from_bytes(read_exact(source, 0, SECTOR, "VMDK seSparse header"))
    return Container(
        format="vmdk",
        variant="seSparse (extent file)",
        accepted=True,
        file_size=source.size,
        virtual_size=_bounded(header.capacity * SECTOR),
        damage=(
            "unsupported: an seSparse extent is a snapshot delta, read only through the "
            "descriptor that names it"
        ),
        properties={
            "version": f"0x{header.version:016x}",
            "grain size": str(header.grain_sectors * SECTOR),
            "flags": f"0x{header.flags:x}",
        },
    )


SPEC = FormatSpec(
    name="vmdk",
    description="VMware virtual disk (VMDK)",
    accepted=True,
    matches=_matches,
    inspect=_inspect,
)

SPECS: tuple[FormatSpec, ...] = (SPEC,)
