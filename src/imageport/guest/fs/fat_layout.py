"""FAT12/16/32 on disk: the boot sector, the volume's geometry and directory entries.

Learned from Microsoft's "FAT: General Overview of On-Disk Format" (the FAT32 File System
Specification, version 1.03): the BIOS parameter block, the FAT type decided by the count of
data clusters (< 4085 FAT12, < 65525 FAT16, else FAT32), 8.3 short entries and VFAT long-name
entries with their checksum. Where Linux and mkfs.fat depart from the spec we follow them and
say so: a BPB whose 16-bit FAT size is zero is FAT32 whatever its cluster count (mkfs.fat makes
such small FAT32 volumes), and short names honour the Windows NT lower-case bits. The reader
that walks these structures is :mod:`imageport.guest.fs.fat`.
"""

from __future__ import annotations

import datetime
import struct
from dataclasses import dataclass

from imageport.errors import CorruptImageError, LimitExceededError
from imageport.guest.volumes.blockdev import BlockDevice, read_exact_dev

#: Largest cluster accepted (the spec allows 32 KiB; some formatters make 64 KiB and up).
MAX_CLUSTER_BYTES = 256 * 1024
#: A FAT directory holds at most 65536 entries (the spec's limit): 2 MiB of entries.
MAX_DIR_BYTES = 65536 * 32
#: Characters in a long file name (VFAT allows 255; 20 entries of 13 characters).
MAX_LFN_ENTRIES = 20

FAT12_MAX_CLUSTERS = 4084  # fewer than 4085 clusters: FAT12
FAT16_MAX_CLUSTERS = 65524  # fewer than 65525: FAT16

ATTR_READ_ONLY = 0x01
ATTR_HIDDEN = 0x02
ATTR_SYSTEM = 0x04
ATTR_VOLUME_ID = 0x08
ATTR_DIRECTORY = 0x10
ATTR_LFN = 0x0F  # read-only | hidden | system | volume id
NT_LOWER_BASE = 0x08
NT_LOWER_EXT = 0x10

#: The common part, offsets 0..35: jump, oem, bytes per sector, sectors per cluster, reserved
#: sectors, FATs, root entries, total sectors (16-bit), media, FAT size (16-bit), sectors per
#: track, heads, hidden sectors, total sectors (32-bit).
_BPB = struct.Struct("<3s8sHBHBHHBHHHII")
#: Offset 36 on FAT12/16: drive, reserved, boot signature, volume id, label, type text.
_EXT16 = struct.Struct("<BBBI11s8s")
#: Offset 36 on FAT32: FAT size (32-bit), flags, version, root cluster, FSInfo sector, backup
#: boot sector, reserved, drive, reserved, boot signature, volume id, label, type text.
_EXT32 = struct.Struct("<IHHIHH12sBBBI11s8s")
_DIRENT = struct.Struct("<11sBBBHHHHHHHI")
_LFN = struct.Struct("<B10sBBB12sH4s")


