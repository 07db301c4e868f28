"""Time ``imageport check`` against ``qemu-img info`` on the same images, and count bytes read.

Images (built once with qemu-img/qemu-io, cached under ``.test-cache/bench`` or
``$IMAGEPORT_BENCH_DIR``):

* small: 64 MiB virtual disks holding 8 MiB of data, one per format;
* large: 8 GiB virtual disks holding ~100 MiB of data spread over the whole disk (32 writes of
  1 MiB, one every 256 MiB, plus one 64 MiB run in the middle), one per format, and compressed
  qcow2 / streamOptimized VMDK converted from the same data.

For each image the script measures, median of ``--reps`` runs:

* ``imageport check FILE --json`` as a subprocess (what a user runs; includes Python start-up);
* the same work in-process (``registry.probe`` + ``opener`` + ``allocated_bytes`` on a
  ``FileSource``), so start-up cost is visible apart from the work;
* ``qemu-img info -f FMT --output=json FILE`` as a subprocess (the baseline);
* bytes read: imageport's own count (the JSON's ``bytes_read``, from ``FileSource``), and
  qemu-img's, measured by the kernel's view of its system calls: one extra run under
  ``strace -f -y`` summing the return values of every read/pread64/preadv/preadv2 on a file
  descriptor that refers to the image (``-y`` prints the path behind each fd, so reads of
  libraries, locale files or /proc are not counted). The same strace count is taken for the
  imageport CLI as a cross-check of its self-reported number.

Usage: ``bench/run --containers [--reps N] [--only small|large] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: qemu format name -> imageport's name for it
OURS = {"vpc": "vhd"}


@dataclass(frozen=True)
class ImageSpec:
    """One bench image: a qemu format, its creation options, its size and how data gets in."""

    name: str
    fmt: str
    virtual_size: int
    create_options: str = ""
    #: convert from the raw of the same size class with these options (``-c`` compresses)
    convert_options: str | None = None
    compress: bool = False


def _writes(size: int) -> list[tuple[int, int, int]]:
    """(offset, length, pattern): data in many places of the disk, and one longer run."""
    if size <= 64 * MiB:
        step = size // 8
        return [(i * step + (i * 4096) % MiB, MiB, 0x10 + i) for i in range(8)]
    step = size // 32
    out = [(i * step + (i * 65536) % (64 * MiB), MiB, 0x10 + i) for i in range(32)]
    out.append((size // 2 + 8 * MiB, 64 * MiB, 0x7E))
    return out


def specs() -> list[ImageSpec]:
    out: list[ImageSpec] = []
    for label, size in (("small", 64 * MiB), ("large", 8 * GiB)):
        out += [
            ImageSpec(f"{label}-raw", "raw", size),
            ImageSpec(f"{label}-qcow2", "qcow2", size),
            ImageSpec(f"{label}-qcow2-zlib", "qcow2", size, convert_options="", compress=True),
            ImageSpec(f"{label}-vmdk", "vmdk", size),
            ImageSpec(
                f"{label}-vmdk-stream", "vmdk", size, convert_options="subformat=streamOptimized"
            ),
            ImageSpec(f"{label}-vpc", "vpc", size, create_options="force_size=on"),
            ImageSpec(f"{label}-vhdx", "vhdx", size),
            ImageSpec(f"{label}-vdi", "vdi", size),
            ImageSpec(f"{label}-qed", "qed", size),
        ]
    return out


# -- building ----------------------------------------------------------------------------------


def bench_dir() -> Path:
    root = Path(os.environ.get("IMAGEPORT_BENCH_DIR", REPO / ".test-cache" / "bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


def _fill(path: Path, fmt: str, size: int) -> None:
    cmd = ["qemu-io", "-f", fmt]
    for offset, length, pattern in _writes(size):
        cmd += ["-c", f"write -q -P {pattern} {offset} {length}"]
    _run([*cmd, str(path)])


def build(spec: ImageSpec) -> Path:
    """The image of ``spec``, built on first use (sparse on disk)."""
    final = bench_dir() / f"{spec.name}.{spec.fmt}"
    if final.exists():
        return final
    tmp = final.with_name(final.name + ".tmp")
    tmp.unlink(missing_ok=True)
    if spec.convert_options is not None:
        raw_name = spec.name.split("-")[0] + "-raw"
        source = build(next(s for s in specs() if s.name == raw_name))
        cmd = ["qemu-img", "convert", "-f", "raw", "-O", spec.fmt]
        if spec.convert_options:
            cmd += ["-o", spec.convert_options]
        if spec.compress:
            cmd.append("-c")
        _run([*cmd, str(source), str(tmp)])
    else:
        cmd = ["qemu-img", "create", "-q", "-f", spec.fmt]
        if spec.create_options:
            cmd += ["-o", spec.create_options]
        _run([*cmd, str(tmp), str(spec.virtual_size)])
        _fill(tmp, spec.fmt, spec.virtual_size)
    os.replace(tmp, final)
    return final


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Median wall-clock and CPU (user + system) seconds of a command over several runs."""

    wall: float
    cpu: float


