"""Time ``imageport check`` on real Debian 12 disks against ``virt-inspector``; compare findings.

Images: the guest images of ``tests/support/guest_images.py`` (``docs/test-images.md``): 3 GiB
virtual, ~0.9 GB of data, converted by ``qemu-img convert`` into every format imageport accepts
(raw, qcow2, vmdk, vmdk-stream, vpc, vhdx, vdi, qed). Each layout also comes as a **100 GiB** disk
with the same content: the raw disk copied sparse into a 100 GiB file (``cp --sparse=always`` then
``truncate``), the GPT backup header moved to the new end with ``sfdisk --relocate gpt-bak-std``
(the partitions keep their size), then converted like the 3 GiB one. No backing files: imageport
refuses them. The 100 GiB raw is built once, sparse (~0.9 GB allocated), under the guest cache
(``.test-cache/guest/big-KEY/``); its conversions are made per run into a temporary file and removed
after measuring (``--keep-big`` caches them too), so that the bench does not fill a shared disk; a
build that would leave less than 3 GiB free is skipped and reported.

Measured per image:

* ``imageport check FILE --json`` as a subprocess, ``--reps`` times: median wall time (Python
  start-up included), median user+system CPU time of the child (``getrusage`` deltas), the
  tool's own ``elapsed_seconds`` (in-process) and its ``bytes_read``; with strace installed, one
  extra run counts the bytes read from the image by system call (``check_vs_qemu.strace_bytes``);
* ``virt-inspector --format=FMT -a FILE`` (libguestfs, ``LIBGUESTFS_BACKEND=direct``, TCG forced
  with ``LIBGUESTFS_BACKEND_SETTINGS=force_tcg`` because nested KVM aborts here) on a few images
  only, since it takes tens of seconds a run: wall and CPU time (its qemu is a waited-for child,
  so it is in the rusage), and its XML parsed into OS, version, root device and mountpoints;
* agreement: imageport's OS (id + major version), root device and mountpoints against
  virt-inspector's for the same image, or, on rows where virt-inspector did not run, against its
  result for the same layout on another format/size (same content, same device names).

Both tools read through a warm page cache (the images are read once before timing).
Usage: ``bench/run --guest [--reps N] [--layouts ...] [--formats ...] [--sizes 3g 100g]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (HERE, REPO / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from check_vs_qemu import Timing, imageport_cmd, strace_bytes  # noqa: E402 - bench/

from support import guest_images  # noqa: E402 - from tests/, after the path is set

MiB = 1 << 20
GiB = 1 << 30
BIG = 100 * GiB
#: size class -> virtual size (None: the builder's own 3 GiB disk)
SIZES: dict[str, int | None] = {"3g": None, "100g": BIG}
MAIN_LAYOUT = "gpt-bios-esp-ext4"
FORMATS = tuple(guest_images.FORMATS)

#: free space left on the (shared) disk after building a bench image
HEADROOM = 3 * GiB

TARGET_WALL = 1.0
TARGET_READ = 64 * MiB
TARGET_RATIO = 25.0

VI_ENV = {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}


@dataclass(frozen=True)
class Case:
    """One image of the matrix: a layout, a size class and a format (a FORMATS key)."""

    layout: str
    size: str
    fmt: str

    @property
    def key(self) -> str:
        return f"{self.layout}:{self.size}:{self.fmt}"


# -- images ------------------------------------------------------------------------------------


def big_dir() -> Path:
    """Cache of the 100 GiB variants, keyed like the 3 GiB images (stale keys are removed)."""
    d = guest_images.guest_dir() / f"big-{guest_images.layout_key()}"
    if not d.exists():
        for old in guest_images.guest_dir().glob("big-*"):
            _log(f"removing stale {old.name}")
            shutil.rmtree(old, ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)
    return d


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _run(*argv: str | Path) -> None:
    cmd = [str(a) for a in argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-1000:]}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_gpt(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(512)
        return f.read(8) == b"EFI PART"


def big_raw(layout: str) -> Path:
    """``layout``'s raw disk copied sparse into a 100 GiB file, GPT backup moved to the end."""
    final = big_dir() / f"{layout}-100g.raw"
    if final.exists():
        return final
    src: Path = guest_images.guest_image(layout, "raw")
    with guest_images.build_lock():
        if final.exists():
            return final
        tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
        _need_space(src, final.name)
        try:
            t0 = time.monotonic()
            _run("cp", "--sparse=always", src, tmp)
            os.truncate(tmp, BIG)
            if _is_gpt(tmp):
                _run("sfdisk", "--relocate", "gpt-bak-std", tmp)
            _fsync(tmp)
            os.replace(tmp, final)
            _log(f"{final.name}: built in {time.monotonic() - t0:.1f} s")
        finally:
            tmp.unlink(missing_ok=True)
    return final


