"""XFS version 2/3 directories: shortform, block, leaf and node formats.

Learned from "XFS Algorithms & Data Structures" (chapters "Directories" and "Directory and
Attribute Internal Nodes") and the field lists of Linux ``xfs_da_format.h``; no code is taken
from them.

A directory's file has three logical regions: *data* blocks (the entries themselves) from
offset 0, *leaf* blocks (hash -> entry address index) from 32 GiB and *free-space* blocks from
64 GiB. Small directories live inside the inode ("shortform"); a one-block directory keeps its
leaf index at the end of its only data block ("block" format). Listing scans the data blocks;
lookup uses the hash index (leaf or node form, a B+tree of at most :data:`MAX_DA_DEPTH` levels)
and falls back to scanning only when the filesystem hashes case-insensitively.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from imageport.errors import CorruptImageError, LimitExceededError
from imageport.guest.fs.base import FileType

LEAF_OFFSET = 32 << 30  #: byte offset of the leaf region in a directory's file
FREE_OFFSET = 64 << 30
DATA_ALIGN = 8
NULL_DATAPTR = 0xFFFFFFFF
#: Levels of internal da-btree nodes allowed above the leaves (XFS itself uses at most 5).
MAX_DA_DEPTH = 8
#: Leaf blocks followed sideways for one run of equal hashes.
MAX_LEAF_HOPS = 64

DATA_MAGICS_V4 = (b"XD2B", b"XD2D")
DATA_MAGICS_V5 = (b"XDB3", b"XDD3")
DATA_HDR_V4 = 16
DATA_HDR_V5 = 64
DA_NODE_MAGIC = (0xFEBE, 0x3EBE)  #: (v4, v5)
LEAF1_MAGIC = (0xD2F1, 0x3DF1)
LEAFN_MAGIC = (0xD2FF, 0x3DFF)
DA_HDR_V4 = 16  #: blkinfo (12) + count + stale/level
DA_HDR_V5 = 64  #: da3 blkinfo (56) + count + stale/level + pad

FTYPES = {
    1: FileType.REGULAR,
    2: FileType.DIRECTORY,
    3: FileType.CHARDEV,
    4: FileType.BLOCKDEV,
    5: FileType.FIFO,
    6: FileType.SOCKET,
    7: FileType.SYMLINK,
}

_DA_INFO = struct.Struct(">IIHH")
_PAIR = struct.Struct(">II")
_U16 = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class RawEntry:
    """A directory entry as stored: name bytes, inode number, file type when recorded."""

    name: bytes
    ino: int
    ftype: FileType | None


@dataclass(frozen=True, slots=True)
class DaBlock:
    """A da-btree block header (node or leaf) and its (hash, value) pairs.

    For a node the value is the logical block of the child; for a leaf it is the entry's
    address in 8-byte units of the directory's data region.
    """

    magic: int
    forw: int
    level: int
    pairs: tuple[tuple[int, int], ...]

    @classmethod
    def from_bytes(cls, raw: bytes, has_crc: bool) -> DaBlock:
        forw, _back, magic, _pad = _DA_INFO.unpack_from(raw)
        hdr = DA_HDR_V5 if has_crc else DA_HDR_V4
        count, level = struct.unpack_from(">HH", raw, hdr - (8 if has_crc else 4))
        if count * 8 > len(raw) - hdr:
            raise CorruptImageError(f"XFS directory index block claims {count} entries")
        pairs = tuple(_PAIR.iter_unpack(raw[hdr : hdr + count * 8]))
        return cls(magic=magic, forw=forw, level=level, pairs=pairs)


class DirBlocks(Protocol):
    """How the directory code reaches a directory's blocks (implemented by the reader)."""

    dirblksize: int

    def dir_block(self, dablk: int) -> bytes | None:
        """The directory block starting at file block ``dablk``, or None for a hole."""

    def data_dablks(self) -> Iterator[int]:
        """Start blocks of the mapped directory blocks in the data region, in order."""


