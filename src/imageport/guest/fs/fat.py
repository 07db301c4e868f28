"""A read-only FAT12/16/32 reader, for EFI system partitions and /boot/efi.

Learned from Microsoft's "FAT: General Overview of On-Disk Format" (the FAT32 File System
Specification, version 1.03): the BIOS parameter block, the FAT type decided by the count of
data clusters (< 4085 FAT12, < 65525 FAT16, else FAT32), the chain end/bad markers, 8.3 short
entries and VFAT long-name entries with their checksum. Where Linux and mkfs.fat depart from the
spec we follow them and say so: a BPB whose 16-bit FAT size is zero is FAT32 whatever its cluster
count (mkfs.fat makes such small FAT32 volumes), and short names honour the Windows NT
lower-case bits. The volume label is found like libblkid does: the root directory's label entry
first, then the boot sector's (``NO NAME`` means none).

Files have no inode numbers on FAT: a file's handle is the device byte offset of its 32-byte
short directory entry (the root directory is handle 0, which is the boot sector and never an
entry), so :meth:`FatFilesystem.stat_ino` can always re-read it. Cluster chains are walked
lazily with Brent's cycle detection and never further than the cluster count or the bytes asked
for; the FAT itself is read in cached pages.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from imageport.errors import CorruptImageError, ImageportError, LimitExceededError
from imageport.guest.fs.base import (
    MAX_DIR_ENTRIES,
    DirEntry,
    Filesystem,
    FileType,
    NotFoundError,
    Stat,
)
from imageport.guest.fs.signature import Signature
from imageport.guest.volumes.blockdev import BlockDevice, read_exact_dev

#: Largest cluster accepted (the spec allows 32 KiB; some formatters make 64 KiB and up).
MAX_CLUSTER_BYTES = 256 * 1024
#: A FAT directory holds at most 65536 entries (the spec's limit): 2 MiB of entries.
MAX_DIR_BYTES = 65536 * 32
#: Bytes of FAT cached in pages, and the page size.
FAT_PAGE_BYTES = 64 * 1024
MAX_FAT_CACHE_PAGES = 64
#: Parsed directory entries remembered for stat_ino (cleared when full; re-read from disk).
MAX_ENTRY_CACHE = 1 << 16
#: Directory entries kept in the name index of recently searched directories.
MAX_INDEXED_ENTRIES = 1 << 18
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

ROOT_INO = 0

_BPB = struct.Struct("<3s8sHBHBHHBHHHII")  # the common part, offsets 0..35
_EXT16 = struct.Struct("<BBBI11s8s")  # offset 36 on FAT12/16
_EXT32 = struct.Struct("<IHHIHH12sBBBI11s8s")  # offset 36 on FAT32
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
        """Parse the first 512 bytes of a volume (structure only; see :func:`_geometry`)."""
        (
            jump,
            oem,
            bps,
            spc,
            reserved,
            nfats,
            root_entries,
            ts16,
            media,
            fsz16,
            _spt,
            _heads,
            hidden,
            ts32,
        ) = _BPB.unpack_from(raw, 0)
        fsz32 = root_cluster = 0
        if fsz16 == 0:
            (
                fsz32,
                _flags,
                _ver,
                root_cluster,
                _info,
                _backup,
                _res,
                _drive,
                _r1,
                bsig,
                vol_id,
                label,
                fstype,
            ) = _EXT32.unpack_from(raw, 36)
        else:
            _drive, _r1, bsig, vol_id, label, fstype = _EXT16.unpack_from(raw, 36)
        return cls(
            jump,
            oem,
            bps,
            spc,
            reserved,
            nfats,
            root_entries,
            ts16,
            media,
            fsz16,
            hidden,
            ts32,
            fsz32,
            root_cluster,
            bsig,
            vol_id,
            label,
            fstype,
            raw[510:512] == b"\x55\xaa",
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


def _geometry(bs: BootSector) -> Geometry:
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


def _parse(dev: BlockDevice) -> tuple[BootSector, Geometry]:
    raw = read_exact_dev(dev, 0, 512, "FAT boot sector")
    bs = BootSector.from_bytes(raw)
    has_magic = bs.fs_type_text.startswith(b"FAT") or raw[54:57] == b"FAT"
    if bs.jump[0] not in (0xEB, 0xE9) and not has_magic:
        raise CorruptImageError("FAT: no jump instruction or FAT type string in the boot sector")
    return bs, _geometry(bs)


def _serial(bs: BootSector) -> str | None:
    if bs.boot_signature not in (0x28, 0x29):
        return None
    return f"{bs.volume_id >> 16:04X}-{bs.volume_id & 0xFFFF:04X}"


def _boot_label(bs: BootSector) -> str | None:
    if bs.boot_signature != 0x29:
        return None
    label = bs.volume_label.rstrip(b" \x00").decode("cp437")
    return None if not label or label == "NO NAME" else label


def probe(dev: BlockDevice) -> Signature | None:
    """A ``vfat`` signature if the first sector is a sane FAT boot sector; never raises."""
    try:
        bs, geo = _parse(dev)
    except (ImageportError, struct.error, IndexError):
        return None
    return Signature(
        kind="vfat", uuid=_serial(bs), label=_boot_label(bs), version=f"FAT{geo.fat_bits}"
    )


def open_fs(dev: BlockDevice) -> FatFilesystem:
    """Open the FAT volume on ``dev`` (validated; raises :class:`CorruptImageError`)."""
    return FatFilesystem(dev)


@dataclass(frozen=True, slots=True)
class _Node:
    """What a listing learned about one entry."""

    type: FileType
    first_cluster: int
    size: int
    mode: int
    mtime: int


class FatFilesystem(Filesystem):
    """A FAT12/16/32 volume (see the module docstring for how handles work)."""

    fs_type = "vfat"

    def __init__(self, dev: BlockDevice) -> None:
        try:
            bs, geo = _parse(dev)
        except (struct.error, IndexError) as exc:
            raise CorruptImageError(f"FAT boot sector: {exc}") from exc
        if geo.total_bytes > dev.size:
            raise CorruptImageError(
                f"FAT: the volume ({geo.total_bytes} bytes) is larger than its device ({dev.size})"
            )
        self._dev = dev
        self.boot = bs
        self.geometry = geo
        self.version = f"FAT{geo.fat_bits}"
        self.uuid = _serial(bs)
        self._fat_pages: dict[int, bytes] = {}
        self._nodes: dict[int, _Node] = {}
        self._index: dict[int, tuple[dict[str, int], dict[str, int]]] = {}
        self._indexed_entries = 0
        self.label = self._root_label() or _boot_label(bs)

    # -- the FAT ---------------------------------------------------------------------------

    def _fat_bytes(self, offset: int, length: int) -> bytes:
        out = b""
        while length > 0:
            page, inner = divmod(offset, FAT_PAGE_BYTES)
            data = self._fat_pages.get(page)
            if data is None:
                start = page * FAT_PAGE_BYTES
                n = min(FAT_PAGE_BYTES, self.geometry.fat_bytes - start)
                data = read_exact_dev(self._dev, self.geometry.fat_offset + start, n, "FAT")
                if len(self._fat_pages) >= MAX_FAT_CACHE_PAGES:
                    self._fat_pages.clear()
                self._fat_pages[page] = data
            piece = data[inner : inner + length]
            if not piece:
                raise CorruptImageError("FAT: entry lies beyond the FAT")
            out += piece
            offset += len(piece)
            length -= len(piece)
        return out

    def _next(self, cluster: int) -> int | None:
        """The cluster after ``cluster`` in its chain, or None at the chain's end."""
        bits = self.geometry.fat_bits
        if bits == 12:
            v = int.from_bytes(self._fat_bytes(cluster + cluster // 2, 2), "little")
            v = v >> 4 if cluster & 1 else v & 0xFFF
            eoc, bad = 0xFF8, 0xFF7
        elif bits == 16:
            v = int.from_bytes(self._fat_bytes(cluster * 2, 2), "little")
            eoc, bad = 0xFFF8, 0xFFF7
        else:
            v = int.from_bytes(self._fat_bytes(cluster * 4, 4), "little") & 0x0FFFFFFF
            eoc, bad = 0x0FFFFFF8, 0x0FFFFFF7
        if v >= eoc:
            return None
        if v == bad:
            raise CorruptImageError(f"FAT: chain runs into bad cluster after {cluster}")
        if not 2 <= v < self.geometry.cluster_count + 2:
            raise CorruptImageError(f"FAT: cluster {cluster} links to invalid cluster {v}")
        return v

    def _chain(self, first: int, limit: int) -> Iterator[int]:
        """Up to ``limit`` clusters of the chain starting at ``first`` (Brent's cycle check)."""
        if not 2 <= first < self.geometry.cluster_count + 2:
            raise CorruptImageError(f"FAT: first cluster {first} is out of range")
        limit = min(limit, self.geometry.cluster_count)
        cur: int | None = first
        tortoise, power, lam, n = first, 1, 0, 0
        while cur is not None and n < limit:
            yield cur
            n += 1
            if n == limit:
                return
            cur = self._next(cur)
            if cur == tortoise:
                raise CorruptImageError(f"FAT: the chain from cluster {first} loops")
            lam += 1
            if lam == power and cur is not None:
                tortoise, power, lam = cur, power * 2, 0

    def _cluster_offset(self, cluster: int) -> int:
        return self.geometry.data_offset + (cluster - 2) * self.geometry.cluster_bytes

    def _read_runs(self, first: int, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` along the chain from ``first`` (short if it ends)."""
        cs = self.geometry.cluster_bytes
        skip, end = offset // cs, (offset + length + cs - 1) // cs
        parts: list[bytes] = []
        run_start = run_len = 0
        for index, cluster in enumerate(self._chain(first, end)):
            if index < skip:
                continue
            if run_len and cluster == run_start + run_len:
                run_len += 1
                continue
            if run_len:
                parts.append(self._read_clusters(run_start, run_len))
            run_start, run_len = cluster, 1
        if run_len:
            parts.append(self._read_clusters(run_start, run_len))
        data = b"".join(parts)
        inner = offset - skip * cs
        return data[inner : inner + length]

    def _read_clusters(self, cluster: int, count: int) -> bytes:
        cs = self.geometry.cluster_bytes
        return read_exact_dev(self._dev, self._cluster_offset(cluster), count * cs, "FAT cluster")

    # -- directories -----------------------------------------------------------------------

    def _dir_blocks(self, ino: int) -> Iterator[tuple[int, bytes]]:
        """(device offset, bytes) pieces of directory ``ino``, at most MAX_DIR_BYTES in all."""
        geo = self.geometry
        if ino == ROOT_INO and geo.fat_bits != 32:
            yield (
                geo.root_offset,
                read_exact_dev(self._dev, geo.root_offset, geo.root_bytes, "FAT root directory"),
            )
            return
        first = geo.root_cluster if ino == ROOT_INO else self._node(ino).first_cluster
        if ino != ROOT_INO and first == 0:
            return  # an empty directory without clusters (made by some tools)
        for cluster in self._chain(first, MAX_DIR_BYTES // geo.cluster_bytes):
            yield self._cluster_offset(cluster), self._read_clusters(cluster, 1)

    def _entries(self, ino: int) -> Iterator[tuple[int, str, ShortEntry]]:
        """(handle, name, short entry) for each live entry of directory ``ino``."""
        lfn: list[LfnEntry] = []
        for base, block in self._dir_blocks(ino):
            for pos in range(0, len(block) - 31, 32):
                raw = block[pos : pos + 32]
                first = raw[0]
                if first == 0x00:
                    return
                if first == 0xE5:
                    lfn = []
                    continue
                if raw[11] & 0x3F == ATTR_LFN:
                    entry = LfnEntry.from_bytes(raw)
                    lfn = [entry] if entry.order & 0x40 else [*lfn, entry]
                    if len(lfn) > MAX_LFN_ENTRIES:
                        lfn = []
                    continue
                short = ShortEntry.from_bytes(raw)
                long_name, lfn = _long_name(lfn, short), []
                if short.attr & ATTR_VOLUME_ID or short.name in (b".          ", b"..         "):
                    continue
                yield base + pos, long_name or short.short_name(), short

    def _root_label(self) -> str | None:
        try:
            for base, block in self._dir_blocks(ROOT_INO):
                for pos in range(0, len(block) - 31, 32):
                    raw = block[pos : pos + 32]
                    if raw[0] == 0:
                        return None
                    if raw[0] != 0xE5 and raw[11] & 0x3F != ATTR_LFN and raw[11] & ATTR_VOLUME_ID:
                        label = raw[:11].rstrip(b" \x00").decode("cp437")
                        return label or None
                del base
        except CorruptImageError:
            return None
        return None

    def _remember(self, ino: int, short: ShortEntry) -> _Node:
        is_dir = bool(short.attr & ATTR_DIRECTORY)
        mode = 0o755 if is_dir or not short.attr & ATTR_READ_ONLY else 0o555
        node = _Node(
            FileType.DIRECTORY if is_dir else FileType.REGULAR,
            short.first_cluster,
            0 if is_dir else short.size,
            mode,
            short.mtime(),
        )
        if len(self._nodes) >= MAX_ENTRY_CACHE:
            self._nodes.clear()
        self._nodes[ino] = node
        return node

    def _node(self, ino: int) -> _Node:
        node = self._nodes.get(ino)
        if node is not None:
            return node
        if ino <= 0 or ino % 32 or ino + 32 > self.geometry.total_bytes:
            raise NotFoundError(f"FAT: no entry at handle {ino}")
        raw = read_exact_dev(self._dev, ino, 32, "FAT directory entry")
        return self._remember(ino, ShortEntry.from_bytes(raw))

    # -- the Filesystem interface ------------------------------------------------------------

    @property
    def root_ino(self) -> int:
        return ROOT_INO

    def stat_ino(self, ino: int) -> Stat:
        if ino == ROOT_INO:
            return Stat(ino=ino, type=FileType.DIRECTORY, size=0, mode=0o755)
        node = self._node(ino)
        return Stat(ino=ino, type=node.type, size=node.size, mode=node.mode, mtime=node.mtime)

    def list_ino(self, ino: int) -> Iterator[DirEntry]:
        if self.stat_ino(ino).type is not FileType.DIRECTORY:
            raise NotFoundError(f"FAT: handle {ino} is not a directory")
        count = 0
        for handle, name, short in self._entries(ino):
            count += 1
            if count > MAX_DIR_ENTRIES:
                raise LimitExceededError("FAT: directory has too many entries")
            node = self._remember(handle, short)
            yield DirEntry(name=name, ino=handle, type=node.type)

    def lookup_child(self, dir_ino: int, name: str) -> int | None:
        """Exact match first, else the first case-insensitive match (as Linux vfat does).

        FAT directories have no index, so the first lookup in a directory builds one (exact and
        case-folded names); indexes are kept for up to MAX_INDEXED_ENTRIES entries in all.
        """
        index = self._index.get(dir_ino)
        if index is None:
            exact: dict[str, int] = {}
            folded: dict[str, int] = {}
            for entry in self.list_ino(dir_ino):
                exact.setdefault(entry.name, entry.ino)
                folded.setdefault(entry.name.casefold(), entry.ino)
            if self._indexed_entries + len(exact) > MAX_INDEXED_ENTRIES:
                self._index.clear()
                self._indexed_entries = 0
            index = self._index[dir_ino] = (exact, folded)
            self._indexed_entries += len(exact)
        found = index[0].get(name)
        return found if found is not None else index[1].get(name.casefold())

    def read_ino(self, ino: int, offset: int, length: int) -> bytes:
        node = self._node(ino)
        if node.type is not FileType.REGULAR:
            raise NotFoundError(f"FAT: handle {ino} is not a regular file")
        if offset < 0 or length < 0:
            raise ImageportError(f"invalid read at {offset} length {length}")
        length = max(0, min(length, node.size - offset))
        if length == 0:
            return b""
        data = self._read_runs(node.first_cluster, offset, length)
        if len(data) != length:
            raise CorruptImageError(f"FAT: the cluster chain of handle {ino} ends early")
        return data

    def readlink_ino(self, ino: int) -> str:
        raise NotFoundError("FAT has no symbolic links")


def _long_name(lfn: list[LfnEntry], short: ShortEntry) -> str | None:
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
