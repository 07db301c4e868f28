"""On-disk structures of ext2/ext3/ext4, described apart from the reader that walks them.

Learned from the kernel's ext4 documentation ("ext4 Data Structures and Algorithms",
Documentation/filesystems/ext4/ in the Linux tree: globals/super.rst, group_descr.rst,
dynamic/inodes.rst, ifork.rst, directory.rst, attributes.rst, inlinedata.rst) and from the
feature tests libblkid uses to tell ext2, ext3 and ext4 apart. No code was copied.

Everything here parses bytes that the caller has already read and sized; numbers are returned
raw and checked against the filesystem's geometry by :mod:`imageport.guest.fs.ext`.
"""

from __future__ import annotations

import struct
import uuid as uuidlib
from dataclasses import dataclass

from imageport.checksums import crc32c_update
from imageport.errors import CorruptImageError

SUPERBLOCK_OFFSET = 1024
SUPERBLOCK_SIZE = 1024
MAGIC = 0xEF53
ROOT_INO = 2
GOOD_OLD_INODE_SIZE = 128
#: Size of ``i_block``: 15 block pointers, or an extent root, or inline data / a fast symlink.
I_BLOCK_SIZE = 60

# -- feature flags -------------------------------------------------------------------------

COMPAT_NAMES = {
    0x1: "dir_prealloc",
    0x2: "imagic_inodes",
    0x4: "has_journal",
    0x8: "ext_attr",
    0x10: "resize_inode",
    0x20: "dir_index",
    0x40: "lazy_bg",
    0x100: "exclude_bitmap",
    0x200: "sparse_super2",
    0x400: "fast_commit",
    0x800: "stable_inodes",
    0x1000: "orphan_file",
}
INCOMPAT_NAMES = {
    0x1: "compression",
    0x2: "filetype",
    0x4: "needs_recovery",
    0x8: "journal_dev",
    0x10: "meta_bg",
    0x40: "extent",
    0x80: "64bit",
    0x100: "mmp",
    0x200: "flex_bg",
    0x400: "ea_inode",
    0x1000: "dirdata",
    0x2000: "metadata_csum_seed",
    0x4000: "large_dir",
    0x8000: "inline_data",
    0x10000: "encrypt",
    0x20000: "casefold",
}
RO_COMPAT_NAMES = {
    0x1: "sparse_super",
    0x2: "large_file",
    0x4: "btree_dir",
    0x8: "huge_file",
    0x10: "uninit_bg",
    0x20: "dir_nlink",
    0x40: "extra_isize",
    0x80: "snapshot",
    0x100: "quota",
    0x200: "bigalloc",
    0x400: "metadata_csum",
    0x800: "replica",
    0x1000: "read-only",
    0x2000: "project",
    0x4000: "shared_blocks",
    0x8000: "verity",
    0x10000: "orphan_present",
}

COMPAT_HAS_JOURNAL = 0x4
COMPAT_SPARSE_SUPER2 = 0x200
INCOMPAT_COMPRESSION = 0x1
INCOMPAT_FILETYPE = 0x2
INCOMPAT_RECOVER = 0x4
INCOMPAT_JOURNAL_DEV = 0x8
INCOMPAT_META_BG = 0x10
INCOMPAT_64BIT = 0x80
RO_COMPAT_SPARSE_SUPER = 0x1
RO_COMPAT_LARGE_FILE = 0x2
RO_COMPAT_BTREE_DIR = 0x4
RO_COMPAT_HUGE_FILE = 0x8
RO_COMPAT_BIGALLOC = 0x200
RO_COMPAT_METADATA_CSUM = 0x400

#: Incompatible features this reader cannot read correctly (it refuses the filesystem).
INCOMPAT_REFUSED = INCOMPAT_COMPRESSION | INCOMPAT_JOURNAL_DEV
#: Incompatible features this reader understands (or that do not change how data is read).
INCOMPAT_KNOWN = sum(INCOMPAT_NAMES)

# What libblkid lets each name have: more than ext2/ext3 allow makes a filesystem ext4.
EXT2_RO_COMPAT = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR
EXT2_INCOMPAT = INCOMPAT_FILETYPE | INCOMPAT_META_BG
EXT3_RO_COMPAT = EXT2_RO_COMPAT
EXT3_INCOMPAT = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG


def feature_names(mask: int, names: dict[int, str]) -> list[str]:
    """The names of the bits set in ``mask`` (unknown bits as ``bit_N``)."""
    out = []
    for bit in range(32):
        flag = 1 << bit
        if mask & flag:
            out.append(names.get(flag, f"bit_{bit}"))
    return out


