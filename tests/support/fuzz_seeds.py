"""Seed images, mutations and the crash oracle for the parser fuzz tests
(tests/formats/test_fuzz.py).

Seeds are small valid images of every format, made by real tools (qemu-img, xorriso) from one 4
MiB raw disk with data in a few places, plus hand-made headers and magic-only byte strings for
the formats no local tool writes, plus small files from the corpus (:data:`builders.CORPUS`).
Each seed carries *regions*: byte ranges of its metadata (headers, tables, footers), found
generically as the parts of the file that ``qemu-img map`` does not report as guest data.

A :class:`Mutation` is a small, printable, reproducible edit (overwrite, bit flip, truncation,
random body behind a valid magic). :func:`check` runs every parser on the mutated bytes and
returns the list of contract violations: an exception that is not an
:class:`~imageport.errors.ImageportError`, a probe that raises or reports an internal error, a
wrong read length, a memory peak above the ceiling, or more CPU time than the limit.

Run ``python tests/support/fuzz_seeds.py [N [NAME-PART]]`` for a long deterministic sweep (N
mutations of every seed whose name contains NAME-PART) that prints every distinct crash once,
grouped by format, stage and code location (the test suite stops at the first one per seed).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from types import FrameType

from imageport.checksums import vhd_checksum
from imageport.disk.base import VirtualDisk
from imageport.errors import ImageportError, SourceError
from imageport.formats import raw, registry
from imageport.formats.base import FormatSpec, ProbeWindow
from imageport.source import BytesSource
from support import builders

KiB = 1024
MiB = 1024 * KiB
SEED_DISK_SIZE = 4 * MiB
SEED_VERSION = "3"

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

CORPUS = builders.CORPUS
#: Corpus files larger than this (decompressed) are cut to it: a truncated image is a fine seed.
MAX_CORPUS_SEED = 6 * MiB


# --------------------------------------------------------------------------------------------
# Seeds


@dataclass(frozen=True)
class Seed:
    """A starting file for mutation: its name, bytes and metadata regions ``(start, length)``."""

    name: str
    data: bytes = field(repr=False)
    regions: tuple[tuple[int, int], ...] = field(default=(), repr=False)


def _seed_dir() -> Path:
    d = builders.cached(f"fuzz-seeds-v{SEED_VERSION}")
    d.mkdir(parents=True, exist_ok=True)
    return d


def base_raw() -> Path:
    """A 4 MiB raw disk: an MBR, random data across 64 KiB / 1 MiB / 2 MiB edges, text, a tail."""
    final = _seed_dir() / "base.raw"
    if final.exists():
        return final
    rng = random.Random(4242)
    tmp = final.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(SEED_DISK_SIZE)
        for offset, data in (
            (0, rng.randbytes(446) + bytes(64) + b"\x55\xaa"),
            (64 * KiB - 700, rng.randbytes(1500)),
            (MiB - 4 * KiB, rng.randbytes(12 * KiB)),
            (2 * MiB - 100, rng.randbytes(200)),
            (3 * MiB, b"".join(b"fuzz seed line %06d\n" % i for i in range(4000))),
            (SEED_DISK_SIZE - 4 * KiB, rng.randbytes(4 * KiB)),
        ):
            f.seek(offset)
            f.write(data)
    os.replace(tmp, final)
    return final


#: name -> (qemu format, qemu-img convert options, compress)
_CONVERTED: dict[str, tuple[str, str, bool]] = {
    "qcow2-v2": ("qcow2", "compat=0.10", False),
    "qcow2-v3": ("qcow2", "compat=1.1", False),
    "qcow2-4k-clusters": ("qcow2", "cluster_size=4096", False),
    "qcow2-extended-l2": ("qcow2", "extended_l2=on", False),
    "qcow2-zlib": ("qcow2", "", True),
    "qcow2-zstd": ("qcow2", "compression_type=zstd", True),
    "qcow": ("qcow", "", False),
    "vmdk-sparse": ("vmdk", "", False),
    "vmdk-stream": ("vmdk", "subformat=streamOptimized", False),
    "vpc-fixed": ("vpc", "subformat=fixed,force_size=on", False),
    "vpc-dynamic": ("vpc", "force_size=on", False),
    "vhdx": ("vhdx", "block_size=1M,log_size=1M", False),
    "vdi": ("vdi", "", False),
    "vdi-static": ("vdi", "static=on", False),
    "qed": ("qed", "", False),
    "parallels": ("parallels", "", False),
}

#: name -> qemu-img create arguments (after ``create``) making a file that must be refused.
_SECRET = "secret,id=sec0,data=fuzz-passphrase"  # noqa: S105 - a test key for a test file
_CREATED: dict[str, tuple[str, list[str]]] = {
    "qcow2-backing": ("qcow2", ["-f", "qcow2", "-u", "-b", "/nonexistent/base.img", "-F", "raw"]),
    "qcow2-luks": (
        "qcow2",
        [
            "--object",
            _SECRET,
            "-f",
            "qcow2",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        ],
    ),
    "luks": ("luks", ["--object", _SECRET, "-f", "luks", "-o", "key-secret=sec0,iter-time=10"]),
    "vmdk-flat-descriptor": ("vmdk", ["-f", "vmdk", "-o", "subformat=monolithicFlat"]),
}


def _build(name: str, make: Callable[[Path], None]) -> Path:
    final = _seed_dir() / name
    if not final.exists():
        with tempfile.TemporaryDirectory(dir=_seed_dir()) as tmpdir:
            out = Path(tmpdir) / name
            make(out)
            os.replace(out, final)
    return final


def _converted(name: str) -> Path:
    fmt, options, compress = _CONVERTED[name]

    def make(out: Path) -> None:
        args = ["convert", "-f", "raw", "-O", fmt]
        if options:
            args += ["-o", options]
        if compress:
            args.append("-c")
        builders.qemu_img(*args, str(base_raw()), str(out))

    return _build(f"{name}.{fmt}", make)


def _created(name: str) -> Path:
    fmt, args = _CREATED[name]

    def make(out: Path) -> None:
        builders.qemu_img("create", "-q", *args, str(out), "1M")

    return _build(f"{name}.{fmt}", make)


def _iso() -> Path:
    def make(out: Path) -> None:
        xorriso = shutil.which("xorriso")
        if xorriso is None:
            out.write_bytes(minimal_iso())
            return
        with tempfile.TemporaryDirectory() as tree:
            Path(tree, "README.TXT").write_text("imageport fuzz seed\n" * 50)
            Path(tree, "boot").mkdir()
            Path(tree, "boot", "data.bin").write_bytes(random.Random(7).randbytes(20000))
            subprocess.run(
                [
                    xorriso,
                    "-as",
                    "mkisofs",
                    "-quiet",
                    "-R",
                    "-J",
                    "-V",
                    "FUZZSEED",
                    "-o",
                    str(out),
                    tree,
                ],
                check=True,
                capture_output=True,
            )

    return _build("seed.iso", make)


def minimal_iso() -> bytes:
    """A hand-made ISO 9660 volume: 16 system sectors, a primary descriptor, a terminator."""
    sector = 2048
    pvd = bytearray(sector)
    pvd[0:7] = b"\x01CD001\x01"
    pvd[40:72] = b"FUZZSEED".ljust(32)
    total = 20
    pvd[80:88] = struct.pack("<I", total) + struct.pack(">I", total)
    pvd[120:124] = struct.pack("<H", 1) + struct.pack(">H", 1)
    pvd[128:132] = struct.pack("<H", sector) + struct.pack(">H", sector)
    root = bytearray(34)
    root[0] = 34
    root[2:10] = struct.pack("<I", 18) + struct.pack(">I", 18)
    root[10:18] = struct.pack("<I", sector) + struct.pack(">I", sector)
    root[25] = 2
    root[32] = 1
    pvd[156:190] = root
    pvd[881] = 1
    term = bytearray(sector)
    term[0:7] = b"\xffCD001\x01"
    return bytes(16 * sector) + bytes(pvd) + bytes(term) + bytes((total - 18) * sector)


def zvhd_seed(version: int) -> bytes:
    """A hand-made ZVHD (1) or ZVHD2 (2) file (:mod:`imageport.disk.zvhd`): one 2 MiB block.

    Fields are little-endian (host order on x86). Built from the layout description only; the
    zvhd reader's own tests are the authority on validity, here it only needs to be close.
    """
    block = 2 * MiB
    virtual = 4 * MiB
    payload = (b"zvhd seed block " * (block // 16))[:block]
    packed = zlib.compress(payload)

    def footer(index_lba: int = 0, bitmap_lba: int = 0) -> bytes:
        f = bytearray(512)
        f[0:8] = (b"stream" if version == 1 else b"z2strm").ljust(8, b"\0")
        struct.pack_into("<IIQI", f, 8, 2, 0x10000, 0xFFFFFFFFFFFFFFFF, 0)
        f[28:32] = b"tap\0"
        struct.pack_into("<II", f, 32, 0x00010004, 0)
        struct.pack_into("<QQ", f, 40, virtual, 1 << 30)
        struct.pack_into("<I", f, 60, 4)
        if version == 2:
            f[87] = 1
            struct.pack_into("<II", f, 88, block, virtual // block)
            struct.pack_into("<QQ", f, 96, index_lba, bitmap_lba)
            struct.pack_into("<IIIIIII", f, 112, 16, 1, 512 * KiB, 4 * KiB, 1, 1, 1)
            f[140] = 0
            f[141] = 0
        struct.pack_into("<I", f, 64, vhd_checksum(bytes(f), 64))
        return bytes(f)

    record = bytearray(b"hwstream bg\0" + struct.pack("<II", len(packed), 0) + bytes(28))
    if version == 2:
        record[20] = 1
        struct.pack_into("<I", record, 21, block)
    record += packed
    record += bytes((-(len(record) + 4)) % 4096) + b"end\0"
    head = footer().ljust(4096, b"\0")
    body = head + bytes(record)
    if version == 1:
        return body + footer().ljust(4096, b"\0")
    index_off = len(body) + 4096
    index = struct.pack("<QII", 4096, 0, len(record)).ljust(512 * KiB, b"\0")
    bitmap_off = index_off + len(index)
    bitmap = b"\x01".ljust(4096, b"\0")
    tail = footer(index_off, bitmap_off)  # byte offsets, as imageport's zvhd reader reads them
    return body + tail.ljust(4096, b"\0") + index + bitmap + tail.ljust(4096, b"\0")


#: Magic numbers of formats no local tool writes, placed where each format looks for them.
#: (name, offset from the start, or negative from the end, magic bytes, total length)
MAGICS: tuple[tuple[str, int, bytes, int], ...] = (
    ("magic-gzip", 0, b"\x1f\x8b\x08\x00", 8 * KiB),
    ("magic-bzip2", 0, b"BZh91AY&SY", 8 * KiB),
    ("magic-xz", 0, b"\xfd7zXZ\x00", 8 * KiB),
    ("magic-zstd", 0, b"\x28\xb5\x2f\xfd", 8 * KiB),
    ("magic-zip", 0, b"PK\x03\x04", 8 * KiB),
    ("magic-7z", 0, b"7z\xbc\xaf\x27\x1c", 8 * KiB),
    ("magic-tar", 257, b"ustar\x0000", 10 * KiB),
    ("magic-ewf", 0, b"EVF\x09\x0d\x0a\xff\x00", 8 * KiB),
    ("magic-bochs", 0, b"Bochs Virtual HD Image\0", 8 * KiB),
    ("magic-cloop", 0, b"#!/bin/sh\n#V2.0 Format\n", 8 * KiB),
    ("magic-parallels", 0, b"WithoutFreeSpace", 8 * KiB),
    ("magic-dmg", -512, b"koly\x00\x00\x00\x04\x00\x00\x02\x00", 16 * KiB),
    ("magic-vhd-footer", -512, b"conectix", 16 * KiB),
    ("magic-vhd-head", 0, b"conectix", 16 * KiB),
    ("magic-vhdx", 0, b"vhdxfile", 256 * KiB),
    ("magic-vmdk4", 0, b"KDMV\x01\x00\x00\x00", 16 * KiB),
    ("magic-vmdk3", 0, b"COWD\x01\x00\x00\x00", 16 * KiB),
    ("magic-vmdk-text", 0, b"# Disk DescriptorFile\nversion=1\n", 4 * KiB),
    ("magic-qcow", 0, b"QFI\xfb\x00\x00\x00\x01", 16 * KiB),
    ("magic-qcow2", 0, b"QFI\xfb\x00\x00\x00\x03", 16 * KiB),
    ("magic-qed", 0, b"QED\x00", 16 * KiB),
    ("magic-vdi", 64, b"\x7f\x10\xda\xbe", 16 * KiB),
    ("magic-luks1", 0, b"LUKS\xba\xbe\x00\x01", 16 * KiB),
    ("magic-luks2", 0, b"LUKS\xba\xbe\x00\x02", 16 * KiB),
    ("magic-iso", 0x8001, b"CD001", 40 * KiB),
    ("magic-asif", 0, b"shdw", 16 * KiB),
    ("magic-zvhd", 0, b"stream\0\0", 16 * KiB),
    ("magic-zvhd2", 0, b"z2strm\0\0", 16 * KiB),
)


def magic_seed(offset: int, magic: bytes, length: int) -> bytes:
    data = bytearray(length)
    start = offset if offset >= 0 else length + offset
    data[start : start + len(magic)] = magic
    return bytes(data)


def qemu_map_regions(path: Path, fmt: str, size: int) -> tuple[tuple[int, int], ...]:
    """File ranges that are not guest data according to ``qemu-img map`` (metadata, mostly).

    Long ranges are cut into 64 KiB pieces, at most 32 pieces in all, so that a table far into
    a long metadata range is as likely to be hit as the header.
    """
    try:
        out = builders.qemu_img("map", "-f", fmt, "--output=json", str(path))
        entries = json.loads(out)
    except (RuntimeError, ValueError):
        return ()
    data = sorted(
        (int(e["offset"]), int(e["length"]))
        for e in entries
        if e.get("data") and "offset" in e and not e.get("compressed")
    )
    regions: list[tuple[int, int]] = []
    pos = 0
    for start, length in [*data, (size, 0)]:
        for piece in range(pos, min(start, size), 64 * KiB):
            regions.append((piece, min(start - piece, 64 * KiB)))
        pos = max(pos, start + length)
    step = -(-len(regions) // 32)
    return tuple(regions[::step])


def _corpus_paths() -> dict[str, Path]:
    if not CORPUS.is_dir():
        return {}
    return {
        "corpus-" + str(p.relative_to(CORPUS)).replace("/", "_"): p
        for p in sorted(CORPUS.rglob("*"))
        if p.is_file() and p.suffix in (".gz", ".bz2")
    }


def _corpus_bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else bz2.open
    try:
        with opener(path, "rb") as f:
            data: bytes = f.read(MAX_CORPUS_SEED + 1)
    except (OSError, EOFError):
        return b""
    return data


def _regions_of(path: Path, fmt: str) -> tuple[tuple[int, int], ...]:
    """:func:`qemu_map_regions` of a built seed, remembered beside it."""
    memo = path.with_name(path.name + ".regions.json")
    if memo.exists():
        return tuple((int(a), int(b)) for a, b in json.loads(memo.read_text()))
    regions = qemu_map_regions(path, fmt, path.stat().st_size)
    memo.write_text(json.dumps(regions))
    return regions


BUILT_NAMES: tuple[str, ...] = (
    "raw-mbr",
    *_CONVERTED,
    *_CREATED,
    "iso",
    "iso-minimal",
    "zvhd-handmade",
    "zvhd2-handmade",
)
MAGIC_NAMES: tuple[str, ...] = tuple(m[0] for m in MAGICS)


def corpus_names() -> tuple[str, ...]:
    """Corpus files (all of them; those too big decompressed are dropped when loaded)."""
    return tuple(_corpus_paths())


def _whole(data: bytes) -> tuple[tuple[int, int], ...]:
    return ((0, max(1, min(len(data), 64 * KiB))),)


@cache
def seed(name: str) -> Seed:
    """The seed called ``name`` (built and cached on first use)."""
    path: Path | None = None
    regions: tuple[tuple[int, int], ...] = ()
    if name == "raw-mbr":
        data = base_raw().read_bytes()
    elif name in _CONVERTED:
        path = _converted(name)
        data = path.read_bytes()
        regions = _regions_of(path, _CONVERTED[name][0])
    elif name in _CREATED:
        data = _created(name).read_bytes()
    elif name == "iso":
        data = _iso().read_bytes()
        regions = ((0x8000, 0x1000), (0, 0x8000))
    elif name == "iso-minimal":
        data = minimal_iso()
        regions = ((0x8000, 0x1000),)
    elif name in ("zvhd-handmade", "zvhd2-handmade"):
        data = zvhd_seed(2 if name.startswith("zvhd2") else 1)
        regions = ((0, 4096), (len(data) - 4096, 4096))
    elif name in MAGIC_NAMES:
        _, offset, magic, length = MAGICS[MAGIC_NAMES.index(name)]
        data = magic_seed(offset, magic, length)
        start = offset if offset >= 0 else length + offset
        regions = ((start, 512),)
    elif name in _corpus_paths():
        data = _corpus_bytes(_corpus_paths()[name])[:MAX_CORPUS_SEED]  # big ones: truncated
    else:
        raise KeyError(name)
    return Seed(name, data, regions or _whole(data))


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
