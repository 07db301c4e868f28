"""Where an ext inode's data is: extent trees and classic block maps, as runs of blocks.

An inode's logical blocks map to physical blocks through an extent tree (ext4: depth at most
:data:`MAX_EXTENT_DEPTH`, at most :data:`MAX_EXTENT_NODES` nodes visited per read, unwritten
extents read as zeros) or a classic block map (ext2/ext3: 12 direct blocks, then single,
double and triple indirect blocks). Either way a read gets :data:`Run` s: a physical block, or
None for a hole. Every block named is checked to lie inside the filesystem before it is read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from imageport.errors import CorruptImageError, LimitExceededError
from imageport.guest.fs import ext_layout as L

#: Extent tree depth (the kernel's own limit is 5).
MAX_EXTENT_DEPTH = 5
#: Extent tree nodes visited to map one read.
MAX_EXTENT_NODES = 4096

Run = tuple[int, int, int | None]
"""(first logical block, block count, physical block or None for a hole)"""


class BlockMapper:
    """Maps an inode's logical blocks to runs, reading tree nodes and indirect blocks through
    ``meta_block`` (cached by the filesystem) and checking every block with ``check_blocks``."""

    def __init__(
        self,
        meta_block: Callable[[int, str], bytes],
        check_blocks: Callable[[int, int, str], None],
        addr_per_block: int,
    ) -> None:
        self.meta_block = meta_block
        self.check_blocks = check_blocks
        self.addr_per_block = addr_per_block

    def runs(self, ino: int, inode: L.Inode, first: int, count: int) -> list[Run]:
        """Logical blocks ``[first, first + count)`` as runs of physical blocks or holes."""
        if inode.flags & L.INODE_EXTENTS_FL:
            leaves = self.extent_leaves(ino, inode.block, first, first + count - 1)
            return fill_holes(leaves, first, count)
        return self.blockmap_runs(ino, inode, first, count)

    def extent_leaves(self, ino: int, root: bytes, first: int, last: int) -> list[L.ExtentLeaf]:
        """Leaf extents overlapping logical blocks ``[first, last]``, in logical order."""
        out: list[L.ExtentLeaf] = []
        visits = [0]

        def walk(node: bytes, expected_depth: int | None) -> None:
            visits[0] += 1
            if visits[0] > MAX_EXTENT_NODES:
                raise LimitExceededError(f"inode {ino}: extent tree has too many nodes")
            header = L.ExtentHeader.from_bytes(node)
            if expected_depth is None:
                if header.depth > MAX_EXTENT_DEPTH:
                    raise LimitExceededError(f"inode {ino}: extent tree depth {header.depth}")
            elif header.depth != expected_depth:
                raise CorruptImageError(f"inode {ino}: extent node at the wrong depth")
            offsets = range(
                L.EXTENT_HEADER.size,
                L.EXTENT_HEADER.size + header.entries * L.EXTENT_ENTRY.size,
                L.EXTENT_ENTRY.size,
            )
            if header.depth == 0:
                previous_end = 0
                for off in offsets:
                    leaf = L.ExtentLeaf.from_bytes(node, off)
                    if leaf.length == 0 or leaf.logical < previous_end:
                        raise CorruptImageError(f"inode {ino}: extents overlap or are empty")
                    previous_end = leaf.logical + leaf.length
                    if leaf.logical <= last and previous_end > first:
                        self.check_blocks(leaf.physical, leaf.length, f"inode {ino} extent")
                        out.append(leaf)
                return
            entries = [L.ExtentIndex.from_bytes(node, off) for off in offsets]
            for i, entry in enumerate(entries):
                if i and entry.logical <= entries[i - 1].logical:
                    raise CorruptImageError(f"inode {ino}: extent index is not sorted")
            for i, entry in enumerate(entries):
                end = entries[i + 1].logical if i + 1 < len(entries) else 1 << 32
                if entry.logical <= last and end > first:
                    child = self.meta_block(entry.child, f"inode {ino} extent node")
                    walk(child, header.depth - 1)

        walk(root, None)
        return out

    def blockmap_runs(self, ino: int, inode: L.Inode, first: int, count: int) -> list[Run]:
        """Runs for a classic (ext2/ext3) block map: 12 direct, then 1-, 2-, 3-level indirect."""
        direct = struct.unpack("<15I", inode.block)
        apb = self.addr_per_block
        runs: list[Run] = []
        for lblk in range(first, first + count):
            phys = self._map_block(ino, direct, apb, lblk)
            if runs:
                start, n, prev = runs[-1]
                if (prev is None and phys is None) or (
                    prev is not None and phys is not None and phys == prev + n
                ):
                    runs[-1] = (start, n + 1, prev)
                    continue
            runs.append((lblk, 1, phys))
        return runs

    def _map_block(self, ino: int, direct: tuple[int, ...], apb: int, lblk: int) -> int | None:
        if lblk < 12:
            phys = direct[lblk]
        else:
            rel, level = lblk - 12, 1
            while level <= 3 and rel >= apb**level:
                rel -= apb**level
                level += 1
            if level > 3:
                return None
            phys = direct[11 + level]
            for depth in range(level - 1, -1, -1):
                if phys == 0:
                    return None
                table = self._indirect(ino, phys)
                phys = table[(rel // apb**depth) % apb]
        if phys == 0:
            return None
        self.check_blocks(phys, 1, f"inode {ino} data block")
        return phys

    def _indirect(self, ino: int, block: int) -> tuple[int, ...]:
        data = self.meta_block(block, f"inode {ino} indirect block")
        return struct.unpack(f"<{self.addr_per_block}I", data)


def fill_holes(leaves: list[L.ExtentLeaf], first: int, count: int) -> list[Run]:
    """Runs covering ``[first, first + count)``: the leaves clipped, holes and unwritten as None."""
    runs: list[Run] = []
    pos, end = first, first + count
    for leaf in leaves:
        start = max(leaf.logical, pos)
        stop = min(leaf.logical + leaf.length, end)
        if stop <= start:
            continue
        if start > pos:
            runs.append((pos, start - pos, None))
        phys = None if leaf.unwritten else leaf.physical + (start - leaf.logical)
        runs.append((start, stop - start, phys))
        pos = stop
    if pos < end:
        runs.append((pos, end - pos, None))
    return runs
