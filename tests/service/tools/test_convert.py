"""``imageport convert IN OUT [-O raw|qcow2|zvhd|zvhd2]`` as users run it: the installed
``imageport`` entry point in a real process, real files, qemu-img as the referee."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import builders

MiB = 1 << 20
GiB = 1 << 30


def _entry_point() -> str:
    path = Path(sys.executable).parent / "imageport"
    if not path.exists():
        raise RuntimeError(
            f"the imageport entry point is not installed at {path}; "
            "run `pip install -e .` in the virtualenv"
        )
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_entry_point(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _info(path: Path) -> dict[str, object]:
    return dict(json.loads(builders.qemu_img("info", "-f", "qcow2", "--output=json", str(path))))


def test_zvhd2_from_the_extension_round_trips(tmp_path: Path) -> None:
    image = builders.converted("vmdk", options="subformat=streamOptimized")
    out = tmp_path / "disk.zvhd2"
    proc = run("convert", str(image), str(out), "-p")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}: zvhd2 (zstd, 2 MiB blocks)" in proc.stdout
    assert "100.00/100%" in proc.stderr
    check = run("check", str(out), "--json")
    doc = json.loads(check.stdout)
    assert (doc["format"], doc["accepted"], doc["damage"], doc["hazards"]) == (
        "zvhd2",
        True,
        None,
        [],
    )
    back = tmp_path / "back.img"
    assert run("convert", str(out), str(back)).returncode == 0
    assert filecmp.cmp(back, builders.reference_raw(image, "vmdk"), shallow=False)


def test_explicit_format_compression_and_block_size(pattern_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.bin"
    proc = run(
        "convert",
        str(pattern_raw),
        str(out),
        "-O",
        "zvhd2",
        "--compression",
        "zlib",
        "--block-size",
        "4",
    )
    assert proc.returncode == 0, proc.stderr
    assert "zvhd2 (zlib, 4 MiB blocks)" in proc.stdout
    proc = run("convert", str(out), str(tmp_path / "b.raw"))
    assert proc.returncode == 0 and filecmp.cmp(tmp_path / "b.raw", pattern_raw, shallow=False)


def test_zvhd_output(pattern_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.zvhd"
    assert run("convert", str(pattern_raw), str(out)).returncode == 0
    assert out.read_bytes()[:6] == b"stream"
    assert run("convert", str(out), str(tmp_path / "b.raw")).returncode == 0
    assert filecmp.cmp(tmp_path / "b.raw", pattern_raw, shallow=False)


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_qcow2_output_is_checked_by_qemu(compression: str | None, tmp_path: Path) -> None:
    image = builders.converted("vhdx")
    out = tmp_path / "disk.qcow2"
    extra = ["--compression", compression] if compression else []
    proc = run("convert", str(image), str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    info = _info(out)
    assert info["virtual-size"] == builders.PATTERN_SIZE
    assert info.get("backing-filename") is None
    if compression:
        fmt_specific = info["format-specific"]
        assert isinstance(fmt_specific, dict)
        assert fmt_specific["data"]["compression-type"] == "zstd"
    builders.qemu_img("check", "-f", "qcow2", str(out))
    back = tmp_path / "back.raw"
    builders.qemu_img("convert", "-f", "qcow2", "-O", "raw", str(out), str(back))
    assert filecmp.cmp(back, builders.reference_raw(image, "vhdx"), shallow=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.raw", "disk.qcow2"]


def test_sparse_200_gib_raw_converts_in_seconds(tmp_path: Path) -> None:
    big = tmp_path / "big.raw"
    with open(big, "wb") as f:
        f.truncate(200 * GiB)
        f.write(os.urandom(4 * MiB))
        f.seek(150 * GiB)
        f.write(b"imageport" * 100000)
    out = tmp_path / "big.zvhd2"
    started = time.monotonic()
    proc = run("convert", str(big), str(out))
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 30
    assert "virtual size 200.0 GiB" in proc.stdout
    assert out.stat().st_size < 8 * MiB


def test_unknown_extension_and_bad_options_exit_2(pattern_raw: Path, tmp_path: Path) -> None:
    proc = run("convert", str(pattern_raw), str(tmp_path / "disk.xyz"))
    assert proc.returncode == 2 and "give -O" in proc.stderr
    proc = run("convert", str(pattern_raw), str(tmp_path / "d.zvhd2"), "--block-size", "3")
    assert proc.returncode == 2 and "power of two" in proc.stderr
    proc = run("convert", str(pattern_raw), str(tmp_path / "d.raw"), "--compression", "zstd")
    assert proc.returncode == 2 and "does not take --compression" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_unsafe_input_is_refused_with_exit_1(tmp_path: Path) -> None:
    img = tmp_path / "evil.qcow2"
    builders.qemu_img(
        "create", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", "-u", str(img), "64M"
    )
    for name in ("out.zvhd2", "out.qcow2"):
        proc = run("convert", str(img), str(tmp_path / name))
        assert proc.returncode == 1
        assert "IMG-SAFE" in proc.stdout + proc.stderr
        assert not (tmp_path / name).exists()
