"""Assertions that a virtual-disk reader returns exactly what qemu-img says the disk holds."""

from __future__ import annotations

import random
from pathlib import Path

from imageport.disk.base import ExtentState, VirtualDisk

BOUNDARIES = (512, 4096, 65536, 1 << 20, 2 << 20)
LENGTHS = (1, 511, 512, 513, 4095, 4096, 65537, (1 << 20) + 3, (2 << 20) + 512)


def assert_reads_match(disk: VirtualDisk, reference: Path, *, random_reads: int = 300) -> None:
    """Compare ``disk`` with ``reference`` (a raw file) over many offsets and sizes.

    Reads the whole disk in odd-sized chunks, then reads of many lengths at, just before and
    just after every boundary size that formats use (sector, 4 KiB, 64 KiB, 1 MiB, 2 MiB),
    then random reads.
    """
    ref = reference.read_bytes()
    size = len(ref)
    assert disk.virtual_size == size, f"virtual size {disk.virtual_size} != reference {size}"

    step = (1 << 20) + 4097
    for off in range(0, size, step):
        got = disk.read(off, step)
        assert got == ref[off : off + step], f"whole-disk pass differs in read at {off}"

    checks: list[tuple[int, int]] = []
    for b in BOUNDARIES:
        for k in range(1, min(size // b, 40), max(1, (size // b) // 12)):
            for delta in (-513, -1, 0, 1, 511):
                off = k * b + delta
                if 0 <= off < size:
                    checks.extend((off, n) for n in LENGTHS)
    rng = random.Random(7)
    for _ in range(random_reads):
        off = rng.randrange(size)
        checks.append((off, rng.choice((1, 17, 512, 4096, 70000, 3 << 20))))
    checks.append((size - 1, 10))  # clipped at the end of the disk
    for off, n in checks:
        got = disk.read(off, n)
        want = ref[off : off + n]
        if got != want:
            first = next(
                (i for i, (a, c) in enumerate(zip(got, want, strict=False)) if a != c),
                min(len(got), len(want)),
            )
            raise AssertionError(f"read({off}, {n}) differs from qemu-img at byte {first}")


def assert_allocation_consistent(disk: VirtualDisk, reference: Path) -> None:
    """The allocation map tiles the disk, and nothing outside its data extents is non-zero."""
    ref = reference.read_bytes()
    pos = 0
    for ext in disk.allocation():
        assert ext.start == pos and ext.length > 0
        if ext.state is not ExtentState.DATA:
            chunk = ref[ext.start : ext.start + ext.length]
            assert chunk.count(0) == len(chunk), (
                f"non-zero bytes in {ext.state.value} extent at {ext.start}"
            )
        pos += ext.length
    assert pos == disk.virtual_size
