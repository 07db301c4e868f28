"""The storage audit: one walk over a disk's runs that measures its allocation exactly and
refuses tables that would let a small file stand for a much larger disk (IMG-SAFE).

Why: the tables of a sparse format map guest ranges to file offsets, and nothing in a table
stops many guest ranges from naming the same file bytes (a qcow2 whose L2 entries all point
at one cluster: a 3 MiB file holding a 1 TiB disk of data), nor a packed unit (compressed
cluster, grain or block) from decoding to far more than it occupies. Walking such tables
costs a reader nothing; converting them writes every byte. So the walk that measures the
allocation also refuses, with :class:`~imageport.errors.UnsafeImageError` and the evidence:

* ``shared-data``: a file byte that two ranges use: two data ranges, two packed units (same
  start, or one starting among the bytes that are surely the other's), or a data range and a
  packed unit. No accepted format allows it in its active image: qcow2 shares clusters only
  with internal snapshots, never between two guest offsets of the active tables; QCOW, QED,
  VMDK, VHD, VHDX, VDI and ZVHD have no sharing at all.
* ``expansion``: packed units whose guest bytes exceed :data:`~imageport.limits.MAX_PACKED_RATIO`
  times the file bytes they occupy, counted over the whole image, once those guest bytes exceed
  :data:`~imageport.limits.PACKED_RATIO_FLOOR` (a small image with a few constant clusters
  passes).
* ``fragmented``: more than :data:`~imageport.limits.MAX_AUDIT_INTERVALS` ranges when they are
  not all in file order, too many to compare.

A reader says, per packed unit, where it starts, how many bytes decoding may read (declared)
and how many of those are surely its own (:meth:`~imageport.disk.base.VirtualDisk.packed_extent`):
qcow2 declares whole 512-byte sectors, so a unit legitimately runs up to 511 bytes into the
next one; a VMDK grain marker's size is not read here, so only its 12 bytes and one byte of
data are sure. The file bytes a unit *occupies* are measured: from its start to its declared
end, the start of the next packed unit in file order or the end of the file, whichever comes
first; these spans never overlap, so they add up to at most the file size.

What passing guarantees (:class:`StorageAudit`): ``data_bytes <= file_size`` (data ranges are
disjoint and inside the file) and ``packed_bytes <= max(PACKED_RATIO_FLOOR, MAX_PACKED_RATIO
* packed_file_bytes)`` with ``packed_file_bytes <= file_size``; so ``allocated_bytes <=
file_size + max(PACKED_RATIO_FLOOR, MAX_PACKED_RATIO * file_size)``.

Cost: the walk is the one the allocation map needs anyway, plus a few appends per range.
The ranges are kept in compact arrays. Ranges in file order (what ``qemu-img convert`` writes
without ``-c``) are checked as they come and need no sorting, however many: past the cap they
are handed on and forgotten. Otherwise (``-c`` interleaves compressed bytes with data
clusters; a VM's writes land in the order it made them) they are sorted once at the end (C
speed). Hostile tables stop the walk early: at the first range that repeats the one before,
as soon as the data ranges add up to more than the file (sharing is then certain), or the
packed units to more than the ratio allows of the whole file; the walk then goes on for at
most ``_EVIDENCE_RUNS`` runs to count the guest ranges that share the byte found.

A format check that needs the host ranges (qcow2 refcounts) gets them through
:class:`HostChecker`.
"""

from __future__ import annotations

import dataclasses
import operator
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from imageport import limits
from imageport.disk.base import Run, RunKind
from imageport.errors import ImageportError, TruncatedImageError, UnsafeImageError

if TYPE_CHECKING:
    from imageport.disk.base import VirtualDisk

#: Runs walked past the first shared byte found, to count who else shares it.
_EVIDENCE_RUNS = 1 << 14

