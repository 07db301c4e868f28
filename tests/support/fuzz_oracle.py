"""Mutations and the crash oracle of the parser fuzz tests (tests/formats/test_fuzz.py), on
the seeds of :mod:`support.fuzz_seeds`.

A :class:`Mutation` is a small, printable, reproducible edit (overwrite, bit flip, truncation,
random body behind a valid magic). :func:`check` runs every parser on the mutated bytes and
returns the list of contract violations: an exception that is not an
:class:`~imageport.errors.ImageportError`, a probe that raises or reports an internal error, a
wrong read length, a memory peak above the ceiling, or more CPU time than the limit.

Run ``.venv/bin/python tests/support/fuzz_oracle.py [N [NAME-PART]]`` for a long deterministic
sweep (N mutations of every seed whose name contains NAME-PART) that prints every distinct crash
once, grouped by format, stage and code location (the test suite stops at the first one per
seed).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType

if __name__ == "__main__" and str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: tests/

from imageport.disk.base import VirtualDisk
from imageport.errors import ImageportError, SourceError
from imageport.formats import raw, registry
from imageport.formats.base import FormatSpec, ProbeWindow
from imageport.source import BytesSource
from support.fuzz_seeds import (
    BUILT_NAMES,
    MAGIC_NAMES,
    SEED_DISK_SIZE,
    KiB,
    MiB,
    Seed,
    corpus_names,
    seed,
)

#: Peak Python allocation allowed for one fuzz example (the input itself is allocated before
#: tracing starts). Inputs are at most 12 MiB and every read asked of a disk is at most
#: 256 KiB, so a parser that stays under this did not size a buffer or a table from a fuzzed
#: header number (unmutated seeds peak at 0.8-4 MiB).
MEMORY_CEILING = int(os.environ.get("IMAGEPORT_FUZZ_MEMORY_MIB", "64")) * MiB
#: CPU seconds one example may use, tracemalloc included (it slows allocation-heavy code about
#: fourfold: a 127 GiB VHD's full allocation walk costs 0.2 s plain, 1.1 s traced). CPU time,
#: not wall-clock time, so that a busy shared machine does not make the verdict flaky.
CPU_LIMIT_S = float(os.environ.get("IMAGEPORT_FUZZ_CPU_LIMIT", "3"))
#: CPU seconds after which an example is interrupted (SIGPROF), so a runaway loop cannot hang
#: the suite; reported like an over-budget example, with where it was.
HARD_TIMEOUT_S = float(os.environ.get("IMAGEPORT_FUZZ_HARD_TIMEOUT", "15"))
#: Extents of ``allocation()`` looked at per example.
MAX_EXTENTS_WALKED = 10_000
#: Longest guest read asked of a disk per example.
MAX_FUZZ_READ = 256 * KiB


# --------------------------------------------------------------------------------------------
# Mutations


@dataclass(frozen=True)
class Overwrite:
    """Replace the bytes at ``offset`` with ``value``."""

    offset: int
    value: bytes

    def apply(self, data: bytearray) -> None:
        if self.offset < len(data):
            end = min(len(data), self.offset + len(self.value))
            data[self.offset : end] = self.value[: end - self.offset]

    def __repr__(self) -> str:
        return f"Overwrite({self.offset:#x}, bytes.fromhex({self.value.hex()!r}))"


@dataclass(frozen=True)
class BitFlip:
    offset: int
    bit: int

    def apply(self, data: bytearray) -> None:
        if self.offset < len(data):
            data[self.offset] ^= 1 << self.bit

    def __repr__(self) -> str:
        return f"BitFlip({self.offset:#x}, {self.bit})"


@dataclass(frozen=True)
class Truncate:
    length: int

    def apply(self, data: bytearray) -> None:
        del data[self.length :]

    def __repr__(self) -> str:
        return f"Truncate({self.length:#x})"


@dataclass(frozen=True)
class RandomBody:
    """Keep the first ``keep_head`` and last ``keep_tail`` bytes, fill ``length`` with noise."""

    keep_head: int
    keep_tail: int
    length: int
    seed: int

    def apply(self, data: bytearray) -> None:
        head = bytes(data[: self.keep_head])
        tail = bytes(data[len(data) - self.keep_tail :]) if self.keep_tail else b""
        body = random.Random(self.seed).randbytes(max(0, self.length - len(head) - len(tail)))
        data[:] = head + body + tail

    def __repr__(self) -> str:
        return f"RandomBody({self.keep_head}, {self.keep_tail}, {self.length:#x}, {self.seed})"


Mutation = Overwrite | BitFlip | Truncate | RandomBody


def interesting_values(file_size: int) -> list[bytes]:
    """Boundary numbers in 1/2/4/8-byte little- and big-endian form."""
    numbers = {
        0,
        1,
        0x7F,
        0x80,
        0xFF,
        0x100,
        0x200,
        0x1000,
        0x10000,
        0x7FFF,
        0x8000,
        0xFFFF,
        0x7FFFFFFF,
        0x80000000,
        0xFFFFFFFF,
        1 << 32,
        1 << 40,
        (1 << 63) - 1,
        1 << 63,
        (1 << 64) - 1,
        file_size,
        file_size - 1,
        file_size + 1,
        file_size - 512,
        file_size // 512,
        (file_size + 511) // 512,
        SEED_DISK_SIZE,
        SEED_DISK_SIZE + 1,
        SEED_DISK_SIZE // 512,
    }
    out = []
    for n in sorted(numbers):
        for width in (1, 2, 4, 8):
            if 0 <= n < 1 << (8 * width):
                out.append(n.to_bytes(width, "little"))
                out.append(n.to_bytes(width, "big"))
    return out


def apply(seed: bytes, mutations: list[Mutation]) -> bytes:
    data = bytearray(seed)
    for m in mutations:
        m.apply(data)
    return bytes(data)


# --------------------------------------------------------------------------------------------
# The oracle


class _HardTimeout(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` can swallow it."""


