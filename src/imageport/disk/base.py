"""The virtual-disk interface every format reader implements, and the generic read loop.

A reader describes its disk as a sequence of :class:`Run` objects: contiguous guest ranges that
are a hole, explicit zeros, plain data at a host offset, or a *packed* unit (a compressed
cluster, grain or block) that the reader decodes as a whole. :meth:`VirtualDisk.read` and
:meth:`VirtualDisk.allocation` are written once here over :meth:`VirtualDisk.runs`, so no
reader has its own copy of the boundary arithmetic that tends to go wrong at block edges.

Before the allocation is handed out, one walk over the runs (:mod:`imageport.disk.audit`)
measures it and refuses tables that point several guest ranges at the same file bytes or
packed units that expand beyond any real compression: whoever gets an allocation map (the
check, a conversion) gets one that the file can honestly hold.
"""

from __future__ import annotations

import abc
import enum
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imageport import limits
from imageport.errors import CorruptImageError, ImageportError, TruncatedImageError
from imageport.source import ByteSource, read_exact

if TYPE_CHECKING:
    from imageport.disk.audit import HostChecker, StorageAudit


class RunKind(enum.Enum):
    """What backs a guest range."""

    HOLE = "hole"  #: unallocated; reads as zeros
    ZERO = "zero"  #: allocated or flagged as zeros (qcow2 zero clusters)
    DATA = "data"  #: stored as-is at ``host`` in the file
    PACKED = "packed"  #: stored encoded; decoded as a unit by the reader


@dataclass(frozen=True, slots=True)
class Run:
    """A contiguous guest range ``[start, start + length)`` and what backs it.

    For ``DATA``, ``host`` is the file offset holding guest byte ``start``. For ``PACKED``,
    ``unit_start`` and ``unit_length`` give the guest range the whole encoded unit decodes to,
    and ``host`` is a reader-specific key that :meth:`VirtualDisk.unpack` understands.
    """

    start: int
    length: int
    kind: RunKind
    host: int = 0
    unit_start: int = 0
    unit_length: int = 0

    @property
    def end(self) -> int:
        return self.start + self.length


class ExtentState(enum.Enum):
    """Allocation state of a guest range, as shown to users."""

    DATA = "data"
    ZERO = "zero"
    HOLE = "hole"


@dataclass(frozen=True, slots=True)
class Extent:
    """A maximal guest range with one allocation state."""

    start: int
    length: int
    state: ExtentState


_STATE_OF = {
    RunKind.HOLE: ExtentState.HOLE,
    RunKind.ZERO: ExtentState.ZERO,
    RunKind.DATA: ExtentState.DATA,
    RunKind.PACKED: ExtentState.DATA,
}

#: Decoded units (compressed clusters, grains, blocks) kept, by total size: a filesystem's
#: metadata reads are small and scattered, and a reader may pass over a file twice (the initrd
#: reader walks a zstd frame's block headers, then decodes it); without the cache each visit
#: would decode (and read) a whole unit again.
_UNPACK_CACHE_BYTES = limits.MAX_DECODED_CACHE_BYTES
_UNPACK_CACHE_MIN_UNITS = 8