def hashname(name: bytes) -> int:
    """The XFS directory name hash (rotate-and-xor over 7-bit shifted bytes)."""

    def rol(v: int, n: int) -> int:
        return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF

    h = 0
    i = 0
    while len(name) - i >= 4:
        a, b, c, d = name[i : i + 4]
        h = (a << 21) ^ (b << 14) ^ (c << 7) ^ d ^ rol(h, 28)
        i += 4
    rest = name[i:]
    if len(rest) == 3:
        h = (rest[0] << 14) ^ (rest[1] << 7) ^ rest[2] ^ rol(h, 21)
    elif len(rest) == 2:
        h = (rest[0] << 7) ^ rest[1] ^ rol(h, 14)
    elif len(rest) == 1:
        h = rest[0] ^ rol(h, 7)
    return h & 0xFFFFFFFF


def _ftype(code: int) -> FileType:
    return FTYPES.get(code, FileType.UNKNOWN)


# -- shortform -----------------------------------------------------------------------------


def parse_shortform(fork: bytes, size: int, has_ftype: bool) -> tuple[int, list[RawEntry]]:
    """The parent inode and entries of an in-inode directory of ``size`` bytes."""
    if size < 6 or size > len(fork):
        raise CorruptImageError(f"XFS shortform directory size {size} is invalid")
    data = fork[:size]
    count, i8count = data[0], data[1]
    inosize = 8 if i8count else 4
    parent = int.from_bytes(data[2 : 2 + inosize], "big")
    pos = 2 + inosize
    entries: list[RawEntry] = []
    for _ in range(count):
        if pos + 3 > size:
            raise CorruptImageError("XFS shortform directory entry runs past its end")
        namelen = data[pos]
        pos += 3  # namelen, 16-bit offset tag
        end = pos + namelen + (1 if has_ftype else 0) + inosize
        if namelen == 0 or end > size:
            raise CorruptImageError("XFS shortform directory entry is invalid")
        name = data[pos : pos + namelen]
        pos += namelen
        ftype = _ftype(data[pos]) if has_ftype else None
        pos += 1 if has_ftype else 0
        ino = int.from_bytes(data[pos : pos + inosize], "big")
        pos += inosize
        entries.append(RawEntry(name, ino, ftype))
    return parent, entries


# -- data blocks ---------------------------------------------------------------------------


def entry_size(namelen: int, has_ftype: bool) -> int:
    """Bytes of a data entry: inode, name length, name, [file type], tag, padded to 8."""
    raw = 8 + 1 + namelen + (1 if has_ftype else 0) + 2
    return (raw + DATA_ALIGN - 1) & ~(DATA_ALIGN - 1)


def data_entries(block: bytes, has_crc: bool, has_ftype: bool) -> Iterator[RawEntry]:
    """Entries of one data block (``XD2B``/``XD2D``/``XDB3``/``XDD3``), minus ``.``/``..``."""
    magic = block[:4]
    block_magic, data_magic = DATA_MAGICS_V5 if has_crc else DATA_MAGICS_V4
    hdr = DATA_HDR_V5 if has_crc else DATA_HDR_V4
    end = len(block)
    if magic == block_magic:
        count = int.from_bytes(block[end - 8 : end - 4], "big")
        if count * 8 + 8 > end - hdr:
            raise CorruptImageError(f"XFS block directory claims {count} leaf entries")
        end -= 8 + count * 8
    elif magic != data_magic:
        raise CorruptImageError(f"XFS directory data block has magic {magic!r}")
    pos = hdr
    while pos < end:
        if block[pos : pos + 2] == b"\xff\xff":
            (length,) = _U16.unpack_from(block, pos + 2)
            if length < DATA_ALIGN or length % DATA_ALIGN or pos + length > end:
                raise CorruptImageError(f"XFS directory free region of {length} bytes")
            pos += length
            continue
        entry, size = _entry_at(block, pos, end, has_ftype)
        pos += size
        if entry.name not in (b".", b".."):
            yield entry


def _entry_at(block: bytes, pos: int, end: int, has_ftype: bool) -> tuple[RawEntry, int]:
    if pos + 9 > end:
        raise CorruptImageError("XFS directory entry runs past its block")
    ino = int.from_bytes(block[pos : pos + 8], "big")
    namelen = block[pos + 8]
    size = entry_size(namelen, has_ftype)
    if namelen == 0 or pos + size > end:
        raise CorruptImageError("XFS directory entry is invalid")
    name = block[pos + 9 : pos + 9 + namelen]
    ftype = _ftype(block[pos + 9 + namelen]) if has_ftype else None
    return RawEntry(name, ino, ftype), size


