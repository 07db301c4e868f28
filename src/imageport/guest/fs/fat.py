"""A read-only FAT12/16/32 reader, for EFI system partitions and /boot/efi.

The on-disk structures (boot sector, geometry, short and long-name directory entries) are
parsed and validated in :mod:`imageport.guest.fs.fat_layout`; this module walks them. The
volume label is found like libblkid does: the root directory's label entry first, then the boot
sector's (``NO NAME`` means none).

Files have no inode numbers on FAT: a file's handle is the device byte offset of its 32-byte
short directory entry (the root directory is handle 0, which is the boot sector and never an
entry), so :meth:`FatFilesystem.stat_ino` can always re-read it. Cluster chains are walked
lazily with Brent's cycle detection and never further than the cluster count or the bytes asked
for; the chain end and bad-cluster markers are the spec's; the FAT itself is read in cached
pages.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from imageport.errors import CorruptImageError, ImageportError, LimitExceededError
from imageport.guest.fs.base import (
    MAX_DIR_ENTRIES,
    DirEntry,
    Filesystem,
    FileType,
    NoSuchFileError,
    Stat,
)
from imageport.guest.fs.fat_layout import (
    ATTR_DIRECTORY,
    ATTR_LFN,
    ATTR_READ_ONLY,
    ATTR_VOLUME_ID,
    MAX_DIR_BYTES,
    MAX_LFN_ENTRIES,
    LfnEntry,
    ShortEntry,
    boot_label,
    long_name_of,
    parse_boot,
    serial,
)
from imageport.guest.fs.signature import Signature
from imageport.guest.volumes.blockdev import BlockDevice, read_exact_dev

#: Bytes of FAT cached in pages, and the page size.
FAT_PAGE_BYTES = 64 * 1024
MAX_FAT_CACHE_PAGES = 64
#: Parsed directory entries remembered for stat_ino (cleared when full; re-read from disk).
MAX_ENTRY_CACHE = 1 << 16
#: Directory entries kept in the name index of recently searched directories.
MAX_INDEXED_ENTRIES = 1 << 18

ROOT_INO = 0


def probe(dev: BlockDevice) -> Signature | None:
    """A ``vfat`` signature if the first sector is a sane FAT boot sector; never raises."""
    try:
        bs, geo = parse_boot(dev)
    except (ImageportError, struct.error, IndexError):
        return None
    return Signature(
        kind="vfat", uuid=serial(bs), label=boot_label(bs), version=f"FAT{geo.fat_bits}"
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
            bs, geo = parse_boot(dev)
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
        self.uuid = serial(bs)
        self._fat_pages: dict[int, bytes] = {}
        self._nodes: dict[int, _Node] = {}
        self._index: dict[int, tuple[dict[str, int], dict[str, int]]] = {}
        self._indexed_entries = 0
        self.label = self._root_label() or boot_label(bs)

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
                long_name, lfn = long_name_of(lfn, short), []
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
            raise NoSuchFileError(f"FAT: no entry at handle {ino}")
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
            raise NoSuchFileError(f"FAT: handle {ino} is not a directory")
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
            raise NoSuchFileError(f"FAT: handle {ino} is not a regular file")
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
        raise NoSuchFileError("FAT has no symbolic links")
