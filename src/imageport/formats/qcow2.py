"""QCOW2, qemu's copy-on-write image format (versions 2 and 3): header, extensions, checks.

Layout learned from qemu's ``docs/interop/qcow2.txt``; the open-time checks mirror qemu's
``qcow2_do_open`` / ``qcow2_read_extensions`` (``block/qcow2.c``) so that what qemu refuses we
refuse too. All numbers are big-endian. The header is 72 bytes in version 2 and
``header_length`` (>= 104) bytes in version 3, whose byte 104 is the compression type when
the header is long enough. Header extensions follow the header up to the backing file name
(or the end of the first cluster): type, length, data padded to 8 bytes.

What is refused, and why:

* **Hazards** (IMG-SAFE), all of them listed: a backing file (its name is quoted from the
  image and never opened), an external data file (incompatible bit 2 and/or the data-file
  header extension, whose name is quoted), and every incompatible feature bit this reader
  does not know (named by number, and by the image's own feature name table if it has one).
* **Encryption** (IMG-QCOW2-ENCRYPTED): ``crypt_method`` 1 is ``aes``, 2 is ``luks``; such a
  container has no opener.
* **Damage**: the *corrupt* bit (bit 1) means qemu itself found the metadata inconsistent, so
  nothing in the file can be trusted; the container is reported damaged (hazards are still
  listed). Invalid header fields raise :class:`CorruptImageError`.

The *dirty* bit (bit 0) is neither: it only says that refcounts may be stale because the
image was not closed cleanly with lazy refcounts. Reads go through L1/L2 tables only, never
through refcounts, and ``qemu-img convert`` reads such an image read-only without repairing
it, so we read it too and show ``dirty: yes`` as a property. The refcounts of a clean image
are compared with its tables when the disk is audited (:mod:`imageport.disk.qcow2_refcounts`);
those of a dirty one are not, but shared data is refused all the same
(:mod:`imageport.disk.audit`).

Virtual size: qemu exposes ``size`` rounded down to a multiple of 512 bytes
(``total_sectors = size / 512``); so do we, and the header value is shown when it differs.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, replace

from imageport import limits
from imageport.disk.qcow2 import L1_OFFSET_MASK, Qcow2Disk, Qcow2Mapping, be64_array
from imageport.errors import (
    CorruptImageError,
    LimitExceededError,
    TruncatedImageError,
    UnsupportedImageError,
)
from imageport.formats.base import Container, FormatSpec, Hazard, ProbeWindow
from imageport.source import ByteSource, read_exact

MAGIC = b"QFI\xfb"
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21  # qemu's implementation limit (2 MiB clusters)
#: qemu refuses an active L1 table larger than 32 MiB (QCOW_MAX_L1_SIZE).
MAX_L1_BYTES = 32 * limits.MiB
MAX_BACKING_NAME = 1023
MAX_SNAPSHOTS = 65536  # QCOW_MAX_SNAPSHOTS
MAX_BITMAPS = 65535

INCOMPAT_DIRTY = 0
INCOMPAT_CORRUPT = 1
INCOMPAT_DATA_FILE = 2
INCOMPAT_COMPRESSION = 3
INCOMPAT_EXTENDED_L2 = 4
KNOWN_INCOMPAT = {
    INCOMPAT_DIRTY: "dirty",
    INCOMPAT_CORRUPT: "corrupt",
    INCOMPAT_DATA_FILE: "external data file",
    INCOMPAT_COMPRESSION: "compression type",
    INCOMPAT_EXTENDED_L2: "extended L2 entries",
}
COMPRESSION_TYPES = {0: "zlib", 1: "zstd"}
CRYPT_METHODS = {1: "aes", 2: "luks"}

EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_CRYPTO = 0x0537BE77
EXT_DATA_FILE = 0x44415441
_FEATURE_ENTRY = 48


@dataclass(frozen=True, slots=True)
class Qcow2Header:
    """The fixed header (versions 2 and 3). Layout: ``_V2`` at 0, ``_V3`` at 72, byte 104."""

    version: int
    backing_file_offset: int
    backing_file_size: int
    cluster_bits: int
    size: int
    crypt_method: int
    l1_size: int
    l1_table_offset: int
    refcount_table_offset: int
    refcount_table_clusters: int
    nb_snapshots: int
    snapshots_offset: int
    incompatible_features: int = 0
    compatible_features: int = 0
    autoclear_features: int = 0
    refcount_order: int = 4
    header_length: int = 72
    compression_type: int = 0

    _V2 = struct.Struct(">4sIQIIQIIQQIIQ")
    _V3 = struct.Struct(">QQQII")

    @classmethod
    def read(cls, source: ByteSource) -> Qcow2Header:
        """Parse the header at the start of ``source`` (raises on a truncated header)."""
        raw = read_exact(source, 0, cls._V2.size, "qcow2 header")
        # the magic, then the class's fields in order from ``version`` to ``snapshots_offset``
        magic, *v2 = cls._V2.unpack(raw)
        if magic != MAGIC:
            raise CorruptImageError("qcow2: bad magic")
        version = v2[0]
        if version not in (2, 3):
            raise UnsupportedImageError(f"qcow2 version {version} (only 2 and 3 exist)")
        common = cls(*v2)
        if version == 2:
            return common
        extra = read_exact(source, cls._V2.size, cls._V3.size, "qcow2 version 3 header")
        incompat, compat, autoclear, rc_order, hlen = cls._V3.unpack(extra)
        compression = 0
        if hlen > 104:
            compression = read_exact(source, 104, 1, "qcow2 compression type")[0]
        return replace(
            common,
            incompatible_features=incompat,
            compatible_features=compat,
            autoclear_features=autoclear,
            refcount_order=rc_order,
            header_length=hlen,
            compression_type=compression,
        )

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    def incompatible_bits(self) -> list[int]:
        return [bit for bit in range(64) if self.incompatible_features >> bit & 1]


@dataclass(frozen=True, slots=True)
class Bitmaps:
    """The bitmaps header extension (24 bytes): persistent dirty bitmaps, not guest data."""

    count: int
    directory_size: int
    directory_offset: int

    _LAYOUT = struct.Struct(">IIQQ")

    @classmethod
    def from_bytes(cls, data: bytes) -> Bitmaps:
        count, _reserved, size, offset = cls._LAYOUT.unpack(data)
        return cls(count, size, offset)


@dataclass(frozen=True, slots=True)
class Extensions:
    """The header extensions that matter here (unknown ones are counted, then ignored)."""

    backing_format: bytes | None
    feature_names: dict[tuple[int, int], str]
    data_files: tuple[bytes, ...]
    crypto_header: tuple[int, int] | None
    bitmaps: Bitmaps | None
    unknown: int


def quote(raw: bytes) -> str:
    """A path or name from the image, quoted for a message (control characters escaped)."""
    return repr(raw.decode("utf-8", "backslashreplace"))


def read_extensions(source: ByteSource, header: Qcow2Header) -> Extensions:
    """Walk the header extension area, with qemu's size checks."""
    start = header.header_length
    end = min(header.backing_file_offset or header.cluster_size, header.cluster_size)
    area = source.read_at(start, max(0, end - start))  # qemu reads zeros past EOF: the end
    backing_format: bytes | None = None
    names: dict[tuple[int, int], str] = {}
    data_files: list[bytes] = []
    crypto: tuple[int, int] | None = None
    bitmaps: Bitmaps | None = None
    unknown = 0
    pos = 0
    while pos + 8 <= len(area):  # each step advances by >= 8 bytes
        ext_type, length = struct.unpack_from(">II", area, pos)
        if ext_type == EXT_END:
            break
        if length > end - start - pos - 8:
            raise CorruptImageError(f"qcow2: header extension {ext_type:#010x} is too large")
        data = area[pos + 8 : pos + 8 + length]
        if len(data) < length:
            raise CorruptImageError(f"qcow2: header extension {ext_type:#010x} is truncated")
        pos += 8 + (length + 7) // 8 * 8
        if ext_type == EXT_BACKING_FORMAT:
            if length >= 16:
                raise CorruptImageError(f"qcow2: backing format name of {length} bytes")
            backing_format = data
        elif ext_type == EXT_FEATURE_TABLE:
            for i in range(0, length - _FEATURE_ENTRY + 1, _FEATURE_ENTRY):
                name = data[i + 2 : i + _FEATURE_ENTRY].split(b"\0", 1)[0]
                names[(data[i], data[i + 1])] = name.decode("ascii", "replace")
        elif ext_type == EXT_DATA_FILE:
            data_files.append(data)
        elif ext_type == EXT_CRYPTO:
            if length != 16:
                raise CorruptImageError(f"qcow2: encryption header extension of {length} bytes")
            offset, size = struct.unpack(">QQ", data)
            crypto = (offset, size)
        elif ext_type == EXT_BITMAPS:
            if length != Bitmaps._LAYOUT.size:
                raise CorruptImageError(f"qcow2: bitmaps extension of {length} bytes")
            bitmaps = Bitmaps.from_bytes(data)
        else:
            unknown += 1
    return Extensions(backing_format, names, tuple(data_files), crypto, bitmaps, unknown)


