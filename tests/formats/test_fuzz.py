"""Fuzz every parser and reader; check that probing a multi-GiB image reads only metadata.

For each seed in :mod:`fuzz_seeds` (qemu-made images of every format, hand-made headers,
magic-only strings, small corpus files) hypothesis draws a few mutations (bytes overwritten with
boundary numbers, bit flips, truncation, noise behind a valid magic) and :func:`fuzz_seeds.check`
runs every ``FormatSpec.inspect`` (matching or not), ``registry.probe``, and for readable
containers the opener, reads at fuzzed offsets and the allocation walk. The contract:

* only :class:`~imageport.errors.ImageportError` subclasses escape (probe: only ``SourceError``,
  and it never reports an internal error);
* the Python allocation peak stays under ``fuzz_oracle.MEMORY_CEILING`` (inputs are a few MiB, so
  a bigger peak means a buffer sized from a header number);
* each example uses at most ``fuzz_seeds.CPU_LIMIT_S`` of CPU time (interrupted at
  ``HARD_TIMEOUT_S``). This replaces hypothesis's wall-clock ``deadline``, which is switched off:
  on a shared 2-core machine wall time depends on the neighbours and made verdicts flaky.

Runs are deterministic (``derandomize=True``, no example database). Shrinking is off by default
to keep failures fast (mutations are small already); ``IMAGEPORT_FUZZ_SHRINK=1`` turns it on and
``IMAGEPORT_FUZZ_SCALE=10`` runs ten times as many examples. A failure prints the seed, the
mutations and a one-line reproducer; ``python tests/support/fuzz_oracle.py`` sweeps longer and
groups every distinct crash.
"""

from __future__ import annotations

import os
import subprocess
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from imageport.errors import CorruptImageError, ImageportError
from imageport.formats import registry
from imageport.formats.base import Container, FormatSpec, ProbeWindow
from imageport.source import BytesSource, FileSource
from support import builders, fuzz_oracle, fuzz_seeds
from support.fuzz_oracle import (
    MAX_FUZZ_READ,
    BitFlip,
    Mutation,
    Overwrite,
    RandomBody,
    Report,
    Truncate,
    apply,
    check,
    interesting_values,
)
from support.fuzz_seeds import KiB, Seed

MiB = 1024 * KiB
GiB = 1024 * MiB

SCALE = float(os.environ.get("IMAGEPORT_FUZZ_SCALE", "1"))
PHASES = (
    tuple(Phase)
    if os.environ.get("IMAGEPORT_FUZZ_SHRINK") == "1"
    else (Phase.explicit, Phase.reuse, Phase.generate)
)


def _settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,  # the oracle enforces a CPU-time budget instead (see the docstring)
        derandomize=True,
        database=None,
        phases=PHASES,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- strategies ---------------------------------------------------------------------------------


def mutations(seed: Seed) -> st.SearchStrategy[list[Mutation]]:
    """Small edits of ``seed``: in its first and last 4 KiB and in its metadata regions."""
    size = max(1, len(seed.data))
    head = st.integers(0, min(size, 4096) - 1)
    tail = st.integers(max(0, size - 4096), size - 1)
    meta = st.sampled_from(seed.regions).flatmap(
        lambda r: st.integers(r[0], r[0] + max(1, r[1]) - 1)
    )
    offset = st.one_of(head, tail, meta)
    value = st.one_of(
        st.sampled_from(interesting_values(len(seed.data))), st.binary(min_size=1, max_size=8)
    )
    edit: st.SearchStrategy[Mutation] = st.one_of(
        st.builds(Overwrite, offset, value), st.builds(BitFlip, offset, st.integers(0, 7))
    )
    edits = st.lists(edit, min_size=1, max_size=3)
    cut = st.one_of(
        st.integers(0, size - 1),
        st.integers(0, min(size - 1, 64 * KiB)),
        st.integers(max(0, size - 4096), size - 1),
    ).map(Truncate)
    noise = st.builds(
        RandomBody,
        st.sampled_from((4, 8, 16, 64, 512)),
        st.sampled_from((0, 512)),
        st.integers(512, 128 * KiB),
        st.integers(0, 2**32),
    )
    return st.one_of(
        edits,
        edits,
        st.tuples(edits, cut).map(lambda t: [*t[0], t[1]]),
        cut.map(lambda c: [c]),
        noise.map(lambda n: [n]),
    )


READS = st.lists(
    st.tuples(st.integers(0, 2**48), st.integers(0, MAX_FUZZ_READ)), min_size=1, max_size=3
)