@dataclass(frozen=True, slots=True)
class BootSector:
    """The BIOS parameter block and its FAT12/16 or FAT32 extension."""

    jump: bytes
    oem: bytes
    bytes_per_sector: int
    sectors_per_cluster: int
    reserved_sectors: int
    num_fats: int
    root_entries: int
    total_sectors16: int
    media: int
    fat_size16: int
    hidden_sectors: int
    total_sectors32: int
    fat_size32: int
    root_cluster: int
    boot_signature: int  #: 0x29 (serial, label, type follow) or 0x28 (serial only)
    volume_id: int
    volume_label: bytes
    fs_type_text: bytes
    signature_55aa: bool

    @classmethod
    def from_bytes(cls, raw: bytes) -> BootSector:
        """Parse the first 512 bytes of a volume (structure only; see :func:`geometry`)."""
        b = _BPB.unpack_from(raw, 0)  # the fields in the order listed at _BPB
        fat_size32 = root_cluster = 0
        if b[9] == 0:  # no 16-bit FAT size: the FAT32 extension
            e = _EXT32.unpack_from(raw, 36)  # the fields in the order listed at _EXT32
            fat_size32, root_cluster, ext = e[0], e[3], e[9:]
        else:
            ext = _EXT16.unpack_from(raw, 36)[2:]
        boot_signature, volume_id, volume_label, fs_type_text = ext
        return cls(
            jump=b[0],
            oem=b[1],
            bytes_per_sector=b[2],
            sectors_per_cluster=b[3],
            reserved_sectors=b[4],
            num_fats=b[5],
            root_entries=b[6],
            total_sectors16=b[7],
            media=b[8],
            fat_size16=b[9],
            hidden_sectors=b[12],
            total_sectors32=b[13],
            fat_size32=fat_size32,
            root_cluster=root_cluster,
            boot_signature=boot_signature,
            volume_id=volume_id,
            volume_label=volume_label,
            fs_type_text=fs_type_text,
            signature_55aa=raw[510:512] == b"\x55\xaa",
        )


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where everything is, computed from a validated :class:`BootSector`."""

    fat_bits: int  #: 12, 16 or 32
    sector: int
    cluster_bytes: int
    fat_offset: int  #: byte offset of the first FAT
    fat_bytes: int
    root_offset: int  #: FAT12/16: byte offset of the fixed root directory
    root_bytes: int
    data_offset: int  #: byte offset of cluster 2
    cluster_count: int
    total_bytes: int
    root_cluster: int  #: FAT32 only


@dataclass(frozen=True, slots=True)
class ShortEntry:
    """One 32-byte short (8.3) directory entry."""

    name: bytes
    attr: int
    nt_flags: int
    first_cluster: int
    size: int
    wrt_time: int
    wrt_date: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> ShortEntry:
        (name, attr, nt, _tenth, _ctime, _cdate, _adate, hi, wtime, wdate, lo, size) = (
            _DIRENT.unpack(raw)
        )
        return cls(name, attr, nt, (hi << 16) | lo, size, wtime, wdate)

    def short_name(self) -> str:
        """The 8.3 name as Linux shows it (NT lower-case bits honoured, code page 437)."""
        raw = self.name
        if raw[0] == 0x05:
            raw = b"\xe5" + raw[1:]
        base = raw[:8].rstrip(b" ").decode("cp437")
        ext = raw[8:].rstrip(b" ").decode("cp437")
        if self.nt_flags & NT_LOWER_BASE:
            base = base.lower()
        if self.nt_flags & NT_LOWER_EXT:
            ext = ext.lower()
        return f"{base}.{ext}" if ext else base

    def checksum(self) -> int:
        """The VFAT checksum of the 11-byte short name that long-name entries carry."""
        s = 0
        for b in self.name:
            s = (((s & 1) << 7) + (s >> 1) + b) & 0xFF
        return s

    def mtime(self) -> int:
        """Modification time in seconds since the epoch (FAT stores local time; taken as UTC)."""
        d, t = self.wrt_date, self.wrt_time
        try:
            when = datetime.datetime(
                1980 + (d >> 9),
                (d >> 5) & 0xF,
                d & 0x1F,
                t >> 11,
                (t >> 5) & 0x3F,
                min((t & 0x1F) * 2, 59),
                tzinfo=datetime.UTC,
            )
        except ValueError:
            return 0
        return int(when.timestamp())


@dataclass(frozen=True, slots=True)
class LfnEntry:
    """One VFAT long-name entry: 13 UTF-16 code units of a name, last part first."""

    order: int
    chars: bytes  #: 26 bytes of UTF-16LE
    checksum: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> LfnEntry:
        order, n1, _attr, _type, csum, n2, _zero, n3 = _LFN.unpack(raw)
        return cls(order, n1 + n2 + n3, csum)


def _power_of_two(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


def geometry(bs: BootSector) -> Geometry:
    """Validate the BPB (every divisor and count) and lay the volume out, or raise."""
    bps, spc = bs.bytes_per_sector, bs.sectors_per_cluster
    if not (_power_of_two(bps) and 512 <= bps <= 4096):
        raise CorruptImageError(f"FAT: bytes per sector {bps} is not a power of two in 512..4096")
    if not _power_of_two(spc) or spc > 128:
        raise CorruptImageError(f"FAT: sectors per cluster {spc} is not a power of two <= 128")
    if spc * bps > MAX_CLUSTER_BYTES:
        raise LimitExceededError(f"FAT: cluster of {spc * bps} bytes is larger than supported")
    if bs.reserved_sectors == 0 or bs.num_fats == 0 or bs.num_fats > 4:
        raise CorruptImageError(
            f"FAT: {bs.reserved_sectors} reserved sectors and {bs.num_fats} FATs are not sane"
        )
    if bs.media != 0xF0 and bs.media < 0xF8:
        raise CorruptImageError(f"FAT: media descriptor {bs.media:#x} is invalid")
    fat32_layout = bs.fat_size16 == 0
    fat_sectors = bs.fat_size32 if fat32_layout else bs.fat_size16
    total = bs.total_sectors16 or bs.total_sectors32
    if fat_sectors == 0 or total == 0:
        raise CorruptImageError("FAT: FAT size or total sector count is zero")
    if fat32_layout and bs.root_entries != 0:
        raise CorruptImageError("FAT32: a fixed root directory is declared")
    root_sectors = (bs.root_entries * 32 + bps - 1) // bps
    meta = bs.reserved_sectors + bs.num_fats * fat_sectors + root_sectors
    if meta >= total:
        raise CorruptImageError(f"FAT: metadata ({meta} sectors) fills the volume ({total})")
    clusters = (total - meta) // spc
    if fat32_layout:
        bits = 32
    elif clusters <= FAT12_MAX_CLUSTERS:
        bits = 12
    elif clusters <= FAT16_MAX_CLUSTERS:
        bits = 16
    else:
        raise CorruptImageError(f"FAT: {clusters} clusters need FAT32 but the BPB is FAT12/16")
    if bits == 32:
        clusters = min(clusters, 0x0FFFFFF5)
    if clusters < 1:
        raise CorruptImageError("FAT: the volume has no data clusters")
    if (clusters + 2) * bits > fat_sectors * bps * 8:
        raise CorruptImageError(
            f"FAT: a FAT of {fat_sectors} sectors cannot map {clusters} clusters"
        )
    if bits == 32 and not 2 <= bs.root_cluster < clusters + 2:
        raise CorruptImageError(f"FAT32: root cluster {bs.root_cluster} is out of range")
    root_offset = (bs.reserved_sectors + bs.num_fats * fat_sectors) * bps
    return Geometry(
        fat_bits=bits,
        sector=bps,
        cluster_bytes=spc * bps,
        fat_offset=bs.reserved_sectors * bps,
        fat_bytes=fat_sectors * bps,
        root_offset=root_offset,
        root_bytes=bs.root_entries * 32,
        data_offset=root_offset + root_sectors * bps,
        cluster_count=clusters,
        total_bytes=total * bps,
        root_cluster=bs.root_cluster,
    )


def parse_boot(dev: BlockDevice) -> tuple[BootSector, Geometry]:
    raw = read_exact_dev(dev, 0, 512, "FAT boot sector")
    bs = BootSector.from_bytes(raw)
    has_magic = bs.fs_type_text.startswith(b"FAT") or raw[54:57] == b"FAT"
    if bs.jump[0] not in (0xEB, 0xE9) and not has_magic:
        raise CorruptImageError("FAT: no jump instruction or FAT type string in the boot sector")
    return bs, geometry(bs)


def serial(bs: BootSector) -> str | None:
    if bs.boot_signature not in (0x28, 0x29):
        return None
    return f"{bs.volume_id >> 16:04X}-{bs.volume_id & 0xFFFF:04X}"


def boot_label(bs: BootSector) -> str | None:
    if bs.boot_signature != 0x29:
        return None
    label = bs.volume_label.rstrip(b" \x00").decode("cp437")
    return None if not label or label == "NO NAME" else label


def long_name_of(lfn: list[LfnEntry], short: ShortEntry) -> str | None:
    """The long name the entries before ``short`` spell, or None if they do not belong to it."""
    if not lfn or not lfn[0].order & 0x40:
        return None
    count = lfn[0].order & 0x1F
    csum = short.checksum()
    if len(lfn) != count or any(
        e.checksum != csum or e.order & 0x1F != count - i for i, e in enumerate(lfn)
    ):
        return None
    units = b"".join(e.chars for e in reversed(lfn))
    text = units.decode("utf-16-le", "replace")
    end = text.find("\x00")
    if end >= 0:
        text = text[:end]
    if not text or "/" in text or text in (".", ".."):
        return None
    return text
