"""Checking a qcow2 image's refcounts against its active tables (IMG-SAFE).

qemu keeps, for every host cluster, the number of references the image holds to it: the
refcount table (``refcount_table_clusters`` clusters of big-endian u64 offsets) points at
refcount blocks of one cluster each, holding ``2 ** refcount_order``-bit entries (big-endian
for 8 bits and more; for 1, 2 and 4 bits packed from the least significant bit of each byte,
as qemu's ``get_refcount_ro0..2`` read them). A cluster with refcount 0 is free space that qemu
will hand out again; ``qemu-img check`` compares every refcount with the references it counts.
Tables crafted to point many guest clusters at one host cluster leave refcounts that disagree,
and so does any other hand-made sharing; this module refuses them, the way ``qemu-img check``
reports them, for the clusters the active image uses:

* every host cluster that holds an active L2 table, active guest data (a standard cluster, or
  any of its subclusters with extended L2 entries) or part of an active compressed cluster
  (every cluster its declared sectors touch) must have a refcount of at least 1;
* when the image has no internal snapshots, the refcount must equal the references counted:
  1 for an L2 table or a data cluster, and, for a cluster holding compressed data, the number
  of compressed clusters whose sectors touch it (qemu's ``qcow2_alloc_bytes`` adds one per
  compressed cluster); with snapshots, it must be at least that (snapshot tables may hold the
  rest);
* a cluster that is both an L2 table and data of the active image is shared data.

Not checked, because none of it lets a file stand for more data than it holds: leaked clusters
(a refcount above 0 that nothing references, which ``qemu-img check`` counts as leaks, not
errors), the clusters of metadata (header, L1 and refcount tables, refcount blocks, snapshot
table, bitmaps), the ``COPIED`` flags, and a cluster holding both data and compressed bytes
(that no byte is used twice is checked by :mod:`imageport.disk.audit`). An image whose dirty
bit is set is not checked at all: with lazy refcounts its refcounts are legitimately stale
until qemu repairs them on its next read-write open (the audit still refuses shared data).
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections import Counter
from collections.abc import Sequence

from imageport import limits
from imageport.disk.audit import REFCOUNT, SHARED, HostChunk
from imageport.errors import CorruptImageError, TruncatedImageError, UnsafeImageError
from imageport.source import ByteSource, read_exact

#: Bits 9-63 of a refcount table entry hold the refcount block's offset.
REFT_OFFSET_MASK = 0xFFFF_FFFF_FFFF_FE00
#: qemu refuses larger refcount tables (QCOW_MAX_REFTABLE_SIZE).
MAX_REFTABLE_BYTES = 8 * limits.MiB
#: Bytes of decoded refcount blocks kept (a walk in file order needs one at a time; a 2 MiB
#: block of 1-bit refcounts decodes to 16 MiB).
_CACHE_BYTES = 16 * limits.MiB
#: Refcounts compared with 1 in one slice comparison.
_SLICE = 1 << 16
_TYPECODES = {3: "B", 4: "H", 5: "I", 6: "Q"}


def _sub_byte_table(order: int) -> list[bytes]:
    """For 1, 2 and 4-bit refcounts: each byte value to its entries, one byte each."""
    bits = 1 << order
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    return [bytes((value >> (k * bits)) & mask for k in range(per_byte)) for value in range(256)]


class Refcounts:
    """The refcounts of a qcow2 image, read through its refcount table on demand."""

    def __init__(
        self,
        source: ByteSource,
        cluster_bits: int,
        order: int,
        table_offset: int,
        table_clusters: int,
    ) -> None:
        if not 0 <= order <= 6:
            raise CorruptImageError(f"qcow2: refcount_order {order} exceeds 6")
        cluster = 1 << cluster_bits
        if table_clusters == 0:
            raise CorruptImageError("qcow2: the image has no refcount table")
        size = limits.cap(table_clusters * cluster, MAX_REFTABLE_BYTES, "qcow2 refcount table size")
        if table_offset % cluster:
            raise CorruptImageError(
                f"qcow2: refcount table offset {table_offset:#x} is not cluster-aligned"
            )
        raw = read_exact(source, table_offset, size, "qcow2 refcount table")
        self._table = array("Q")
        self._table.frombytes(raw)
        if sys.byteorder == "little":
            self._table.byteswap()
        self._source = source
        self._cluster = cluster
        self._order = order
        self._per_block = 1 << (cluster_bits + 3 - order)
        self._typecode = _TYPECODES.get(order, "B")
        self._expand = _sub_byte_table(order) if order < 3 else None
        self._blocks: dict[int, array[int] | None] = {}
        self._block_bytes = self._per_block * array(self._typecode).itemsize
        self._ones = array(self._typecode, [1]) * min(_SLICE, self._per_block)

    def _block(self, index: int) -> array[int] | None:
        """The decoded refcount block ``index`` (None: not allocated, all refcounts 0)."""
        if index in self._blocks:
            return self._blocks[index]
        block: array[int] | None = None
        offset = self._table[index] & REFT_OFFSET_MASK if index < len(self._table) else 0
        if offset:
            if offset % self._cluster:
                raise CorruptImageError(
                    f"qcow2: refcount block {index} at {offset:#x} is not cluster-aligned"
                )
            if offset + self._cluster > self._source.size:
                raise TruncatedImageError(
                    f"qcow2: refcount block {index} at {offset:#x} lies beyond the end of the "
                    f"file ({self._source.size} bytes)"
                )
            raw = read_exact(self._source, offset, self._cluster, "qcow2 refcount block")
            if self._expand is not None:
                raw = b"".join(map(self._expand.__getitem__, raw))
            block = array(self._typecode)
            block.frombytes(raw)
            if block.itemsize > 1 and sys.byteorder == "little":
                block.byteswap()
        if (len(self._blocks) + 1) * self._block_bytes > _CACHE_BYTES:
            self._blocks.clear()
        self._blocks[index] = block
        return block

    def get(self, cluster: int) -> int:
        """The refcount of host cluster ``cluster`` (its index, offset / cluster size)."""
        block = self._block(cluster // self._per_block)
        return 0 if block is None else block[cluster % self._per_block]

    def first_not_one(self, first: int, count: int, exact: bool) -> int | None:
        """The first cluster of ``[first, first + count)`` whose refcount is not 1 (``exact``)
        or is 0 (otherwise), or None; compared block slice by block slice in C."""
        pos, end = first, first + count
        while pos < end:
            index, skip = divmod(pos, self._per_block)
            n = min(end - pos, self._per_block - skip, _SLICE)
            block = self._block(index)
            if block is None:
                return pos
            part = block[skip : skip + n]
            if exact and part != self._ones[:n]:
                return pos + next(i for i, v in enumerate(part) if v != 1)
            if not exact and 0 in part:
                return pos + part.index(0)
            pos += n
        return None


class RefcountCheck:
    """The audit's :class:`~imageport.disk.audit.HostChecker` for qcow2 (see the module
    docstring for what it checks)."""

    def __init__(
        self, refcounts: Refcounts, cluster_bits: int, l1: Sequence[int], l2_span: int, exact: bool
    ) -> None:
        self._rc = refcounts
        self._bits = cluster_bits
        self._exact = exact
        self._l2 = Counter(entry >> cluster_bits for entry in l1 if entry)
        self._l2_guest: dict[int, int] = {}  # cluster -> first guest offset it maps
        for index, entry in enumerate(l1):
            if entry:
                self._l2_guest.setdefault(entry >> cluster_bits, index * l2_span)
        self._l2_sorted = sorted(self._l2)
        self._packed = (-1, 0, 0)  # compressed cluster being counted, its count, a guest offset

    def _offset(self, cluster: int) -> str:
        return f"{cluster << self._bits:#x}"

    def _refuse(self, cluster: int, what: str, references: int) -> UnsafeImageError:
        count = self._rc.get(cluster)
        where = f"qcow2 host cluster at offset {self._offset(cluster)} ({what})"
        if count == 0:
            why = (
                "has refcount 0: the active tables use it, but qemu counts it as free space "
                "and would hand it out again"
            )
        elif self._exact:
            why = (
                f"has refcount {count}, but the image has no internal snapshots and its "
                f"active tables reference it {references} time(s)"
            )
        else:
            why = f"has refcount {count}, fewer than the {references} references of its tables"
        return UnsafeImageError(
            REFCOUNT,
            f"{where} {why}; the refcounts disagree with the tables "
            "(`qemu-img check` reports it as an error)",
        )

    def _not_l2(self, first: int, end: int, what: str) -> None:
        i = bisect.bisect_left(self._l2_sorted, first)
        if i < len(self._l2_sorted) and self._l2_sorted[i] < end:
            cluster = self._l2_sorted[i]
            raise UnsafeImageError(
                SHARED,
                f"qcow2 host cluster at offset {self._offset(cluster)} is both the L2 "
                f"table for guest offset {self._l2_guest[cluster]:#x} and {what}",
            )

    def _check(self, cluster: int, references: int, what: str) -> None:
        count = self._rc.get(cluster)
        if count == 0 or (count != references if self._exact else count < references):
            raise self._refuse(cluster, what, references)

    def _flush_packed(self) -> None:
        cluster, count, guest = self._packed
        if cluster >= 0:
            what = f"compressed data of guest offset {guest:#x}"
            self._not_l2(cluster, cluster + 1, what)
            self._check(cluster, count, what)

    def add(self, chunk: HostChunk) -> None:
        bits = self._bits
        for start, end, guest in zip(
            chunk.data_starts, chunk.data_ends, chunk.data_guest, strict=True
        ):
            first, stop = start >> bits, ((end - 1) >> bits) + 1
            what = f"data of guest offset {guest:#x}"
            self._not_l2(first, stop, what)
            bad = self._rc.first_not_one(first, stop - first, self._exact)
            if bad is not None:
                offset = guest + max(0, (bad << bits) - start)
                raise self._refuse(bad, f"data of guest offset {offset:#x}", 1)
        current, count, first_guest = self._packed
        for start, end, guest in zip(
            chunk.packed_starts, chunk.packed_ends, chunk.packed_guest, strict=True
        ):
            first, last = start >> bits, (max(end, start + 1) - 1) >> bits
            if first == current:
                count += 1
                first += 1
            for cluster in range(first, max(first, last + 1)):
                self._packed = (current, count, first_guest)
                self._flush_packed()
                current, count, first_guest = cluster, 1, guest
        self._packed = (current, count, first_guest)

    def finish(self) -> None:
        self._flush_packed()
        for cluster, references in self._l2.items():
            what = f"the L2 table for guest offset {self._l2_guest[cluster]:#x}"
            self._check(cluster, references, what)