def validate(header: Qcow2Header) -> None:
    """qemu's open-time checks on the fixed header; raise on the first violation."""
    if not MIN_CLUSTER_BITS <= header.cluster_bits <= MAX_CLUSTER_BITS:
        raise CorruptImageError(
            f"qcow2: cluster_bits {header.cluster_bits} outside {MIN_CLUSTER_BITS}.."
            f"{MAX_CLUSTER_BITS}"
        )
    cluster = header.cluster_size
    if header.version == 3:
        if header.header_length < 104 or header.header_length > cluster:
            raise CorruptImageError(f"qcow2: header_length {header.header_length} is invalid")
        if header.refcount_order > 6:
            raise CorruptImageError(f"qcow2: refcount_order {header.refcount_order} exceeds 6")
    if header.crypt_method > 2:
        raise UnsupportedImageError(f"qcow2 encryption method {header.crypt_method}")
    if header.l1_table_offset % cluster:
        raise CorruptImageError(
            f"qcow2: L1 table offset {header.l1_table_offset:#x} is not cluster-aligned"
        )
    if header.l1_size > MAX_L1_BYTES // 8:
        raise LimitExceededError(
            f"qcow2: L1 table of {header.l1_size} entries exceeds qemu's 32 MiB limit"
        )
    limits.cap(header.nb_snapshots, MAX_SNAPSHOTS, "qcow2 snapshot count")
    if header.compression_type not in COMPRESSION_TYPES:
        raise UnsupportedImageError(f"qcow2 compression type {header.compression_type}")
    bit_set = bool(header.incompatible_features >> INCOMPAT_COMPRESSION & 1)
    if bit_set != (header.compression_type != 0):
        raise CorruptImageError(
            "qcow2: compression type bit (incompatible bit 3) disagrees with compression_type "
            f"{header.compression_type}"
        )
    if header.incompatible_features >> INCOMPAT_EXTENDED_L2 & 1 and header.cluster_bits < 14:
        raise CorruptImageError("qcow2: extended L2 entries need clusters of at least 16 KiB")