# -- superblock ----------------------------------------------------------------------------

# (field, offset inside the superblock, struct code), as in super.rst.
_SB_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("inodes_count", 0x00, "I"),
    ("blocks_count_lo", 0x04, "I"),
    ("first_data_block", 0x14, "I"),
    ("log_block_size", 0x18, "I"),
    ("log_cluster_size", 0x1C, "I"),
    ("blocks_per_group", 0x20, "I"),
    ("clusters_per_group", 0x24, "I"),
    ("inodes_per_group", 0x28, "I"),
    ("magic", 0x38, "H"),
    ("state", 0x3A, "H"),
    ("minor_rev_level", 0x3E, "H"),
    ("rev_level", 0x4C, "I"),
    ("first_ino", 0x54, "I"),
    ("inode_size", 0x58, "H"),
    ("feature_compat", 0x5C, "I"),
    ("feature_incompat", 0x60, "I"),
    ("feature_ro_compat", 0x64, "I"),
    ("uuid", 0x68, "16s"),
    ("volume_name", 0x78, "16s"),
    ("desc_size", 0xFE, "H"),
    ("first_meta_bg", 0x104, "I"),
    ("blocks_count_hi", 0x150, "I"),
    ("min_extra_isize", 0x15C, "H"),
    ("flags", 0x160, "I"),
    ("checksum_type", 0x175, "B"),
    ("backup_bg0", 0x24C, "I"),
    ("backup_bg1", 0x250, "I"),
    ("checksum", 0x3FC, "I"),
)
_SB_STRUCTS = tuple((name, off, struct.Struct("<" + code)) for name, off, code in _SB_FIELDS)


@dataclass(frozen=True, slots=True)
class Superblock:
    """The fields of the primary superblock (at byte 1024) that a reader needs."""

    inodes_count: int
    blocks_count_lo: int
    first_data_block: int
    log_block_size: int
    log_cluster_size: int
    blocks_per_group: int
    clusters_per_group: int
    inodes_per_group: int
    magic: int
    state: int
    minor_rev_level: int
    rev_level: int
    first_ino: int
    inode_size: int
    feature_compat: int
    feature_incompat: int
    feature_ro_compat: int
    uuid: bytes
    volume_name: bytes
    desc_size: int
    first_meta_bg: int
    blocks_count_hi: int
    min_extra_isize: int
    flags: int
    checksum_type: int
    backup_bg0: int
    backup_bg1: int
    checksum: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> Superblock:
        if len(raw) < SUPERBLOCK_SIZE:
            raise CorruptImageError("ext superblock is truncated")
        values = {name: st.unpack_from(raw, off)[0] for name, off, st in _SB_STRUCTS}
        return cls(**values)

    @property
    def is_64bit(self) -> bool:
        return bool(self.feature_incompat & INCOMPAT_64BIT)

    @property
    def blocks_count(self) -> int:
        hi = self.blocks_count_hi if self.is_64bit else 0
        return self.blocks_count_lo | (hi << 32)

    @property
    def uuid_text(self) -> str | None:
        """The UUID as blkid prints it (``8-4-4-4-12`` lower case); None when all zero."""
        if not any(self.uuid):
            return None
        return str(uuidlib.UUID(bytes=self.uuid))

    @property
    def label_text(self) -> str | None:
        raw = self.volume_name.split(b"\0", 1)[0]
        return raw.decode("utf-8", "replace") if raw else None

    @property
    def version_text(self) -> str:
        return f"{self.rev_level}.{self.minor_rev_level}"

    def fs_type(self) -> str:
        """``ext2``, ``ext3``, ``ext4`` or ``jbd`` (an external journal), decided as blkid does."""
        incompat = self.feature_incompat
        ro = self.feature_ro_compat
        if incompat & INCOMPAT_JOURNAL_DEV:
            return "jbd"
        journal = bool(self.feature_compat & COMPAT_HAS_JOURNAL)
        if not journal and not ro & ~EXT2_RO_COMPAT and not incompat & ~EXT2_INCOMPAT:
            return "ext2"
        if journal and not ro & ~EXT3_RO_COMPAT and not incompat & ~EXT3_INCOMPAT:
            return "ext3"
        return "ext4"


def superblock_checksum_ok(raw: bytes, sb: Superblock) -> bool:
    """Whether the metadata_csum superblock checksum (crc32c of bytes 0..0x3FB) matches."""
    return crc32c_update(0xFFFFFFFF, raw[:0x3FC]) == sb.checksum


