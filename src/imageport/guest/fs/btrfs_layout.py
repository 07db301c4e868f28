"""Btrfs on-disk structures: the superblock, tree nodes, keys and the items this reader uses.

Learned from the btrfs documentation ("On-disk format" at btrfs.readthedocs.io and the
btrfs wiki's "Data Structures" page) and checked against ``btrfs inspect-internal dump-super``
/ ``dump-tree`` output of images made by btrfs-progs; no btrfs source code was copied.

Everything is little-endian. Only layout lives here (``struct.Struct`` + ``from_bytes``);
validation of the values against the device and the tree is in ``btrfs_tree`` / ``btrfs``.
"""

from __future__ import annotations

import struct
import uuid as uuidlib
from dataclasses import dataclass

from imageport.checksums import crc32c_update
from imageport.errors import CorruptImageError

SUPERBLOCK_OFFSET = 64 * 1024
SUPERBLOCK_SIZE = 4096
MAGIC = b"_BHRfS_M"
CSUM_SIZE = 32  #: checksum field at the start of the superblock and of every tree node

#: Checksum algorithms (``csum_type``); only crc32c is verified here.
CSUM_CRC32C, CSUM_XXHASH, CSUM_SHA256, CSUM_BLAKE2 = 0, 1, 2, 3
CSUM_NAMES = {
    CSUM_CRC32C: "crc32c",
    CSUM_XXHASH: "xxhash64",
    CSUM_SHA256: "sha256",
    CSUM_BLAKE2: "blake2b",
}

# Object ids.
ROOT_TREE_OBJECTID = 1
CHUNK_TREE_OBJECTID = 3
FS_TREE_OBJECTID = 5  #: the top-level subvolume
ROOT_TREE_DIR_OBJECTID = 6  #: holds the "default" DIR_ITEM
FIRST_FREE_OBJECTID = 256  #: first inode number; the root directory of every fs tree
LAST_FREE_OBJECTID = (1 << 64) - 256
FIRST_CHUNK_TREE_OBJECTID = 256

# Item types (the middle field of a key).
INODE_ITEM = 1
INODE_REF = 12
DIR_ITEM = 84
DIR_INDEX = 96
EXTENT_DATA = 108
ROOT_ITEM = 132
ROOT_BACKREF = 144
ROOT_REF = 156
CHUNK_ITEM = 228

# Block-group profile bits of a chunk's ``type``.
BG_DATA, BG_SYSTEM, BG_METADATA = 0x1, 0x2, 0x4
BG_RAID0, BG_RAID1, BG_DUP, BG_RAID10 = 0x8, 0x10, 0x20, 0x40
BG_RAID5, BG_RAID6, BG_RAID1C3, BG_RAID1C4 = 0x80, 0x100, 0x200, 0x400
#: Profiles whose stripes are full copies of the chunk (any one of them may be read).
MIRROR_PROFILES = BG_DUP | BG_RAID1 | BG_RAID1C3 | BG_RAID1C4
#: Profiles that spread a chunk over stripes (not read here).
STRIPED_PROFILES = {BG_RAID0: "raid0", BG_RAID10: "raid10", BG_RAID5: "raid5", BG_RAID6: "raid6"}

# incompat feature bits that change what a reader must understand.
INCOMPAT_METADATA_UUID = 0x400
INCOMPAT_EXTENT_TREE_V2 = 0x2000
INCOMPAT_RAID_STRIPE_TREE = 0x4000
INCOMPAT_ENCRYPT = 0x8000

# File extents.
EXTENT_INLINE, EXTENT_REGULAR, EXTENT_PREALLOC = 0, 1, 2
COMPRESS_NONE, COMPRESS_ZLIB, COMPRESS_LZO, COMPRESS_ZSTD = 0, 1, 2, 3

# Directory entry types.
FT_UNKNOWN, FT_REG_FILE, FT_DIR, FT_CHRDEV, FT_BLKDEV = 0, 1, 2, 3, 4
FT_FIFO, FT_SOCK, FT_SYMLINK, FT_XATTR = 5, 6, 7, 8


def format_uuid(raw: bytes) -> str:
    """A 16-byte UUID as ``blkid`` prints it (lower-case, dashed)."""
    return str(uuidlib.UUID(bytes=raw))