def l1_entries_needed(header: Qcow2Header) -> int:
    """How many L1 entries cover the virtual disk."""
    extended = header.incompatible_features >> INCOMPAT_EXTENDED_L2 & 1
    span = header.cluster_size * (header.cluster_size // (16 if extended else 8))
    return -(-header.size // span)


def read_l1(source: ByteSource, header: Qcow2Header) -> bytes:
    """The L1 entries covering the disk, each L2 offset checked against the file."""
    needed = l1_entries_needed(header)
    if needed > header.l1_size:
        raise CorruptImageError(
            f"qcow2: L1 table has {header.l1_size} entries, the {header.size}-byte disk "
            f"needs {needed}"
        )
    raw = read_exact(source, header.l1_table_offset, needed * 8, "qcow2 L1 table")
    for index, entry in enumerate(be64_array(raw)):
        offset = entry & L1_OFFSET_MASK
        if offset == 0:
            continue
        if offset % header.cluster_size:
            raise CorruptImageError(
                f"qcow2: L2 table offset {offset:#x} (L1 entry {index}) is not cluster-aligned"
            )
        if offset + header.cluster_size > source.size:
            raise TruncatedImageError(
                f"qcow2: L2 table at {offset:#x} (L1 entry {index}) lies beyond the end of "
                f"the file ({source.size} bytes)"
            )
    return raw


def hazards_of(header: Qcow2Header, ext: Extensions, backing: bytes | None) -> list[Hazard]:
    """Every reason this image would make a reader touch another file, or is not understood."""
    found: list[Hazard] = []
    if header.backing_file_offset:
        fmt = f" (format {quote(ext.backing_format)})" if ext.backing_format else ""
        name = quote(backing) if backing is not None else "(name not readable)"
        found.append(Hazard("backing-file", f"qcow2 backing file {name}{fmt}"))
    if header.incompatible_features >> INCOMPAT_DATA_FILE & 1:
        found.append(
            Hazard(
                "data-file",
                "qcow2 incompatible feature bit 2 (external data file) is set: guest data lives "
                "in another file",
            )
        )
    found.extend(
        Hazard("data-file", f"qcow2 data-file header extension names {quote(name)}")
        for name in ext.data_files
    )
    for bit in header.incompatible_bits():
        if bit in KNOWN_INCOMPAT:
            continue
        own_name = ext.feature_names.get((0, bit))
        label = f" ({own_name!r} in the image's feature table)" if own_name else ""
        found.append(Hazard("feature-bit", f"qcow2 unknown incompatible feature bit {bit}{label}"))
    return found


def backing_name(source: ByteSource, header: Qcow2Header) -> bytes:
    """The backing file name as stored (never opened); qemu's bounds on it are enforced."""
    if header.backing_file_offset > header.cluster_size:
        raise CorruptImageError(
            f"qcow2: backing file name offset {header.backing_file_offset} is beyond the "
            "first cluster"
        )
    room = min(MAX_BACKING_NAME, header.cluster_size - header.backing_file_offset)
    if header.backing_file_size > room:
        raise CorruptImageError(
            f"qcow2: backing file name of {header.backing_file_size} bytes is too long"
        )
    return read_exact(
        source, header.backing_file_offset, header.backing_file_size, "qcow2 backing file name"
    )


def properties_of(header: Qcow2Header, ext: Extensions, virtual_size: int) -> dict[str, str]:
    props = {
        "cluster size": str(header.cluster_size),
        "compression type": COMPRESSION_TYPES.get(header.compression_type, "unknown"),
        "refcount bits": str(1 << header.refcount_order),
        "snapshots": str(header.nb_snapshots),
    }
    if header.incompatible_features >> INCOMPAT_EXTENDED_L2 & 1:
        props["extended L2"] = "yes"
    if header.incompatible_features >> INCOMPAT_DIRTY & 1:
        props["dirty"] = "yes (refcounts may be stale; the L1/L2 mapping is used as is)"
    if header.compatible_features & 1:
        props["lazy refcounts"] = "yes"
    if ext.bitmaps is not None:
        props["bitmaps"] = str(ext.bitmaps.count)
    if ext.crypto_header is not None:
        props["encryption header"] = f"{ext.crypto_header[1]} bytes at {ext.crypto_header[0]}"
    if header.size != virtual_size:
        props["header size"] = f"{header.size} (qemu uses whole 512-byte sectors only)"
    return props


def _matches(window: ProbeWindow) -> bool:
    head = window.head_at(0, 8)
    return len(head) == 8 and head[:4] == MAGIC and head[4:8] != b"\0\0\0\1"


def _inspect(source: ByteSource, window: ProbeWindow) -> Container:
    header = Qcow2Header.read(source)
    validate(header)
    ext = read_extensions(source, header)
    damage: str | None = None
    backing: bytes | None = None
    if header.backing_file_offset:
        try:
            backing = backing_name(source, header)
        except CorruptImageError as exc:
            damage = str(exc)
    if header.incompatible_features >> INCOMPAT_CORRUPT & 1:
        damage = "qcow2 corrupt bit (incompatible bit 1) is set: qemu found the metadata broken"
    if ext.bitmaps is not None and header.autoclear_features & 1:
        limits.cap(ext.bitmaps.count, MAX_BITMAPS, "qcow2 bitmap count", minimum=1)
    if ext.crypto_header is not None and header.crypt_method != 2:
        raise CorruptImageError("qcow2: encryption header extension without LUKS encryption")
    hazards = hazards_of(header, ext, backing)
    encryption = CRYPT_METHODS.get(header.crypt_method)
    virtual_size = header.size // 512 * 512
    opener = None
    if damage is None and not hazards and encryption is None:
        l1 = read_l1(source, header)
        mapping = Qcow2Mapping(
            version=header.version,
            cluster_bits=header.cluster_bits,
            virtual_size=virtual_size,
            extended_l2=bool(header.incompatible_features >> INCOMPAT_EXTENDED_L2 & 1),
            compression=COMPRESSION_TYPES[header.compression_type],
            l1=l1,
            refcount_table_offset=header.refcount_table_offset,
            refcount_table_clusters=header.refcount_table_clusters,
            refcount_order=header.refcount_order,
            snapshots=header.nb_snapshots,
            dirty=bool(header.incompatible_features >> INCOMPAT_DIRTY & 1),
        )
        opener = functools.partial(Qcow2Disk, mapping=mapping)
    return Container(
        format="qcow2",
        variant=f"v{header.version}",
        accepted=True,
        file_size=source.size,
        virtual_size=virtual_size,
        hazards=tuple(hazards),
        encryption=encryption,
        damage=damage,
        properties=properties_of(header, ext, virtual_size),
        opener=opener,
    )


SPECS: tuple[FormatSpec, ...] = (
    FormatSpec(
        name="qcow2",
        description="QEMU copy-on-write image, version 2 or 3",
        accepted=True,
        matches=_matches,
        inspect=_inspect,
    ),
)
