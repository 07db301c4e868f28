"""Time ``imageport bitmap`` against ``cat FILE > /dev/null`` on the same RAW files.

Two images, built once and cached under ``.test-cache/bench`` (or ``$IMAGEPORT_BENCH_DIR``):

* ``bitmap-sparse-<N>g.raw``: ``--sparse-gib`` GiB apparent size (default 100), 1 GiB of
  data in 64 runs of 16 MiB spread evenly over the disk, the rest holes (1 GiB on disk);
* ``bitmap-full-2g.raw``: 2 GiB, every byte allocated, 2 MiB blocks in a repeating mix of
  four kinds: random data; all zero; zero except the last byte; zero for 1 MiB then random.
  The last three are the expensive cases (a block is read until its first non-zero byte).

The allocated bytes of both files are read once before timing, so every tool sees a warm page
cache (dropping caches needs root and would disturb the other users of the machine). For each
image, medians of ``--reps`` runs of:

* ``imageport bitmap FILE -o TMP.mf`` as a subprocess: wall and child CPU time (Python
  start-up included);
* the same work in-process (``fastimport.bitmap.scan_raw``), without start-up, and the bytes
  it read (``ScanResult.bytes_read``);
* ``cat FILE > /dev/null`` (the baseline: reads every byte, holes included, which the kernel
  fills with zeros). On the sparse image this reads 100 GiB of holes, so it runs
  ``--cat-reps`` times there (default 3).

**ratio** = cat wall / imageport wall from the same run; **MB/s** = allocated bytes (what the
file system stores) / wall time, for both tools.

Usage: ``bench/run --bitmap [--reps N] [--sparse-gib G] [--cat-reps N] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from imageport.fastimport.bitmap import scan_raw  # noqa: E402
from imageport.source import FileSource  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
BS = 2 * MiB
IMAGEPORT = Path(sys.executable).parent / "imageport"


def bench_dir() -> Path:
    root = Path(os.environ.get("IMAGEPORT_BENCH_DIR", REPO / ".test-cache" / "bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _publish(tmp: Path, final: Path) -> Path:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def sparse_image(gib: int) -> Path:
    """``gib`` GiB apparent, 64 runs of 16 MiB of random data spread evenly."""
    final = bench_dir() / f"bitmap-sparse-{gib}g.raw"
    if final.exists():
        return final
    tmp = final.with_suffix(".tmp")
    rng = random.Random(gib)
    chunk = bytearray(rng.randbytes(16 * MiB))
    size = gib * GiB
    step = size // 64
    with open(tmp, "wb") as f:
        f.truncate(size)
        for i in range(64):
            chunk[:8] = i.to_bytes(8, "little")
            f.seek(i * step + (i * 4096) % BS)  # some runs start mid-block
            f.write(chunk)
    return _publish(tmp, final)


def full_image() -> Path:
    """2 GiB, fully allocated, 2 MiB blocks of four kinds in turn (see the module docstring)."""
    final = bench_dir() / "bitmap-full-2g.raw"
    if final.exists():
        return final
    tmp = final.with_suffix(".tmp")
    rng = random.Random(2)
    data = rng.randbytes(BS)
    zero = bytes(BS)
    last = bytes(BS - 1) + b"\x01"
    half = bytes(MiB) + data[:MiB]
    with open(tmp, "wb") as f:
        for i in range(2 * GiB // BS):
            f.write((data, zero, last, half)[i % 4])
    return _publish(tmp, final)


def allocated_bytes(path: Path) -> int:
    with FileSource(path) as s:
        return sum(end - start for start, end in s.data_segments(0, s.size))


def warm(path: Path) -> None:
    """Read the allocated bytes of ``path`` once (reading its holes would warm nothing)."""
    with FileSource(path) as s:
        for start, end in s.data_segments(0, s.size):
            for pos in range(start, end, 16 * MiB):
                s.read_at(pos, min(16 * MiB, end - pos))


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    image: str
    apparent: int
    allocated: int
    imageport_wall: float
    imageport_cpu: float
    inproc_wall: float
    imageport_read: int
    cat_wall: float
    cat_cpu: float
    cat_runs: int

    @property
    def ratio(self) -> float:
        return self.cat_wall / self.imageport_wall

    @property
    def inproc_ratio(self) -> float:
        return self.cat_wall / self.inproc_wall


def _timed(cmd: list[str], reps: int, *, stdout_null: bool = False) -> tuple[float, float, str]:
    """Median wall and CPU (child rusage) seconds of ``reps`` runs, and the last stdout."""
    walls, cpus = [], []
    out = ""
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        if stdout_null:
            with open(os.devnull, "wb") as null:
                proc = subprocess.run(cmd, stdout=null, stderr=subprocess.PIPE, check=False)
        else:
            proc = subprocess.run(cmd, capture_output=True, check=False)
            out = proc.stdout.decode()
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.decode().strip()}")
    return statistics.median(walls), statistics.median(cpus), out


def measure(name: str, path: Path, reps: int, cat_reps: int) -> Row:
    warm(path)
    with tempfile.TemporaryDirectory() as tmp:
        out_mf = str(Path(tmp) / "out.mf")
        wall, cpu, _out = _timed([str(IMAGEPORT), "bitmap", str(path), "-o", out_mf], reps)
    scans = [scan_raw(path) for _ in range(reps)]
    inproc = statistics.median(s.seconds for s in scans)
    read = scans[-1].bytes_read
    cat_wall, cat_cpu, _ = _timed(["cat", str(path)], cat_reps, stdout_null=True)
    return Row(
        name,
        path.stat().st_size,
        allocated_bytes(path),
        wall,
        cpu,
        inproc,
        read,
        cat_wall,
        cat_cpu,
        cat_reps,
    )


def _mbs(n: int, seconds: float) -> str:
    return f"{n / seconds / 1e6:8.0f}"


def render(rows: list[Row]) -> str:
    head = (
        f"{'image':<22}{'apparent':>10}{'alloc':>8}{'imageport s':>12}{'cpu s':>7}"
        f"{'in-proc s':>10}{'read':>9}{'cat s':>9}{'cpu s':>7}{'ratio':>8}{'in-proc':>9}"
        f"{'ip MB/s':>9}{'cat MB/s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.image:<22}{r.apparent / GiB:>8.0f}Gi{r.allocated / GiB:>6.2f}Gi"
            f"{r.imageport_wall:>12.3f}{r.imageport_cpu:>7.2f}{r.inproc_wall:>10.3f}"
            f"{r.imageport_read / MiB:>7.0f}Mi{r.cat_wall:>9.2f}{r.cat_cpu:>7.2f}"
            f"{r.ratio:>7.1f}x{r.inproc_ratio:>8.1f}x{_mbs(r.allocated, r.imageport_wall):>9}"
            f"{_mbs(r.allocated, r.cat_wall):>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="runs per measurement (median)")
    ap.add_argument(
        "--cat-reps",
        type=int,
        default=3,
        help="runs of cat on the sparse image (it reads every hole)",
    )
    ap.add_argument("--sparse-gib", type=int, default=100, help="apparent size of the sparse one")
    ap.add_argument("--only", choices=["sparse", "full"], help="one image only")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    if not IMAGEPORT.exists():
        sys.stderr.write(f"bench: the imageport entry point is missing at {IMAGEPORT}\n")
        return 2
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    if args.only in (None, "sparse"):
        rows.append(
            measure(
                f"sparse-{args.sparse_gib}g",
                sparse_image(args.sparse_gib),
                args.reps,
                args.cat_reps,
            )
        )
    if args.only in (None, "full"):
        rows.append(measure("full-2g", full_image(), args.reps, args.reps))
    print(render(rows))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        "ratio = cat wall / imageport wall (CLI, Python start-up included); in-proc ratio = "
        "cat wall / scan_raw wall (no start-up); MB/s = allocated bytes / wall"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                [asdict(r) | {"ratio": r.ratio, "inproc_ratio": r.inproc_ratio} for r in rows],
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