@contextlib.contextmanager
def hard_time_limit(cpu_seconds: float) -> Iterator[None]:
    """Interrupt the block with :class:`_HardTimeout` after ``cpu_seconds`` of process CPU."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise _HardTimeout

    if cpu_seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return
    old = signal.signal(signal.SIGPROF, on_alarm)
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def where(exc: BaseException) -> str:
    """``file:line in function`` of the innermost imageport frame of a traceback."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.name != "on_alarm"]
    ours = [f for f in frames if f"{os.sep}imageport{os.sep}" in f.filename] or frames
    if not ours:
        return "?"
    f = ours[-1]
    return f"{Path(f.filename).name}:{f.lineno} in {f.name}"


@dataclass(frozen=True)
class Problem:
    """One contract violation: which parser, at which stage, and what happened where."""

    spec: str
    stage: str
    what: str
    where: str = ""

    def key(self) -> tuple[str, str, str]:
        return (self.spec, self.stage, self.where or self.what)

    def __str__(self) -> str:
        at = f" at {self.where}" if self.where else ""
        return f"[{self.spec}] {self.stage}: {self.what}{at}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    peak_bytes: int = 0
    #: CPU seconds the example took (tracemalloc on)
    seconds: float = 0.0
    #: (spec, stage) last started, named when the example is interrupted
    running: tuple[str, str] = ("?", "?")
    container_format: str = ""

    def crash(self, spec: str, stage: str, exc: BaseException) -> None:
        what = f"{type(exc).__name__}: {str(exc)[:160]}"
        self.problems.append(Problem(spec, stage, what, where(exc)))


def all_specs() -> tuple[FormatSpec, ...]:
    return (*registry.FORMATS, raw.SPEC)


def _run_stage(report: Report, spec: str, stage: str, fn: Callable[[], object]) -> object:
    """Call ``fn``; record any non-imageport exception. Returns its result or None."""
    report.running = (spec, stage)
    try:
        return fn()
    except ImageportError:
        return None
    except _HardTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - that is what we are looking for
        report.crash(spec, stage, exc)
        return None


def _exercise(
    data: bytes, reads: list[tuple[int, int]], report: Report, non_matching: bool
) -> None:
    source = BytesSource(data)
    window = ProbeWindow.read(source)
    for spec in all_specs():
        try:
            matched = spec.matches(window)
        except Exception as exc:  # noqa: BLE001
            report.crash(spec.name, "matches", exc)
            matched = False
        if matched or spec is raw.SPEC:
            stage = "inspect"
        elif non_matching:
            stage = "inspect(non-matching)"
        else:
            continue
        _run_stage(report, spec.name, stage, partial(spec.inspect, source, window))

    try:
        container = registry.probe(source)
    except SourceError:
        return
    except Exception as exc:  # noqa: BLE001
        report.crash("registry", "probe", exc)
        return
    report.container_format = container.format
    if container.damage and container.damage.startswith("internal error"):
        report.problems.append(
            Problem(container.format, "probe", f"probe reported {container.damage[:200]}")
        )
    if not container.readable or container.opener is None:
        return
    disk = _run_stage(report, container.format, "opener", partial(container.opener, source))
    if isinstance(disk, VirtualDisk):
        _exercise_disk(disk, container.format, reads, report)