#: Hazard kinds (:class:`~imageport.formats.base.Hazard`) of the storage checks.
SHARED = "shared-data"
EXPANSION = "expansion"
FRAGMENTED = "fragmented"
REFCOUNT = "refcount"  #: raised by :mod:`imageport.disk.qcow2_refcounts`
STORAGE_HAZARDS = frozenset({SHARED, EXPANSION, FRAGMENTED, REFCOUNT})


@dataclass(frozen=True, slots=True)
class StorageAudit:
    """Where a disk's guest data lives in its file, measured by the audit walk."""

    file_size: int
    #: Guest bytes stored as-is; each file byte serves at most one guest byte.
    data_bytes: int
    #: Guest bytes decoded from packed units (compressed clusters, grains, blocks).
    packed_bytes: int
    packed_units: int
    #: File bytes the packed units occupy, measured (see the module docstring).
    packed_file_bytes: int
    #: True when every range started at or after the end of all ranges before it.
    in_file_order: bool
    #: Maximal guest extents that hold data (as :meth:`~imageport.disk.base.VirtualDisk.allocation`
    #: yields them): with ``allocated_bytes``, what bounds a conversion's output.
    data_extents: int = 0

    @property
    def allocated_bytes(self) -> int:
        """Guest bytes that hold data (not holes, not zero clusters)."""
        return self.data_bytes + self.packed_bytes


@dataclass(frozen=True, slots=True, eq=False)
class HostChunk:
    """Host ranges, no file byte used twice: data ``[data_starts[i], data_ends[i])`` read from
    guest offset ``data_guest[i]`` (in walk order), and packed units in file order, starting
    at ``packed_starts[i]``, whose decoding may read up to ``packed_ends[i]``, for the guest
    unit at ``packed_guest[i]``."""

    data_starts: array[int]
    data_ends: array[int]
    data_guest: array[int]
    packed_starts: array[int]
    packed_ends: array[int]
    packed_guest: array[int]


class HostChecker(Protocol):
    """A format's own check of the host ranges the audit found (qcow2: refcounts).

    ``add`` is called with chunks (packed units after those of the previous chunk), then
    ``finish`` once; both may raise :class:`~imageport.errors.UnsafeImageError` or
    :class:`~imageport.errors.CorruptImageError`.
    """

    def add(self, chunk: HostChunk) -> None: ...

    def finish(self) -> None: ...


class _Kept:
    """The ranges kept so far, in walk order, as compact arrays.

    Packed units keep their certain end (``pc``, for overlaps) and declared end (``pe``).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.ds, self.de, self.dg = array("Q"), array("Q"), array("Q")
        self.ps, self.pc, self.pe, self.pg = array("Q"), array("Q"), array("Q"), array("Q")

    def covering(self, point: int) -> list[int]:
        """Guest offsets whose data uses file byte ``point``, in guest order."""
        hits = [
            g + point - s
            for s, e, g in zip(self.ds, self.de, self.dg, strict=True)
            if s <= point < e
        ]
        hits += [g for s, c, g in zip(self.ps, self.pc, self.pg, strict=True) if s <= point < c]
        return sorted(hits)

    def first_overlap(self) -> int | None:
        """A file byte two kept ranges use, or None when they are disjoint.

        For non-empty ranges, no byte is used twice exactly when ``ends[i] <= starts[i + 1]``
        for every ``i``, the starts and the ends each sorted on their own: at any point with
        ``m`` starts at or before it, at least ``m - 1`` ranges have ended. Sorted and compared
        in C (timsort merges the ascending runs that tables mostly hold).
        """
        starts = sorted([*self.ds, *self.ps])
        ends = sorted([*self.de, *self.pc])
        if not any(map(operator.gt, ends, starts[1:])):
            return None
        i = next(i for i, (e, s) in enumerate(zip(ends, starts[1:], strict=False)) if e > s)
        return starts[i + 1]

    def chunk(self, packed_in_order: bool) -> HostChunk:
        """The kept ranges, packed units sorted by file offset (ranges known disjoint)."""
        ps, pe, pg = self.ps, self.pe, self.pg
        if not packed_in_order:
            ps, pe, pg = _sorted_by(ps, pe, pg)
        return HostChunk(self.ds, self.de, self.dg, ps, pe, pg)


def _sorted_by(keys: array[int], *others: array[int]) -> tuple[array[int], ...]:
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return tuple(array("Q", [column[i] for i in order]) for column in (keys, *others))


def _packed_span_total(starts: array[int], ends: array[int], file_size: int) -> int:
    """File bytes packed units occupy: each from its start to its declared end, the next
    unit's start or the end of the file (starts ascending and distinct)."""
    nexts = [*starts[1:], file_size]
    return sum(map(min, ends, nexts, [file_size] * len(starts))) - sum(starts)