class NoSpaceError(RuntimeError):
    """Building an image would leave the shared disk nearly full: the case is skipped."""


def _need_space(source: Path, what: str) -> None:
    need = source.stat().st_blocks * 512 + HEADROOM
    free = shutil.disk_usage(source.parent).free
    if free < need:
        raise NoSpaceError(f"{what}: needs {_size(need)} free (with headroom), {_size(free)} left")


def image(case: Case, keep: bool) -> tuple[Path, bool]:
    """The image file of ``case`` and whether it is temporary (delete after measuring).

    3 GiB images come from ``guest_images`` (shared cache). The 100 GiB raw is cached here; its
    conversions are cached only with ``keep`` (about 0.9 GB each), otherwise made into a
    temporary file and removed after the measurement, so the bench adds at most two ~0.9 GB
    files to a shared disk."""
    if SIZES[case.size] is None:
        path: Path = guest_images.guest_image(case.layout, case.fmt)
        return path, False
    raw = big_raw(case.layout)
    if case.fmt == "raw":
        return raw, False
    final = raw.with_name(f"{case.layout}-100g.{case.fmt}")
    if final.exists():
        return final, False
    qfmt, opts = guest_images.FORMATS[case.fmt]
    with guest_images.build_lock():
        if final.exists():
            return final, False
        tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
        _need_space(raw, final.name)
        try:
            t0 = time.monotonic()
            _run("qemu-img", "convert", "-f", "raw", "-O", qfmt, *opts, raw, tmp)
            _fsync(tmp)  # no writeback of the conversion during the timed runs
            _log(f"{final.name}: converted in {time.monotonic() - t0:.1f} s")
            if not keep:
                return tmp, True
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return final, False


def _warm(path: Path) -> None:
    """Read the allocated parts of ``path`` once so that every timed run sees a warm cache
    (``SEEK_DATA``/``SEEK_HOLE``: the holes of a 100 GiB sparse file are skipped)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        pos = 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            os.lseek(fd, start, os.SEEK_SET)
            while start < stop:
                chunk = os.read(fd, min(8 * MiB, stop - start))
                if not chunk:
                    break
                start += len(chunk)
            pos = max(stop, start)
    finally:
        os.close(fd)


# -- what each tool found ----------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """OS, root device and mountpoints, with devices named the way libguestfs names them."""

    os: str
    root: str
    mounts: tuple[tuple[str, str], ...]  # (mountpoint, device), sorted

    def short(self) -> str:
        mounts = " ".join(f"{m}={_dev(d)}" for m, d in self.mounts)
        return f"{self.os}, root {_dev(self.root)}, {mounts}"


def _dev(device: str) -> str:
    return device.removeprefix("/dev/")


def _lg_device(volume: str) -> str:
    """imageport's volume name (``part3``, ``vg0/root``) as libguestfs's (``/dev/sda3``, ...)."""
    if volume.startswith("part") and volume[4:].isdigit():
        return f"/dev/sda{volume[4:]}"
    if volume.count("/") == 1:
        return f"/dev/{volume}"
    return volume


def _lg_vi_device(device: str) -> str:
    """virt-inspector's device, with a Btrfs top-level subvolume (``btrfsvol:/dev/sda2/``) as the
    plain device; other subvolumes keep their path."""
    if device.startswith("btrfsvol:"):
        rest = device.removeprefix("btrfsvol:")
        dev, _, sub = rest.partition("/dev/")[2].partition("/")
        return f"/dev/{dev}" + (f"/{sub}" if sub.strip("/") else "")
    return device


def imageport_found(report: dict[str, object]) -> Found | None:
    guest = report.get("guest")
    if not isinstance(guest, dict) or not guest.get("root"):
        return None
    os_info = guest.get("os") or {}
    version = str(os_info.get("version_id") or "?").split(".")[0]
    mounts = tuple(
        sorted(
            (str(m["mountpoint"]), _lg_device(str(m["volume"])))
            for m in guest.get("mounts") or []
            if m.get("mountpoint", "").startswith("/")
        )
    )
    return Found(f"{os_info.get('id', '?')} {version}", _lg_device(str(guest["root"])), mounts)


def vi_found(xml_text: str) -> Found | None:
    """The first operating system of virt-inspector's XML (output of a local tool we ran)."""
    try:
        root = ET.fromstring(xml_text)  # noqa: S314 - our own virt-inspector run, not the image
    except ET.ParseError:
        return None
    osys = root.find("operatingsystem")
    if osys is None:
        return None
    distro = osys.findtext("distro") or osys.findtext("name") or "?"
    major = osys.findtext("major_version") or "?"
    mounts = tuple(
        sorted(
            (mp.text or "", _lg_vi_device(mp.get("dev", "")))
            for mp in osys.iterfind("mountpoints/mountpoint")
        )
    )
    return Found(f"{distro} {major}", _lg_vi_device(osys.findtext("root") or "?"), mounts)


