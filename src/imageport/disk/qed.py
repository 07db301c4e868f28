"""QEMU Enhanced Disk (QED): the header layout, the two-level tables, and the reader.

Layout learned from qemu's ``block/qed.h`` / ``block/qed.c`` and the QED specification on the
qemu wiki. All fields are little-endian. The header (64 bytes at offset 0):

======  ====  ==========================================================================
offset  size  field
======  ====  ==========================================================================
0       4     magic ``"QED\\0"``
4       4     cluster size (bytes; power of two, 4 KiB .. 64 MiB)
8       4     table size (clusters per L1/L2 table; power of two, 1 .. 16)
12      4     header size (clusters)
16      8     features: 0x01 backing file, 0x02 needs consistency check, 0x04 backing file
              is raw (no probing); any other bit is unknown to qemu and to us
24      8     compatible features
32      8     auto-clear features
40      8     L1 table offset (bytes)
48      8     image size (bytes; a multiple of 512)
56      4     backing file name offset (bytes from the start of the file)
60      4     backing file name size (bytes)
======  ====  ==========================================================================

Guest offset ``pos`` is found through ``L1[pos >> l1_shift]`` (an L2 table offset, 0 when
unallocated) and ``L2[(pos >> cluster_bits) & (entries - 1)]``: 0 is an unallocated cluster,
1 a zero cluster (``qed_offset_is_zero_cluster``), anything else the cluster-aligned file
offset of the data. Tables have ``table_size * cluster_size / 8`` u64 entries.
"""

from __future__ import annotations

import struct
import sys
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
from imageport.errors import CorruptImageError, LimitExceededError
from imageport.source import ByteSource, read_exact

MAGIC = b"QED\0"
HEADER_BYTES = 64

F_BACKING_FILE = 0x01
F_NEED_CHECK = 0x02
F_BACKING_FORMAT_NO_PROBE = 0x04
KNOWN_FEATURES = F_BACKING_FILE | F_NEED_CHECK | F_BACKING_FORMAT_NO_PROBE

MIN_CLUSTER_SIZE = 4 * limits.KiB
MAX_CLUSTER_SIZE = 64 * limits.MiB
MAX_TABLE_SIZE = 16

#: L2 entries with a meaning other than a file offset.
UNALLOCATED = 0
ZERO_CLUSTER = 1

_HEADER = struct.Struct("<4sIIIQQQQQII")


