"""Issue 9, finding 2: a few MiB of qcow2 must not pass as an image of up to 1 TiB.

A good guest (import_fixtures.good_image, which passes every rule), grown with qemu-img
resize, with one cluster written after it and its L2 slots (and, for the 1 TiB variant, every
further L1 entry) pointed at that one cluster, plain or compressed (tests/support/storage_bombs.py).
Before the fix ``imageport check --min-disk 1024`` passed such a file and the import turned
a 3 MiB upload into a 10.6 GB image; now the real CLI refuses it, quickly, naming IMG-SAFE,
guest offsets that share the stored cluster, and the data mapped onto the file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import import_fixtures
from support import storage_bombs as sb

IMAGEPORT = [sys.executable, "-m", "imageport.cli.main"]
#: Seconds the whole CLI run may take (Python start-up ~0.3 s, the walk well under 1 s).
QUICK = 10.0

VARIANTS = [
    pytest.param(False, 1 << 30, id="plain-1GiB"),
    pytest.param(True, 1 << 30, id="compressed-1GiB"),
    pytest.param(False, 1 << 40, id="plain-1TiB"),
    pytest.param(True, 1 << 40, id="compressed-1TiB"),
]


def run(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [*IMAGEPORT, *args], capture_output=True, text=True, timeout=120, check=False
    )
    return proc, time.perf_counter() - started


def test_the_guest_the_bombs_are_made_of_passes() -> None:
    proc, _ = run("check", "--min-disk", "40", str(import_fixtures.good_image("qcow2")))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("compressed", "size"), VARIANTS)
def test_check_refuses_clusters_shared_by_many_guest_offsets(compressed: bool, size: int) -> None:
    bomb = sb.shared_qcow2(compressed=compressed, size=size)
    assert bomb.stat().st_size < 3 << 20
    proc, elapsed = run("check", "--min-disk", "1024", str(bomb))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert elapsed < QUICK
    text = " ".join(proc.stdout.split())  # the report wraps long lines
    assert "IMG-SAFE" in text and "Result: FAIL" in text
    assert (
        "tables are unsafe to convert: qcow2 guest offsets 0x20000000, 0x20010000, "
        "0x20020000, 0x20030000 and" in text
    )
    assert "all use the file byte at offset 0x" in text
    assert "guest ranges read the same stored data, which the format does not allow" in text


@pytest.mark.parametrize(("compressed", "size"), VARIANTS[2:])
def test_check_json_names_the_hazard_and_claims_no_allocation(compressed: bool, size: int) -> None:
    proc, elapsed = run(
        "check",
        "--json",
        "--min-disk",
        "1024",
        str(sb.shared_qcow2(compressed=compressed, size=size)),
    )
    assert proc.returncode == 1 and elapsed < QUICK
    doc = json.loads(proc.stdout)
    assert doc["summary"]["verdict"] == "fail" and doc["allocated_bytes"] is None
    (safe,) = [f for f in doc["findings"] if f["rule_id"] == "IMG-SAFE"]
    (evidence,) = safe["evidence"]
    assert evidence.startswith("shared-data: qcow2 guest offsets 0x20000000, 0x20010000")
    assert f"of the {size}-byte disk" in evidence  # the walk stopped early, and says where


def test_convert_refuses_to_write_the_bomb(tmp_path: Path) -> None:
    out = tmp_path / "out.raw"
    proc, elapsed = run("convert", str(sb.shared_qcow2(compressed=False, size=1 << 40)), str(out))
    assert proc.returncode == 1 and elapsed < QUICK  # refused with the check report
    assert "all use the file byte at offset" in " ".join(proc.stderr.split())
    assert "cannot be converted: it fails IMG-SAFE" in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_check_refuses_distinct_compressed_clusters_after_a_good_guest() -> None:
    proc, elapsed = run("check", "--min-disk", "40", str(sb.expanding_guest_qcow2()))
    assert proc.returncode == 1 and elapsed < QUICK, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    assert (
        "IMG-SAFE" in text
        and "qcow2 compressed data expands more than this service accepts: "
        "7489 units decode to 490799104 guest bytes and occupy at most"
        in text
    )


def test_check_refuses_distinct_compressed_clusters_expanding_a_million_to_one() -> None:
    bomb = sb.expanding_qcow2()
    assert bomb.stat().st_size < 16 << 20
    proc, elapsed = run("check", "--min-disk", "1024", str(bomb))
    assert proc.returncode == 1 and elapsed < QUICK, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    assert (
        "IMG-SAFE" in text
        and "qcow2 compressed data expands more than this service accepts" in text
        and "the limit is 256:1" in text
    )