def agreement(ours: Found | None, theirs: Found | None) -> str:
    if ours is None or theirs is None:
        return "n/a"
    diff = [
        name for name in ("os", "root", "mounts") if getattr(ours, name) != getattr(theirs, name)
    ]
    return "yes" if not diff else "NO: " + ",".join(diff)


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViRun:
    timing: Timing
    found: Found | None
    error: str


@dataclass
class Row:
    case: str
    path: str
    virtual_size: int
    disk_usage: int
    imageport: Timing
    imageport_inproc: float | None
    imageport_exit: int
    bytes_read: int | None
    strace_bytes: int | None
    found: Found | None
    virt_inspector: ViRun | None = None
    agree: str = "n/a"
    error: str = ""


def _timed(
    cmd: list[str],
    reps: int,
    env: dict[str, str] | None = None,
) -> tuple[Timing, list[subprocess.CompletedProcess[str]]]:
    walls, cpus, procs = [], [], []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, env=env, timeout=900
        )
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        procs.append(proc)
    return Timing(statistics.median(walls), statistics.median(cpus)), procs


def measure(case: Case, path: Path, cli: list[str], reps: int, use_strace: bool) -> Row:
    _warm(path)
    cmd = [*cli, "check", str(path), "--json"]
    timing, procs = _timed(cmd, reps)
    report: dict[str, object] = {}
    error = ""
    try:
        report = json.loads(procs[-1].stdout)
    except ValueError:
        error = f"unparsable JSON (exit {procs[-1].returncode}): {procs[-1].stderr[-120:]!r}"
    inprocs = []
    for proc in procs:
        try:
            inprocs.append(float(json.loads(proc.stdout)["elapsed_seconds"]))
        except (ValueError, KeyError, TypeError):
            pass
    read = report.get("bytes_read")
    st = path.stat()
    return Row(
        case=case.key,
        path=str(path),
        virtual_size=int(str(report.get("virtual_size") or 0)) or st.st_size,
        disk_usage=st.st_blocks * 512,
        imageport=timing,
        imageport_inproc=statistics.median(inprocs) if inprocs else None,
        imageport_exit=procs[-1].returncode,
        bytes_read=read if isinstance(read, int) else None,
        strace_bytes=strace_bytes(cmd, path) if use_strace else None,
        found=imageport_found(report),
        error=error,
    )


def vi_command(case: Case, path: Path) -> list[str]:
    qfmt = guest_images.FORMATS[case.fmt][0]
    return ["virt-inspector", f"--format={qfmt}", "-a", str(path)]


def run_virt_inspector(case: Case, path: Path, reps: int) -> ViRun:
    _warm(path)
    timing, procs = _timed(vi_command(case, path), reps, env={**os.environ, **VI_ENV})
    last = procs[-1]
    found = vi_found(last.stdout) if last.returncode == 0 else None
    error = "" if found else f"exit {last.returncode}: {last.stderr.strip()[-200:]}"
    return ViRun(timing, found, error)


def appliance_cached() -> bool:
    """Whether libguestfs's supermin appliance is already built (the first run builds it)."""
    base = Path(os.environ.get("LIBGUESTFS_CACHEDIR") or os.environ.get("TMPDIR") or "/var/tmp")
    return any(base.glob(f".guestfs-{os.getuid()}/appliance.d/kernel"))


# -- the matrix --------------------------------------------------------------------------------


def matrix(args: argparse.Namespace) -> list[Case]:
    """The images to measure. Default: the main layout in every format at both sizes, and the
    other layouts as 3 GiB raw (so virt-inspector also sees LVM/XFS and Btrfs)."""
    if args.layouts or args.formats or args.sizes:
        layouts = _expand(args.layouts, guest_images.LAYOUTS) or [MAIN_LAYOUT]
        return [
            Case(lay, size, fmt)
            for lay in layouts
            for size in args.sizes or list(SIZES)
            for fmt in args.formats or FORMATS
        ]
    cases = [Case(MAIN_LAYOUT, size, fmt) for size in SIZES for fmt in FORMATS]
    cases += [Case(lay, "3g", "raw") for lay in guest_images.LAYOUTS if lay != MAIN_LAYOUT]
    return cases


