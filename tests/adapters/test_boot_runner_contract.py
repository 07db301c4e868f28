"""What every ``BootRunner`` does, held against the QEMU runner and the fake the service tests
use: a disk with no boot code boots to "no bootable device" under SeaBIOS (the fake is scripted
with what SeaBIOS prints), the caller's ``settled`` ends the boot, the display is saved as PNG
where asked, the file is never written; a format QEMU does not read and a missing file are
refused with :class:`BootError`, before any machine starts."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imageport.adapters.qemu.boot_runner import QemuBootRunner
from imageport.service.ports import BootError, BootRunner
from support.fakes.boot_runner import NO_BOOTABLE_DEVICE, FakeBootRunner


def _qemu() -> BootRunner:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed (scripts/install)")
    return QemuBootRunner()


def _fake() -> BootRunner:
    return FakeBootRunner({"bios": NO_BOOTABLE_DEVICE})


RUNNERS: dict[str, Callable[[], BootRunner]] = {"qemu": _qemu, "fake": _fake}


@pytest.fixture(params=sorted(RUNNERS))
def runner(request: pytest.FixtureRequest) -> BootRunner:
    return RUNNERS[request.param]()


def _blank_disk(tmp_path: Path) -> Path:
    disk = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "32M"], check=True)
    return disk


def test_a_disk_without_boot_code_boots_to_no_bootable_device(
    runner: BootRunner, tmp_path: Path
) -> None:
    disk = _blank_disk(tmp_path)
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    asked: list[int] = []

    def settled(serial: bytes, firmware_log: bytes) -> bool:
        asked.append(len(firmware_log))
        return b"No bootable device" in firmware_log

    shot = tmp_path / "screen.png"
    runner.ready("bios")
    run = runner.boot(disk, "qcow2", "bios", timeout=60, settled=settled, screenshot=shot)
    assert (run.firmware, run.ended) == ("bios", "settled")
    assert run.accelerator in ("kvm", "tcg") and 0 < run.seconds < 60
    assert b"Boot failed: not a bootable disk" in run.firmware_log
    assert run.serial == b"" and asked
    assert run.screenshot == shot and shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before


def test_what_cannot_be_booted_is_refused_before_a_machine_starts(
    runner: BootRunner, tmp_path: Path
) -> None:
    with pytest.raises(BootError, match="QEMU does not read the zvhd2 format"):
        runner.boot(
            _blank_disk(tmp_path),
            "zvhd2",
            "bios",
            timeout=10,
            settled=lambda s, f: True,
            screenshot=None,
        )
    with pytest.raises(BootError):
        runner.boot(
            tmp_path / "missing.qcow2",
            "qcow2",
            "bios",
            timeout=10,
            settled=lambda s, f: True,
            screenshot=None,
        )