# -- directory name hash -------------------------------------------------------------------


def name_hash(name: bytes) -> int:
    """The offset of a DIR_ITEM key: crc32c of the name seeded with ``~1``, not inverted."""
    return crc32c_update(0xFFFFFFFE, name)


# -- keys ----------------------------------------------------------------------------------------

KEY = struct.Struct("<QBQ")


@dataclass(frozen=True, slots=True, order=True)
class Key:
    """A tree key: items sort by (objectid, type, offset)."""

    objectid: int
    type: int
    offset: int

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> Key:
        return cls(*KEY.unpack_from(data, offset))


KEY_MIN = Key(0, 0, 0)
KEY_MAX = Key((1 << 64) - 1, 255, (1 << 64) - 1)

# -- superblock ----------------------------------------------------------------------------------

DEV_ITEM = struct.Struct("<QQQIIIQQQIBB16s16s")  # 98 bytes

#: Superblock fields up to the checksum type and tree levels (offset 0x20 .. 0xc9).
SUPER_HEAD = struct.Struct("<16sQQ8s9Q5I4QHBBB")
SUPER_DEV_ITEM_OFFSET = 0xC9
SUPER_LABEL_OFFSET = 0x12B
SUPER_LABEL_SIZE = 256
SUPER_METADATA_UUID_OFFSET = 0x23B
SUPER_SYS_CHUNK_ARRAY_OFFSET = 0x32B
SUPER_SYS_CHUNK_ARRAY_SIZE = 2048


@dataclass(frozen=True, slots=True)
class DevItem:
    """The device this superblock was written on (``dev_item`` of the superblock)."""

    devid: int
    total_bytes: int
    uuid: bytes
    fsid: bytes

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> DevItem:
        f = DEV_ITEM.unpack_from(data, offset)
        return cls(devid=f[0], total_bytes=f[1], uuid=f[12], fsid=f[13])


@dataclass(frozen=True, slots=True)
class Superblock:
    """The primary superblock (the copies at 64 MiB and 256 GiB are not read)."""

    csum: bytes
    fsid: bytes
    bytenr: int
    magic: bytes
    generation: int
    root: int
    chunk_root: int
    total_bytes: int
    root_dir_objectid: int
    num_devices: int
    sectorsize: int
    nodesize: int
    sys_chunk_array_size: int
    incompat_flags: int
    csum_type: int
    root_level: int
    chunk_root_level: int
    dev_item: DevItem
    label: bytes
    metadata_uuid: bytes
    sys_chunk_array: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> Superblock:
        if len(data) < SUPERBLOCK_SIZE:
            raise CorruptImageError("btrfs superblock is short")
        f = SUPER_HEAD.unpack_from(data, CSUM_SIZE)
        array_size = f[17]
        return cls(
            csum=data[:CSUM_SIZE],
            fsid=f[0],
            bytenr=f[1],
            magic=f[3],
            generation=f[4],
            root=f[5],
            chunk_root=f[6],
            total_bytes=f[9],
            root_dir_objectid=f[11],
            num_devices=f[12],
            sectorsize=f[13],
            nodesize=f[14],
            sys_chunk_array_size=array_size,
            incompat_flags=f[21],
            csum_type=f[22],
            root_level=f[23],
            chunk_root_level=f[24],
            dev_item=DevItem.from_bytes(data, SUPER_DEV_ITEM_OFFSET),
            label=data[SUPER_LABEL_OFFSET : SUPER_LABEL_OFFSET + SUPER_LABEL_SIZE],
            metadata_uuid=data[SUPER_METADATA_UUID_OFFSET : SUPER_METADATA_UUID_OFFSET + 16],
            sys_chunk_array=data[
                SUPER_SYS_CHUNK_ARRAY_OFFSET : SUPER_SYS_CHUNK_ARRAY_OFFSET
                + min(array_size, SUPER_SYS_CHUNK_ARRAY_SIZE)
            ],
        )


# -- chunks --------------------------------------------------------------------------------------

CHUNK = struct.Struct("<QQQQIIIHH")  # 48 bytes, then num_stripes STRIPEs
STRIPE = struct.Struct("<QQ16s")  # 32 bytes


@dataclass(frozen=True, slots=True)
class Stripe:
    devid: int
    offset: int  #: physical byte offset on that device