def _expand(names: list[str] | None, every: tuple[str, ...]) -> list[str]:
    if not names:
        return []
    return list(every) if "all" in names else names


def vi_cases(args: argparse.Namespace, cases: list[Case]) -> list[Case]:
    """Where virt-inspector runs: ``--vi`` as given, else the 3 GiB raw of each layout, the main
    layout's 3 GiB qcow2 and its 100 GiB qcow2 (those that are in the matrix)."""
    if args.no_vi:
        return []
    if args.vi:
        wanted = [Case(*spec.split(":")) for spec in args.vi]
        return [c for c in wanted if c in cases] + [c for c in wanted if c not in cases]
    layouts = dict.fromkeys(c.layout for c in cases)
    wanted = [Case(lay, "3g", "raw") for lay in layouts]
    wanted += [Case(MAIN_LAYOUT, "3g", "qcow2"), Case(MAIN_LAYOUT, "100g", "qcow2")]
    return [c for c in wanted if c in cases]


# -- reporting ---------------------------------------------------------------------------------


def _size(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(rows: list[Row]) -> str:
    head = (
        "image",
        "size",
        "format",
        "virtual",
        "on disk",
        "imageport wall s",
        "cpu s",
        "in-proc s",
        "bytes read",
        "virt-inspector wall s",
        "cpu s",
        "ratio",
        "imageport found",
        "virt-inspector found",
        "agree",
    )
    lines: list[tuple[str, ...]] = [head]
    for r in rows:
        layout, size, fmt = r.case.split(":")
        vi = r.virt_inspector
        read = _size(r.bytes_read)
        if r.strace_bytes is not None and r.strace_bytes != r.bytes_read:
            read += f" (strace {_size(r.strace_bytes)})"
        ours = r.found.short() if r.found else f"nothing [{r.error or f'exit {r.imageport_exit}'}]"
        theirs = "-" if vi is None else (vi.found.short() if vi.found else f"[{vi.error[:60]}]")
        lines.append(
            (
                layout,
                size,
                fmt,
                _size(r.virtual_size),
                _size(r.disk_usage),
                _s(r.imageport.wall),
                _s(r.imageport.cpu),
                _s(r.imageport_inproc),
                read,
                _s(vi.timing.wall) if vi else "-",
                _s(vi.timing.cpu) if vi else "-",
                f"{vi.timing.wall / r.imageport.wall:.0f}x" if vi else "-",
                ours,
                theirs,
                r.agree,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def targets(rows: list[Row]) -> list[str]:
    """One line per target of the issue: met or missed, with the worst row."""
    out = []
    worst = max(rows, key=lambda r: r.imageport.wall)
    out.append(
        f"wall time <= ~{TARGET_WALL:.0f} s: max {worst.imageport.wall:.2f} s "
        f"({worst.case}); {sum(r.imageport.wall <= TARGET_WALL for r in rows)}/"
        f"{len(rows)} rows at or under {TARGET_WALL:.1f} s"
    )
    reads = [r for r in rows if r.bytes_read is not None]
    if reads:
        most = max(reads, key=lambda r: r.bytes_read or 0)
        verdict = "met" if (most.bytes_read or 0) <= TARGET_READ else "MISSED"
        out.append(f"bytes read <= 64 MiB: {verdict}, max {_size(most.bytes_read)} ({most.case})")
    ratios = [
        (r.virt_inspector.timing.wall / r.imageport.wall, r.case)
        for r in rows
        if r.virt_inspector is not None and r.virt_inspector.found
    ]
    if ratios:
        ratio, case = min(ratios)
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        out.append(
            f">= {TARGET_RATIO:.0f}x faster than virt-inspector: {verdict}, min "
            f"{ratio:.0f}x ({case})"
        )
    else:
        out.append("ratio to virt-inspector: baseline missing (not run or not installed)")
    disagree = [r.case for r in rows if r.agree.startswith("NO")]
    compared = [r for r in rows if r.agree != "n/a"]
    out.append(
        f"agreement with virt-inspector: {len(compared) - len(disagree)}/{len(compared)} "
        "rows agree" + (f"; differ: {', '.join(disagree)}" if disagree else "")
    )
    return out


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="imageport runs per image (median)")
    parser.add_argument(
        "--layouts",
        nargs="+",
        metavar="LAYOUT",
        choices=[*guest_images.LAYOUTS, "all"],
        help=f"layouts (default: {MAIN_LAYOUT} in every format and size, the others as 3g raw)",
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=FORMATS,
        metavar="FMT",
        help=f"formats (default: all of {', '.join(FORMATS)})",
    )
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), help="3g, 100g (default both)")
    parser.add_argument(
        "--vi",
        action="append",
        metavar="LAYOUT:SIZE:FMT",
        help="run virt-inspector on this image (repeatable; replaces the default "
        "set: 3g raw of each layout, main layout 3g and 100g qcow2)",
    )
    parser.add_argument("--vi-reps", type=int, default=1, help="virt-inspector runs (median)")
    parser.add_argument("--no-vi", action="store_true", help="skip virt-inspector")
    parser.add_argument(
        "--keep-big",
        action="store_true",
        help="cache the 100 GiB conversions too (~0.9 GB each; default: only "
        "the 100 GiB raw is kept, conversions are made per run and removed)",
    )
    parser.add_argument("--no-strace", action="store_true", help="skip the strace byte count")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    cli = imageport_cmd()
    if cli is None:
        print("`imageport check` does not run (install the project: .venv)", file=sys.stderr)
        return 2
    for spec in args.vi or []:
        parts = spec.split(":")
        if (
            len(parts) != 3
            or parts[0] not in guest_images.LAYOUTS
            or parts[1] not in SIZES
            or parts[2] not in FORMATS
        ):
            parser.error(f"--vi {spec!r}: want LAYOUT:SIZE:FMT")
    cases = matrix(args)
    cases += [c for c in (Case(*s.split(":")) for s in args.vi or []) if c not in cases]
    vi_set = vi_cases(args, cases)
    have_vi = shutil.which("virt-inspector") is not None
    if vi_set and not have_vi:
        print(
            "virt-inspector is not installed (apt-get install libguestfs-tools): the baseline "
            "and the agreement column are missing",
            file=sys.stderr,
        )
        vi_set = []
    use_strace = not args.no_strace and shutil.which("strace") is not None

    load_before = os.getloadavg()
    if vi_set and not appliance_cached():
        _log("building libguestfs's appliance once (untimed warm-up run)")
        first = next((c for c in vi_set if c.size == "3g"), vi_set[0])
        subprocess.run(
            vi_command(first, image(first, args.keep_big)[0]),
            capture_output=True,
            env={**os.environ, **VI_ENV},
            check=False,
        )

    rows: list[Row] = []
    skipped: list[str] = []
    vi_by_layout: dict[str, tuple[Case, Found]] = {}
    for case in cases:
        try:
            path, temporary = image(case, args.keep_big)
        except NoSpaceError as e:
            skipped.append(f"{case.key} ({e})")
            _log(f"skipped {case.key}: {e}")
            continue
        try:
            row = measure(case, path, cli, args.reps, use_strace)
            if case in vi_set:
                _log(f"virt-inspector {case.key} ...")
                row.virt_inspector = run_virt_inspector(case, path, args.vi_reps)
                if row.virt_inspector.found:
                    row.agree = agreement(row.found, row.virt_inspector.found)
                    vi_by_layout.setdefault(case.layout, (case, row.virt_inspector.found))
        finally:
            if temporary:
                path.unlink(missing_ok=True)
        rows.append(row)
        _log(f"measured {case.key}: {row.imageport.wall:.2f} s")
    for row in rows:
        layout = row.case.split(":")[0]
        if row.virt_inspector is None and layout in vi_by_layout:
            other, found = vi_by_layout[layout]
            verdict = agreement(row.found, found)
            row.agree = f"{verdict} (vs {other.size} {other.fmt})"

    load_after = os.getloadavg()
    vi_note = (
        (
            f"{args.vi_reps} run(s), LIBGUESTFS_BACKEND=direct, force_tcg, --format given; "
            "ratio = virt-inspector wall / imageport wall, same run"
        )
        if vi_set
        else "not run"
    )
    print(
        f"imageport: median of {args.reps} runs of `imageport check FILE --json` (wall: whole "
        f"process; cpu: user+sys; in-proc: its elapsed_seconds); virt-inspector: {vi_note}"
    )
    print(
        "load average (1/5/15 min) before: "
        + " ".join(f"{x:.2f}" for x in load_before)
        + ", after: "
        + " ".join(f"{x:.2f}" for x in load_after)
        + f"; {os.cpu_count()} CPUs"
    )
    print(table(rows))
    for line in skipped:
        print(f"skipped: {line}")
    for line in targets(rows):
        print("target: " + line)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
