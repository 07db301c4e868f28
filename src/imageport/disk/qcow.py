"""Reading the virtual disk of a QCOW (version 1) image through its L1/L2 tables.

Learned from qemu's ``block/qcow.c`` (there is no separate spec). The guest disk is cut into
clusters of ``1 << cluster_bits`` bytes; the L1 table holds plain 64-bit file offsets of L2
tables of ``1 << l2_bits`` entries each. An L2 entry is 0 (unallocated: zeros, as there is no
backing file), a file offset of the cluster (which qemu requires to be 512-aligned), or, with
bit 63 set, a compressed cluster: its low ``63 - cluster_bits`` bits are the host offset and
the bits above (up to bit 62) the exact compressed size. Compressed clusters are raw deflate
streams with a 4 KiB window that must decode to exactly one cluster.

L1/L2 offsets are not masked or aligned by qemu; a table that starts beyond the end of the
file is reported as truncation (qemu would read zeros there).
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from imageport import limits
from imageport.disk.base import Run, RunKind, VirtualDisk, clip_run, coalesce, data_runs_in_file
from imageport.disk.qcow2 import SECTOR, be64_array, inflate_cluster, read_padded
from imageport.errors import CorruptImageError
from imageport.source import ByteSource, read_exact

FLAG_COMPRESSED = 1 << 63


@dataclass(frozen=True, slots=True)
class QcowMapping:
    """What the reader needs from a validated qcow header."""

    cluster_bits: int
    l2_bits: int
    virtual_size: int
    #: The big-endian L1 entries covering the virtual disk.
    l1: bytes = field(repr=False)


class QcowDisk(VirtualDisk):
    """The guest view of a qcow (v1) image without backing file or encryption."""

    format_name = "qcow"

    def __init__(self, source: ByteSource, mapping: QcowMapping) -> None:
        super().__init__(source, mapping.virtual_size)
        self._cluster = 1 << mapping.cluster_bits
        self._l2_entries = 1 << mapping.l2_bits
        self._offset_bits = 63 - mapping.cluster_bits
        self._l1 = be64_array(mapping.l1)
        self._cache: OrderedDict[int, array[int]] = OrderedDict()
        self._cache_max = max(1, limits.MAX_METADATA_CACHE_BYTES // (self._l2_entries * 8))

    def runs(self, start: int, end: int) -> Iterator[Run]:
        return coalesce(self._raw_runs(start, end))

    def _raw_runs(self, start: int, end: int) -> Iterator[Run]:
        span = self._cluster * self._l2_entries
        pos = start
        while pos < end:
            l1_index = pos // span
            table_end = min((l1_index + 1) * span, end)
            l2_offset = self._l1[l1_index]
            if l2_offset == 0:
                yield Run(pos, table_end - pos, RunKind.HOLE)
                pos = table_end
                continue
            table = self._l2_table(l2_offset)
            while pos < table_end:
                index = pos // self._cluster
                cluster_start = index * self._cluster
                for run in self._cluster_runs(table[index % self._l2_entries], cluster_start):
                    if run.end > pos and run.start < table_end:
                        yield clip_run(run, pos, table_end)
                pos = min(cluster_start + self._cluster, table_end)

    def _cluster_runs(self, entry: int, start: int) -> list[Run]:
        """The runs of the whole guest cluster at ``start``; a data tail past EOF is zeros."""
        cluster = self._cluster
        if entry == 0:
            return [Run(start, cluster, RunKind.HOLE)]
        if entry & FLAG_COMPRESSED:
            return [Run(start, cluster, RunKind.PACKED, entry, start, cluster)]
        if entry % SECTOR:
            raise CorruptImageError(
                f"qcow: cluster offset {entry:#x} for guest offset {start} is not sector-aligned"
            )
        return data_runs_in_file(self.source.size, start, cluster, entry, "qcow")

    def _l2_table(self, offset: int) -> array[int]:
        table = self._cache.get(offset)
        if table is not None:
            self._cache.move_to_end(offset)
            return table
        table = be64_array(read_exact(self.source, offset, self._l2_entries * 8, "qcow L2 table"))
        self._cache[offset] = table
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return table

    def _compressed_extent(self, entry: int) -> tuple[int, int]:
        """File offset and exact size of the compressed cluster of L2 ``entry``."""
        offset = entry & ((1 << self._offset_bits) - 1)
        return offset, (entry >> self._offset_bits) & (self._cluster - 1)

    def packed_extent(self, run: Run) -> tuple[int, int, int]:
        offset, size = self._compressed_extent(run.host)
        return offset, size, size

    def unpack(self, run: Run) -> bytes:
        offset, size = self._compressed_extent(run.host)
        what = f"qcow compressed cluster at guest offset {run.unit_start}"
        data = read_padded(self.source, offset, size, what)
        return inflate_cluster(data, self._cluster, what)
