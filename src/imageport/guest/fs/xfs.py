"""A read-only XFS reader (version 4 and version 5 filesystems), pure Python and bounded.

Learned from "XFS Algorithms & Data Structures" (xfsprogs documentation: superblock,
allocation groups, inode numbers, on-disk inode, data extents, B+trees, directories,
symbolic links); no code is taken from xfsprogs or the kernel. Structure layouts live in
:mod:`xfs_layout`, directory formats in :mod:`xfs_dir`.

An inode number encodes its place: the high bits are the allocation group (AG), then
``agblklog`` bits of block within the AG, then ``inopblog`` bits of slot within the block. A
filesystem block number in an extent is encoded the same way (AG in the bits above
``agblklog``), so AGs need not be contiguous in the numbering. A file's data fork is a list of
extents held in the inode or, when they do not fit, a B+tree rooted in the inode. Everything
is read lazily: the superblock at open, then only the inodes and blocks a lookup touches.
"""

from __future__ import annotations

import bisect
import stat as stat_mod
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from imageport.errors import (
    CorruptImageError,
    ImageportError,
    LimitExceededError,
    UnsupportedImageError,
)
from imageport.guest.fs import xfs_dir
from imageport.guest.fs.base import (
    MAX_DIR_ENTRIES,
    MAX_SYMLINK_BYTES,
    DirEntry,
    Filesystem,
    FileType,
    NoSuchFileError,
    Stat,
    decode_name,
)
from imageport.guest.fs.signature import Signature
from imageport.guest.fs.xfs_layout import (
    BMBT_HDR_V4,
    BMBT_HDR_V5,
    DIFLAG_REALTIME,
    EXTENT_SIZE,
    FMT_BTREE,
    FMT_EXTENTS,
    FMT_LOCAL,
    SYMLINK_HDR_SIZE,
    BtreeHeader,
    Extent,
    InodeCore,
    Superblock,
    SymlinkHeader,
)
from imageport.guest.volumes.blockdev import BlockDevice, read_exact_dev
from imageport.limits import MAX_READ_BYTES

#: Extents of one file held in memory (a file with more is refused, not truncated).
MAX_FILE_EXTENTS = 1 << 18
#: Levels of a bmap B+tree (XFS needs at most 9 even with 64-bit extent counters).
MAX_BMAP_DEPTH = 10
#: Directory blocks scanned in one directory's data region (2^17 x 4 KiB = 512 MiB).
MAX_DIR_BLOCKS = 1 << 17
#: Parsed inodes, extent lists and metadata blocks kept in memory.
INODE_CACHE = 4096
EXTENT_CACHE_TOTAL = 1 << 19
BLOCK_CACHE = 512

_MODE_TYPES = {
    stat_mod.S_IFREG: FileType.REGULAR,
    stat_mod.S_IFDIR: FileType.DIRECTORY,
    stat_mod.S_IFLNK: FileType.SYMLINK,
    stat_mod.S_IFCHR: FileType.CHARDEV,
    stat_mod.S_IFBLK: FileType.BLOCKDEV,
    stat_mod.S_IFIFO: FileType.FIFO,
    stat_mod.S_IFSOCK: FileType.SOCKET,
}


def file_type(mode: int) -> FileType:
    return _MODE_TYPES.get(stat_mod.S_IFMT(mode), FileType.UNKNOWN)


@dataclass(frozen=True, slots=True)
class ExtentMap:
    """A data fork's extents in file order, with their start blocks for bisection."""

    extents: tuple[Extent, ...]
    starts: tuple[int, ...]