class VirtualDisk(abc.ABC):
    """A read-only random-access view of a virtual disk."""

    #: Format name, for messages.
    format_name: str = "disk"

    def __init__(self, source: ByteSource, virtual_size: int) -> None:
        self.source = source
        self.virtual_size = limits.cap(virtual_size, limits.MAX_VIRTUAL_SIZE, "virtual size")
        self._unpacked: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._unpacked_bytes = 0
        self._audit: StorageAudit | None = None

    @property
    def size(self) -> int:
        """The virtual size (a disk is a :class:`~imageport.guest.volumes.blockdev.BlockDevice`)."""
        return self.virtual_size

    # -- what a reader implements -------------------------------------------------------

    @abc.abstractmethod
    def runs(self, start: int, end: int) -> Iterator[Run]:
        """Runs that exactly tile ``[start, end)`` in order (``0 <= start <= end <= size``)."""

    def unpack(self, run: Run) -> bytes:
        """Decode the packed unit of ``run``; exactly ``run.unit_length`` bytes."""
        raise CorruptImageError(f"{self.format_name}: packed data where none is expected")

    def packed_extent(self, run: Run) -> tuple[int, int, int]:
        """Where the packed unit of ``run`` lies in the file: its first byte, the bytes
        :meth:`unpack` may read from there (declared), and how many of those are surely the
        unit's own (at least 1; less than declared where the format rounds or does not say).
        Used by the storage audit; readers with packed units implement it."""
        raise CorruptImageError(f"{self.format_name}: packed data where none is expected")

    def host_checker(self) -> HostChecker | None:
        """A format's own check of the host ranges the storage audit finds (qcow2 compares
        them with its refcounts), or None."""
        return None

    # -- generic operations --------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes of the virtual disk at ``offset``, clipped to the disk's end."""
        if offset < 0 or length < 0:
            raise ImageportError(f"invalid read: offset {offset}, length {length}")
        limits.cap(length, limits.MAX_READ_BYTES, "read length")
        end = min(offset + length, self.virtual_size)
        if offset >= end:
            return b""
        out = bytearray()
        for run in self._checked_runs(offset, end):
            if run.kind is RunKind.DATA:
                out += read_exact(self.source, run.host, run.length, f"{self.format_name} data")
            elif run.kind is RunKind.PACKED:
                unit = self._unpack_cached(run)
                lo = run.start - run.unit_start
                out += unit[lo : lo + run.length]
            else:
                out += bytes(run.length)
        return bytes(out)

    def audit(self) -> StorageAudit:
        """Where the disk's data lives in the file, measured by one walk over the whole disk
        (done once); raises :class:`~imageport.errors.UnsafeImageError` for tables that share
        data or expand beyond any real compression (see :mod:`imageport.disk.audit`)."""
        if self._audit is None:
            from imageport.disk.audit import audit  # the audit builds on this module

            self._audit = audit(self)
        return self._audit

    def allocation(self) -> Iterator[Extent]:
        """Maximal extents of the whole disk with their allocation state, in order.

        The disk is audited first (:meth:`audit`), so a caller about to copy the extents never
        gets those of tables that would amplify the file.
        """
        self.audit()
        return self._extents()

    def allocated_bytes(self) -> int:
        """Bytes of the virtual disk that hold data (not holes, not zero clusters), exactly;
        never more than the file can hold once sharing is refused (see :meth:`audit`)."""
        return self.audit().allocated_bytes

    def _extents(self) -> Iterator[Extent]:
        current: Extent | None = None
        for run in self._checked_runs(0, self.virtual_size):
            state = _STATE_OF[run.kind]
            if current is not None and current.state is state:
                current = Extent(current.start, current.length + run.length, state)
                continue
            if current is not None:
                yield current
            current = Extent(run.start, run.length, state)
        if current is not None:
            yield current

    # -- internals -------------------------------------------------------------------------

    def _checked_runs(self, start: int, end: int) -> Iterator[Run]:
        """The reader's runs, checked to tile ``[start, end)`` exactly (guards reader bugs)."""
        pos = start
        for run in self.runs(start, end):
            run_end = run.start + run.length
            if run.start != pos or run.length <= 0 or run_end > end:
                raise CorruptImageError(
                    f"{self.format_name}: inconsistent mapping at guest offset {pos} "
                    f"(run {run.start}+{run.length})"
                )
            if run.kind is RunKind.PACKED and not (
                run.unit_start <= run.start and run_end <= run.unit_start + run.unit_length
            ):
                raise CorruptImageError(f"{self.format_name}: packed run outside its unit")
            pos = run_end
            yield run
        if pos != end:
            raise CorruptImageError(
                f"{self.format_name}: mapping stops at guest offset {pos}, expected {end}"
            )

    def _unpack_cached(self, run: Run) -> bytes:
        key = (run.unit_start, run.host)
        unit = self._unpacked.get(key)
        if unit is None:
            limits.cap(run.unit_length, limits.MAX_COMPRESSED_BYTES, "decoded unit size")
            unit = self.unpack(run)
            if len(unit) != run.unit_length:
                raise CorruptImageError(
                    f"{self.format_name}: unit at guest offset {run.unit_start} decodes to "
                    f"{len(unit)} bytes, expected {run.unit_length}"
                )
            self._unpacked[key] = unit
            self._unpacked_bytes += len(unit)
            while (
                self._unpacked_bytes > _UNPACK_CACHE_BYTES
                and len(self._unpacked) > _UNPACK_CACHE_MIN_UNITS
            ):
                _, dropped = self._unpacked.popitem(last=False)
                self._unpacked_bytes -= len(dropped)
        else:
            self._unpacked.move_to_end(key)
        return unit


