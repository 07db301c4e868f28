"""Read-only VHD virtual disks: fixed (the file is the disk) and dynamic (blocks through a BAT).

The structures are parsed and checked by :mod:`imageport.formats.vhd`; this module only maps
guest ranges to runs. Reads follow qemu-img 7.2: an allocated block is read as stored, its
sector bitmap is not consulted; an unallocated block reads as zeros.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from imageport.disk.base import Run, RunKind, VirtualDisk, block_runs
from imageport.source import ByteSource

_UNALLOCATED = 0xFFFFFFFF
_SECTOR = 512
_ENTRY = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class VhdBat:
    """A dynamic VHD's block allocation table, as read (big-endian u32 sector numbers)."""

    raw: bytes
    entries: int
    block_size: int
    bitmap_size: int

    def holes_from(self, index: int, stop: int) -> int:
        """How many blocks from ``index`` (before ``stop``) are unallocated (at least 1;
        counted in C)."""
        tail = self.raw[index * 4 : min(stop, self.entries) * 4]
        run = (len(tail) - len(tail.lstrip(b"\xff"))) // 4
        return max(1, run)

    def data_offset(self, index: int) -> int | None:
        """File offset of block ``index``'s data, or None when it is not allocated."""
        if index >= self.entries:
            return None
        sector: int = _ENTRY.unpack_from(self.raw, index * 4)[0]
        if sector == _UNALLOCATED:
            return None
        return sector * _SECTOR + self.bitmap_size


class FixedVhdDisk(VirtualDisk):
    """A fixed VHD: guest byte N is file byte N (the footer follows the data)."""

    format_name = "vhd"

    def __init__(self, source: ByteSource, size: int) -> None:
        super().__init__(source, size)

    def runs(self, start: int, end: int) -> Iterator[Run]:
        if end > start:
            yield Run(start, end - start, RunKind.DATA, start)


class DynamicVhdDisk(VirtualDisk):
    """A dynamic VHD: fixed-size blocks, each allocated (bitmap + data) or a hole."""

    format_name = "vhd"

    def __init__(self, source: ByteSource, size: int, bat: VhdBat) -> None:
        super().__init__(source, size)
        self._bat = bat

    def _block(self, index: int, stop: int) -> Run:
        size = self._bat.block_size
        host = self._bat.data_offset(index)
        if host is None:
            return Run(index * size, self._bat.holes_from(index, stop) * size, RunKind.HOLE)
        return Run(index * size, size, RunKind.DATA, host)

    def runs(self, start: int, end: int) -> Iterator[Run]:
        size = self._bat.block_size
        stop = -(-end // size)
        return block_runs(start, end, size, lambda index: self._block(index, stop))