# Not an ImageportError on purpose: it is control flow that leaves the walk the moment a byte
# is found shared, caught in this module (and turned into an UnsafeImageError); being outside
# the tree keeps the walk's own ``except ImageportError`` from swallowing it.
class _SharedByte(Exception):
    """Raised inside the walk when a file byte is found used twice."""

    def __init__(self, point: int) -> None:
        super().__init__(point)
        self.point = point


class _Walk:
    """The state of one audit walk (see :func:`audit`)."""

    def __init__(self, disk: VirtualDisk) -> None:
        self.name = disk.format_name
        self.file_size = disk.source.size
        self.virtual_size = disk.virtual_size
        self.walked = 0  # guest bytes walked
        self.checker = disk.host_checker()
        self.kept = _Kept()
        self.in_order = True  # every range so far after all before it
        self.packed_in_order = True
        self.streamed = False  # kept ranges were handed to the checker and dropped
        self.frontier = 0  # furthest end so far (packed: certain end)
        self.packed_last = -1  # start of the previous packed unit
        self.last = (0, 0)  # start and (certain) end of the previous range of any kind
        self.data_bytes = 0
        self.packed_bytes = 0
        self.units = 0
        self.packed_file = 0  # measured bytes of the units before the pending one
        self.pending_start = -1  # the last unit, measured when the next one comes (in order)
        self.pending_end = 0  # its declared end
        self.count = 0  # ranges kept
        self.cap = limits.MAX_AUDIT_INTERVALS
        self.packed_limit = max(limits.PACKED_RATIO_FLOOR, limits.MAX_PACKED_RATIO * self.file_size)

    # -- refusals -------------------------------------------------------------------------

    def _mapped(self) -> str:
        mapped = self.data_bytes + self.packed_bytes
        return (
            f"the tables map {mapped} guest bytes of data onto a {self.file_size}-byte "
            f"file ({mapped / max(1, self.file_size):.1f}:1)"
        )

    def shared(self, point: int, more_hits: list[int], walked: int) -> UnsafeImageError:
        hits = sorted([*self.kept.covering(point), *more_hits])
        guests = ", ".join(f"{g:#x}" for g in hits[:4])
        more = f" and {len(hits) - 4} more" if len(hits) > 4 else ""
        where = (
            ""
            if walked >= self.virtual_size
            else (f" in the first {walked} bytes of the {self.virtual_size}-byte disk")
        )
        return UnsafeImageError(
            SHARED,
            f"{self.name} guest offsets {guests}{more} all use the file byte at offset "
            f"{point:#x}: {len(hits)} guest ranges read the same stored data, which the format "
            f"does not allow; {self._mapped()}{where}",
        )

    def gather(self, runs: Iterator[Run], point: int, disk: VirtualDisk) -> UnsafeImageError:
        """The sharing refusal, after walking on a little (at most ``_EVIDENCE_RUNS`` runs)
        to count the guest ranges that share file byte ``point`` and the data mapped."""
        hits: list[int] = []
        walked = self.walked
        budget = _EVIDENCE_RUNS
        try:
            for run in runs:
                budget -= 1
                if budget < 0:
                    break
                walked = run.end
                if run.kind is RunKind.DATA:
                    self.data_bytes += run.length
                    if run.host <= point < run.host + run.length:
                        hits.append(run.start + point - run.host)
                elif run.kind is RunKind.PACKED:
                    self.packed_bytes += run.length
                    if run.start == run.unit_start:
                        start, declared, certain = disk.packed_extent(run)
                        if start <= point < start + max(1, min(certain, declared)):
                            hits.append(run.unit_start)
            else:
                walked = self.virtual_size
        except ImageportError:
            pass  # the sharing is the finding; whatever else is wrong can wait
        return self.shared(point, hits, walked)

    def fragmented(self) -> UnsafeImageError:
        return UnsafeImageError(
            FRAGMENTED,
            f"{self.name} tables place data out of file order in more than "
            f"{limits.MAX_AUDIT_INTERVALS} ranges, too many to audit for shared data "
            f"({self._mapped()} so far); rewrite the image with qemu-img convert (without -c)",
        )

    def overfull(self) -> UnsafeImageError:
        """Data ranges that add up to more than the file: some must share."""
        return UnsafeImageError(
            SHARED, f"{self.name} tables map more stored data than the file holds: {self._mapped()}"
        )

    def expansion(self, file_bytes: int, exact: bool) -> UnsafeImageError:
        ratio = self.packed_bytes / max(1, file_bytes)
        where = "occupy" if exact else "occupy at most"
        return UnsafeImageError(
            EXPANSION,
            f"{self.name} compressed data expands more than this service accepts: {self.units} "
            f"units decode to {self.packed_bytes} guest bytes and {where} {file_bytes} bytes "
            f"of the file ({ratio:.0f}:1; the limit is {limits.MAX_PACKED_RATIO}:1 beyond "
            f"the first {limits.PACKED_RATIO_FLOOR} bytes, far more than a real system disk's "
            "data compresses)",
        )

    def too_much_packed(self) -> UnsafeImageError:
        """The refusal when the packed units already decode to more than the ratio allows of
        the whole file: shared units if that is why, else the expansion measured so far."""
        if self.packed_in_order:
            so_far = self.packed_file
            if self.pending_start >= 0:
                so_far += min(self.pending_end, self.file_size) - self.pending_start
            return self.overlap_or(self.expansion(so_far, exact=False))
        return self.overlap_or(self.expansion(self.file_size, exact=False))

    def overlap_or(self, fallback: UnsafeImageError) -> UnsafeImageError:
        """Raise :class:`_SharedByte` for a byte two kept ranges use; else ``fallback``."""
        point = self.kept.first_overlap()
        if point is not None:
            raise _SharedByte(point)
        return fallback

    # -- the walk -------------------------------------------------------------------------

    def _make_room(self) -> None:
        """At the cap, hand ranges in file order to the checker and forget them; ranges out of
        order cannot be audited any further."""
        if not self.in_order:
            raise self.overlap_or(self.fragmented())
        if self.checker is not None:
            self.checker.add(self.kept.chunk(packed_in_order=True))
        self.kept.clear()
        self.count = 0
        self.streamed = True

    def _out_of_order(self, start: int, end: int) -> None:
        """A range (``end``: its certain end) that starts before the end of an earlier one."""
        last_start, last_end = self.last
        if start < last_end and last_start < end:  # the classic bomb: same as the last
            raise _SharedByte(max(start, last_start))
        if self.streamed:
            raise self.fragmented()
        self.in_order = False

    def data(self, start: int, length: int, guest: int) -> None:
        end = start + length
        if end > self.file_size:
            raise TruncatedImageError(
                f"{self.name}: data for guest offset {guest} lies at file offset {start:#x}.."
                f"{end:#x}, beyond the end of the file ({self.file_size} bytes)"
            )
        if self.count >= self.cap:
            self._make_room()
        self.count += 1
        kept = self.kept
        kept.ds.append(start)
        kept.de.append(end)
        kept.dg.append(guest)
        self.data_bytes += length
        if start < self.frontier:
            self._out_of_order(start, end)
        if end > self.frontier:
            self.frontier = end
        self.last = (start, end)
        if self.data_bytes > self.file_size:
            raise self.overlap_or(self.overfull())

    def packed(self, extent: tuple[int, int, int], guest: int) -> None:
        start, declared, certain = extent
        if start >= self.file_size:
            raise TruncatedImageError(
                f"{self.name}: packed data for guest offset {guest} starts at file offset "
                f"{start:#x}, beyond the end of the file ({self.file_size} bytes)"
            )
        sure = certain if certain < declared else declared
        end = start + (sure if sure > 0 else 1)
        if self.count >= self.cap:
            self._make_room()
        self.count += 1
        kept = self.kept
        kept.ps.append(start)
        kept.pc.append(end)
        kept.pe.append(start + declared)
        kept.pg.append(guest)
        if start <= self.packed_last:
            self.packed_in_order = False
        elif self.packed_in_order:  # measure the previous unit, now that its successor is known
            if self.pending_start >= 0:
                self.packed_file += min(self.pending_end, start) - self.pending_start
            self.pending_start, self.pending_end = start, start + declared
        self.packed_last = start
        if start < self.frontier:
            self._out_of_order(start, end)
        if end > self.frontier:
            self.frontier = end
        self.last = (start, end)
        self.units += 1

    def finish(self) -> StorageAudit:
        kept = self.kept
        if not self.in_order:
            point = kept.first_overlap()
            if point is not None:
                raise _SharedByte(point)
        chunk = kept.chunk(self.packed_in_order)
        if self.packed_in_order:
            if self.pending_start >= 0:
                self.packed_file += min(self.pending_end, self.file_size) - self.pending_start
        else:
            self.packed_file = _packed_span_total(
                chunk.packed_starts, chunk.packed_ends, self.file_size
            )
        if self.packed_bytes > max(
            limits.PACKED_RATIO_FLOOR, limits.MAX_PACKED_RATIO * self.packed_file
        ):
            raise self.expansion(self.packed_file, exact=True)
        if self.checker is not None:
            self.checker.add(chunk)
            self.checker.finish()
        return StorageAudit(
            file_size=self.file_size,
            data_bytes=self.data_bytes,
            packed_bytes=self.packed_bytes,
            packed_units=self.units,
            packed_file_bytes=self.packed_file,
            in_file_order=self.in_order,
        )


