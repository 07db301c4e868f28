"""Reader for hosted sparse VMDK extents (monolithicSparse and streamOptimized).

The disk is cut into *grains* (``grainSize`` sectors, 64 KiB by default). A two-level map
finds each grain: the *grain directory* (GD) holds, for each run of ``numGTEsPerGT`` grains,
the sector of a *grain table* (GT); each GT entry (GTE) holds the sector of the grain in the
file. All entries are little-endian uint32 sector numbers:

* GD entry 0: the whole GT span is unallocated (a hole);
* GTE 0: the grain is unallocated (a hole);
* GTE 1 with the header's zeroed-grain flag (bit 2): the grain reads as zeros;
* otherwise the grain's data, stored as-is, or, when ``compressAlgorithm`` is 1 (deflate), as a
  zlib stream; with the *markers* flag (bit 17, streamOptimized) the stream is preceded by a
  grain marker ``{uint64 lba; uint32 size}`` giving its length.

Layout learned from VMware's "Virtual Disk Format 5.0" technote and qemu's ``block/vmdk.c``
(``get_cluster_offset``, ``vmdk_read_extent``). Like qemu, compression is decided by
``compressAlgorithm`` alone; the redundant grain directory is not consulted for reads.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from imageport import limits
from imageport.disk.base import (
    Run,
    RunKind,
    VirtualDisk,
    clip_run,
    coalesce,
    progression_length,
)
from imageport.errors import CorruptImageError, TruncatedImageError
from imageport.source import ByteSource, read_exact

SECTOR = 512
#: GTE value meaning "this grain reads as zeros" when the zeroed-grain flag is set.
GTE_ZEROED = 1
#: Size of a grain marker before compressed data: uint64 lba, uint32 size.
GRAIN_MARKER_BYTES = 12
#: Grain tables kept in memory at most (further bounded by MAX_METADATA_CACHE_BYTES).
MAX_CACHED_TABLES = 4096


@dataclass(frozen=True, slots=True)
class SparseLayout:
    """Where and how a hosted sparse extent stores its grains (from the header or footer)."""

    #: Virtual disk size in bytes (``capacity`` sectors * 512).
    virtual_size: int
    #: Grain size in bytes.
    grain_size: int
    #: Grain table entries per grain table.
    gtes_per_gt: int
    #: File offset of the grain directory, in bytes.
    gd_offset: int
    #: Number of grain directory entries.
    gd_entries: int
    #: Grains are zlib streams (``compressAlgorithm`` 1).
    compressed: bool
    #: Compressed grains start with a grain marker (flag bit 17).
    markers: bool
    #: GTE 1 means a zeroed grain (flag bit 2).
    zeroed_grains: bool

    @property
    def table_bytes(self) -> int:
        return self.gtes_per_gt * 4

    @property
    def span(self) -> int:
        """Guest bytes covered by one grain table."""
        return self.grain_size * self.gtes_per_gt


def _u32_array(data: bytes) -> array[int]:
    table = array("I")
    if table.itemsize != 4:  # pragma: no cover - every platform we run on has a 4-byte "I"
        table = array("L")
    table.frombytes(data)
    if sys.byteorder == "big":  # pragma: no cover
        table.byteswap()
    return table


@dataclass(frozen=True, slots=True, eq=False)
class GrainDirectory:
    """The grain directory: sector numbers of the grain tables, checked to lie in the file."""

    entries: array[int]

    @classmethod
    def read(cls, source: ByteSource, layout: SparseLayout) -> GrainDirectory:
        size = limits.cap(
            layout.gd_entries * 4, limits.MAX_TABLE_BYTES, "VMDK grain directory bytes"
        )
        entries = _u32_array(read_exact(source, layout.gd_offset, size, "VMDK grain directory"))
        if entries and max(entries) * SECTOR + layout.table_bytes > source.size:
            index, sector = next(
                (i, s)
                for i, s in enumerate(entries)
                if s * SECTOR + layout.table_bytes > source.size
            )
            raise TruncatedImageError(
                f"VMDK grain table {index} at sector {sector} lies beyond the end of the file "
                f"({source.size} bytes)"
            )
        return cls(entries)


class SparseVmdkDisk(VirtualDisk):
    """A monolithicSparse or streamOptimized VMDK read through its grain directory."""

    format_name = "vmdk"

    def __init__(
        self,
        source: ByteSource,
        layout: SparseLayout,
        directory: GrainDirectory | None = None,
    ) -> None:
        super().__init__(source, layout.virtual_size)
        limits.cap(layout.grain_size, limits.MAX_BLOCK_BYTES, "VMDK grain size", minimum=SECTOR)
        self.layout = layout
        self.directory = directory if directory is not None else GrainDirectory.read(source, layout)
        self._tables: OrderedDict[int, array[int]] = OrderedDict()
        self._max_tables = max(
            1, min(MAX_CACHED_TABLES, limits.MAX_METADATA_CACHE_BYTES // layout.table_bytes)
        )

    # -- mapping ---------------------------------------------------------------------------

    def runs(self, start: int, end: int) -> Iterator[Run]:
        return coalesce(self._span_runs(start, end))

    def _span_runs(self, start: int, end: int) -> Iterator[Run]:
        span = self.layout.span
        pos = start
        while pos < end:
            gd_index = pos // span
            span_end = min(end, (gd_index + 1) * span)
            if gd_index >= len(self.directory.entries):
                raise CorruptImageError(
                    f"VMDK guest offset {pos} lies past the grain directory "
                    f"({len(self.directory.entries)} entries)"
                )
            sector = self.directory.entries[gd_index]
            if sector == 0:
                yield Run(pos, span_end - pos, RunKind.HOLE)
            else:
                yield from self._table_runs(self._table(sector), pos, span_end)
            pos = span_end

    def _table_runs(self, table: array[int], pos: int, end: int) -> Iterator[Run]:
        """Runs of one grain table's span; runs of empty grains and of host-contiguous plain
        grains are measured in C (see :func:`progression_length`)."""
        layout = self.layout
        grain = layout.grain_size
        while pos < end:
            index = pos // grain
            slot = index % layout.gtes_per_gt
            gte = table[slot]
            plain = not layout.compressed and not (gte == GTE_ZEROED and layout.zeroed_grains)
            if gte == 0 or plain:
                slots = min(layout.gtes_per_gt - slot, (end - index * grain + grain - 1) // grain)
                step = 0 if gte == 0 else grain // SECTOR
                n = progression_length(table, slot, slot + slots, step)
                kind = RunKind.HOLE if gte == 0 else RunKind.DATA
                run = Run(index * grain, n * grain, kind, gte * SECTOR if gte else 0)
            else:
                run = self._grain(table, index)
            yield clip_run(run, pos, end)
            pos = min(run.end, end)

    def _grain(self, table: array[int], index: int) -> Run:
        layout = self.layout
        start = index * layout.grain_size
        length = min(layout.grain_size, self.virtual_size - start)
        gte = table[index % layout.gtes_per_gt]
        if gte == 0:
            return Run(start, length, RunKind.HOLE)
        if gte == GTE_ZEROED and layout.zeroed_grains:
            return Run(start, length, RunKind.ZERO)
        host = gte * SECTOR
        if layout.compressed:
            return Run(start, length, RunKind.PACKED, host, start, length)
        return Run(start, length, RunKind.DATA, host)

    def _table(self, sector: int) -> array[int]:
        table = self._tables.get(sector)
        if table is not None:
            self._tables.move_to_end(sector)
            return table
        data = read_exact(
            self.source,
            sector * SECTOR,
            self.layout.table_bytes,
            f"VMDK grain table at sector {sector}",
        )
        table = _u32_array(data)
        self._tables[sector] = table
        if len(self._tables) > self._max_tables:
            self._tables.popitem(last=False)
        return table

    # -- compressed grains -----------------------------------------------------------------

    def packed_extent(self, run: Run) -> tuple[int, int, int]:
        grain = self.layout.grain_size
        if self.layout.markers:  # the marker's size is read only when decoding
            return run.host, GRAIN_MARKER_BYTES + 2 * grain, GRAIN_MARKER_BYTES + 1
        return run.host, grain, 1

    def unpack(self, run: Run) -> bytes:
        grain = self.layout.grain_size
        if self.layout.markers:
            marker = read_exact(self.source, run.host, GRAIN_MARKER_BYTES, "VMDK grain marker")
            size = int.from_bytes(marker[8:12], "little")
            if size == 0 or size > 2 * grain:
                raise CorruptImageError(
                    f"VMDK grain marker at offset {run.host} declares {size} compressed bytes "
                    f"(grain size {grain})"
                )
            data = read_exact(
                self.source, run.host + GRAIN_MARKER_BYTES, size, "VMDK compressed grain"
            )
        else:
            # Without markers qemu hands zlib one grain's worth of bytes from the grain offset.
            data = self.source.read_at(run.host, grain)
        plain = _inflate(data, grain, run.host)
        if len(plain) < run.unit_length:
            raise CorruptImageError(
                f"VMDK compressed grain at offset {run.host} holds {len(plain)} bytes, "
                f"expected {run.unit_length}"
            )
        return plain[: run.unit_length]


def _inflate(data: bytes, limit: int, host: int) -> bytes:
    """Decode one complete zlib stream of at most ``limit`` bytes."""
    inflater = zlib.decompressobj()
    try:
        plain = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise CorruptImageError(
            f"VMDK compressed grain at offset {host} is invalid: {exc}"
        ) from exc
    if not inflater.eof:
        if inflater.unconsumed_tail:
            raise CorruptImageError(
                f"VMDK compressed grain at offset {host} decodes to more than {limit} bytes"
            )
        raise CorruptImageError(f"VMDK compressed grain at offset {host} is cut short")
    return plain