# -- group descriptors ---------------------------------------------------------------------

_GD32 = struct.Struct("<3I4HI4H")
_GD64_HI = struct.Struct("<3I")  # bg_block_bitmap_hi, bg_inode_bitmap_hi, bg_inode_table_hi
GD_INODE_UNINIT = 0x1


@dataclass(frozen=True, slots=True)
class GroupDescriptor:
    """The part of a block group descriptor a reader needs: where the inode table is."""

    inode_table: int
    flags: int
    itable_unused: int

    @classmethod
    def from_bytes(cls, raw: bytes, offset: int, wide: bool) -> GroupDescriptor:
        """Parse the descriptor at ``offset``; ``wide`` for the 64-byte 64bit form."""
        (_bb, _ib, itable, _fb, _fi, _ud, flags, _ex, _bbc, _ibc, unused, _csum) = (
            _GD32.unpack_from(raw, offset)
        )
        if wide:
            itable |= _GD64_HI.unpack_from(raw, offset + 32)[2] << 32
        return cls(inode_table=itable, flags=flags, itable_unused=unused)


# -- inodes --------------------------------------------------------------------------------

_INODE = struct.Struct("<2H5I2H3I60s4I6H")
_EXTRA_ISIZE = struct.Struct("<H")
_MTIME_EXTRA_OFFSET = 0x88
_U32 = struct.Struct("<I")

S_IFMT = 0o170000
S_IFIFO = 0o010000
S_IFCHR = 0o020000
S_IFDIR = 0o040000
S_IFBLK = 0o060000
S_IFREG = 0o100000
S_IFLNK = 0o120000
S_IFSOCK = 0o140000

INODE_ENCRYPT_FL = 0x800
INODE_INDEX_FL = 0x1000
INODE_HUGE_FILE_FL = 0x40000
INODE_EXTENTS_FL = 0x80000
INODE_INLINE_DATA_FL = 0x10000000


@dataclass(frozen=True, slots=True)
class Inode:
    """An inode: the 128-byte base plus what the extra fields and in-inode xattrs hold."""

    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    links_count: int
    blocks: int  #: ``i_blocks`` as stored (512-byte units, or blocks with HUGE_FILE_FL)
    flags: int
    block: bytes  #: the 60-byte ``i_block``
    file_acl: int
    ibody_xattrs: bytes  #: the in-inode extended attribute area after its magic ("" if none)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Inode:
        """Parse one on-disk inode (``raw`` is the whole ``s_inode_size`` record)."""
        (
            mode,
            uid_lo,
            size_lo,
            _atime,
            _ctime,
            mtime,
            _dtime,
            gid_lo,
            links,
            blocks_lo,
            flags,
            _osd1,
            block,
            _gen,
            acl_lo,
            size_hi,
            _faddr,
            blocks_hi,
            acl_hi,
            uid_hi,
            gid_hi,
            _csum_lo,
            _res,
        ) = _INODE.unpack_from(raw, 0)
        mtime_full = mtime - (1 << 32) if mtime & 0x80000000 else mtime
        xattrs = b""
        if len(raw) > GOOD_OLD_INODE_SIZE:
            extra = _EXTRA_ISIZE.unpack_from(raw, GOOD_OLD_INODE_SIZE)[0]
            if extra % 4 or GOOD_OLD_INODE_SIZE + extra > len(raw):
                raise CorruptImageError(f"inode extra size {extra} does not fit the inode")
            if extra >= _MTIME_EXTRA_OFFSET + 4 - GOOD_OLD_INODE_SIZE:
                mtime_full += (_U32.unpack_from(raw, _MTIME_EXTRA_OFFSET)[0] & 3) << 32
            start = GOOD_OLD_INODE_SIZE + extra
            if start + 4 <= len(raw) and _U32.unpack_from(raw, start)[0] == XATTR_MAGIC:
                xattrs = raw[start + 4 :]
        return cls(
            mode=mode,
            uid=uid_lo | (uid_hi << 16),
            gid=gid_lo | (gid_hi << 16),
            size=size_lo | (size_hi << 32),
            mtime=mtime_full,
            links_count=links,
            blocks=blocks_lo | (blocks_hi << 32),
            flags=flags,
            block=block,
            file_acl=acl_lo | (acl_hi << 32),
            ibody_xattrs=xattrs,
        )

    @property
    def file_format(self) -> int:
        return self.mode & S_IFMT


# -- extended attributes (in-inode) ---------------------------------------------------------