@dataclass(frozen=True, slots=True)
class ChunkItem:
    """A range of logical addresses and where its copies (stripes) live."""

    logical: int  #: from the key offset
    length: int
    stripe_len: int
    type: int
    num_stripes: int
    sub_stripes: int
    stripes: tuple[Stripe, ...]

    @property
    def size(self) -> int:
        """Bytes this item occupies (header plus stripes)."""
        return CHUNK.size + STRIPE.size * len(self.stripes)

    @classmethod
    def from_bytes(cls, logical: int, data: bytes, offset: int = 0) -> ChunkItem:
        if offset + CHUNK.size > len(data):
            raise CorruptImageError("btrfs chunk item is short")
        f = CHUNK.unpack_from(data, offset)
        num = f[7]
        if num == 0 or offset + CHUNK.size + num * STRIPE.size > len(data):
            raise CorruptImageError(f"btrfs chunk at {logical} has {num} stripes that do not fit")
        stripes = tuple(
            Stripe(*STRIPE.unpack_from(data, offset + CHUNK.size + i * STRIPE.size)[:2])
            for i in range(num)
        )
        return cls(
            logical=logical,
            length=f[0],
            stripe_len=f[2],
            type=f[3],
            num_stripes=num,
            sub_stripes=f[8],
            stripes=stripes,
        )


# -- tree nodes ----------------------------------------------------------------------------------

HEADER = struct.Struct("<32s16sQQ16sQQIB")  # 101 bytes
ITEM = struct.Struct("<17sII")  # leaf item: key, data offset (after the header), data size
KEY_PTR = struct.Struct("<17sQQ")  # internal node: key, child block, generation


@dataclass(frozen=True, slots=True)
class NodeHeader:
    csum: bytes
    fsid: bytes
    bytenr: int
    flags: int
    generation: int
    owner: int
    nritems: int
    level: int

    @classmethod
    def from_bytes(cls, data: bytes) -> NodeHeader:
        f = HEADER.unpack_from(data, 0)
        return cls(
            csum=f[0],
            fsid=f[1],
            bytenr=f[2],
            flags=f[3],
            generation=f[5],
            owner=f[6],
            nritems=f[7],
            level=f[8],
        )


# -- items ---------------------------------------------------------------------------------------

INODE = struct.Struct("<QQQQQIIIIQQQ32xQIQIQIQI")  # 160 bytes


@dataclass(frozen=True, slots=True)
class InodeItem:
    size: int
    nlink: int
    uid: int
    gid: int
    mode: int
    flags: int
    mtime: int

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> InodeItem:
        if offset + INODE.size > len(data):
            raise CorruptImageError("btrfs inode item is short")
        f = INODE.unpack_from(data, offset)
        return cls(size=f[2], nlink=f[5], uid=f[6], gid=f[7], mode=f[8], flags=f[10], mtime=f[16])


#: Root item fields after its embedded inode item: generation, root_dirid, bytenr, byte_limit,
#: bytes_used, last_snapshot, flags, refs, drop_progress, drop_level, level.
ROOT_TAIL = struct.Struct("<QQQQQQQI17sBB")
ROOT_ITEM_MIN_SIZE = INODE.size + ROOT_TAIL.size  # 239


@dataclass(frozen=True, slots=True)
class RootItem:
    """Where a tree (a subvolume, say) has its root node."""

    root_dirid: int
    bytenr: int
    flags: int
    refs: int
    level: int

    @classmethod
    def from_bytes(cls, data: bytes) -> RootItem:
        if len(data) < ROOT_ITEM_MIN_SIZE:
            raise CorruptImageError(f"btrfs root item is {len(data)} bytes, too short")
        f = ROOT_TAIL.unpack_from(data, INODE.size)
        return cls(root_dirid=f[1], bytenr=f[2], flags=f[6], refs=f[7], level=f[10])


ROOT_REF_HEAD = struct.Struct("<QQH")


