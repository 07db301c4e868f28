"""Read-only VHDX virtual disks: payload blocks found through the block allocation table.

The structures are parsed and every BAT entry is checked by :mod:`imageport.formats.vhdx`
before a disk is opened; this module only maps guest ranges to runs, the way qemu-img 7.2 reads
a VHDX without a parent: a fully present block is read from the file, blocks that are not
present, undefined, unmapped or zero read as zeros.

The BAT interleaves one sector-bitmap entry after every ``chunk_ratio`` payload entries, so
payload block ``i`` is BAT entry ``i + i // chunk_ratio``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from imageport.disk.base import Run, RunKind, VirtualDisk, block_runs
from imageport.source import ByteSource

#: Payload block states (bits 0-2 of a BAT entry).
PAYLOAD_NOT_PRESENT = 0
PAYLOAD_UNDEFINED = 1
PAYLOAD_ZERO = 2
PAYLOAD_UNMAPPED = 3
PAYLOAD_UNMAPPED_V095 = 5  #: written by pre-1.0 Hyper-V; qemu treats it like UNMAPPED
PAYLOAD_FULLY_PRESENT = 6
PAYLOAD_PARTIALLY_PRESENT = 7

STATE_MASK = 0x7
#: Bits 20-63 hold the file offset in MiB units.
FILE_OFFSET_MASK = 0xFFFF_FFFF_FFF0_0000

_ENTRY = struct.Struct("<Q")
_STATE_KIND = {
    PAYLOAD_NOT_PRESENT: RunKind.HOLE,
    PAYLOAD_UNDEFINED: RunKind.HOLE,
    PAYLOAD_UNMAPPED_V095: RunKind.ZERO,
    PAYLOAD_UNMAPPED: RunKind.ZERO,
    PAYLOAD_ZERO: RunKind.ZERO,
}


@dataclass(frozen=True, slots=True)
class VhdxBat:
    """The BAT of a VHDX without a parent, as read (little-endian u64 entries)."""

    raw: bytes
    block_size: int
    chunk_ratio: int

    @property
    def entry_count(self) -> int:
        return len(self.raw) // 8

    def payload_entry(self, block: int) -> int:
        """The BAT entry of payload block ``block`` (0 when the table ends before it)."""
        index = block + block // self.chunk_ratio
        if index >= self.entry_count:
            return 0
        entry: int = _ENTRY.unpack_from(self.raw, index * 8)[0]
        return entry


class VhdxDisk(VirtualDisk):
    """A VHDX virtual disk without a parent (fixed or dynamic)."""

    format_name = "vhdx"

    def __init__(self, source: ByteSource, size: int, bat: VhdxBat) -> None:
        super().__init__(source, size)
        self._bat = bat

    def _block(self, index: int) -> Run:
        size = self._bat.block_size
        entry = self._bat.payload_entry(index)
        state = entry & STATE_MASK
        if state == PAYLOAD_FULLY_PRESENT:
            return Run(index * size, size, RunKind.DATA, entry & FILE_OFFSET_MASK)
        # Every other state was refused when the BAT was checked, except the ones mapped here.
        return Run(index * size, size, _STATE_KIND.get(state, RunKind.HOLE))

    def runs(self, start: int, end: int) -> Iterator[Run]:
        return block_runs(start, end, self._bat.block_size, self._block)