def _timed(cmd: list[str], reps: int) -> tuple[Timing, str]:
    """Run ``cmd`` ``reps`` times; the CPU time comes from the finished child's rusage."""
    walls, cpus = [], []
    out = ""
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        out = proc.stdout
    return Timing(statistics.median(walls), statistics.median(cpus)), out


_LINE = re.compile(r"^(?:\[pid\s+)?(?P<pid>\d+)?\]?\s*(?P<rest>.*)$")
_CALL = re.compile(r"^(?P<call>read|pread64|preadv2?)\((?P<fd>\d+)<(?P<path>[^>]*)>")
_RESUMED = re.compile(r"^<\.\.\. (?P<call>read|pread64|preadv2?) resumed>")
#: the return value at the end of a line ("= 4096", "= -1 EINTR (...)"); anchored at the end
#: because the quoted data earlier in the line may itself contain ") = ".
_RESULT = re.compile(r"\)\s+=\s+(?P<ret>-?\d+)(?:\s+E[A-Z]+\s.*)?$")


def strace_bytes(cmd: list[str], image: Path) -> int | None:
    """Bytes ``cmd`` read from ``image`` according to strace (None when strace is missing)."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    target = str(image.resolve())
    with tempfile.NamedTemporaryFile(suffix=".strace") as log:
        subprocess.run(
            [
                strace,
                "-f",
                "-y",
                "-qq",
                "-e",
                "trace=read,pread64,preadv,preadv2",
                "-e",
                "signal=none",
                "-o",
                log.name,
                *cmd,
            ],
            capture_output=True,
            check=False,
        )
        lines = Path(log.name).read_text(errors="replace").splitlines()
    total = 0
    pending: dict[str, bool] = {}  # pid -> the unfinished call was on the image
    for line in lines:
        m = _LINE.match(line)
        pid = (m.group("pid") if m else None) or "main"
        rest = m.group("rest") if m else line
        call = _CALL.match(rest)
        if call is not None:
            on_image = os.path.realpath(call.group("path")) == target
            if "<unfinished ...>" in rest:
                pending[pid] = on_image
                continue
        elif _RESUMED.match(rest):
            on_image = pending.pop(pid, False)
        else:
            continue
        result = _RESULT.search(rest)
        if on_image and result is not None and int(result.group("ret")) > 0:
            total += int(result.group("ret"))
    return total


def in_process(path: Path, reps: int) -> tuple[Timing, int | None, str, str]:
    """Median time of probe + open + allocated_bytes in this process; bytes read; format."""
    sys.path.insert(0, str(REPO / "src"))
    from imageport.formats import registry
    from imageport.source import FileSource

    walls, cpus = [], []
    read = None
    fmt = variant = "?"
    for _ in range(reps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        with FileSource(path) as source:
            container = registry.probe(source)
            if container.readable and container.opener is not None:
                container.opener(source).allocated_bytes()
            read = source.bytes_read
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        fmt, variant = container.format, container.variant
        if container.damage:
            variant = f"damaged: {container.damage[:60]}"
    return Timing(statistics.median(walls), statistics.median(cpus)), read, fmt, variant


def imageport_cmd() -> list[str] | None:
    """The CLI command, when the ``imageport check`` entry point works."""
    exe = REPO / ".venv" / "bin" / "imageport"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "imageport.cli.main"]
    probe = subprocess.run([*cmd, "check", "--help"], capture_output=True, check=False)
    return cmd if probe.returncode == 0 else None


@dataclass
class Row:
    image: str
    format: str
    virtual_size: int
    file_size: int
    disk_usage: int
    imageport_cli: Timing | None
    imageport_inproc: Timing
    qemu_img: Timing
    imageport_bytes: int | None
    imageport_strace_bytes: int | None
    qemu_img_bytes: int | None
    detected: str
    cli_error: str = ""


def measure(spec: ImageSpec, reps: int, cli: list[str] | None) -> Row:
    path = build(spec)
    st = path.stat()
    qemu = ["qemu-img", "info", "-f", spec.fmt, "--output=json", str(path)]
    qemu_t, _ = _timed(qemu, reps)
    qemu_bytes = strace_bytes(qemu, path)
    inproc_t, inproc_bytes, fmt, variant = in_process(path, reps)
    cli_t = None
    cli_bytes = inproc_bytes
    cli_strace = None
    error = ""
    detected = f"{fmt} ({variant})"
    if cli is not None:
        cmd = [*cli, "check", str(path), "--json"]
        cli_t, out = _timed(cmd, reps)
        try:
            report = json.loads(out)
            cli_bytes = report.get("bytes_read", cli_bytes)
            detected = f"{report.get('format')} ({report.get('variant')})"
        except ValueError:
            error = f"unparsable JSON: {out[:80]!r}"
        cli_strace = strace_bytes(cmd, path)
    return Row(
        image=spec.name,
        format=spec.fmt,
        virtual_size=spec.virtual_size,
        file_size=st.st_size,
        disk_usage=st.st_blocks * 512,
        imageport_cli=cli_t,
        imageport_inproc=inproc_t,
        qemu_img=qemu_t,
        imageport_bytes=cli_bytes,
        imageport_strace_bytes=cli_strace,
        qemu_img_bytes=qemu_bytes,
        detected=detected,
        cli_error=error,
    )


# -- reporting ---------------------------------------------------------------------------------


def _size(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def _ms(s: float | None) -> str:
    return "n/a" if s is None else f"{s * 1000:.1f}"


def _ratio(ours: float | None, base: float | None) -> str:
    return f"{ours / base:.1f}x" if ours is not None and base else "n/a"


def table(rows: list[Row]) -> str:
    head = (
        "image",
        "format",
        "virtual",
        "on disk",
        "imageport ms",
        "cpu ms",
        "in-proc ms",
        "cpu ms",
        "qemu-img ms",
        "cpu ms",
        "ratio",
        "cpu ratio",
        "imageport read",
        "qemu-img read",
        "detected by imageport",
    )
    lines = [head]
    for r in rows:
        cli = r.imageport_cli
        ours = cli or r.imageport_inproc
        ip_read = _size(r.imageport_bytes)
        if r.imageport_strace_bytes is not None and r.imageport_strace_bytes != r.imageport_bytes:
            ip_read += f" (strace {_size(r.imageport_strace_bytes)})"
        lines.append(
            (
                r.image,
                OURS.get(r.format, r.format),
                _size(r.virtual_size),
                _size(r.disk_usage),
                _ms(cli.wall if cli else None),
                _ms(cli.cpu if cli else None),
                _ms(r.imageport_inproc.wall),
                _ms(r.imageport_inproc.cpu),
                _ms(r.qemu_img.wall),
                _ms(r.qemu_img.cpu),
                _ratio(ours.wall, r.qemu_img.wall),
                _ratio(ours.cpu, r.qemu_img.cpu),
                ip_read,
                _size(r.qemu_img_bytes),
                r.detected[:44] + (f" [{r.cli_error}]" if r.cli_error else ""),
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--only", choices=("small", "large"), help="one size class")
    parser.add_argument("--filter", default="", help="only images whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    for tool in ("qemu-img", "qemu-io"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install qemu-utils)", file=sys.stderr)
            return 2
    if shutil.which("strace") is None:
        print(
            "strace is not installed: qemu-img bytes read will show n/a (apt-get install strace)",
            file=sys.stderr,
        )
    cli = imageport_cmd()
    if cli is None:
        print(
            "note: `imageport check` is not available yet; the ratio uses the in-process time",
            file=sys.stderr,
        )
    rows = []
    for spec in specs():
        if args.only and not spec.name.startswith(args.only):
            continue
        if args.filter not in spec.name:
            continue
        rows.append(measure(spec, args.reps, cli))
        print(f"measured {spec.name}", file=sys.stderr)
    print(
        f"median of {args.reps} runs; ratio = imageport {'CLI' if cli else 'in-process'} "
        "wall time / qemu-img info wall time; cpu ratio: the same for user+system CPU time "
        f"(both measured in this run); load average {os.getloadavg()[0]:.2f}"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