XATTR_MAGIC = 0xEA020000
XATTR_INDEX_SYSTEM = 7
_XATTR_ENTRY = struct.Struct("<BBHIII")


def ibody_xattr(area: bytes, index: int, name: bytes) -> bytes | None:
    """The value of xattr ``(index, name)`` in an in-inode xattr area, or None.

    ``area`` starts right after the 4-byte magic; value offsets count from that point. Each
    entry is 16 bytes plus its name padded to 4; a zero word ends the list.
    """
    pos = 0
    while pos + 4 <= len(area) and _U32.unpack_from(area, pos)[0] != 0:
        if pos + _XATTR_ENTRY.size > len(area):
            raise CorruptImageError("in-inode xattr entry runs past the inode")
        name_len, name_index, value_offs, value_inum, value_size, _hash = _XATTR_ENTRY.unpack_from(
            area, pos
        )
        name_end = pos + _XATTR_ENTRY.size + name_len
        if name_end > len(area):
            raise CorruptImageError("in-inode xattr name runs past the inode")
        if name_index == index and area[pos + _XATTR_ENTRY.size : name_end] == name:
            if value_inum:
                raise CorruptImageError("inline data stored in an xattr inode")
            if value_offs + value_size > len(area):
                raise CorruptImageError("in-inode xattr value runs past the inode")
            return area[value_offs : value_offs + value_size]
        pos = (name_end + 3) & ~3
    return None


# -- extents -------------------------------------------------------------------------------

EXTENT_MAGIC = 0xF30A
EXTENT_HEADER = struct.Struct("<4HI")  # magic, entries, max, depth, generation
EXTENT_ENTRY = struct.Struct("<IHHI")  # leaf: ee_block, ee_len, ee_start_hi, ee_start_lo
EXTENT_INDEX = struct.Struct("<IIHH")  # index: ei_block, ei_leaf_lo, ei_leaf_hi, unused
#: ``ee_len`` above this marks an unwritten (preallocated) extent of ``ee_len - 32768`` blocks.
EXTENT_INIT_MAX_LEN = 32768


@dataclass(frozen=True, slots=True)
class ExtentHeader:
    entries: int
    max_entries: int
    depth: int

    @classmethod
    def from_bytes(cls, node: bytes) -> ExtentHeader:
        """Parse and check a node header against the size of the node it heads."""
        if len(node) < EXTENT_HEADER.size:
            raise CorruptImageError("extent node too small")
        magic, entries, max_entries, depth, _gen = EXTENT_HEADER.unpack_from(node, 0)
        if magic != EXTENT_MAGIC:
            raise CorruptImageError(f"bad extent header magic {magic:#06x}")
        capacity = (len(node) - EXTENT_HEADER.size) // EXTENT_ENTRY.size
        if max_entries > capacity or entries > max_entries:
            raise CorruptImageError(
                f"extent node claims {entries}/{max_entries} entries; it holds {capacity}"
            )
        return cls(entries=entries, max_entries=max_entries, depth=depth)


@dataclass(frozen=True, slots=True)
class ExtentLeaf:
    """A leaf extent: ``length`` logical blocks from ``logical`` stored at ``physical``."""

    logical: int
    length: int
    physical: int
    unwritten: bool

    @classmethod
    def from_bytes(cls, node: bytes, offset: int) -> ExtentLeaf:
        lblk, raw_len, start_hi, start_lo = EXTENT_ENTRY.unpack_from(node, offset)
        unwritten = raw_len > EXTENT_INIT_MAX_LEN
        length = raw_len - EXTENT_INIT_MAX_LEN if unwritten else raw_len
        return cls(lblk, length, start_lo | (start_hi << 32), unwritten)


@dataclass(frozen=True, slots=True)
class ExtentIndex:
    """An index entry: the subtree at block ``child`` maps logical blocks from ``logical``."""

    logical: int
    child: int

    @classmethod
    def from_bytes(cls, node: bytes, offset: int) -> ExtentIndex:
        lblk, leaf_lo, leaf_hi, _unused = EXTENT_INDEX.unpack_from(node, offset)
        return cls(lblk, leaf_lo | (leaf_hi << 32))


# -- directory entries ---------------------------------------------------------------------

DIRENT_HEADER = struct.Struct("<IHBB")  # inode, rec_len, name_len, file_type
#: ``file_type`` byte of a directory entry (with the FILETYPE feature), low 3 bits.
DIRENT_TYPES = {1: S_IFREG, 2: S_IFDIR, 3: S_IFCHR, 4: S_IFBLK, 5: S_IFIFO, 6: S_IFSOCK, 7: S_IFLNK}
