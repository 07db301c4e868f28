"""The storage audit on hand-made tables: what it refuses, with which evidence, how early."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pytest

from imageport import limits
from imageport.disk import audit as audit_module
from imageport.disk.audit import HostChunk
from imageport.disk.base import Run, RunKind, VirtualDisk
from imageport.errors import TruncatedImageError, UnsafeImageError
from imageport.source import BytesSource

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
C = 64 * KiB  # the guest unit of these disks


@dataclass
class Recorder:
    """A HostChecker that keeps what it was given."""

    chunks: list[HostChunk] = field(default_factory=list)
    finished: bool = False

    def add(self, chunk: HostChunk) -> None:
        self.chunks.append(chunk)

    def finish(self) -> None:
        self.finished = True


class TableDisk(VirtualDisk):
    """A disk of 64 KiB guest units: each ``None`` (a hole), ``("D", host)`` (data) or
    ``("P", host)`` (a packed unit at that file offset, declaring ``declared`` bytes of which
    ``certain`` are surely its own). ``units`` may be a generator: the walk pulls lazily, so
    ``pulled`` shows how far it went."""

    format_name = "table"

    def __init__(
        self,
        file_size: int,
        units: Iterable[tuple[str, int] | None],
        count: int | None = None,
        *,
        declared: int = 100,
        certain: int = 100,
        checker: Recorder | None = None,
    ) -> None:
        """``count``: how many units a generator ``units`` yields (a list says it itself)."""
        self._units = units if count is not None else list(units)
        total = count if count is not None else len(list(self._units))
        super().__init__(BytesSource(bytes(file_size)), total * C)
        self.declared, self.certain = declared, certain
        self.checker = checker
        self.pulled = 0

    def runs(self, start: int, end: int) -> Iterator[Run]:
        assert (start, end) == (0, self.virtual_size)
        for index, unit in enumerate(self._units):
            self.pulled += 1
            if unit is None:
                yield Run(index * C, C, RunKind.HOLE)
            elif unit[0] == "D":
                yield Run(index * C, C, RunKind.DATA, unit[1])
            else:
                yield Run(index * C, C, RunKind.PACKED, unit[1], index * C, C)

    def packed_extent(self, run: Run) -> tuple[int, int, int]:
        return run.host, self.declared, self.certain

    def host_checker(self) -> Recorder | None:
        return self.checker


def data(*hosts: int) -> list[tuple[str, int] | None]:
    return [("D", h) for h in hosts]


def test_data_in_file_order_passes_and_is_measured_exactly() -> None:
    disk = TableDisk(1 * MiB, [*data(0, C), None, *data(3 * C, 5 * C)])
    found = disk.audit()
    assert found.data_bytes == found.allocated_bytes == disk.allocated_bytes() == 4 * C
    assert found.in_file_order and found.packed_units == 0


def test_data_out_of_order_but_disjoint_passes() -> None:
    recorder = Recorder()
    disk = TableDisk(1 * MiB, data(5 * C, 0, 9 * C, 2 * C), checker=recorder)
    found = disk.audit()
    assert (found.data_bytes, found.in_file_order) == (4 * C, False)
    assert recorder.finished
    (chunk,) = recorder.chunks  # the checker sees every range, with its guest offset
    assert sorted(zip(chunk.data_starts, chunk.data_guest, strict=True)) == [
        (0, C),
        (2 * C, 3 * C),
        (5 * C, 0),
        (9 * C, 2 * C),
    ]


def test_a_cluster_repeated_right_away_is_refused_at_once_naming_the_offsets() -> None:
    # a 1 TiB disk whose every unit after the first reads the same 64 KiB of the file
    count = TiB // C
    units = (("D", 7 * C) for _ in range(count))
    disk = TableDisk(1 * MiB, units, count)
    with pytest.raises(UnsafeImageError) as caught:
        disk.audit()
    err = caught.value
    assert err.kind == "shared-data"
    assert "guest offsets 0x0, 0x10000, 0x20000, 0x30000 and" in str(err)
    assert f"file byte at offset {7 * C:#x}" in str(err)
    assert f"of the {TiB}-byte disk" in str(err)  # the walk stopped early, and says so
    assert disk.pulled <= audit_module._EVIDENCE_RUNS + 3


def test_sharing_between_distant_ranges_is_found_after_the_walk() -> None:
    disk = TableDisk(1 * MiB, data(4 * C, 0, 8 * C, 2 * C, 4 * C + 512))
    with pytest.raises(UnsafeImageError) as caught:
        disk.audit()
    assert caught.value.kind == "shared-data"
    assert f"file byte at offset {4 * C + 512:#x}" in str(caught.value)
    assert "guest offsets 0x200, 0x40000" in str(caught.value)  # 0x200 into guest unit 0


def test_data_adding_up_to_more_than_the_file_stops_the_walk() -> None:
    # alternating two clusters: never the same as the last one, but the file holds 4 of them
    count = TiB // C
    units = (("D", (i % 2) * C) for i in range(count))
    disk = TableDisk(4 * C, units, count)
    with pytest.raises(UnsafeImageError) as caught:
        disk.audit()
    assert caught.value.kind == "shared-data"
    assert disk.pulled <= audit_module._EVIDENCE_RUNS + 8


def test_data_beyond_the_end_of_the_file_is_truncation() -> None:
    with pytest.raises(TruncatedImageError, match="beyond the end of the file"):
        TableDisk(2 * C, data(0, 2 * C)).audit()


def test_packed_units_at_one_offset_are_shared() -> None:
    disk = TableDisk(1 * MiB, [("P", 1000), ("P", 5000), ("P", 1000)])
    with pytest.raises(UnsafeImageError) as caught:
        disk.audit()
    assert "guest offsets 0x0, 0x20000 all use the file byte at offset 0x3e8" in str(caught.value)


def test_a_packed_unit_inside_data_is_shared() -> None:
    disk = TableDisk(1 * MiB, [("D", 0), ("P", 3 * C), ("P", 100)])
    with pytest.raises(UnsafeImageError, match="file byte at offset 0x64"):
        disk.audit()


def test_units_may_declare_more_than_their_own_bytes() -> None:
    # qcow2: whole sectors declared, so a unit runs up to 511 bytes into the next one
    ok = TableDisk(1 * MiB, [("P", 0), ("P", 700), ("P", 1400)], declared=1024, certain=513)
    assert ok.audit().packed_file_bytes == 700 + 700 + 1024  # the last runs to its declared end
    bad = TableDisk(1 * MiB, [("P", 0), ("P", 300)], declared=1024, certain=513)
    with pytest.raises(UnsafeImageError, match="file byte at offset 0x12c"):
        bad.audit()


def test_packed_units_expanding_beyond_any_compression_are_refused() -> None:
    # 8192 units of 64 KiB (512 MiB, above the floor) one byte apart: 65536:1
    disk = TableDisk(1 * MiB, [("P", i) for i in range(8192)], declared=600, certain=1)
    with pytest.raises(UnsafeImageError) as caught:
        disk.audit()
    assert caught.value.kind == "expansion"
    # the walk stops as soon as the ratio is out of reach, past the floor: 4097 units
    assert "4097 units decode to 268500992 guest bytes and occupy at most" in str(caught.value)
    assert f"the limit is {limits.MAX_PACKED_RATIO}:1" in str(caught.value)


def test_a_small_image_with_a_few_tiny_units_passes_under_the_floor() -> None:
    disk = TableDisk(1 * MiB, [("P", 100 * i) for i in range(64)], declared=100, certain=100)
    found = disk.audit()
    assert (found.packed_bytes, found.packed_file_bytes) == (64 * C, 6400)  # 655:1, 4 MiB


def test_expansion_beyond_the_ratio_of_the_whole_file_stops_the_walk() -> None:
    count = TiB // C  # distinct one-byte units: the whole file could not hold their data
    disk = TableDisk(
        64 * KiB, (("P", i % (64 * KiB)) for i in range(count)), count, declared=1, certain=1
    )
    with pytest.raises(UnsafeImageError) as caught:
        disk.audit()
    assert caught.value.kind in ("expansion", "shared-data")
    assert disk.pulled < 2 * limits.PACKED_RATIO_FLOOR // C


def test_too_many_ranges_out_of_order_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_AUDIT_INTERVALS", 8)
    disk = TableDisk(1 * MiB, data(*(h * C for h in (9, 1, 7, 3, 5, 0, 8, 2, 6, 4))))
    with pytest.raises(UnsafeImageError) as caught:
        disk.audit()
    assert caught.value.kind == "fragmented"


def test_ranges_in_order_are_never_too_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_AUDIT_INTERVALS", 8)
    recorder = Recorder()
    disk = TableDisk(1 * MiB, data(*(h * C for h in range(12))), checker=recorder)
    assert disk.audit().data_bytes == 12 * C
    starts = [s for chunk in recorder.chunks for s in chunk.data_starts]
    assert starts == [h * C for h in range(12)] and len(recorder.chunks) == 2


def test_allocation_is_not_handed_out_for_shared_tables() -> None:
    disk = TableDisk(1 * MiB, data(0, 0))
    with pytest.raises(UnsafeImageError):
        disk.allocation()  # refused before the first extent, not halfway through a copy
    with pytest.raises(UnsafeImageError):
        disk.allocated_bytes()


def test_packed_units_out_of_order_are_measured_and_handed_over_in_file_order() -> None:
    recorder = Recorder()
    disk = TableDisk(
        1 * MiB, [("P", 3000), ("P", 0), ("P", 1000)], declared=600, certain=1, checker=recorder
    )
    found = disk.audit()
    assert (found.packed_units, found.packed_file_bytes, found.in_file_order) == (3, 1800, False)
    (chunk,) = recorder.chunks
    assert list(chunk.packed_starts) == [0, 1000, 3000]
    assert list(chunk.packed_ends) == [600, 1600, 3600]
    assert list(chunk.packed_guest) == [C, 2 * C, 0]