def entry_at_address(
    blocks: DirBlocks, address: int, blocklog: int, has_ftype: bool
) -> RawEntry | None:
    """The data entry a leaf points at (``address`` in 8-byte units of the data region)."""
    byte = address * DATA_ALIGN
    if byte >= LEAF_OFFSET:
        raise CorruptImageError(f"XFS directory leaf points outside the data region ({byte})")
    start = byte - byte % blocks.dirblksize
    block = blocks.dir_block(start >> blocklog)
    if block is None:
        return None
    pos = byte - start
    if pos >= len(block) - 8:
        raise CorruptImageError("XFS directory leaf points past its data block")
    return _entry_at(block, pos, len(block), has_ftype)[0]


# -- listing and lookup over a directory's blocks -----------------------------------------


def list_blocks(
    blocks: DirBlocks, has_crc: bool, has_ftype: bool, max_entries: int
) -> Iterator[RawEntry]:
    """Every entry in the data region of a block/leaf/node directory, at most ``max_entries``."""
    n = 0
    for dablk in blocks.data_dablks():
        block = blocks.dir_block(dablk)
        if block is None:
            continue
        for entry in data_entries(block, has_crc, has_ftype):
            n += 1
            if n > max_entries:
                raise LimitExceededError(f"XFS directory has more than {max_entries} entries")
            yield entry


def lookup_blocks(
    blocks: DirBlocks,
    name: bytes,
    *,
    size: int,
    blocklog: int,
    has_crc: bool,
    has_ftype: bool,
    use_hash: bool,
    max_entries: int,
) -> RawEntry | None:
    """Find ``name`` in a block/leaf/node directory of ``size`` bytes."""
    v = 1 if has_crc else 0
    if size <= blocks.dirblksize or not use_hash:
        return _scan(blocks, name, has_crc, has_ftype, max_entries)
    leaf_dablk = LEAF_OFFSET >> blocklog
    root = blocks.dir_block(leaf_dablk)
    if root is None:
        raise CorruptImageError("XFS directory has no leaf block")
    want = hashname(name)
    da = DaBlock.from_bytes(root, has_crc)
    depth = 0
    while da.magic == DA_NODE_MAGIC[v]:
        depth += 1
        if depth > MAX_DA_DEPTH or not da.pairs:
            raise CorruptImageError("XFS directory index is too deep or has an empty node")
        hashes = [h for h, _ in da.pairs]
        i = bisect.bisect_left(hashes, want)
        if i == len(da.pairs):
            return None  # every hash in the tree is smaller
        child = da.pairs[i][1]
        if not leaf_dablk <= child < FREE_OFFSET >> blocklog:
            raise CorruptImageError(f"XFS directory node points at block {child}")
        block = blocks.dir_block(child)
        if block is None:
            raise CorruptImageError("XFS directory node points at a hole")
        da = DaBlock.from_bytes(block, has_crc)
    if da.magic not in (LEAF1_MAGIC[v], LEAFN_MAGIC[v]):
        raise CorruptImageError(f"XFS directory leaf has magic {da.magic:#x}")
    for _ in range(MAX_LEAF_HOPS):
        hashes = [h for h, _ in da.pairs]
        i = bisect.bisect_left(hashes, want)
        while i < len(da.pairs) and da.pairs[i][0] == want:
            address = da.pairs[i][1]
            i += 1
            if address == NULL_DATAPTR:
                continue
            entry = entry_at_address(blocks, address, blocklog, has_ftype)
            if entry is not None and entry.name == name:
                return entry
        run_continues = bool(da.pairs) and da.pairs[-1][0] == want and i == len(da.pairs)
        if not run_continues or da.forw == 0 or da.magic != LEAFN_MAGIC[v]:
            return None
        block = blocks.dir_block(da.forw)
        if block is None:
            return None
        da = DaBlock.from_bytes(block, has_crc)
        if da.magic != LEAFN_MAGIC[v]:
            raise CorruptImageError("XFS directory leaf chain reaches a non-leaf block")
    raise LimitExceededError("XFS directory hash run spans too many leaf blocks")


def _scan(
    blocks: DirBlocks, name: bytes, has_crc: bool, has_ftype: bool, max_entries: int
) -> RawEntry | None:
    for entry in list_blocks(blocks, has_crc, has_ftype, max_entries):
        if entry.name == name:
            return entry
    return None
