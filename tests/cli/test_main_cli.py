"""The `imageport` command as users run it: a real process, real files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imageport.cli.main import main
from imageport.formats.registry import ACCEPTED_FORMATS
from imageport.guest.facts.weak_passwords import candidates
from rules import test_accounts_rules as accounts
from support import builders, fuzz_seeds, guest_fixtures
from support import kernel_fixtures as kt

IMAGEPORT = [sys.executable, "-m", "imageport.cli.main"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMAGEPORT, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_check_prints_format_sizes_guest_and_passes() -> None:
    proc = run("check", str(guest_fixtures.synthetic_guest()))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "raw (gpt), accepted format" in proc.stdout
    assert "128.0 MiB (134217728 bytes)" in proc.stdout
    assert "Debian GNU/Linux 12 (bookworm)" in proc.stdout
    assert "mount /boot/efi  part2 (vfat)" in proc.stdout
    assert "kernel           6.1.0-13-amd64 (default)" in proc.stdout
    assert "boot mode        bios + uefi" in proc.stdout
    assert "hostname         testguest" in proc.stdout
    assert "cloud-init       installed" in proc.stdout
    assert "Result: PASS" in proc.stdout


def test_check_says_how_far_the_password_audit_got_and_all_passwords_runs_it_all(
    capsys: pytest.CaptureFixture[str],
) -> None:
    costly = run("check", str(accounts.costly_root()))
    of = len(candidates("root"))
    assert f"root [/etc/shadow:1]: checked 1 of {of} common passwords" in costly.stdout
    assert "imageport check --all-passwords" in costly.stdout
    # the whole list at 5000 rounds: every candidate tried, nothing left to report
    strong = run("check", str(accounts.strong_root()), "--all-passwords", "--json")
    found = json.loads(strong.stdout)["findings"]
    assert [f for f in found if f["rule_id"] == "IMG-PASSWORD-STRENGTH"] == [], found
    # the service's checker keeps its budget: the option is only for a local file
    assert main(["check", "images:disk.qcow2", "--all-passwords"]) == 2
    assert "--all-passwords: only for a local file" in capsys.readouterr().err


def test_a_disk_without_a_system_fails_with_exit_1(pattern_raw: Path) -> None:
    proc = run("check", str(pattern_raw))
    assert proc.returncode == 1
    assert "raw (mbr), accepted format" in proc.stdout
    assert "48.0 MiB (50331648 bytes)" in proc.stdout
    assert "IMG-SYSTEM-DISK" in proc.stdout


def test_check_type_judges_a_data_disk_or_an_iso_with_its_own_rules(
    pattern_raw: Path, tmp_path: Path
) -> None:
    """The disk without a system passes as a data disk (no guest rules run), not as an ISO;
    an ISO file passes as an ISO and fails as a system disk (IMG-FORMAT)."""
    data = run("check", str(pattern_raw), "--type", "DataImage", "--json")
    assert data.returncode == 0, data.stdout
    assert "IMG-SYSTEM-DISK" not in data.stdout
    as_iso = run("check", str(pattern_raw), "--type", "IsoImage", "--json")
    assert as_iso.returncode == 1
    assert [f["rule_id"] for f in json.loads(as_iso.stdout)["findings"]] == ["IMG-FORMAT"]
    iso = tmp_path / "cd.iso"
    iso.write_bytes(fuzz_seeds.minimal_iso())
    assert run("check", str(iso), "--type", "IsoImage").returncode == 0
    as_system = run("check", str(iso))
    assert as_system.returncode == 1 and "IMG-FORMAT" in as_system.stdout


def test_check_architecture_arm_of_an_x86_64_guest_fails_img_arch() -> None:
    guest = str(kt.x86_64_ready_guest())
    proc = run("check", "--architecture", "arm", guest)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "architecture     x86_64 (/usr/bin/sh)" in proc.stdout
    assert "Errors (1)\n  IMG-ARCH\n" in proc.stdout
    assert "evidence: /usr/bin/sh: ELF 64-bit little-endian, e_machine 62 (x86_64)" in proc.stdout
    assert "Register the image with the architecture x86" in proc.stdout
    for declared in ("x86", None):
        proc = run("check", *(["--architecture", declared] if declared else []), guest)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "IMG-ARCH" not in proc.stdout


def test_check_json_is_the_documented_document() -> None:
    proc = run("check", "--json", str(guest_fixtures.synthetic_guest()))
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "imageport.check/1"
    assert {k: doc[k] for k in ("format", "variant", "accepted", "virtual_size")} == {
        "format": "raw",
        "variant": "gpt",
        "accepted": True,
        "virtual_size": 128 << 20,
    }
    assert doc["summary"]["verdict"] == "pass" and doc["summary"]["errors"] == 0
    assert doc["guest"]["os"]["id"] == "debian" and doc["guest"]["root"] == "part3"
    assert [m["mountpoint"] for m in doc["guest"]["mounts"]] == ["/", "/boot", "/boot/efi"]
    documented = (builders.REPO / "docs" / "check-json.md").read_text()
    for key in doc:
        assert f"`{key}`" in documented, f"key {key} is not documented in docs/check-json.md"


def test_hostile_qcow2_backing_file_is_refused_with_exit_1(tmp_path: Path) -> None:
    img = tmp_path / "evil.img"  # the name says nothing: detection is by content
    builders.qemu_img(
        "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", str(img), "64M"
    )
    proc = run("check", str(img))
    assert proc.returncode == 1
    assert "IMG-SAFE" in proc.stdout and "/etc/passwd" in proc.stdout
    doc = json.loads(run("check", "--json", str(img)).stdout)
    assert doc["format"] == "qcow2" and doc["summary"]["verdict"] == "fail"
    assert any("/etc/passwd" in f["message"] for f in doc["findings"])


def test_unreadable_inputs_exit_2(tmp_path: Path) -> None:
    assert run("check", str(tmp_path / "missing.qcow2")).returncode == 2
    assert run("check", str(tmp_path)).returncode == 2  # a directory
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = run("check", str(fifo))  # must not hang waiting for a writer
    assert proc.returncode == 2 and "not a regular file" in proc.stderr
    assert run("check").returncode == 2  # usage


def test_convert_to_raw_equals_the_disk_and_keeps_holes(pattern_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.raw"
    proc = run("convert", str(pattern_raw), str(out), "-O", "raw")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == pattern_raw.read_bytes()
    assert out.stat().st_blocks * 512 < 12 << 20  # ~8 MiB of data in a 48 MiB disk
    assert [p.name for p in tmp_path.iterdir()] == ["out.raw"]  # no temporary left behind


def test_convert_refuses_an_unsafe_image_and_writes_nothing(tmp_path: Path) -> None:
    img = tmp_path / "evil.qcow2"
    builders.qemu_img(
        "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", str(img), "64M"
    )
    proc = run("convert", str(img), str(tmp_path / "out.raw"), "-O", "raw")
    assert proc.returncode == 1 and "IMG-SAFE" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.qcow2"]


def test_formats_and_rules_listings() -> None:
    fmts = json.loads(run("formats", "--json").stdout)
    accepted = {f["name"] for f in fmts if f["accepted"]}
    assert set(ACCEPTED_FORMATS) <= accepted
    assert {"gzip", "iso9660", "luks"} <= {f["name"] for f in fmts if not f["accepted"]}
    rules = json.loads(run("rules", "--json").stdout)
    assert "IMG-SAFE" in {r["id"] for r in rules}


def test_convert_of_compressed_qcow2_equals_qemu_img_output(tmp_path: Path) -> None:
    image = builders.converted("qcow2", options="compression_type=zstd", compress=True)
    reference = builders.reference_raw(image, "qcow2")
    out = tmp_path / "disk.raw"
    proc = run("convert", str(image), str(out), "-O", "raw", "--progress")
    assert proc.returncode == 0, proc.stderr
    assert "100.00/100%" in proc.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert out.stat().st_blocks * 512 < out.stat().st_size  # holes stay holes
