"""Reading the virtual disk of a QCOW2 image (versions 2 and 3) through its L1/L2 tables.

The layout was learned from qemu's ``docs/interop/qcow2.txt`` and the behaviour to match from
qemu's ``block/qcow2-cluster.c``, ``block/qcow2.h`` and ``block/qcow2-threads.c``:

* the guest disk is cut into clusters (``1 << cluster_bits`` bytes); the L1 table (read whole,
  its size capped) points at L2 tables of one cluster each, which hold one 64-bit entry per
  guest cluster, or a 128-bit entry (descriptor + subcluster bitmap) with *extended L2 entries*;
* an L2 entry is a compressed-cluster descriptor (bit 62), or a standard descriptor whose bits
  9-55 give a cluster-aligned host offset (0: unallocated) and whose bit 0 (version 3 without
  extended L2 only) says "reads as zeros", with or without a preallocated host cluster;
* with extended L2 entries a standard cluster is 32 subclusters; bits 0-31 of the bitmap say
  "allocated", bits 32-63 "reads as zeros" (both set is invalid);
* a compressed descriptor holds the host byte offset in its low ``x = 62 - (cluster_bits - 8)``
  bits and, above, the number of *additional* 512-byte sectors; the compressed bytes run from
  the offset to the end of the last of those sectors, so they may carry the start of the next
  compressed cluster, and decoding stops once a whole cluster has been produced (zlib: a raw
  deflate stream with a 4 KiB window; zstd: one or more frames, stopping at the frame that
  completes the cluster, which must not decode further).

Where qemu reads beyond the end of the file it sees zeros; we do the same for the tail of a
compressed run or of the last data cluster that starts inside the file, but a table or a data
cluster that starts beyond the end of the file is reported as truncation instead of read as
zeros. L2 tables are read lazily and kept in a bounded LRU cache.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import zstandard

from imageport import limits
from imageport.disk.base import (
    Run,
    RunKind,
    VirtualDisk,
    clip_run,
    coalesce,
    data_runs_in_file,
    progression_length,
)
from imageport.disk.qcow2_refcounts import RefcountCheck, Refcounts
from imageport.errors import CorruptImageError, TruncatedImageError
from imageport.source import ByteSource, read_exact

SECTOR = 512
L1_OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00
L2_OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00
FLAG_COMPRESSED = 1 << 62
FLAG_ZERO = 1
SUBCLUSTERS = 32
_ALL_ALLOC = 0xFFFF_FFFF
#: Largest zstd window accepted; qemu's writer never needs more than the 2 MiB cluster.
ZSTD_MAX_WINDOW = 8 * limits.MiB
_ZSTD_MAGIC = 0xFD2FB528


@dataclass(frozen=True, slots=True)
class Qcow2Mapping:
    """What the reader needs from a validated header: geometry, L1 table, compression."""

    version: int
    cluster_bits: int
    virtual_size: int
    extended_l2: bool
    compression: str  # "zlib" or "zstd"
    #: The big-endian L1 entries that cover the virtual disk (already bounds-checked).
    l1: bytes = field(repr=False)
    #: Where the refcounts are, for the audit's refcount check (:mod:`.qcow2_refcounts`).
    refcount_table_offset: int = 0
    refcount_table_clusters: int = 0
    refcount_order: int = 4
    #: Internal snapshots may hold further references to the active image's clusters.
    snapshots: int = 0
    #: The dirty bit: refcounts may be stale (lazy refcounts), so they are not checked.
    dirty: bool = False

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @property
    def l2_entries(self) -> int:
        """Number of guest clusters one L2 table maps."""
        return self.cluster_size // (16 if self.extended_l2 else 8)


def be64_array(data: bytes) -> array[int]:
    """Big-endian 64-bit words as a compact array of ints."""
    words = array("Q")
    words.frombytes(data)
    if sys.byteorder == "little":
        words.byteswap()
    return words


def read_padded(source: ByteSource, offset: int, length: int, what: str) -> bytes:
    """``length`` bytes at ``offset``, zero-filled past the end of the file as qemu reads them.

    The start must lie inside the file: a unit that starts beyond it is truncation.
    """
    if offset >= source.size:
        raise TruncatedImageError(
            f"{what} at offset {offset} starts beyond the end of the file ({source.size} bytes)"
        )
    data = source.read_at(offset, length)
    return data + bytes(length - len(data))


def inflate_cluster(data: bytes, cluster_size: int, what: str) -> bytes:
    """Decode a raw deflate stream (4 KiB window, as qemu writes) into exactly one cluster.

    Like qemu, trailing input after the cluster is complete is ignored, and a stream that
    ends before the cluster is full is an error.
    """
    try:
        out = zlib.decompressobj(wbits=-12).decompress(data, cluster_size)
    except zlib.error as exc:
        raise CorruptImageError(f"{what}: invalid deflate data ({exc})") from exc
    if len(out) != cluster_size:
        raise CorruptImageError(f"{what}: decodes to {len(out)} bytes, not a full cluster")
    return out


def _zstd_frame_end(data: bytes, pos: int, what: str) -> tuple[int, bool]:
    """End offset of the zstd frame at ``pos`` and whether it is a skippable frame."""
    if pos + 8 > len(data):
        raise CorruptImageError(f"{what}: zstd data ends inside a frame header")
    magic = int.from_bytes(data[pos : pos + 4], "little")
    if magic & 0xFFFF_FFF0 == 0x184D2A50:
        return pos + 8 + int.from_bytes(data[pos + 4 : pos + 8], "little"), True
    if magic != _ZSTD_MAGIC:
        raise CorruptImageError(f"{what}: no zstd frame at byte {pos} of the compressed data")
    try:
        p = pos + zstandard.frame_header_size(data[pos:])
        has_checksum = zstandard.get_frame_parameters(data[pos:]).has_checksum
    except zstandard.ZstdError as exc:
        raise CorruptImageError(f"{what}: bad zstd frame header ({exc})") from exc
    while True:  # each block moves p forward by at least 3 bytes, and p is bounded below
        if p + 3 > len(data):
            raise CorruptImageError(f"{what}: zstd frame runs past the compressed data")
        block = int.from_bytes(data[p : p + 3], "little")
        block_type, block_size = (block >> 1) & 3, block >> 3
        if block_type == 3:
            raise CorruptImageError(f"{what}: reserved zstd block type")
        p += 3 + (1 if block_type == 1 else block_size)
        if block & 1:
            break
    return p + (4 if has_checksum else 0), False


def zstd_cluster(data: bytes, cluster_size: int, what: str) -> bytes:
    """Decode zstd frames into exactly one cluster, as qemu's ``qcow2_zstd_decompress`` does.

    Frames are decoded in order until the cluster is full; the frame that fills it must end
    there (decoding past the cluster is an error), and bytes after it are ignored. Each
    frame's output is bounded by the room left in the cluster, so a hostile frame cannot
    make us allocate more than a cluster.
    """
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    out = bytearray()
    pos = 0
    while len(out) < cluster_size:
        end, skippable = _zstd_frame_end(data, pos, what)
        if end > len(data):
            raise CorruptImageError(f"{what}: zstd frame runs past the compressed data")
        room = cluster_size - len(out)
        frame = data[pos:end]
        pos = end
        if skippable:
            continue
        declared = zstandard.get_frame_parameters(frame).content_size
        if declared != zstandard.CONTENTSIZE_UNKNOWN and declared > room:
            raise CorruptImageError(f"{what}: zstd frame decodes past the end of the cluster")
        try:
            out += dctx.decompress(frame, max_output_size=room)
        except zstandard.ZstdError as exc:
            raise CorruptImageError(f"{what}: invalid zstd data ({exc})") from exc
    return bytes(out)


class Qcow2Disk(VirtualDisk):
    """The guest view of a qcow2 image without backing file, data file or encryption."""

    format_name = "qcow2"

    def __init__(self, source: ByteSource, mapping: Qcow2Mapping) -> None:
        super().__init__(source, mapping.virtual_size)
        self._m = mapping
        self._cluster = mapping.cluster_size
        self._l1 = be64_array(mapping.l1)
        self._l2_cache: OrderedDict[int, array[int]] = OrderedDict()
        self._l2_cache_max = max(1, limits.MAX_METADATA_CACHE_BYTES // self._cluster)
        self._csize_shift = 62 - (mapping.cluster_bits - 8)
        self._csize_mask = (1 << (mapping.cluster_bits - 8)) - 1

    # -- mapping -------------------------------------------------------------------------

    def runs(self, start: int, end: int) -> Iterator[Run]:
        return coalesce(self._raw_runs(start, end))

    def _raw_runs(self, start: int, end: int) -> Iterator[Run]:
        span = self._cluster * self._m.l2_entries
        pos = start
        while pos < end:
            l1_index = pos // span
            table_end = min((l1_index + 1) * span, end)
            l2_offset = self._l1[l1_index] & L1_OFFSET_MASK
            if l2_offset == 0:
                yield Run(pos, table_end - pos, RunKind.HOLE)
                pos = table_end
                continue
            table = self._l2_table(l2_offset, l1_index)
            while pos < table_end:
                index = pos // self._cluster
                cluster_start = index * self._cluster
                slot = index % self._m.l2_entries
                stretch = self._stretch(table, slot, table_end, cluster_start)
                if stretch is not None:
                    yield clip_run(stretch, pos, table_end)
                    pos = min(stretch.end, table_end)
                    continue
                for run in self._cluster_runs(table, slot, cluster_start):
                    if run.end > pos and run.start < table_end:
                        yield clip_run(run, pos, table_end)
                pos = min(cluster_start + self._cluster, table_end)

    def _stretch(self, table: array[int], slot: int, table_end: int, start: int) -> Run | None:
        """A run of several clusters from ``slot`` that are all unallocated, or all plain data
        contiguous in the file, measured in C (see :func:`progression_length`); None when the
        cluster at ``slot`` needs a closer look (compressed, zero flag, subclusters, the end
        of the file)."""
        if self._m.extended_l2:
            return None
        entry = table[slot]
        cluster = self._cluster
        slots_left = (table_end - start + cluster - 1) // cluster
        if entry == 0:
            n = progression_length(table, slot, slot + slots_left, 0)
            return Run(start, n * cluster, RunKind.HOLE)
        host = entry & L2_OFFSET_MASK
        if entry & (FLAG_COMPRESSED | FLAG_ZERO) or host == 0 or host % cluster:
            return None
        n = progression_length(table, slot, slot + slots_left, cluster)
        if host + n * cluster > self.source.size:
            return None
        return Run(start, n * cluster, RunKind.DATA, host)

    def _cluster_runs(self, table: array[int], i: int, start: int) -> list[Run]:
        """The runs of the whole guest cluster at ``start`` whose L2 slot is ``i``."""
        cluster = self._cluster
        if not self._m.extended_l2:
            entry = table[i]
            if entry & FLAG_COMPRESSED:
                return [Run(start, cluster, RunKind.PACKED, entry, start, cluster)]
            host = entry & L2_OFFSET_MASK
            if entry & FLAG_ZERO:
                if self._m.version < 3:
                    raise CorruptImageError(
                        f"qcow2: zero cluster at guest offset {start} in a version 2 image"
                    )
                return [Run(start, cluster, RunKind.ZERO)]
            if host == 0:
                return [Run(start, cluster, RunKind.HOLE)]
            self._check_aligned(host, start)
            return self._data_runs(start, cluster, host)
        entry, bitmap = table[2 * i], table[2 * i + 1]
        if entry & FLAG_COMPRESSED:
            return [Run(start, cluster, RunKind.PACKED, entry, start, cluster)]
        host = entry & L2_OFFSET_MASK
        alloc, zero = bitmap & _ALL_ALLOC, bitmap >> 32
        if alloc & zero or (host == 0 and alloc):
            raise CorruptImageError(
                f"qcow2: invalid subcluster bitmap {bitmap:#018x} at guest offset {start}"
            )
        if host:
            self._check_aligned(host, start)
        sub = cluster // SUBCLUSTERS
        runs: list[Run] = []
        for k in range(SUBCLUSTERS):
            sub_start = start + k * sub
            if zero >> k & 1:
                runs.append(Run(sub_start, sub, RunKind.ZERO))
            elif alloc >> k & 1:
                runs.extend(self._data_runs(sub_start, sub, host + k * sub))
            else:
                runs.append(Run(sub_start, sub, RunKind.HOLE))
        return runs

    def _check_aligned(self, host: int, guest: int) -> None:
        if host % self._cluster:
            raise CorruptImageError(
                f"qcow2: data cluster offset {host:#x} for guest offset {guest} is not "
                "cluster-aligned"
            )

    def _data_runs(self, start: int, length: int, host: int) -> list[Run]:
        return data_runs_in_file(self.source.size, start, length, host, "qcow2")

    def _l2_table(self, offset: int, l1_index: int) -> array[int]:
        table = self._l2_cache.get(offset)
        if table is not None:
            self._l2_cache.move_to_end(offset)
            return table
        if offset % self._cluster:
            raise CorruptImageError(
                f"qcow2: L2 table offset {offset:#x} (L1 entry {l1_index}) is not cluster-aligned"
            )
        table = be64_array(read_exact(self.source, offset, self._cluster, "qcow2 L2 table"))
        self._l2_cache[offset] = table
        if len(self._l2_cache) > self._l2_cache_max:
            self._l2_cache.popitem(last=False)
        return table

    def host_checker(self) -> RefcountCheck | None:
        """The refcount check (none for a dirty image, whose refcounts may be stale)."""
        m = self._m
        if m.dirty:
            return None
        refcounts = Refcounts(
            self.source,
            m.cluster_bits,
            m.refcount_order,
            m.refcount_table_offset,
            m.refcount_table_clusters,
        )
        l2_offsets = [entry & L1_OFFSET_MASK for entry in self._l1]
        span = self._cluster * m.l2_entries
        return RefcountCheck(refcounts, m.cluster_bits, l2_offsets, span, exact=m.snapshots == 0)

    # -- compressed clusters --------------------------------------------------------------

    def compressed_extent(self, entry: int) -> tuple[int, int]:
        """File offset and declared size of the compressed cluster of L2 ``entry``: up to the
        end of its last 512-byte sector, which may hold the start of the next one."""
        offset = entry & ((1 << self._csize_shift) - 1)
        sectors = ((entry >> self._csize_shift) & self._csize_mask) + 1
        return offset, sectors * SECTOR - offset % SECTOR

    def packed_extent(self, run: Run) -> tuple[int, int, int]:
        offset, size = self.compressed_extent(run.host)
        return offset, size, size - (SECTOR - 1)  # the last sector may be almost all padding

    def unpack(self, run: Run) -> bytes:
        offset, size = self.compressed_extent(run.host)
        what = f"qcow2 compressed cluster at guest offset {run.unit_start}"
        limits.cap(size, limits.MAX_COMPRESSED_BYTES, f"{what}: compressed size")
        data = read_padded(self.source, offset, size, what)
        if self._m.compression == "zstd":
            return zstd_cluster(data, self._cluster, what)
        return inflate_cluster(data, self._cluster, what)