class XfsFilesystem(Filesystem):
    """An XFS filesystem on ``dev`` (opened by :func:`open_fs`)."""

    fs_type = "xfs"

    def __init__(self, dev: BlockDevice, sb: Superblock) -> None:
        sb.validate()
        self.dev = dev
        self.sb = sb
        self.uuid = sb.uuid_str
        self.label = sb.label
        self.version = f"v{sb.version}"
        self.dirblksize = sb.blocksize << sb.dirblklog
        self._inodes: OrderedDict[int, InodeCore] = OrderedDict()
        self._extents: OrderedDict[int, ExtentMap] = OrderedDict()
        self._extent_total = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        if self.stat_ino(sb.rootino).type is not FileType.DIRECTORY:
            raise CorruptImageError("XFS root inode is not a directory")

    # -- addresses ---------------------------------------------------------------------

    def _fsb_offset(self, fsb: int, count: int = 1) -> int:
        """Byte offset of filesystem block ``fsb``; the run of ``count`` stays in one AG."""
        sb = self.sb
        agno = fsb >> sb.agblklog
        agbno = fsb & ((1 << sb.agblklog) - 1)
        if agno >= sb.agcount or agbno + count > sb.agblocks:
            raise CorruptImageError(f"XFS block {fsb} (+{count}) lies outside the filesystem")
        return (agno * sb.agblocks + agbno) * sb.blocksize

    def _inode_offset(self, ino: int) -> int:
        sb = self.sb
        agno = ino >> (sb.agblklog + sb.inopblog)
        agino = ino & ((1 << (sb.agblklog + sb.inopblog)) - 1)
        agbno = agino >> sb.inopblog
        slot = agino & (sb.inopblock - 1)
        if ino <= 0 or agno >= sb.agcount or agbno >= sb.agblocks:
            raise CorruptImageError(f"XFS inode number {ino} lies outside the filesystem")
        return (agno * sb.agblocks + agbno) * sb.blocksize + slot * sb.inodesize

    def _meta_block(self, fsb: int) -> bytes:
        """One filesystem block of metadata, through a small LRU cache."""
        cached = self._blocks.get(fsb)
        if cached is not None:
            self._blocks.move_to_end(fsb)
            return cached
        data = read_exact_dev(self.dev, self._fsb_offset(fsb), self.sb.blocksize, "XFS block")
        self._blocks[fsb] = data
        if len(self._blocks) > BLOCK_CACHE:
            self._blocks.popitem(last=False)
        return data

    # -- inodes ------------------------------------------------------------------------

    def _inode(self, ino: int) -> InodeCore:
        core = self._inodes.get(ino)
        if core is not None:
            self._inodes.move_to_end(ino)
            return core
        raw = read_exact_dev(self.dev, self._inode_offset(ino), self.sb.inodesize, "XFS inode")
        try:
            core = InodeCore.from_bytes(raw, self.sb.has_crc)
        except CorruptImageError as exc:
            raise CorruptImageError(f"XFS inode {ino}: {exc}") from None
        if core.version == 3 and core.ino_field != ino:
            raise CorruptImageError(f"XFS inode {ino} records the number {core.ino_field}")
        self._inodes[ino] = core
        if len(self._inodes) > INODE_CACHE:
            self._inodes.popitem(last=False)
        return core

    @property
    def root_ino(self) -> int:
        return self.sb.rootino

    def stat_ino(self, ino: int) -> Stat:
        core = self._inode(ino)
        return Stat(
            ino=ino,
            type=file_type(core.mode),
            size=core.size,
            mode=core.mode & 0o7777,
            uid=core.uid,
            gid=core.gid,
            mtime=core.mtime,
        )

    # -- data forks --------------------------------------------------------------------

    def _extent_list(self, ino: int, core: InodeCore) -> ExtentMap:
        """The data fork's extents in file order (checked sorted and non-overlapping)."""
        cached = self._extents.get(ino)
        if cached is not None:
            self._extents.move_to_end(ino)
            return cached
        if core.format == FMT_EXTENTS:
            n = core.nextents
            if n * EXTENT_SIZE > len(core.fork):
                raise CorruptImageError(f"XFS inode {ino} claims {n} extents in its fork")
            found = [Extent.from_bytes(core.fork, i * EXTENT_SIZE) for i in range(n)]
        elif core.format == FMT_BTREE:
            if core.nextents > MAX_FILE_EXTENTS:
                raise LimitExceededError(f"XFS inode {ino} has {core.nextents} extents")
            found = self._walk_bmap(ino, core.fork)
        else:
            raise CorruptImageError(f"XFS inode {ino} has data fork format {core.format}")
        end = 0
        for ext in found:
            if ext.count == 0 or ext.offset < end:
                raise CorruptImageError(f"XFS inode {ino} has overlapping or empty extents")
            self._fsb_offset(ext.block, ext.count)
            end = ext.offset + ext.count
        emap = ExtentMap(tuple(found), tuple(e.offset for e in found))
        self._extents[ino] = emap
        self._extent_total += len(found)
        while self._extent_total > EXTENT_CACHE_TOTAL and len(self._extents) > 1:
            _, old = self._extents.popitem(last=False)
            self._extent_total -= len(old.extents)
        return emap

    def _walk_bmap(self, ino: int, fork: bytes) -> list[Extent]:
        """All leaf records of a bmap B+tree rooted in the inode fork (cycle and depth safe)."""
        root = BtreeHeader.from_root(fork)
        maxrecs = (len(fork) - 4) // 16
        if not 1 <= root.level < MAX_BMAP_DEPTH or not 1 <= root.numrecs <= maxrecs:
            raise CorruptImageError(f"XFS inode {ino} has an invalid bmap btree root")
        ptr_base = 4 + maxrecs * 8
        ptrs = [
            int.from_bytes(fork[ptr_base + i * 8 : ptr_base + i * 8 + 8], "big")
            for i in range(root.numrecs)
        ]
        hdr = BMBT_HDR_V5 if self.sb.has_crc else BMBT_HDR_V4
        node_max = (self.sb.blocksize - hdr) // 16
        out: list[Extent] = []
        seen: set[int] = set()
        stack = [(p, root.level - 1) for p in reversed(ptrs)]
        while stack:
            fsb, level = stack.pop()
            if fsb in seen:
                raise CorruptImageError(f"XFS inode {ino} bmap btree has a cycle at {fsb}")
            seen.add(fsb)
            if len(seen) > MAX_FILE_EXTENTS:
                raise LimitExceededError(f"XFS inode {ino} bmap btree is too large")
            block = self._meta_block(fsb)
            head = BtreeHeader.from_block(block, self.sb.has_crc)
            if head.level != level or not 1 <= head.numrecs <= node_max:
                raise CorruptImageError(f"XFS inode {ino} bmap btree block {fsb} is invalid")
            if head.owner is not None and head.owner != ino:
                raise CorruptImageError(f"XFS bmap btree block {fsb} belongs to {head.owner}")
            if level == 0:
                out.extend(Extent.from_bytes(block, hdr + i * 16) for i in range(head.numrecs))
                if len(out) > MAX_FILE_EXTENTS:
                    raise LimitExceededError(f"XFS inode {ino} has too many extents")
                continue
            base = hdr + node_max * 8
            children = [
                int.from_bytes(block[base + i * 8 : base + i * 8 + 8], "big")
                for i in range(head.numrecs)
            ]
            stack.extend((p, level - 1) for p in reversed(children))
        return out

    def _map_read(self, emap: ExtentMap, start: int, length: int) -> tuple[bytes, int]:
        """Bytes ``[start, start+length)`` of a fork (holes and unwritten extents as zeros),
        and how many of those bytes lie in mapped (allocated) extents."""
        out = bytearray(length)
        bs_log = self.sb.blocklog
        end = start + length
        i = max(bisect.bisect_right(emap.starts, start >> bs_log) - 1, 0)
        mapped = 0
        for ext in emap.extents[i:]:
            ext_start = ext.offset << bs_log
            if ext_start >= end:
                break
            ext_end = (ext.offset + ext.count) << bs_log
            lo, hi = max(start, ext_start), min(end, ext_end)
            if lo >= hi:
                continue
            mapped += hi - lo
            if ext.unwritten:
                continue
            disk = self._fsb_offset(ext.block, ext.count) + (lo - ext_start)
            out[lo - start : hi - start] = read_exact_dev(self.dev, disk, hi - lo, "XFS extent")
        return bytes(out), mapped

    def read_ino(self, ino: int, offset: int, length: int) -> bytes:
        core = self._inode(ino)
        if file_type(core.mode) is not FileType.REGULAR:
            raise NoSuchFileError(f"XFS inode {ino} is not a regular file")
        if core.flags & DIFLAG_REALTIME:
            raise UnsupportedImageError(f"XFS inode {ino} keeps its data on a realtime device")
        if offset < 0 or length < 0:
            raise ImageportError(f"invalid read at {offset} length {length}")
        length = max(0, min(length, core.size - offset))
        if length > MAX_READ_BYTES:
            raise LimitExceededError(f"read of {length} bytes from XFS inode {ino}")
        if length == 0:
            return b""
        if core.format == FMT_LOCAL:
            if core.size > len(core.fork):
                raise CorruptImageError(f"XFS inode {ino} has an inline size of {core.size}")
            return core.fork[offset : offset + length]
        return self._map_read(self._extent_list(ino, core), offset, length)[0]

    def readlink_ino(self, ino: int) -> str:
        core = self._inode(ino)
        if file_type(core.mode) is not FileType.SYMLINK:
            raise NoSuchFileError(f"XFS inode {ino} is not a symlink")
        size = core.size
        if not 1 <= size <= MAX_SYMLINK_BYTES:
            raise CorruptImageError(f"XFS symlink {ino} has a target of {size} bytes")
        if core.format == FMT_LOCAL:
            if size > len(core.fork):
                raise CorruptImageError(f"XFS symlink {ino} does not fit in its inode")
            return decode_name(core.fork[:size])
        extents = self._extent_list(ino, core)
        if not self.sb.has_crc:
            data, mapped = self._map_read(extents, 0, size)
            if mapped != size:
                raise CorruptImageError(f"XFS symlink {ino} has a hole")
            return decode_name(data)
        return decode_name(self._remote_symlink_v5(ino, extents, size))

    def _remote_symlink_v5(self, ino: int, extents: ExtentMap, size: int) -> bytes:
        bs = self.sb.blocksize
        parts: list[bytes] = []
        got = 0
        for lblk in range(-(-size // (bs - SYMLINK_HDR_SIZE))):
            block, mapped = self._map_read(extents, lblk * bs, bs)
            if mapped != bs:
                raise CorruptImageError(f"XFS symlink {ino} has a hole")
            head = SymlinkHeader.from_bytes(block)
            want = min(size - got, bs - SYMLINK_HDR_SIZE)
            if head.owner != ino or head.offset != got or head.nbytes != want:
                raise CorruptImageError(f"XFS symlink {ino} block {lblk} header is inconsistent")
            parts.append(block[SYMLINK_HDR_SIZE : SYMLINK_HDR_SIZE + want])
            got += want
        return b"".join(parts)

    # -- directories -------------------------------------------------------------------

    def _dir_core(self, ino: int) -> InodeCore:
        core = self._inode(ino)
        if file_type(core.mode) is not FileType.DIRECTORY:
            raise NoSuchFileError(f"XFS inode {ino} is not a directory")
        return core

    def list_ino(self, ino: int) -> Iterator[DirEntry]:
        core = self._dir_core(ino)
        if core.format == FMT_LOCAL:
            _, raw = xfs_dir.parse_shortform(core.fork, core.size, self.sb.has_ftype)
            entries: Iterator[xfs_dir.RawEntry] = iter(raw)
        else:
            view = _DirView(self, ino, self._extent_list(ino, core))
            entries = xfs_dir.list_blocks(view, self.sb.has_crc, self.sb.has_ftype, MAX_DIR_ENTRIES)
        for entry in entries:
            yield DirEntry(decode_name(entry.name), entry.ino, entry.ftype)

    def lookup_child(self, dir_ino: int, name: str) -> int | None:
        core = self._dir_core(dir_ino)
        raw = name.encode("utf-8", "surrogateescape")
        if core.format == FMT_LOCAL:
            _, entries = xfs_dir.parse_shortform(core.fork, core.size, self.sb.has_ftype)
            return next((e.ino for e in entries if e.name == raw), None)
        view = _DirView(self, dir_ino, self._extent_list(dir_ino, core))
        found = xfs_dir.lookup_blocks(
            view,
            raw,
            size=core.size,
            blocklog=self.sb.blocklog,
            has_crc=self.sb.has_crc,
            has_ftype=self.sb.has_ftype,
            use_hash=not self.sb.ascii_ci,
            max_entries=MAX_DIR_ENTRIES,
        )
        return found.ino if found is not None else None


class _DirView:
    """One directory's blocks, as :class:`xfs_dir.DirBlocks` wants them."""

    def __init__(self, fs: XfsFilesystem, ino: int, extents: ExtentMap) -> None:
        self.fs = fs
        self.ino = ino
        self.extents = extents
        self.dirblksize = fs.dirblksize

    def dir_block(self, dablk: int) -> bytes | None:
        start = dablk << self.fs.sb.blocklog
        data, mapped = self.fs._map_read(self.extents, start, self.dirblksize)
        if mapped == 0:
            return None
        if mapped != self.dirblksize:
            raise CorruptImageError(f"XFS directory {self.ino} block {dablk} is partly a hole")
        return data

    def data_dablks(self) -> Iterator[int]:
        step = 1 << self.fs.sb.dirblklog
        leaf = xfs_dir.LEAF_OFFSET >> self.fs.sb.blocklog
        n = 0
        last = -1
        for ext in self.extents.extents:
            if ext.offset >= leaf:
                break
            first = ext.offset - ext.offset % step
            for dablk in range(max(first, last + step), min(ext.offset + ext.count, leaf), step):
                n += 1
                if n > MAX_DIR_BLOCKS:
                    raise LimitExceededError(f"XFS directory {self.ino} has too many blocks")
                last = dablk
                yield dablk


def probe(dev: BlockDevice) -> Signature | None:
    """An XFS signature if ``dev`` starts with a sane XFS superblock (never raises)."""
    try:
        if dev.size < Superblock.SIZE:
            return None
        raw = dev.read(0, Superblock.SIZE)
        if raw[:4] != b"XFSB":
            return None
        sb = Superblock.from_bytes(raw)
        try:
            sb.validate()
        except UnsupportedImageError:
            pass
        return Signature(kind="xfs", uuid=sb.uuid_str, label=sb.label, version=f"v{sb.version}")
    except ImageportError:
        return None


def open_fs(dev: BlockDevice) -> XfsFilesystem:
    """Open the XFS filesystem on ``dev`` (raises CorruptImageError / UnsupportedImageError)."""
    raw = read_exact_dev(dev, 0, Superblock.SIZE, "XFS superblock")
    return XfsFilesystem(dev, Superblock.from_bytes(raw))
