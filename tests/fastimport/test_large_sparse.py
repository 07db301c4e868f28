"""The large-image rules on sparse RAW files of realistic size: the small optimized Linux guest of
``guest_fixtures`` at the start of a 200 GiB and of a 1.5 TiB file (``truncate``, then the GPT
backup header moved to the new end with ``sfdisk --relocate gpt-bak-std``, so the disk is a
valid GPT disk of that size), each with its bitmap file beside it. Both are built once and
cached; each check costs what the file holds (a few MiB), not its size.

200 GiB passes with fast import, its bitmap and ``min_disk`` 200; fails IMG-SIZE without fast
import and IMG-DISK-SIZE with ``min_disk`` 40. 1.5 TiB fails IMG-SIZE and IMG-DISK-SIZE even with
fast import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from imageport.fastimport import bitmap as mf
from imageport.findings import Severity
from imageport.rules.base import CheckOptions
from imageport.service.tools.check import CheckReport, check_image
from support import builders
from support import guest_fixtures as gf

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
#: Bump to rebuild the cached large files.
VERSION = "1"
#: A check of these files reads headers, tables, guest files and sampled bitmap blocks only.
MAX_READ = 64 * MiB
#: Generous for a shared two-core machine; measured about 0.1-0.3 s each.
MAX_SECONDS = 5.0


def large_guest(size: int) -> tuple[Path, Path]:
    """The optimized guest at the start of a sparse RAW of ``size`` bytes, and its ``.mf``."""
    guest = gf.synthetic_guest()
    final = builders.cached(f"large-{size // GiB}g-v{VERSION}-{guest.stem}.raw")
    bitmap = final.with_suffix(".mf")
    if final.exists() and bitmap.exists():
        return final, bitmap
    if shutil.which("sfdisk") is None:
        pytest.fail("sfdisk is not installed (util-linux); it moves the GPT backup header")
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        subprocess.run(["cp", "--sparse=always", str(guest), str(tmp)], check=True)
        os.truncate(tmp, size)
        proc = subprocess.run(
            ["sfdisk", "-q", "--relocate", "gpt-bak-std", str(tmp)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"sfdisk --relocate failed: {proc.stderr}")
        mf.write_bitmap(mf.build_bitmap(tmp), bitmap)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final, bitmap


@pytest.fixture(scope="module")
def disk200() -> tuple[Path, Path]:
    return large_guest(200 * GiB)


@pytest.fixture(scope="module")
def disk1536() -> tuple[Path, Path]:
    return large_guest(1536 * GiB)


def check(raw: Path, bitmap: Path | None, *, fast: bool, min_disk: int | None) -> CheckReport:
    started = time.perf_counter()
    report = check_image(
        raw,
        CheckOptions(
            fast_import=fast,
            min_disk_gib=min_disk,
            bitmap_path=None if bitmap is None else str(bitmap),
        ),
    )
    elapsed = time.perf_counter() - started
    assert report.bytes_read < MAX_READ, report.bytes_read
    assert elapsed < MAX_SECONDS, f"checking {raw.name} took {elapsed:.2f} s"
    return report


def errors(report: CheckReport) -> list[str]:
    return [f.rule_id for f in report.findings if f.severity is Severity.ERROR]


def test_the_large_files_are_sparse_valid_gpt_disks(
    disk200: tuple[Path, Path], disk1536: tuple[Path, Path]
) -> None:
    for (raw, _bitmap), size in ((disk200, 200 * GiB), (disk1536, 1536 * GiB)):
        assert raw.stat().st_size == size
        assert raw.stat().st_blocks * 512 < 64 * MiB  # sparse: a few MiB really stored
        report = check(raw, None, fast=False, min_disk=None)
        assert report.container.virtual_size == size
        assert report.guest is not None and report.guest.layout.root is not None
        assert report.guest.layout.storage.table.scheme == "gpt"
        assert not report.guest.layout.problems


def test_200g_passes_only_with_fast_import_its_bitmap_and_min_disk(
    disk200: tuple[Path, Path],
) -> None:
    raw, bitmap = disk200
    report = check(raw, bitmap, fast=True, min_disk=200)
    assert report.passed, [f.message for f in report.findings]
    assert report.bitmap is not None and report.bitmap.ok
    assert report.bitmap.block_count == 200 * GiB // (2 * MiB)

    (size,) = (
        f
        for f in check(raw, None, fast=False, min_disk=200).findings
        if f.severity is Severity.ERROR
    )
    assert size.rule_id == "IMG-SIZE"
    assert "must be imported with fast import" in size.message
    assert "--fast-import --bitmap FILE.mf" in size.advice and "imageport bitmap" in size.advice

    assert errors(check(raw, bitmap, fast=True, min_disk=40)) == ["IMG-DISK-SIZE"]
    assert errors(check(raw, None, fast=True, min_disk=200)) == ["IMG-FAST-RAW"]


def test_1_5_tib_is_refused_even_with_fast_import(disk1536: tuple[Path, Path]) -> None:
    raw, bitmap = disk1536
    report = check(raw, bitmap, fast=True, min_disk=1024)
    assert errors(report) == ["IMG-SIZE", "IMG-DISK-SIZE", "IMG-DISK-SIZE"]
    size = report.findings[0]
    assert "larger than 1 TiB" in size.message and "fast import included" in size.message
    assert report.bitmap is not None and report.bitmap.ok  # refused for its size alone
    assert errors(check(raw, bitmap, fast=False, min_disk=None)) == ["IMG-SIZE", "IMG-DISK-SIZE"]