def _explain(seed: Seed, muts: list[Mutation], report: Report) -> str:
    lines = [
        f"{len(report.problems)} problem(s) on seed {seed.name!r} "
        f"(peak {report.peak_bytes / MiB:.1f} MiB, {report.seconds:.2f} s CPU):",
        *(f"  - {p}" for p in report.problems),
        'reproduce: cd tests && ../.venv/bin/python -c "from support.fuzz_oracle import *; '
        f"print(*check(apply(seed({seed.name!r}).data, {muts!r})).problems, sep='\\n')\"",
    ]
    return "\n".join(lines)


def _fuzz(seed_name: str, data: st.DataObject) -> None:
    seed = fuzz_seeds.seed(seed_name)
    muts = data.draw(mutations(seed), label="mutations")
    reads = data.draw(READS, label="reads")
    report = check(apply(seed.data, muts), reads)
    if report.problems:
        pytest.fail(_explain(seed, muts, report), pytrace=False)


# -- the tests ------------------------------------------------------------------------------------


ALL_SEEDS = (*fuzz_seeds.BUILT_NAMES, *fuzz_seeds.MAGIC_NAMES, *fuzz_seeds.corpus_names())


@pytest.mark.parametrize("name", ALL_SEEDS)
def test_seed_as_is(name: str) -> None:
    """Every seed, unmutated, passes the oracle (these are the fuzzers' starting points)."""
    seed = fuzz_seeds.seed(name)
    report = check(seed.data, [(0, MAX_FUZZ_READ), (1 << 40, 4096)])
    if report.problems:
        pytest.fail(_explain(seed, [], report), pytrace=False)


@pytest.mark.parametrize("name", fuzz_seeds.BUILT_NAMES)
@_settings(30)
@given(data=st.data())
def test_fuzz_built_seed(name: str, data: st.DataObject) -> None:
    _fuzz(name, data)


@pytest.mark.parametrize("name", fuzz_seeds.MAGIC_NAMES)
@_settings(8)
@given(data=st.data())
def test_fuzz_magic_seed(name: str, data: st.DataObject) -> None:
    _fuzz(name, data)


@pytest.mark.parametrize(
    "name",
    fuzz_seeds.corpus_names() or builders.without_corpus(),
)
@_settings(4)
@given(data=st.data())
def test_fuzz_corpus_seed(name: str, data: st.DataObject) -> None:
    _fuzz(name, data)


GARBAGE = (b"", b"\x00", bytes(512), b"\xff" * 65536, bytes(range(256)) * 300)


def _spec_names() -> list[str]:
    return [spec.name for spec in fuzz_oracle.all_specs()]


@pytest.mark.parametrize("spec_name", _spec_names())
def test_inspect_on_any_bytes_raises_only_our_errors(spec_name: str) -> None:
    """``inspect`` called on bytes its ``matches`` rejects (a forced ``-f FORMAT``) fails cleanly.

    ``registry.probe`` never does this, so these failures are not reachable through probing;
    they are listed per format, every distinct one, for the format's owner.
    """
    spec = next(s for s in fuzz_oracle.all_specs() if s.name == spec_name)
    seen: dict[str, str] = {}
    inputs = [
        (n, fuzz_seeds.seed(n).data) for n in (*fuzz_seeds.BUILT_NAMES, *fuzz_seeds.MAGIC_NAMES)
    ]
    inputs += [(f"garbage-{i}", g) for i, g in enumerate(GARBAGE)]
    for name, data in inputs:
        source = BytesSource(data)
        window = ProbeWindow.read(source)
        try:
            spec.inspect(source, window)
        except ImageportError:
            pass
        except Exception as exc:  # noqa: BLE001 - that is what this test looks for
            problem = f"{type(exc).__name__} at {fuzz_oracle.where(exc)}"
            seen.setdefault(problem, f"{name}: {str(exc)[:120]}")
    if seen:
        lines = [f"  - {p} (first on {first})" for p, first in seen.items()]
        pytest.fail(
            f"{spec_name}.inspect crashed on bytes it does not match:\n" + "\n".join(lines),
            pytrace=False,
        )


