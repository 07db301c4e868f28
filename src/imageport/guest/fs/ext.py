"""A read-only, bounded reader for ext2, ext3 and ext4.

Learned from the kernel's ext4 documentation (Documentation/filesystems/ext4/) and libblkid's
ext probe for the naming rules; the structures are in :mod:`imageport.guest.fs.ext_layout`.

What it reads: the primary superblock (the metadata_csum checksum is verified when present),
group descriptors (32 or 64 bytes, classic or meta_bg placement, read one block at a time on
demand), inodes (read one at a time when needed, LRU-cached), file data through extent trees
(depth at most 5, unwritten extents read as zeros) or classic block maps (direct, indirect,
double, triple; both mapped in :mod:`imageport.guest.fs.ext_blocks`), inline data (``i_block``
plus the ``system.data`` xattr), fast, slow and inline symlinks, and directories by a linear
scan of their blocks (an htree's index blocks look like empty entries to a scan). Name lookups
build one name→inode map per directory, bounded in total size.

What it refuses: ``compression`` (the old ext2 patches) and ``journal_dev`` (an external
journal, not a filesystem) and incompat bits it does not know, with UnsupportedImageError;
encrypted files and directories (fscrypt) when they are read. The journal is not replayed: a
filesystem with ``needs_recovery`` is read as its metadata stands (``needs_recovery`` says so).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator

from imageport import limits
from imageport.errors import CorruptImageError, LimitExceededError, UnsupportedImageError
from imageport.guest.fs import ext_layout as L
from imageport.guest.fs.base import (
    MAX_DIR_ENTRIES,
    MAX_SYMLINK_BYTES,
    DirEntry,
    Filesystem,
    FileType,
    Stat,
    decode_name,
)
from imageport.guest.fs.ext_blocks import BlockMapper, Run
from imageport.guest.fs.signature import Signature
from imageport.guest.volumes.blockdev import BlockDevice, read_exact_dev

#: Block groups in one filesystem (2**24 groups of 128 MiB is 2 PiB).
MAX_GROUPS = 1 << 24
#: Bytes of one directory that are scanned (a directory of a million entries is ~40 MiB).
MAX_DIR_BYTES = 128 * limits.MiB
#: Bytes one read_ino call may return.
MAX_READ = limits.MAX_READ_BYTES
#: Parsed inodes kept in memory.
INODE_CACHE = 4096
#: Metadata blocks (extent nodes, indirect blocks, descriptor blocks) kept in memory.
META_CACHE = 256
#: Directory entries kept in the per-directory name maps, over all directories.
NAME_CACHE_ENTRIES = 1 << 20
#: Directory blocks read at once while scanning.
DIR_CHUNK_BLOCKS = 64

_FILE_TYPES = {
    L.S_IFREG: FileType.REGULAR,
    L.S_IFDIR: FileType.DIRECTORY,
    L.S_IFLNK: FileType.SYMLINK,
    L.S_IFCHR: FileType.CHARDEV,
    L.S_IFBLK: FileType.BLOCKDEV,
    L.S_IFIFO: FileType.FIFO,
    L.S_IFSOCK: FileType.SOCKET,
}


def _read_superblock(dev: BlockDevice) -> tuple[bytes, L.Superblock] | None:
    if dev.size < L.SUPERBLOCK_OFFSET + L.SUPERBLOCK_SIZE:
        return None
    raw = dev.read(L.SUPERBLOCK_OFFSET, L.SUPERBLOCK_SIZE)
    if len(raw) != L.SUPERBLOCK_SIZE:
        return None
    sb = L.Superblock.from_bytes(raw)
    if sb.magic != L.MAGIC or sb.log_block_size > 6:
        return None
    return raw, sb


def probe(dev: BlockDevice) -> Signature | None:
    """An ext2/3/4 (or external journal, ``jbd``) signature, or None; reads 1 KiB."""
    found = _read_superblock(dev)
    if found is None:
        return None
    sb = found[1]
    return Signature(
        kind=sb.fs_type(), uuid=sb.uuid_text, label=sb.label_text, version=sb.version_text
    )


def open_fs(dev: BlockDevice) -> ExtFilesystem:
    """Open the ext filesystem on ``dev``; CorruptImageError if it is not a sound one."""
    found = _read_superblock(dev)
    if found is None:
        raise CorruptImageError("no ext2/3/4 superblock")
    return ExtFilesystem(dev, *found)


class ExtFilesystem(Filesystem):
    """An opened ext2/ext3/ext4 filesystem."""

    def __init__(self, dev: BlockDevice, raw_sb: bytes, sb: L.Superblock) -> None:
        self.dev = dev
        self.sb = sb
        kind = sb.fs_type()
        if kind == "jbd":
            raise UnsupportedImageError("an ext3/4 external journal device, not a filesystem")
        refused = sb.feature_incompat & (L.INCOMPAT_REFUSED | ~L.INCOMPAT_KNOWN)
        if refused:
            names = ", ".join(L.feature_names(refused, L.INCOMPAT_NAMES))
            raise UnsupportedImageError(f"{kind} uses incompatible features not read here: {names}")
        if sb.feature_ro_compat & L.RO_COMPAT_METADATA_CSUM:
            if sb.checksum_type != 1:
                raise CorruptImageError(f"unknown superblock checksum type {sb.checksum_type}")
            if not L.superblock_checksum_ok(raw_sb, sb):
                raise CorruptImageError("ext superblock checksum mismatch")
        self.fs_type = kind
        self.uuid = sb.uuid_text
        self.label = sb.label_text
        self.needs_recovery = bool(sb.feature_incompat & L.INCOMPAT_RECOVER)
        self.block_size = 1024 << sb.log_block_size
        self._check_geometry()
        self._blocks = BlockMapper(self._meta_block, self._check_blocks, self.addr_per_block)
        self._inodes: OrderedDict[int, L.Inode] = OrderedDict()
        self._meta: OrderedDict[int, bytes] = OrderedDict()
        self._names: OrderedDict[int, dict[str, int]] = OrderedDict()
        self._names_total = 0

    # -- geometry ---------------------------------------------------------------------------

    def _check_geometry(self) -> None:
        sb, bs = self.sb, self.block_size
        self.blocks_count = sb.blocks_count
        limits.cap(self.blocks_count * bs, limits.MAX_VIRTUAL_SIZE, "ext filesystem size")
        if sb.first_data_block > 1 or sb.first_data_block >= self.blocks_count:
            raise CorruptImageError(f"ext first data block {sb.first_data_block} is invalid")
        limits.cap(sb.blocks_per_group, 1 << 31, "ext blocks per group", minimum=8)
        limits.cap(sb.inodes_per_group, 8 * bs, "ext inodes per group", minimum=1)
        if sb.rev_level == 0:
            self.inode_size = L.GOOD_OLD_INODE_SIZE
        else:
            self.inode_size = sb.inode_size
            if (
                self.inode_size < L.GOOD_OLD_INODE_SIZE
                or self.inode_size > bs
                or (self.inode_size & (self.inode_size - 1))
            ):
                raise CorruptImageError(f"ext inode size {self.inode_size} is invalid")
        span = self.blocks_count - sb.first_data_block
        self.group_count = limits.cap(
            -(-span // sb.blocks_per_group), MAX_GROUPS, "ext block group count", minimum=1
        )
        if sb.inodes_count < L.ROOT_INO or sb.inodes_count > self.group_count * sb.inodes_per_group:
            raise CorruptImageError(f"ext inode count {sb.inodes_count} does not fit the groups")
        if sb.is_64bit:
            self.desc_size = sb.desc_size
            size = self.desc_size
            if size < 64 or size > 1024 or size & (size - 1):
                raise CorruptImageError(f"ext group descriptor size {self.desc_size} is invalid")
        else:
            self.desc_size = 32
        self.descs_per_block = bs // self.desc_size
        self.addr_per_block = bs // 4
        self.itable_blocks = -(-sb.inodes_per_group * self.inode_size // bs)

    def feature_names(self) -> list[str]:
        """All feature flags set on this filesystem, by their mke2fs names."""
        sb = self.sb
        return (
            L.feature_names(sb.feature_compat, L.COMPAT_NAMES)
            + L.feature_names(sb.feature_incompat, L.INCOMPAT_NAMES)
            + L.feature_names(sb.feature_ro_compat, L.RO_COMPAT_NAMES)
        )

    def _has_super(self, group: int) -> bool:
        """Whether ``group`` holds a superblock backup (and so descriptor copies)."""
        sb = self.sb
        if group == 0:
            return True
        if sb.feature_compat & L.COMPAT_SPARSE_SUPER2:
            return group in (sb.backup_bg0, sb.backup_bg1)
        if group == 1 or not sb.feature_ro_compat & L.RO_COMPAT_SPARSE_SUPER:
            return True
        if group % 2 == 0:
            return False
        for base in (3, 5, 7):
            power = base
            while power < group:
                power *= base
            if power == group:
                return True
        return False

    def _descriptor_block(self, index: int) -> int:
        """Block number of the ``index``-th group descriptor block."""
        sb = self.sb
        if not sb.feature_incompat & L.INCOMPAT_META_BG or index < sb.first_meta_bg:
            return 1024 // self.block_size + index + 1
        group = index * self.descs_per_block
        extra = 1 if self._has_super(group) else 0
        if self.block_size == 1024 and index == 0 and sb.first_data_block == 0:
            extra += 1
        return sb.first_data_block + extra + group * sb.blocks_per_group

    def _group(self, group: int) -> L.GroupDescriptor:
        index, slot = divmod(group, self.descs_per_block)
        data = self._meta_block(self._descriptor_block(index), "group descriptor block")
        return L.GroupDescriptor.from_bytes(data, slot * self.desc_size, self.sb.is_64bit)

    # -- blocks -----------------------------------------------------------------------------

    def _check_blocks(self, block: int, count: int, what: str) -> None:
        if block <= 0 or block + count > self.blocks_count:
            raise CorruptImageError(
                f"{what} at block {block} (+{count}) lies outside the filesystem "
                f"({self.blocks_count} blocks)"
            )

    def _meta_block(self, block: int, what: str) -> bytes:
        """One metadata block, through a small LRU cache."""
        cached = self._meta.get(block)
        if cached is not None:
            self._meta.move_to_end(block)
            return cached
        self._check_blocks(block, 1, what)
        data = read_exact_dev(self.dev, block * self.block_size, self.block_size, what)
        self._meta[block] = data
        if len(self._meta) > META_CACHE:
            self._meta.popitem(last=False)
        return data

    # -- inodes -----------------------------------------------------------------------------

    def inode_offset(self, ino: int) -> int:
        """Byte offset of inode ``ino`` on the device (for diagnostics and tests)."""
        if ino < 1 or ino > self.sb.inodes_count:
            raise CorruptImageError(f"inode number {ino} is outside 1..{self.sb.inodes_count}")
        group, index = divmod(ino - 1, self.sb.inodes_per_group)
        table = self._group(group).inode_table
        self._check_blocks(table, self.itable_blocks, f"inode table of group {group}")
        return table * self.block_size + index * self.inode_size

    @property
    def root_ino(self) -> int:
        return L.ROOT_INO

    def _inode(self, ino: int) -> L.Inode:
        cached = self._inodes.get(ino)
        if cached is not None:
            self._inodes.move_to_end(ino)
            return cached
        offset = self.inode_offset(ino)
        try:
            inode = L.Inode.from_bytes(
                read_exact_dev(self.dev, offset, self.inode_size, f"inode {ino}")
            )
        except struct.error as exc:
            raise CorruptImageError(f"inode {ino}: {exc}") from exc
        if inode.mode == 0:
            raise CorruptImageError(f"inode {ino} is not in use")
        self._inodes[ino] = inode
        if len(self._inodes) > INODE_CACHE:
            self._inodes.popitem(last=False)
        return inode

    def stat_ino(self, ino: int) -> Stat:
        inode = self._inode(ino)
        return Stat(
            ino=ino,
            type=_FILE_TYPES.get(inode.file_format, FileType.UNKNOWN),
            size=inode.size,
            mode=inode.mode & 0o7777,
            uid=inode.uid,
            gid=inode.gid,
            mtime=inode.mtime,
        )

    # -- file data --------------------------------------------------------------------------

    @staticmethod
    def _inline_data(inode: L.Inode) -> bytes:
        """``i_block`` followed by the ``system.data`` xattr: an inline file's bytes."""
        extra = L.ibody_xattr(inode.ibody_xattrs, L.XATTR_INDEX_SYSTEM, b"data")
        return inode.block + (extra or b"")

    def _runs(self, ino: int, inode: L.Inode, first: int, count: int) -> list[Run]:
        """Logical blocks ``[first, first + count)`` as runs of physical blocks or holes."""
        return self._blocks.runs(ino, inode, first, count)

    def read_ino(self, ino: int, offset: int, length: int) -> bytes:
        inode = self._inode(ino)
        if inode.file_format not in (L.S_IFREG, L.S_IFLNK, L.S_IFDIR):
            raise CorruptImageError(f"inode {ino} has no data to read")
        return self._read(ino, inode, offset, length)

    def _read(self, ino: int, inode: L.Inode, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise CorruptImageError(f"invalid read at {offset} length {length}")
        end = min(offset + length, inode.size)
        if offset >= end:
            return b""
        limits.cap(end - offset, MAX_READ, f"read of inode {ino}")
        if inode.flags & L.INODE_ENCRYPT_FL:
            raise UnsupportedImageError(f"inode {ino} is encrypted (fscrypt)")
        if inode.flags & L.INODE_INLINE_DATA_FL:
            data = self._inline_data(inode)
            if inode.size > len(data):
                raise CorruptImageError(f"inode {ino}: inline data shorter than the file size")
            return data[offset:end]
        bs = self.block_size
        first = offset // bs
        count = -(-end // bs) - first
        if first + count > 1 << 32:
            raise LimitExceededError(f"inode {ino}: size beyond 2**32 blocks")
        parts = []
        for _lblk, n, phys in self._runs(ino, inode, first, count):
            if phys is None:
                parts.append(bytes(n * bs))
            else:
                parts.append(read_exact_dev(self.dev, phys * bs, n * bs, f"inode {ino} data"))
        data = b"".join(parts)
        skip = offset - first * bs
        return data[skip : skip + end - offset]

    # -- symlinks ---------------------------------------------------------------------------

    def readlink_ino(self, ino: int) -> str:
        inode = self._inode(ino)
        if inode.file_format != L.S_IFLNK:
            raise CorruptImageError(f"inode {ino} is not a symlink")
        limits.cap(inode.size, MAX_SYMLINK_BYTES, f"symlink inode {ino} length")
        if inode.flags & L.INODE_ENCRYPT_FL:
            raise UnsupportedImageError(f"symlink inode {ino} is encrypted (fscrypt)")
        if inode.flags & L.INODE_INLINE_DATA_FL or not self._has_data_blocks(inode):
            source = (
                self._inline_data(inode) if inode.flags & L.INODE_INLINE_DATA_FL else inode.block
            )
            if inode.size > len(source):
                raise CorruptImageError(f"symlink inode {ino} is longer than its inline space")
            target = source[: inode.size]
        else:
            target = self._read(ino, inode, 0, inode.size)
        return decode_name(target.split(b"\0", 1)[0])

    def _has_data_blocks(self, inode: L.Inode) -> bool:
        """Whether a symlink keeps its target in blocks (not in ``i_block``: a fast symlink)."""
        sectors = inode.blocks
        if inode.flags & L.INODE_HUGE_FILE_FL and self.sb.feature_ro_compat & L.RO_COMPAT_HUGE_FILE:
            sectors *= self.block_size // 512
        if inode.file_acl:
            sectors -= (self.block_size << _cluster_bits(self.sb)) // 512
        return sectors > 0 or inode.size >= L.I_BLOCK_SIZE

    # -- directories ------------------------------------------------------------------------

    def _dir_inode(self, ino: int) -> L.Inode:
        inode = self._inode(ino)
        if inode.file_format != L.S_IFDIR:
            raise CorruptImageError(f"inode {ino} is not a directory")
        if inode.flags & L.INODE_ENCRYPT_FL:
            raise UnsupportedImageError(f"directory inode {ino} is encrypted (fscrypt)")
        return inode

    def list_ino(self, ino: int) -> Iterator[DirEntry]:
        for raw, child, ftype in self._counted_entries(ino):
            yield DirEntry(decode_name(raw), child, _entry_type(ftype))

    def _counted_entries(self, ino: int) -> Iterator[tuple[bytes, int, int]]:
        """Raw entries of directory ``ino``, at most MAX_DIR_ENTRIES of them."""
        for count, entry in enumerate(self._entries(ino, self._dir_inode(ino)), 1):
            if count > MAX_DIR_ENTRIES:
                raise LimitExceededError(f"directory inode {ino} has too many entries")
            yield entry

    def _entries(self, ino: int, inode: L.Inode) -> Iterator[tuple[bytes, int, int]]:
        has_type = bool(self.sb.feature_incompat & L.INCOMPAT_FILETYPE)
        if inode.flags & L.INODE_INLINE_DATA_FL:
            # The first 4 bytes of i_block are the parent's inode number ("..").
            yield from _parse_dirents(inode.block[4:], ino, has_type, self.sb.inodes_count)
            extra = L.ibody_xattr(inode.ibody_xattrs, L.XATTR_INDEX_SYSTEM, b"data")
            if extra:
                yield from _parse_dirents(extra, ino, has_type, self.sb.inodes_count)
            return
        size = limits.cap(inode.size, MAX_DIR_BYTES, f"directory inode {ino} size")
        bs = self.block_size
        total = -(-size // bs)
        for first in range(0, total, DIR_CHUNK_BLOCKS):
            count = min(DIR_CHUNK_BLOCKS, total - first)
            for _lblk, n, phys in self._runs(ino, inode, first, count):
                if phys is None:
                    continue  # a hole in a directory reads as no entries (as Linux >= 5.0)
                data = read_exact_dev(self.dev, phys * bs, n * bs, f"directory inode {ino}")
                for i in range(n):
                    yield from _parse_dirents(
                        data[i * bs : (i + 1) * bs], ino, has_type, self.sb.inodes_count
                    )

    def lookup_child(self, dir_ino: int, name: str) -> int | None:
        names = self._names.get(dir_ino)
        if names is None:
            names = {}
            for raw, child, _ftype in self._counted_entries(dir_ino):
                names.setdefault(decode_name(raw), child)
            self._names[dir_ino] = names
            self._names_total += len(names)
            while self._names_total > NAME_CACHE_ENTRIES and len(self._names) > 1:
                _old, dropped = self._names.popitem(last=False)
                self._names_total -= len(dropped)
        else:
            self._names.move_to_end(dir_ino)
        return names.get(name)


def _cluster_bits(sb: L.Superblock) -> int:
    if sb.feature_ro_compat & L.RO_COMPAT_BIGALLOC and sb.log_cluster_size >= sb.log_block_size:
        return min(sb.log_cluster_size - sb.log_block_size, 16)
    return 0


def _parse_dirents(
    block: bytes, dir_ino: int, has_type: bool, inodes_count: int
) -> Iterator[tuple[bytes, int, int]]:
    """``(name, inode, file_type)`` of one directory block or inline area, without ``.``/``..``.

    Entries never cross the block; each record length must hold its header and name, be a
    multiple of 4 and end inside the block. Kept tight: a 10,000-entry directory is parsed in
    full the first time a name in it is looked up.
    """
    pos, size = 0, len(block)
    unpack = L.DIRENT_HEADER.unpack_from
    hsize = L.DIRENT_HEADER.size
    big_blocks = size >= 65536
    while pos < size:
        if pos + hsize > size:
            raise CorruptImageError(f"directory inode {dir_ino}: entry header cut by the block")
        ino, rec_len, name_len, ftype = unpack(block, pos)
        if big_blocks and rec_len in (0, 65535):
            rec_len = 65536
        if not has_type:
            name_len |= ftype << 8
            ftype = 0
        end = pos + rec_len
        if rec_len < hsize or rec_len & 3 or end > size or hsize + name_len > rec_len:
            raise CorruptImageError(
                f"directory inode {dir_ino}: bad record length {rec_len} for a name of "
                f"{name_len} bytes at offset {pos}"
            )
        if ino:
            raw = block[pos + hsize : pos + hsize + name_len]
            if ino > inodes_count:
                raise CorruptImageError(f"directory inode {dir_ino}: entry names inode {ino}")
            if raw == b"." or raw == b"..":
                pass
            elif not raw or b"/" in raw or b"\0" in raw:
                raise CorruptImageError(f"directory inode {dir_ino}: invalid entry name {raw!r}")
            else:
                yield raw, ino, ftype
        pos = end


def _entry_type(ftype: int) -> FileType | None:
    mode = L.DIRENT_TYPES.get(ftype & 7)
    return _FILE_TYPES.get(mode) if mode else None
