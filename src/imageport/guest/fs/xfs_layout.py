"""XFS on-disk structures (big-endian), described apart from the logic that walks them.

Learned from "XFS Algorithms & Data Structures" (the xfsprogs/kernel documentation of the
on-disk format, 3rd edition) and the field lists of the Linux ``xfs_format.h`` /
``xfs_da_format.h`` headers; no code is taken from them. Version 4 filesystems have short
metadata headers; version 5 ("CRC enabled") filesystems add a self-describing header (CRC,
block number, LSN, UUID, owner) to every metadata block and use new magic numbers. CRCs are
not verified here: every structure is instead checked for its magic and its numbers are capped.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from imageport.errors import CorruptImageError, UnsupportedImageError

SB_MAGIC = b"XFSB"

# sb_versionnum bits (v4) and sb_features2 bits.
VERSION_NUMBITS = 0x000F
VERSION_DIRV2BIT = 0x2000
VERSION_BORGBIT = 0x4000  #: ASCII case-insensitive names (changes the name hash)
VERSION_MOREBITSBIT = 0x8000
FEATURES2_FTYPE = 0x0200

# sb_features_incompat bits (v5). Those a read-only reader can handle are listed in
# INCOMPAT_READABLE; any other set bit is named in an UnsupportedImageError.
INCOMPAT_NAMES = {
    0x001: "ftype",
    0x002: "sparse inodes",
    0x004: "meta_uuid",
    0x008: "bigtime",
    0x010: "needsrepair",
    0x020: "nrext64",
    0x040: "exchange-range",
    0x080: "parent pointers",
    0x100: "metadir",
    0x200: "zoned realtime",
}
INCOMPAT_FTYPE = 0x001
INCOMPAT_NREXT64 = 0x020
#: Features that only change allocation, logging or metadata we do not read.
INCOMPAT_READABLE = 0x001 | 0x002 | 0x004 | 0x008 | 0x010 | 0x020 | 0x040 | 0x080


_SB = struct.Struct(">4sIQQQ16sQQQQIIIIIHHHH12sBBBBBBBBQQQQQQHBBIIIBBHIIIIIIIIIQQ16s")


@dataclass(frozen=True, slots=True)
class Superblock:
    """The fields of the primary superblock this reader uses (``struct xfs_dsb``)."""

    blocksize: int
    dblocks: int
    uuid: bytes
    rootino: int
    agblocks: int
    agcount: int
    versionnum: int
    sectsize: int
    inodesize: int
    inopblock: int
    fname: bytes
    blocklog: int
    sectlog: int
    inodelog: int
    inopblog: int
    agblklog: int
    dirblklog: int
    features2: int
    features_incompat: int

    SIZE = _SB.size

    @classmethod
    def from_bytes(cls, raw: bytes) -> Superblock:
        if len(raw) < _SB.size:
            raise CorruptImageError("XFS superblock is truncated")
        f = _SB.unpack_from(raw)
        if f[0] != SB_MAGIC:
            raise CorruptImageError("no XFS superblock magic")
        return cls(
            blocksize=f[1],
            dblocks=f[2],
            uuid=f[5],
            rootino=f[7],
            agblocks=f[11],
            agcount=f[12],
            versionnum=f[15],
            sectsize=f[16],
            inodesize=f[17],
            inopblock=f[18],
            fname=f[19],
            blocklog=f[20],
            sectlog=f[21],
            inodelog=f[22],
            inopblog=f[23],
            agblklog=f[24],
            dirblklog=f[40],
            features2=f[44],
            features_incompat=f[48],
        )

    @property
    def version(self) -> int:
        return self.versionnum & VERSION_NUMBITS

    @property
    def has_crc(self) -> bool:
        return self.version == 5

    @property
    def has_ftype(self) -> bool:
        if self.has_crc:
            return bool(self.features_incompat & INCOMPAT_FTYPE)
        return bool(self.versionnum & VERSION_MOREBITSBIT and self.features2 & FEATURES2_FTYPE)

    @property
    def ascii_ci(self) -> bool:
        return bool(self.versionnum & VERSION_BORGBIT)

    @property
    def uuid_str(self) -> str:
        return str(uuid.UUID(bytes=self.uuid))

    @property
    def label(self) -> str | None:
        name = self.fname.split(b"\0", 1)[0]
        return name.decode("utf-8", "replace") if name else None

    def validate(self) -> None:
        """Check the geometry every later computation relies on, then the features."""
        checks = (
            (9 <= self.blocklog <= 16 and self.blocksize == 1 << self.blocklog, "block size"),
            (9 <= self.sectlog <= 15 and self.sectsize == 1 << self.sectlog, "sector size"),
            (8 <= self.inodelog <= 11 and self.inodesize == 1 << self.inodelog, "inode size"),
            (self.inodesize <= self.blocksize, "inode size vs block size"),
            (self.inopblog == self.blocklog - self.inodelog, "inodes per block log"),
            (self.inopblock == 1 << self.inopblog, "inodes per block"),
            (1 <= self.agcount <= 1 << 24, "AG count"),
            (5 <= self.agblocks < 1 << 31, "AG size"),
            (
                self.agblklog <= 31
                and (1 << self.agblklog) >= self.agblocks
                and (self.agblklog == 0 or 1 << (self.agblklog - 1) < self.agblocks),
                "AG block log",
            ),
            (self.blocklog + self.dirblklog <= 16, "directory block size"),
            (self.version != 5 or self.inodesize >= 512, "v5 inode size"),
        )
        for ok, what in checks:
            if not ok:
                raise CorruptImageError(f"XFS superblock has an invalid {what}")
        if self.version not in (4, 5):
            raise UnsupportedImageError(f"XFS superblock version {self.version} is not supported")
        if self.version == 4 and not self.versionnum & VERSION_DIRV2BIT:
            raise UnsupportedImageError("XFS with version 1 directories is not supported")
        if self.version == 5:
            unknown = self.features_incompat & ~INCOMPAT_READABLE
            if unknown:
                names = [n for bit, n in INCOMPAT_NAMES.items() if unknown & bit]
                rest = unknown & ~sum(INCOMPAT_NAMES)
                if rest:
                    names.append(f"unknown bits {rest:#x}")
                raise UnsupportedImageError(
                    "XFS incompatible features not supported: " + ", ".join(names)
                )


# -- inodes -------------------------------------------------------------------------------

INODE_MAGIC = b"IN"
_DINODE = struct.Struct(">2sHBBHIIIHH8s8s8s8sQQIIHBbIHHII")
_DINODE_V3 = struct.Struct(">IQQQI12s8sQ16s")
DINODE_V2_SIZE = 100
DINODE_V3_SIZE = 176

FMT_DEV, FMT_LOCAL, FMT_EXTENTS, FMT_BTREE = 0, 1, 2, 3
DIFLAG_REALTIME = 0x0001
DIFLAG2_BIGTIME = 1 << 3
DIFLAG2_NREXT64 = 1 << 4
BIGTIME_EPOCH_OFFSET = 1 << 31


@dataclass(frozen=True, slots=True)
class InodeCore:
    """The fixed part of an on-disk inode (``struct xfs_dinode``) and its data fork bytes."""

    mode: int
    version: int
    format: int
    uid: int
    gid: int
    mtime: int
    size: int
    nextents: int
    forkoff: int
    flags: int
    flags2: int
    ino_field: int  #: di_ino (v3 only, else 0)
    fork: bytes  #: the data fork area inside the inode

    @classmethod
    def from_bytes(cls, raw: bytes, has_crc: bool) -> InodeCore:
        if len(raw) < _DINODE.size:
            raise CorruptImageError("XFS inode is truncated")
        f = _DINODE.unpack_from(raw)
        if f[0] != INODE_MAGIC:
            raise CorruptImageError("XFS inode has no 'IN' magic")
        version = f[2]
        if version not in (1, 2, 3) or (version == 3) != has_crc:
            raise CorruptImageError(f"XFS inode version {version} does not match the filesystem")
        flags2 = 0
        ino_field = 0
        core = DINODE_V2_SIZE
        if version == 3:
            if len(raw) < DINODE_V3_SIZE:
                raise CorruptImageError("XFS v3 inode is truncated")
            g = _DINODE_V3.unpack_from(raw, DINODE_V2_SIZE)
            flags2, ino_field = g[3], g[7]
            core = DINODE_V3_SIZE
        # di_big_nextents overlays the v2 pad bytes; with NREXT64 the 32-bit slot at 76
        # holds the attribute fork count instead.
        if flags2 & DIFLAG2_NREXT64:
            nextents = int.from_bytes(f[10], "big")
        else:
            nextents = f[17]
        mtime = _timestamp(f[12], bool(flags2 & DIFLAG2_BIGTIME))
        forkoff = f[19]
        fork_end = core + forkoff * 8 if forkoff else len(raw)
        if fork_end <= core or fork_end > len(raw):
            raise CorruptImageError(f"XFS inode fork offset {forkoff} is invalid")
        return cls(
            mode=f[1],
            version=version,
            format=f[3],
            uid=f[5],
            gid=f[6],
            mtime=mtime,
            size=f[14],
            nextents=nextents,
            forkoff=forkoff,
            flags=f[23],
            flags2=flags2,
            ino_field=ino_field,
            fork=raw[core:fork_end],
        )


def _timestamp(raw: bytes, bigtime: bool) -> int:
    if bigtime:
        return int.from_bytes(raw, "big") // 1_000_000_000 - BIGTIME_EPOCH_OFFSET
    return int.from_bytes(raw[:4], "big", signed=True)


# -- extents and bmap btrees ---------------------------------------------------------------

EXTENT_SIZE = 16
_MASK21 = (1 << 21) - 1
_MASK52 = (1 << 52) - 1
_MASK54 = (1 << 54) - 1


@dataclass(frozen=True, slots=True)
class Extent:
    """One packed 128-bit extent record: file blocks ``[offset, offset+count)`` at ``block``."""

    offset: int  #: first file block
    block: int  #: first filesystem block (AG number in the high bits)
    count: int
    unwritten: bool  #: preallocated, reads as zeros

    @classmethod
    def from_bytes(cls, raw: bytes, pos: int = 0) -> Extent:
        value = int.from_bytes(raw[pos : pos + EXTENT_SIZE], "big")
        return cls(
            offset=(value >> 73) & _MASK54,
            block=(value >> 21) & _MASK52,
            count=value & _MASK21,
            unwritten=bool(value >> 127),
        )


BMAP_MAGIC_V4 = b"BMAP"
BMAP_MAGIC_V5 = b"BMA3"
BMBT_HDR_V4 = 24
BMBT_HDR_V5 = 72
_BTREE_BLOCK = struct.Struct(">4sHHQQ")
_BTREE_ROOT = struct.Struct(">HH")


@dataclass(frozen=True, slots=True)
class BtreeHeader:
    """The long-form btree block header (``BMAP``/``BMA3``), or the in-inode root header."""

    level: int
    numrecs: int
    owner: int | None = None

    @classmethod
    def from_block(cls, raw: bytes, has_crc: bool) -> BtreeHeader:
        magic, level, numrecs, _left, _right = _BTREE_BLOCK.unpack_from(raw)
        if magic != (BMAP_MAGIC_V5 if has_crc else BMAP_MAGIC_V4):
            raise CorruptImageError(f"XFS bmap btree block has magic {magic!r}")
        owner = int.from_bytes(raw[56:64], "big") if has_crc else None
        return cls(level=level, numrecs=numrecs, owner=owner)

    @classmethod
    def from_root(cls, raw: bytes) -> BtreeHeader:
        if len(raw) < _BTREE_ROOT.size:
            raise CorruptImageError("XFS bmap btree root is truncated")
        level, numrecs = _BTREE_ROOT.unpack_from(raw)
        return cls(level=level, numrecs=numrecs)


# -- symlinks ------------------------------------------------------------------------------

SYMLINK_MAGIC = b"XSLM"
_SYMLINK_HDR = struct.Struct(">4sIII16sQQQ")
SYMLINK_HDR_SIZE = _SYMLINK_HDR.size


@dataclass(frozen=True, slots=True)
class SymlinkHeader:
    """The v5 remote symlink block header: where in the target this block's bytes go."""

    offset: int
    nbytes: int
    owner: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> SymlinkHeader:
        if len(raw) < SYMLINK_HDR_SIZE:
            raise CorruptImageError("XFS remote symlink block is truncated")
        f = _SYMLINK_HDR.unpack_from(raw)
        if f[0] != SYMLINK_MAGIC:
            raise CorruptImageError(f"XFS remote symlink block has magic {f[0]!r}")
        return cls(offset=f[1], nbytes=f[2], owner=f[5])