def test_oracle_catches_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The oracle itself works: a non-imageport exception in a parser is reported, with where."""

    def bad_inspect(source: object, window: object) -> Container:
        raise IndexError("boom")

    spec = FormatSpec("broken", "a broken parser", True, lambda w: True, bad_inspect)
    monkeypatch.setattr(registry, "FORMATS", (*registry.FORMATS, spec))
    report = check(b"\0" * 1024)
    assert [p.spec for p in report.problems] == ["broken", "broken"]  # inspect, and probe's
    assert "internal error" in report.problems[1].what
    assert "IndexError" in report.problems[0].what
    assert "bad_inspect" in report.problems[0].where


def test_oracle_catches_a_huge_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    def greedy(source: object, window: object) -> Container:
        buf = bytearray(fuzz_oracle.MEMORY_CEILING + MiB)
        raise CorruptImageError(f"refused after allocating {len(buf)}")

    spec = FormatSpec("greedy", "", True, lambda w: True, greedy)
    monkeypatch.setattr(registry, "FORMATS", (*registry.FORMATS, spec))
    report = check(b"\0" * 1024)
    assert [p.stage for p in report.problems] == ["memory"]


def test_oracle_interrupts_a_runaway_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def spin(source: object, window: object) -> Container:
        n = 0
        while True:  # a parser walking 2**40 clusters one by one
            n += 1

    monkeypatch.setattr(
        registry,
        "FORMATS",
        (*registry.FORMATS, FormatSpec("spinner", "", True, lambda w: True, spin)),
    )
    report = check(b"\0" * 1024, hard_timeout=0.3)
    assert [(p.spec, p.stage) for p in report.problems] == [("spinner", "time")]
    assert "in spin" in report.problems[0].where


# -- probing a large sparse image reads headers and tables, not data --------------------------


#: name -> (qemu format, create options, virtual size)
LARGE = {
    "qcow2": ("qcow2", "", 4 * GiB),
    "vmdk": ("vmdk", "", 4 * GiB),
    "vpc": ("vpc", "force_size=on", 4 * GiB),
    "vhdx": ("vhdx", "", 4 * GiB),
    "vdi": ("vdi", "", 4 * GiB),
    "qed": ("qed", "", 4 * GiB),
    "raw": ("raw", "", 1 * GiB),
}
#: Guest writes spread over the disk: (offset, length, pattern byte).
LARGE_WRITES = ((0, MiB, 0x5A), (GiB - 64 * KiB, 128 * KiB, 0xA5), (GiB - 4096, 4096, 0x11))
FORMAT_OF_QEMU = {"vpc": "vhd"}
MAX_PROBE_BYTES = 8 * MiB


def large_image(name: str) -> Path:
    """A mostly empty multi-GiB image with a few MiB of data, written by qemu-io (cached)."""
    fmt, options, size = LARGE[name]
    final = builders.cached(f"fuzz-large-{name}.{fmt}")
    if final.exists():
        return final
    tmp = final.with_name(final.name + ".tmp")
    tmp.unlink(missing_ok=True)
    args = ["create", "-q", "-f", fmt] + (["-o", options] if options else [])
    builders.qemu_img(*args, str(tmp), str(size))
    writes = [*LARGE_WRITES, (size - 8192, 8192, 0x77), (size // 2 + 12345, 3000, 0x33)]
    cmd = ["qemu-io", "-f", fmt]
    for offset, length, pattern in writes:
        if offset + length > size:
            continue
        cmd += ["-c", f"write -q -P {pattern} {offset} {length}"]
    subprocess.run([*cmd, str(tmp)], check=True, capture_output=True)
    os.replace(tmp, final)
    return final


@pytest.mark.parametrize("name", list(LARGE))
def test_probe_of_large_sparse_image_reads_only_metadata(name: str) -> None:
    fmt, _, size = LARGE[name]
    ours = FORMAT_OF_QEMU.get(fmt, fmt)
    registered = {"raw", *(s.name for s in registry.FORMATS)}
    assert ours in registered, f"the registry has no {ours!r} format: was it dropped?"
    path = large_image(name)
    with FileSource(path) as source:
        tracemalloc.start()
        try:
            container = registry.probe(source)
            assert container.format == ours, container
            assert container.readable, container
            assert container.opener is not None
            allocated = container.opener(source).allocated_bytes()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        read = source.bytes_read
    assert container.virtual_size == size
    assert allocated >= MiB  # the data written is seen as allocated ...
    assert read < MAX_PROBE_BYTES, f"probe + allocated_bytes read {read} bytes of {path}"
    assert peak < 32 * MiB, f"peak memory {peak / MiB:.1f} MiB"


def test_every_registered_format_has_a_seed() -> None:
    """An accepted format (one whose reader goes past the headers) is fuzzed from a seed it
    matches: adding one without a seed in ``tests/support/fuzz_seeds.py`` fails here, naming it.
    The formats that are only named and refused are fuzzed on any bytes (the test above)."""
    matched: set[str] = set()
    for name in (*fuzz_seeds.BUILT_NAMES, *fuzz_seeds.MAGIC_NAMES):
        window = ProbeWindow.read(BytesSource(fuzz_seeds.seed(name).data))
        matched |= {spec.name for spec in registry.matching_formats(window)}
    unseeded = sorted({spec.name for spec in registry.FORMATS if spec.accepted} - matched)
    assert unseeded == [], f"no fuzz seed matches {unseeded}: add one to fuzz_seeds"