def data_runs_in_file(file_size: int, start: int, length: int, host: int, what: str) -> list[Run]:
    """The runs of guest ``[start, start + length)`` stored at file offset ``host``.

    Data that starts beyond the end of the file is an error; a tail that runs past it reads
    as zeros, as qemu reads it (qcow and qcow2 write the last cluster short).
    """
    if host >= file_size:
        raise TruncatedImageError(
            f"{what}: data for guest offset {start} is at {host:#x}, beyond the end of the "
            f"file ({file_size} bytes)"
        )
    inside = min(length, file_size - host)
    runs = [Run(start, inside, RunKind.DATA, host)]
    if inside < length:
        runs.append(Run(start + inside, length - inside, RunKind.ZERO))
    return runs


#: Maps a block index to the run covering that whole block (see :func:`block_runs`).
BlockLookup = Callable[[int], Run]


def clip_run(run: Run, start: int, end: int) -> Run:
    """``run`` restricted to ``[start, end)`` (which must overlap it), host offset adjusted."""
    if start <= run.start and run.start + run.length <= end:
        return run  # the common case, a run inside the request
    lo = max(run.start, start)
    hi = min(run.end, end)
    host = run.host + (lo - run.start) if run.kind is RunKind.DATA else run.host
    return Run(lo, hi - lo, run.kind, host, run.unit_start, run.unit_length)


def block_runs(
    start: int,
    end: int,
    block_size: int,
    lookup: BlockLookup,
) -> Iterator[Run]:
    """Tile ``[start, end)`` for a disk made of fixed-size blocks, merging neighbours.

    ``lookup(index)`` returns the run for the whole block ``index`` (its ``start`` is
    ``index * block_size``), or for a stretch of whole blocks from it that are alike (a run of
    holes, say, measured in C), so a sparse 100 GiB disk needs few lookups; runs are clipped
    to the request and merged by :func:`coalesce`.
    """

    def tiles() -> Iterator[Run]:
        index = start // block_size
        while index * block_size < end:
            run = lookup(index)
            yield clip_run(run, start, end)
            index = max(index + 1, -(-run.end // block_size))

    return coalesce(tiles())


def coalesce(runs: Iterable[Run]) -> Iterator[Run]:
    """Merge neighbouring runs that continue each other (holes after holes, zeros after zeros,
    data contiguous on the host), so a large disk maps in few runs."""
    pending: Run | None = None
    for run in runs:
        if pending is not None:
            merged = _merge(pending, run)
            if merged is not None:
                pending = merged
                continue
            yield pending
        pending = run
    if pending is not None:
        yield pending


def progression_length(table: array[int], start: int, stop: int, step: int) -> int:
    """How many entries of ``table[start:stop]`` continue ``table[start] + k * step``.

    Mapping tables (qcow2 L2, VMDK grain tables, QED L2) mostly hold long runs of empty entries
    (``step`` 0) or of host-contiguous clusters; this measures such a run with slice
    comparisons done in C (galloping, then bisection) instead of one Python step per entry.
    """
    first = table[start]
    limit = stop - start

    def continues(count: int) -> bool:
        try:
            if step:
                expected = array(table.typecode, range(first, first + step * count, step))
            else:
                expected = array(table.typecode, [first]) * count
        except OverflowError:
            return False
        return table[start : start + count] == expected

    good = 1
    probe = 2
    while probe <= limit and continues(probe):
        good = probe
        probe *= 2
    bad = min(probe, limit + 1)
    while bad - good > 1:
        mid = (good + bad) // 2
        if continues(mid):
            good = mid
        else:
            bad = mid
    return good


def _merge(a: Run, b: Run) -> Run | None:
    if a.kind is not b.kind or a.kind is RunKind.PACKED or a.start + a.length != b.start:
        return None
    if a.kind in (RunKind.HOLE, RunKind.ZERO):
        return Run(a.start, a.length + b.length, a.kind)
    if a.kind is RunKind.DATA and a.host + a.length == b.host:
        return Run(a.start, a.length + b.length, a.kind, a.host)
    return None