def _power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True, slots=True)
class QedHeader:
    """The QED header (see the module docstring for the layout)."""

    magic: bytes
    cluster_size: int
    table_size: int
    header_size: int
    features: int
    compat_features: int
    autoclear_features: int
    l1_table_offset: int
    image_size: int
    backing_filename_offset: int
    backing_filename_size: int

    @classmethod
    def from_bytes(cls, data: bytes) -> QedHeader:
        if len(data) < _HEADER.size:
            raise CorruptImageError(f"qed: header is {len(data)} bytes, need {_HEADER.size}")
        (magic, cluster, table, header, features, compat, autoclear, l1, size, bf_off, bf_size) = (
            _HEADER.unpack_from(data)
        )
        return cls(
            magic, cluster, table, header, features, compat, autoclear, l1, size, bf_off, bf_size
        )

    @property
    def table_bytes(self) -> int:
        return self.table_size * self.cluster_size

    @property
    def table_entries(self) -> int:
        return self.table_bytes // 8

    @property
    def l2_span(self) -> int:
        """Guest bytes covered by one L2 table."""
        return self.table_entries * self.cluster_size

    @property
    def l1_entries_used(self) -> int:
        """L1 entries that cover the image (the rest of the L1 table is never consulted)."""
        return max(1, -(-self.image_size // self.l2_span))

    @property
    def unknown_features(self) -> int:
        return self.features & ~KNOWN_FEATURES

    def validate(self, file_size: int) -> None:
        """Check the geometry before it sizes anything (qemu's ``bdrv_qed_do_open`` checks)."""
        if self.magic != MAGIC:
            raise CorruptImageError("qed: bad magic")
        cs = self.cluster_size
        if not _power_of_two(cs) or not MIN_CLUSTER_SIZE <= cs <= MAX_CLUSTER_SIZE:
            raise LimitExceededError(
                f"qed: cluster size {cs} is not a power of two "
                f"from {MIN_CLUSTER_SIZE} to {MAX_CLUSTER_SIZE}"
            )
        if not _power_of_two(self.table_size) or self.table_size > MAX_TABLE_SIZE:
            raise LimitExceededError(
                f"qed: table size {self.table_size} is not a power of "
                f"two from 1 to {MAX_TABLE_SIZE} clusters"
            )
        limits.cap(self.table_bytes, limits.MAX_TABLE_BYTES, "qed: table size in bytes")
        limits.cap(self.image_size, limits.MAX_VIRTUAL_SIZE, "qed: image size")
        if self.image_size % 512:
            raise CorruptImageError(f"qed: image size {self.image_size} is not whole sectors")
        if self.image_size > self.l2_span * self.table_entries:
            raise CorruptImageError(
                f"qed: image size {self.image_size} exceeds what the tables can map"
            )
        if self.header_size == 0:
            raise CorruptImageError("qed: header size is 0 clusters")
        limits.cap(self.header_size * cs, limits.MAX_TABLE_BYTES, "qed: header size in bytes")
        self.check_table_offset(self.l1_table_offset, file_size, "L1 table")
        if self.features & F_BACKING_FILE:
            end = self.backing_filename_offset + self.backing_filename_size
            if end > self.header_size * cs:
                raise CorruptImageError("qed: backing file name lies outside the header")
            limits.cap(
                self.backing_filename_size,
                limits.MAX_DESCRIPTOR_BYTES,
                "qed: backing file name size",
            )

    def check_table_offset(self, offset: int, file_size: int, what: str) -> None:
        """A table must be cluster-aligned, after the header and wholly inside the file."""
        if offset % self.cluster_size or offset < self.header_size * self.cluster_size:
            raise CorruptImageError(f"qed: {what} offset {offset:#x} is invalid")
        if offset + self.table_bytes > file_size:
            raise CorruptImageError(
                f"qed: {what} at {offset:#x} runs past the end of the file ({file_size} bytes)"
            )


def _u64_array(data: bytes) -> array[int]:
    table = array("Q")
    table.frombytes(data)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        table.byteswap()
    return table


def read_l1(source: ByteSource, header: QedHeader) -> array[int]:
    """The used part of the L1 table, every allocated entry checked to be a valid L2 offset."""
    count = header.l1_entries_used
    l1 = _u64_array(read_exact(source, header.l1_table_offset, count * 8, "qed L1 table"))
    for index, entry in enumerate(l1):
        if entry != UNALLOCATED:
            header.check_table_offset(entry, source.size, f"L2 table of L1 entry {index}")
    return l1


class QedDisk(VirtualDisk):
    """A QED image without a backing file, read through its L1/L2 tables."""

    format_name = "qed"

    def __init__(self, source: ByteSource, header: QedHeader, l1: array[int]) -> None:
        super().__init__(source, header.image_size)
        self._h = header
        self._l1 = l1
        self._l2_cache: OrderedDict[int, array[int]] = OrderedDict()
        self._l2_cache_max = max(1, limits.MAX_METADATA_CACHE_BYTES // header.table_bytes)

    @classmethod
    def open(cls, source: ByteSource, header: QedHeader) -> QedDisk:
        header.validate(source.size)
        return cls(source, header, read_l1(source, header))

    def _l2(self, offset: int) -> array[int]:
        table = self._l2_cache.get(offset)
        if table is None:
            table = _u64_array(read_exact(self.source, offset, self._h.table_bytes, "qed L2 table"))
            self._l2_cache[offset] = table
            if len(self._l2_cache) > self._l2_cache_max:
                self._l2_cache.popitem(last=False)
        else:
            self._l2_cache.move_to_end(offset)
        return table

    def _cluster_run(self, l2: array[int], index: int, guest: int) -> Run:
        cs = self._h.cluster_size
        entry = l2[index]
        if entry == UNALLOCATED:
            return Run(guest, cs, RunKind.HOLE)
        if entry == ZERO_CLUSTER:
            return Run(guest, cs, RunKind.ZERO)
        if entry % cs or entry < self._h.header_size * cs or entry + cs > self.source.size:
            raise CorruptImageError(
                f"qed: cluster at guest offset {guest} has invalid file offset {entry:#x} "
                f"(file is {self.source.size} bytes)"
            )
        return Run(guest, cs, RunKind.DATA, entry)

    def _raw_runs(self, start: int, end: int) -> Iterator[Run]:
        span = self._h.l2_span
        cs = self._h.cluster_size
        pos = start
        while pos < end:
            l1_index = pos // span
            l2_offset = self._l1[l1_index]
            base = l1_index * span
            if l2_offset == UNALLOCATED:
                yield clip_run(Run(base, span, RunKind.HOLE), pos, end)
                pos = base + span
                continue
            l2 = self._l2(l2_offset)
            stop = min(end, base + span)
            while pos < stop:
                index = (pos - base) // cs
                run = self._cluster_run(l2, index, base + index * cs)
                if run.kind in (RunKind.HOLE, RunKind.DATA):
                    # measure the whole stretch of empty or host-contiguous clusters in C
                    slots = (stop - run.start + cs - 1) // cs
                    n = progression_length(l2, index, index + slots, 0 if run.host == 0 else cs)
                    fits = run.kind is RunKind.HOLE or run.host + n * cs <= self.source.size
                    if n > 1 and fits:
                        run = Run(run.start, n * cs, run.kind, run.host)
                yield clip_run(run, pos, stop)
                pos = min(run.end, stop)

    def runs(self, start: int, end: int) -> Iterator[Run]:
        return coalesce(self._raw_runs(start, end))
