"""Time ``imageport convert IN OUT.zvhd2`` against ``qemu-img convert -c -O qcow2 -o
compression_type=zstd`` on the same inputs.

Both make a zstd-compressed image of the same virtual disk, with every core available:
imageport compresses 2 MiB blocks on a thread pool (one thread per core); qemu-img compresses
64 KiB clusters in its own worker threads. Inputs (``--inputs``, default all that exist):

* ``debian-raw`` / ``debian-qcow2``: the Debian 12 guest of ``tests/support/guest_images.py``
  (``gpt-bios-esp-ext4``, 3 GiB virtual, ~0.9 GB of data), when it is in the test cache
  (``.test-cache/guest/images-*/``); it is not built here;
* ``mixed-1g``: a synthetic 1 GiB raw, built once under ``.test-cache/bench`` (or
  ``$IMAGEPORT_BENCH_DIR``): 256 MiB of random bytes, 256 MiB of text, 128 MiB of written
  zeros, holes elsewhere, interleaved in 16 MiB stripes;
* ``sparse-200g``: a 200 GiB raw holding 64 MiB of mixed data at four places (the cost must
  follow the data, not the virtual size).

For each input, with the median of ``--reps`` rounds (page cache warmed first; the commands
alternate within a round so that load changes on a shared machine hit them alike; outputs are
written in the bench cache directory and deleted after each run): wall time, user+system CPU
of the child (``getrusage`` deltas), the output size, and MB/s = the input's allocated data
bytes (what both tools must read, measured by our reader) / wall time. **ratio** = imageport
wall / qemu-img wall in the same run (the goal is <= 1).

imageport fsyncs its output before renaming it into place; qemu-img's default cache mode for
``convert`` (``unsafe``) never flushes. The last columns time ``qemu-img convert -t
writeback``, which flushes at the end, for a like-for-like comparison.

Usage: ``bench/run --zvhd2 [--reps N] [--inputs NAME ...] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
GiB = 1 << 30


def bench_dir() -> Path:
    d = Path(os.environ.get("IMAGEPORT_BENCH_DIR", REPO / ".test-cache" / "bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _text(n: int) -> bytes:
    return b"".join(
        b"imageport bench line %08d: the quick brown fox\n" % i for i in range(n // 40 + 1)
    )[:n]


def _stripes(f: BinaryIO, rng: random.Random, stripes: int) -> None:
    """16 MiB stripes from offset 0: random, text, zeros or a hole, random, text, hole..."""
    text = _text(16 * MiB)
    for i in range(stripes):
        f.seek(i * 16 * MiB)
        if i % 4 == 0:
            f.write(rng.randbytes(16 * MiB))
        elif i % 4 == 1:
            f.write(text)
        elif i % 8 == 2:
            f.write(bytes(16 * MiB))


def build_mixed() -> Path:
    path = bench_dir() / "zvhd2-mixed-1g.raw"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.truncate(GiB)
            _stripes(f, random.Random(1), 64)
        os.replace(tmp, path)
    return path


def build_sparse() -> Path:
    path = bench_dir() / "zvhd2-sparse-200g.raw"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.truncate(200 * GiB)
            rng = random.Random(2)
            for at in (0, 50 * GiB, 120 * GiB, 200 * GiB - 16 * MiB):
                f.seek(at)
                f.write(rng.randbytes(8 * MiB) + bytes(4 * MiB) + _text(4 * MiB))
        os.replace(tmp, path)
    return path


def _debian(fmt: str) -> Path | None:
    found = sorted(
        (REPO / ".test-cache" / "guest").glob(f"images-*/gpt-bios-esp-ext4.{fmt}"),
        key=lambda p: p.stat().st_mtime,
    )
    return found[-1] if found else None


INPUTS = ("debian-raw", "debian-qcow2", "mixed-1g", "sparse-200g")


def resolve(name: str) -> tuple[Path | None, str]:
    if name == "debian-raw":
        return _debian("raw"), "raw"
    if name == "debian-qcow2":
        return _debian("qcow2"), "qcow2"
    if name == "mixed-1g":
        return build_mixed(), "raw"
    return build_sparse(), "raw"


@dataclass
class Timing:
    wall: float
    cpu: float
    out_size: int


@dataclass
class Row:
    input: str
    format: str
    virtual_size: int
    data_bytes: int
    imageport: Timing
    qemu_img: Timing
    #: ``qemu-img convert -t writeback``: flushes its output at the end, as imageport does
    qemu_img_synced: Timing


def _run_once(cmd: list[str], out: Path) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    size = out.stat().st_size
    out.unlink()
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, size


def _timed_alternating(cmds: list[tuple[list[str], Path]], reps: int) -> list[Timing]:
    """Run the commands in turn, ``reps`` rounds, so load changes hit them alike."""
    runs: list[list[tuple[float, float, int]]] = [[] for _ in cmds]
    for _ in range(reps):
        for i, (cmd, out) in enumerate(cmds):
            runs[i].append(_run_once(cmd, out))
    return [
        Timing(statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), rs[-1][2])
        for rs in runs
    ]


def _data_bytes(path: Path) -> tuple[int, int]:
    """(virtual size, allocated data bytes) by our reader."""
    sys.path.insert(0, str(REPO / "src"))
    from imageport.formats import registry
    from imageport.source import FileSource

    with FileSource(path) as source:
        c = registry.probe(source)
        assert c.opener is not None, c.damage
        disk = c.opener(source)
        return disk.virtual_size, disk.allocated_bytes()


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(16 * MiB):
            pass


def imageport_cmd() -> list[str]:
    exe = REPO / ".venv" / "bin" / "imageport"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "imageport.cli.main"]


def measure(name: str, path: Path, fmt: str, reps: int) -> Row:
    _warm(path)
    vsize, data = _data_bytes(path)
    out_dir = bench_dir()
    ours_out = out_dir / f".bench-{os.getpid()}.zvhd2"
    qemu_out = out_dir / f".bench-{os.getpid()}.qcow2"
    qemu = [
        "qemu-img",
        "convert",
        "-c",
        "-f",
        fmt,
        "-O",
        "qcow2",
        "-o",
        "compression_type=zstd",
        str(path),
        str(qemu_out),
    ]
    ours, fast, durable = _timed_alternating(
        [
            ([*imageport_cmd(), "convert", str(path), str(ours_out)], ours_out),
            (qemu, qemu_out),
            ([*qemu[:2], "-t", "writeback", *qemu[2:]], qemu_out),
        ],
        reps,
    )
    return Row(name, fmt, vsize, data, ours, fast, durable)


def _mbs(data: int, t: Timing) -> str:
    return f"{data / t.wall / 1e6:5.0f}"


def table(rows: list[Row]) -> str:
    head = (
        f"{'input':<12} {'fmt':<5} {'virt':>5} {'data MB':>7} | {'imageport s':>11} "
        f"{'cpu s':>5} {'MB/s':>5} {'out MB':>6} | {'qemu-img s':>10} {'cpu s':>5} "
        f"{'MB/s':>5} {'out MB':>6} | {'ratio':>5} | {'qemu -t wb s':>12} {'ratio':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        o, q, w = r.imageport, r.qemu_img, r.qemu_img_synced
        lines.append(
            f"{r.input:<12} {r.format:<5} {r.virtual_size / GiB:4.0f}G {r.data_bytes / 1e6:7.0f}"
            f" | {o.wall:11.2f} {o.cpu:5.2f} {_mbs(r.data_bytes, o)} {o.out_size / 1e6:6.1f}"
            f" | {q.wall:10.2f} {q.cpu:5.2f} {_mbs(r.data_bytes, q)} {q.out_size / 1e6:6.1f}"
            f" | {o.wall / q.wall:5.2f} | {w.wall:12.2f} {o.wall / w.wall:5.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if shutil.which("qemu-img") is None:
        print("qemu-img is not installed (apt-get install qemu-utils)", file=sys.stderr)
        return 2
    load = os.getloadavg()
    rows = []
    for name in args.inputs:
        path, fmt = resolve(name)
        if path is None:
            print(
                f"{name}: not in the test cache (run tests/guest/test_guest_images.py to build "
                "the Debian guest images); skipped",
                file=sys.stderr,
            )
            continue
        rows.append(measure(name, path, fmt, args.reps))
        print(f"measured {name}", file=sys.stderr)
    print(
        f"median of {args.reps} runs on {os.cpu_count()} cores; ratio = imageport convert "
        "-> zvhd2 wall / qemu-img convert -c -O qcow2 zstd wall (same run); MB/s = input "
        f"data bytes / wall; load average {load[0]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