def audit(disk: VirtualDisk) -> StorageAudit:
    """Walk the whole disk once; measure where its data lives and refuse what would amplify.

    Raises :class:`~imageport.errors.UnsafeImageError` (IMG-SAFE) or, for ranges beyond the end
    of the file, :class:`~imageport.errors.TruncatedImageError`.
    """
    walk = _Walk(disk)
    last_unit = -1
    runs = _runs(disk)
    data, packed, packed_extent = RunKind.DATA, RunKind.PACKED, disk.packed_extent
    run: Run | None = None
    extents = 0
    in_extent = False
    try:
        for run in runs:
            kind = run.kind
            if kind is data:
                walk.data(run.host, run.length, run.start)
            elif kind is packed:
                walk.packed_bytes += run.length
                if run.unit_start != last_unit:  # a unit the walk has not met yet
                    last_unit = run.unit_start
                    walk.packed(packed_extent(run), last_unit)
                if walk.packed_bytes > walk.packed_limit:
                    raise walk.too_much_packed()
            else:
                in_extent = False
                continue
            if not in_extent:
                extents += 1
                in_extent = True
        walk.walked = walk.virtual_size
        return dataclasses.replace(walk.finish(), data_extents=extents)
    except _SharedByte as found:
        if run is not None and walk.walked < walk.virtual_size:
            walk.walked = run.start + run.length
        raise walk.gather(runs, found.point, disk) from None


def _runs(disk: VirtualDisk) -> Iterator[Run]:
    """The disk's runs, checked to tile it exactly."""
    return disk._checked_runs(0, disk.virtual_size)
