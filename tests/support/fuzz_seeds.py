"""Seed images for the parser fuzz tests (tests/formats/test_fuzz.py); the mutations and the
crash oracle are in :mod:`support.fuzz_oracle`.

Seeds are small valid images of every format, made by real tools (qemu-img, xorriso) from one 4
MiB raw disk with data in a few places, plus hand-made headers and magic-only byte strings for
the formats no local tool writes, plus small files from the corpus (:data:`builders.CORPUS`).
Each seed carries *regions*: byte ranges of its metadata (headers, tables, footers), found
generically as the parts of the file that ``qemu-img map`` does not report as guest data.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from imageport.checksums import vhd_checksum
from support import builders

KiB = 1024
MiB = 1024 * KiB
SEED_DISK_SIZE = 4 * MiB
SEED_VERSION = "3"

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
