"""Build test images with real tools (qemu-img) and cache them for the whole test run.

The cache lives in ``.test-cache/`` at the top of the repository (or ``$IMAGEPORT_TEST_CACHE``);
files are keyed by the qemu-img version and :data:`BUILDERS_VERSION`, so a change to a builder
or an upgraded qemu-img rebuilds them. Nothing here downloads anything. Real images made by
other tools come from the corpus (:data:`CORPUS`), which the tests that need it are marked for.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

BUILDERS_VERSION = "1"
MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("IMAGEPORT_CORPUS") or REPO.parent / "shared" / "corpus")
"""Real image files made by other tools: ``$IMAGEPORT_CORPUS``, by default ``../shared/corpus``
beside the checkout. The tests that read it skip without it, saying where they looked."""
CORPUS_ABSENT = (
    f"no corpus of real image files at {CORPUS}: set IMAGEPORT_CORPUS to its folder "
    "(the default is ../shared/corpus beside the checkout)"
)
"""The reason every corpus test gives when it skips."""

#: Size of the pattern disk every format is converted from (a multiple of 2 MiB and of CHS
#: geometry steps, so that VHD keeps it exactly with force_size).
PATTERN_SIZE = 48 * MiB


needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=CORPUS_ABSENT)
"""Marks a test that reads the corpus: skipped, saying why, when it is absent."""


def without_corpus() -> list[Any]:
    """The parameters of a test parametrized by corpus files when there are none: one case,
    skipped with :data:`CORPUS_ABSENT`."""
    return [pytest.param("", marks=pytest.mark.skip(reason=CORPUS_ABSENT))]


def cache_dir() -> Path:
    """The test cache directory, created on first use."""
    root = Path(os.environ.get("IMAGEPORT_TEST_CACHE", REPO / ".test-cache"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def qemu_img_path() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise RuntimeError(
            "qemu-img is not installed; run the README's test command (it installs qemu-utils)"
        )
    return path


# enough that a run of failures at the measured 1-in-5 rate never happens (0.22**30)
_LUKS_TIMING_ATTEMPTS = 30


def qemu_img(*args: str, input_text: str | None = None) -> str:
    """Run qemu-img with ``args``; return stdout, raise with stderr on failure."""
    for attempt in range(_LUKS_TIMING_ATTEMPTS):
        proc = subprocess.run(
            [qemu_img_path(), *args],
            capture_output=True,
            text=True,
            input=input_text,
            check=False,
        )
        # LUKS key derivation times itself with the thread's CPU clock; qemu-img 7.2 reads
        # 0 ms about one run in five on this VM (measured: 13 of 60) and gives up
        if "Unable to get accurate CPU usage" not in proc.stderr:
            break
        time.sleep(0.01 * attempt)
    if proc.returncode != 0:
        raise RuntimeError(f"qemu-img {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _version_key() -> str:
    out = qemu_img("--version").splitlines()[0]
    return hashlib.sha256(f"{out}/{BUILDERS_VERSION}".encode()).hexdigest()[:10]


def cached(name: str) -> Path:
    """Path of a cached artefact (the file may not exist yet)."""
    d = cache_dir() / _version_key()
    d.mkdir(parents=True, exist_ok=True)
    return d / name


def _publish(tmp: Path, final: Path) -> Path:
    os.replace(tmp, final)
    return final


def pattern_raw() -> Path:
    """A sparse 48 MiB raw disk with data laid across cluster, grain and block boundaries.

    It holds: an MBR-like first sector, random data, data that crosses the 64 KiB / 1 MiB /
    2 MiB boundaries, a compressible text region, a written-zero region, holes, and data in
    the very last bytes of the disk.
    """
    final = cached("pattern.raw")
    if final.exists():
        return final
    rng = random.Random(20261127)
    tmp = final.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(PATTERN_SIZE)

        def put(offset: int, data: bytes) -> None:
            f.seek(offset)
            f.write(data)

        put(0, rng.randbytes(510) + b"\x55\xaa")
        put(4096, rng.randbytes(1 * MiB - 4096))
        put(2 * MiB - 4096, rng.randbytes(8192))
        put(5 * MiB + 123 * 512, rng.randbytes(300 * 1024 + 17))
        put(16 * MiB - 32 * 1024, rng.randbytes(MiB + 5))
        text = b"".join(b"imageport line %08d: the quick brown fox\n" % i for i in range(80000))
        put(20 * MiB, text[: 3 * MiB])
        put(30 * MiB, bytes(2 * MiB))  # explicitly written zeros
        put(33 * MiB + 1, b"\x01")  # one lone byte
        for i in range(64):  # a scatter of small writes, one per 64 KiB, offset inside clusters
            put(36 * MiB + i * 65536 + (i * 977) % 65000, rng.randbytes(333))
        put(PATTERN_SIZE - 64 * 1024, rng.randbytes(64 * 1024))
    return _publish(tmp, final)


def converted(fmt: str, *, options: str = "", compress: bool = False, tag: str = "") -> Path:
    """The pattern disk converted by qemu-img to ``fmt`` (``-o options``, ``-c``), cached."""
    src = pattern_raw()
    label = "-".join(
        x
        for x in (fmt, tag or options.replace(",", "_").replace("=", ""), "c" if compress else "")
        if x
    )
    final = cached(f"pattern-{label}.{fmt}")
    if final.exists():
        return final
    tmp = final.with_name(final.name + ".tmp")
    args = ["convert", "-f", "raw", "-O", fmt]
    if options:
        args += ["-o", options]
    if compress:
        args.append("-c")
    qemu_img(*args, str(src), str(tmp))
    return _publish(tmp, final)


def reference_raw(image: Path, fmt: str) -> Path:
    """``qemu-img convert -f FMT -O raw`` of ``image``: what qemu says the disk holds."""
    final = image.with_name(image.name + ".ref.raw")
    if final.exists() and final.stat().st_mtime >= image.stat().st_mtime:
        return final
    tmp = final.with_name(final.name + ".tmp")
    qemu_img("convert", "-f", fmt, "-O", "raw", str(image), str(tmp))
    return _publish(tmp, final)


def qemu_virtual_size(image: Path, fmt: str) -> int:
    import json

    info = json.loads(qemu_img("info", "-f", fmt, "--output=json", str(image)))
    return int(info["virtual-size"])