@dataclass(frozen=True, slots=True)
class RootRef:
    """A subvolume's name in its parent: directory ``dirid`` of the parent tree holds ``name``."""

    dirid: int
    name: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> RootRef:
        if len(data) < ROOT_REF_HEAD.size:
            raise CorruptImageError("btrfs root ref is short")
        dirid, _seq, name_len = ROOT_REF_HEAD.unpack_from(data, 0)
        name = data[ROOT_REF_HEAD.size : ROOT_REF_HEAD.size + name_len]
        if len(name) != name_len or not name_len:
            raise CorruptImageError("btrfs root ref name does not fit its item")
        return cls(dirid=dirid, name=name)


DIR_HEAD = struct.Struct("<17sQHHB")  # location key, transid, data_len, name_len, type


@dataclass(frozen=True, slots=True)
class DirEntryItem:
    """One entry of a DIR_ITEM / DIR_INDEX item (a DIR_ITEM may pack several)."""

    location: Key  #: (inode, INODE_ITEM, 0), or (subvolume id, ROOT_ITEM, ...) for a subvolume
    type: int
    name: bytes

    @classmethod
    def parse_all(cls, data: bytes, limit: int) -> list[DirEntryItem]:
        """Every entry packed in ``data`` (at most ``limit``)."""
        entries: list[DirEntryItem] = []
        pos = 0
        while pos < len(data):
            if pos + DIR_HEAD.size > len(data) or len(entries) >= limit:
                raise CorruptImageError("btrfs directory item is malformed")
            raw_key, _transid, data_len, name_len, ftype = DIR_HEAD.unpack_from(data, pos)
            start = pos + DIR_HEAD.size
            end = start + name_len + data_len
            if end > len(data) or not name_len:
                raise CorruptImageError("btrfs directory entry does not fit its item")
            entries.append(cls(Key.from_bytes(raw_key), ftype, data[start : start + name_len]))
            pos = end
        return entries


INODE_REF_HEAD = struct.Struct("<QH")  # index, name_len, then the name


def parse_inode_ref_names(data: bytes, limit: int) -> list[bytes]:
    """The names packed in an INODE_REF item (an inode's name(s) in one parent directory)."""
    names: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + INODE_REF_HEAD.size > len(data) or len(names) >= limit:
            raise CorruptImageError("btrfs inode ref is malformed")
        _index, name_len = INODE_REF_HEAD.unpack_from(data, pos)
        start = pos + INODE_REF_HEAD.size
        if start + name_len > len(data) or not name_len:
            raise CorruptImageError("btrfs inode ref name does not fit its item")
        names.append(data[start : start + name_len])
        pos = start + name_len
    return names


FILE_EXTENT_HEAD = struct.Struct("<QQBBHB")  # 21 bytes; inline data follows
FILE_EXTENT_REG = struct.Struct("<QQQQ")  # disk_bytenr, disk_num_bytes, offset, num_bytes


@dataclass(frozen=True, slots=True)
class FileExtent:
    """An EXTENT_DATA item: file bytes at ``file_offset`` (the key offset)."""

    file_offset: int
    ram_bytes: int  #: decoded size of the whole (possibly compressed) extent
    compression: int
    encryption: int
    other_encoding: int
    type: int
    inline: bytes  #: the stored bytes of an inline extent, else empty
    disk_bytenr: int  #: logical address of the stored extent; 0 is a hole
    disk_num_bytes: int
    offset: int  #: where this file range starts inside the decoded extent
    num_bytes: int  #: bytes of the file this item covers (inline: ``ram_bytes``)

    @classmethod
    def from_bytes(cls, file_offset: int, data: bytes) -> FileExtent:
        if len(data) < FILE_EXTENT_HEAD.size:
            raise CorruptImageError("btrfs file extent item is short")
        _gen, ram, comp, enc, other, etype = FILE_EXTENT_HEAD.unpack_from(data, 0)
        if etype == EXTENT_INLINE:
            return cls(
                file_offset,
                ram,
                comp,
                enc,
                other,
                etype,
                data[FILE_EXTENT_HEAD.size :],
                0,
                0,
                0,
                ram,
            )
        if len(data) < FILE_EXTENT_HEAD.size + FILE_EXTENT_REG.size:
            raise CorruptImageError("btrfs regular file extent item is short")
        bytenr, disk_num, off, num = FILE_EXTENT_REG.unpack_from(data, FILE_EXTENT_HEAD.size)
        return cls(file_offset, ram, comp, enc, other, etype, b"", bytenr, disk_num, off, num)
