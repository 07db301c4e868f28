"""Btrfs address mapping (chunks) and B-tree walking, both bounded against hostile images.

Btrfs addresses metadata and data by *logical* address; the chunk tree maps logical ranges to
(device, physical offset) stripes. The chunks holding the chunk tree itself are bootstrapped
from the superblock's ``sys_chunk_array``. Learned from the btrfs documentation (on-disk
format, "Trees" and "Chunk allocation") and ``btrfs inspect-internal dump-tree`` output.

Every tree node is checked before use: its header must name the address it was read from, the
filesystem's fsid and the level its parent expects (so a child can never point back up);
its item count must fit the node; keys must ascend within the node and lie inside the range
its parent gave it; leaf item data must lie inside the node, after the item headers. A walk
also refuses to visit one block twice (a cycle) and to visit more than ``MAX_NODES_PER_WALK``.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from imageport.errors import CorruptImageError, LimitExceededError, UnsupportedImageError
from imageport.guest.fs import btrfs_layout as L
from imageport.guest.volumes.blockdev import BlockDevice, read_exact_dev

#: B-tree levels (btrfs itself allows 8: levels 0..7).
MAX_LEVEL = 7
#: Chunks one filesystem may map.
MAX_CHUNKS = 1 << 16
#: Stripes per chunk (RAID1C4 has 4, RAID10/0 more; the item must also fit its node).
MAX_STRIPES = 256
#: Nodes visited by one walk over a key range.
MAX_NODES_PER_WALK = 1 << 18
#: Tree nodes kept in the cache (64 KiB nodes at most: 16 MiB).
NODE_CACHE_ENTRIES = 256


@dataclass(frozen=True, slots=True)
class Item:
    """A leaf item: its key, its data, and where it sits (for diagnostics and tests)."""

    key: L.Key
    data: bytes
    node: int  #: logical address of the leaf
    pos: int  #: byte offset of the data inside the leaf


@dataclass(frozen=True, slots=True)
class Node:
    """A parsed tree block: a leaf's items or an internal node's (key, child) pointers."""

    bytenr: int
    level: int
    owner: int
    keys: tuple[L.Key, ...]
    children: tuple[int, ...]  #: internal nodes only
    items: tuple[tuple[int, int], ...]  #: leaves only: (data start, data end) in ``raw``
    raw: bytes


class ChunkMap:
    """Logical → physical translation on one device (SINGLE, DUP and mirrored profiles)."""

    def __init__(self, dev: BlockDevice, devid: int) -> None:
        self.dev = dev
        self.devid = devid
        self._starts: list[int] = []
        self._chunks: list[L.ChunkItem] = []

    def add(self, chunk: L.ChunkItem) -> None:
        """Record ``chunk``; overlapping a known chunk is corruption (identical repeats are not)."""
        if chunk.length <= 0 or chunk.logical + chunk.length > 1 << 64:
            raise CorruptImageError(f"btrfs chunk at {chunk.logical} has length {chunk.length}")
        if chunk.num_stripes > MAX_STRIPES:
            raise LimitExceededError(f"btrfs chunk has {chunk.num_stripes} stripes")
        i = bisect.bisect_right(self._starts, chunk.logical)
        if i and self._chunks[i - 1].logical == chunk.logical and self._chunks[i - 1] == chunk:
            return
        if (i and self._chunks[i - 1].logical + self._chunks[i - 1].length > chunk.logical) or (
            i < len(self._starts) and chunk.logical + chunk.length > self._starts[i]
        ):
            raise CorruptImageError(f"btrfs chunk at {chunk.logical} overlaps another chunk")
        if len(self._chunks) >= MAX_CHUNKS:
            raise LimitExceededError(f"btrfs filesystem maps more than {MAX_CHUNKS} chunks")
        self._starts.insert(i, chunk.logical)
        self._chunks.insert(i, chunk)

    def __len__(self) -> int:
        return len(self._chunks)

    def chunk_at(self, logical: int) -> L.ChunkItem:
        i = bisect.bisect_right(self._starts, logical) - 1
        if i < 0 or logical >= self._chunks[i].logical + self._chunks[i].length:
            raise CorruptImageError(f"btrfs logical address {logical} is in no chunk")
        return self._chunks[i]

    def physical(self, logical: int, length: int) -> int:
        """Physical offset on this device of ``[logical, logical + length)`` (one chunk)."""
        chunk = self.chunk_at(logical)
        if logical + length > chunk.logical + chunk.length:
            raise CorruptImageError(f"btrfs range at {logical}+{length} crosses a chunk end")
        for name_bit, name in L.STRIPED_PROFILES.items():
            if chunk.type & name_bit:
                raise UnsupportedImageError(f"btrfs {name} profile (chunk at {chunk.logical})")
        if chunk.num_stripes > 1 and not chunk.type & L.MIRROR_PROFILES:
            raise CorruptImageError(f"btrfs single-profile chunk {chunk.logical} has stripes")
        for stripe in chunk.stripes:
            if stripe.devid == self.devid:
                return stripe.offset + (logical - chunk.logical)
        raise UnsupportedImageError(
            f"btrfs chunk at {chunk.logical} lives on another device (multi-device filesystem)"
        )

    def read(self, logical: int, length: int, what: str) -> bytes:
        """``length`` bytes at ``logical`` (may span chunks), or a TruncatedImageError."""
        out = bytearray()
        while length > 0:
            chunk = self.chunk_at(logical)
            step = min(length, chunk.logical + chunk.length - logical)
            phys = self.physical(logical, step)
            out += read_exact_dev(self.dev, phys, step, what)
            logical += step
            length -= step
        return bytes(out)


def parse_sys_chunk_array(sb: L.Superblock, chunks: ChunkMap) -> None:
    """Load the bootstrap chunks (those holding the chunk tree) from the superblock."""
    data = sb.sys_chunk_array
    if sb.sys_chunk_array_size > L.SUPER_SYS_CHUNK_ARRAY_SIZE:
        raise CorruptImageError(f"btrfs sys_chunk_array_size {sb.sys_chunk_array_size} too big")
    pos = 0
    while pos < len(data):
        if pos + L.KEY.size > len(data):
            raise CorruptImageError("btrfs sys_chunk_array ends inside a key")
        key = L.Key.from_bytes(data, pos)
        if key.type != L.CHUNK_ITEM:
            raise CorruptImageError(f"btrfs sys_chunk_array holds item type {key.type}")
        chunk = L.ChunkItem.from_bytes(key.offset, data, pos + L.KEY.size)
        chunks.add(chunk)
        pos += L.KEY.size + chunk.size
    if not len(chunks):
        raise CorruptImageError("btrfs sys_chunk_array is empty")


class TreeReader:
    """Reads and checks tree nodes through a :class:`ChunkMap`, with a bounded node cache."""

    def __init__(self, chunks: ChunkMap, nodesize: int, fsid: bytes) -> None:
        self.chunks = chunks
        self.nodesize = nodesize
        self.fsid = fsid
        self._cache: OrderedDict[int, Node] = OrderedDict()

    def node(self, bytenr: int, level: int) -> Node:
        """The checked node at logical ``bytenr``, which must be at ``level``."""
        cached = self._cache.get(bytenr)
        if cached is not None:
            self._cache.move_to_end(bytenr)
            if cached.level != level:
                raise CorruptImageError(f"btrfs node {bytenr} is not at level {level}")
            return cached
        node = self._parse(bytenr, level)
        self._cache[bytenr] = node
        if len(self._cache) > NODE_CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return node

    def _parse(self, bytenr: int, level: int) -> Node:
        if bytenr % 4096:
            raise CorruptImageError(f"btrfs tree block {bytenr} is not aligned")
        raw = self.chunks.read(bytenr, self.nodesize, f"btrfs tree block {bytenr}")
        head = L.NodeHeader.from_bytes(raw)
        if head.bytenr != bytenr:
            raise CorruptImageError(f"btrfs tree block {bytenr} claims address {head.bytenr}")
        if head.fsid != self.fsid:
            raise CorruptImageError(f"btrfs tree block {bytenr} belongs to another filesystem")
        if head.level != level:
            raise CorruptImageError(
                f"btrfs tree block {bytenr} is at level {head.level}, expected {level}"
            )
        body = self.nodesize - L.HEADER.size
        per = L.ITEM.size if level == 0 else L.KEY_PTR.size
        if head.nritems > body // per or (level and not head.nritems):
            raise CorruptImageError(f"btrfs tree block {bytenr} has {head.nritems} items")
        keys: list[L.Key] = []
        children: list[int] = []
        items: list[tuple[int, int]] = []
        pos = L.HEADER.size
        headers_end = L.HEADER.size + head.nritems * per
        for _ in range(head.nritems):
            if level:
                raw_key, child, _gen = L.KEY_PTR.unpack_from(raw, pos)
                children.append(child)
            else:
                raw_key, off, size = L.ITEM.unpack_from(raw, pos)
                start = L.HEADER.size + off
                if start < headers_end or start + size > self.nodesize:
                    raise CorruptImageError(
                        f"btrfs leaf {bytenr}: item data at {off}+{size} lies outside the leaf"
                    )
                items.append((start, start + size))
            key = L.Key.from_bytes(raw_key)
            if keys and key <= keys[-1]:
                raise CorruptImageError(f"btrfs tree block {bytenr}: keys out of order")
            keys.append(key)
            pos += per
        return Node(bytenr, level, head.owner, tuple(keys), tuple(children), tuple(items), raw)

    def items(self, root: int, level: int, lo: L.Key, hi: L.Key) -> Iterator[Item]:
        """Leaf items with ``lo <= key <= hi`` in key order, from the tree rooted at ``root``."""
        if not 0 <= level <= MAX_LEVEL:
            raise CorruptImageError(f"btrfs tree root level {level} is out of range")
        visited: set[int] = set()
        yield from self._walk(root, level, lo, hi, L.KEY_MIN, None, visited)

    def _walk(
        self,
        bytenr: int,
        level: int,
        lo: L.Key,
        hi: L.Key,
        floor: L.Key,
        ceiling: L.Key | None,
        visited: set[int],
    ) -> Iterator[Item]:
        if bytenr in visited:
            raise CorruptImageError(f"btrfs tree block {bytenr} is reached twice (a cycle)")
        if len(visited) >= MAX_NODES_PER_WALK:
            raise LimitExceededError("btrfs tree walk visits too many nodes")
        visited.add(bytenr)
        node = self.node(bytenr, level)
        keys = node.keys
        if keys and (keys[0] < floor or (ceiling is not None and keys[-1] >= ceiling)):
            raise CorruptImageError(f"btrfs tree block {bytenr} holds keys outside its range")
        if level == 0:
            first = bisect.bisect_left(keys, lo)
            for i in range(first, len(keys)):
                if keys[i] > hi:
                    return
                start, end = node.items[i]
                yield Item(keys[i], node.raw[start:end], bytenr, start)
            return
        first = max(bisect.bisect_right(keys, lo) - 1, 0)
        for i in range(first, len(keys)):
            if keys[i] > hi:
                return
            upper = keys[i + 1] if i + 1 < len(keys) else ceiling
            yield from self._walk(node.children[i], level - 1, lo, hi, keys[i], upper, visited)

    def first(self, root: int, level: int, lo: L.Key, hi: L.Key) -> Item | None:
        """The first item in ``[lo, hi]``, or None."""
        for item in self.items(root, level, lo, hi):
            return item
        return None


def load_chunk_tree(sb: L.Superblock, tree: TreeReader) -> None:
    """Add every CHUNK_ITEM of the chunk tree to the reader's chunk map."""
    lo = L.Key(L.FIRST_CHUNK_TREE_OBJECTID, L.CHUNK_ITEM, 0)
    hi = L.Key(L.FIRST_CHUNK_TREE_OBJECTID, L.CHUNK_ITEM, (1 << 64) - 1)
    for item in tree.items(sb.chunk_root, sb.chunk_root_level, lo, hi):
        tree.chunks.add(L.ChunkItem.from_bytes(item.key.offset, item.data))