def _exercise_disk(
    disk: VirtualDisk, name: str, reads: list[tuple[int, int]], report: Report
) -> None:
    size = disk.virtual_size
    plan = [(0, 4096), (max(0, size - 1), 1), (max(0, size - 4096), 8192)]
    plan += [(off % (size + 1), length) for off, length in reads]
    for offset, length in plan:
        stage = f"read({offset:#x}, {length:#x})"
        got = _run_stage(report, name, stage, partial(disk.read, offset, length))
        if isinstance(got, bytes):
            want = max(0, min(length, size - offset))
            if len(got) != want:
                report.problems.append(
                    Problem(name, stage, f"returned {len(got)} bytes, expected {want}")
                )

    def walk() -> None:
        end = 0
        for i, extent in enumerate(disk.allocation()):
            end = extent.start + extent.length
            if i >= MAX_EXTENTS_WALKED:
                return
        if end != size:
            report.problems.append(
                Problem(name, "allocation", f"extents end at {end}, virtual size is {size}")
            )

    _run_stage(report, name, "allocation", walk)


def check(
    data: bytes,
    reads: list[tuple[int, int]] | None = None,
    *,
    non_matching: bool = False,
    hard_timeout: float = HARD_TIMEOUT_S,
) -> Report:
    """Run every parser on ``data`` and report contract violations (never raises them).

    ``inspect`` runs for the specs whose ``matches`` accepts ``data`` (what ``registry.probe``
    can reach) and for raw; with ``non_matching`` also for every other spec, which checks the
    stricter contract that ``inspect`` is safe to call on any bytes (a forced format).
    """
    report = Report()
    tracemalloc.start()
    t0 = time.process_time()
    try:
        with hard_time_limit(hard_timeout):
            _exercise(data, reads or [], report, non_matching)
    except _HardTimeout as exc:
        spec, stage = report.running
        report.problems.append(
            Problem(
                spec,
                "time",
                f"interrupted after {hard_timeout:g} s of CPU in {stage}",
                where(exc),
            )
        )
    finally:
        report.seconds = time.process_time() - t0
        _, report.peak_bytes = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if report.seconds > CPU_LIMIT_S and not any(p.stage == "time" for p in report.problems):
        report.problems.append(
            Problem(
                report.container_format or "?",
                "time",
                f"{report.seconds:.2f} s of CPU > limit {CPU_LIMIT_S:g} s",
            )
        )
    if report.peak_bytes > MEMORY_CEILING:
        report.problems.append(
            Problem(
                report.container_format or "?",
                "memory",
                f"peak {report.peak_bytes / MiB:.1f} MiB > ceiling {MEMORY_CEILING / MiB:.0f} MiB",
            )
        )
    return report


# --------------------------------------------------------------------------------------------
# A long sweep for humans: python tests/support/fuzz_seeds.py [examples-per-seed]


def _random_mutations(seed: Seed, rng: random.Random) -> list[Mutation]:
    size = len(seed.data)
    if size == 0:
        return []
    values = interesting_values(size)

    def where() -> int:
        pick = rng.random()
        if pick < 0.35:
            return rng.randrange(min(size, 4096))
        if pick < 0.5:
            return max(0, size - 4096) + rng.randrange(min(size, 4096))
        start, length = rng.choice(seed.regions)
        return start + rng.randrange(max(1, length))

    kind = rng.random()
    if kind < 0.1:
        return [Truncate(rng.randrange(size))]
    if kind < 0.15:
        return [
            RandomBody(
                rng.choice((4, 8, 16, 64, 512)),
                rng.choice((0, 0, 512)),
                rng.randrange(512, 128 * KiB),
                rng.randrange(1 << 30),
            )
        ]
    out: list[Mutation] = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.7:
            value = rng.choice(values) if rng.random() < 0.8 else rng.randbytes(rng.randint(1, 8))
            out.append(Overwrite(where(), value))
        else:
            out.append(BitFlip(where(), rng.randrange(8)))
    return out


def sweep(examples: int, only: str = "") -> int:
    """Mutate every seed ``examples`` times; print each distinct problem once, with a count."""
    groups: dict[tuple[str, str, str], tuple[str, list[Mutation], list[tuple[int, int]], str]] = {}
    counts: dict[tuple[str, str, str], int] = {}
    names = [n for n in (*BUILT_NAMES, *MAGIC_NAMES, *corpus_names()) if only in n]
    for name in names:
        start = seed(name)
        rng = random.Random(name)
        for i in range(examples + 1):
            muts = [] if i == 0 else _random_mutations(start, rng)
            reads = [(rng.randrange(1 << 40), 65536)]
            report = check(apply(start.data, muts), reads)
            for p in report.problems:
                k = p.key()
                counts[k] = counts.get(k, 0) + 1
                groups.setdefault(k, (name, muts, reads, str(p)))
    for k, (seed_name, muts, reads, text) in sorted(groups.items()):
        print(
            f"{counts[k]:5d}x {text}\n       reproduce: check(apply(seed({seed_name!r}).data, "
            f"{muts}), {reads})"
        )
    print(f"{len(groups)} distinct problems over {len(names)} seeds")
    return 1 if groups else 0


if __name__ == "__main__":
    sys.exit(
        sweep(
            int(sys.argv[1]) if len(sys.argv) > 1 else 200, sys.argv[2] if len(sys.argv) > 2 else ""
        )
    )
