"""The boot test's use case with a recording runner instead of QEMU: which firmwares it boots
(the image's claims, or the one asked), what it refuses before any machine starts, where the
screenshots go, and how a console that QEMU gave back is judged."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imageport.service.ports import BootError, BootRun
from imageport.service.tools.boot_test import boot_test
from imageport.service.tools.to_raw import ImageRefusedError
from support import guest_images as gi
from support import import_fixtures as fx

LOGIN = b"GNU GRUB  version 2.06\r\n[    0.0] Linux version 6.1.0-57-amd64\r\nhost login: "


@dataclass
class RecordingRunner:
    """Answers each boot with ``serial`` and records what it was asked."""

    serial: bytes = LOGIN
    missing: str | None = None
    calls: list[tuple[str, str, Path | None]] = field(default_factory=list)
    settled_answers: list[bool] = field(default_factory=list)

    def ready(self, firmware: str) -> None:
        if firmware == self.missing:
            raise BootError(f"{firmware} firmware missing: apt-get install ovmf")

    def boot(
        self,
        image: Path,
        image_format: str,
        firmware: str,
        *,
        timeout: float,
        settled: Callable[[bytes, bytes], bool],
        screenshot: Path | None,
    ) -> BootRun:
        self.calls.append((image_format, firmware, screenshot))
        self.settled_answers.append(settled(self.serial, b""))
        return BootRun(firmware, "tcg", self.serial, b"", 12.3, "settled", screenshot)


@pytest.fixture(scope="module")
def debian() -> Path:
    return gi.guest_raw("gpt-bios-esp-ext4")


def test_an_image_that_claims_both_firmwares_is_booted_under_each(
    debian: Path, tmp_path: Path
) -> None:
    runner = RecordingRunner()
    report = boot_test(debian, runner, screenshot=tmp_path / "shot.png")
    assert report.claimed == ("bios", "uefi")
    assert runner.calls == [
        ("raw", "bios", tmp_path / "shot-bios.png"),
        ("raw", "uefi", tmp_path / "shot-uefi.png"),
    ]
    assert runner.settled_answers == [True, True]  # a login prompt ends the boot early
    assert report.passed and [b.verdict.outcome for b in report.boots] == ["login", "login"]
    assert report.kernel_consoles == ("tty0", "ttyS0,115200")
    assert report.claim_evidence["bios"] == (
        "sector 0: GRUB boot.img, core.img at LBA 2048 in partition 1 (bios-boot)",
    )
    assert report.claim_evidence["uefi"] == (
        "ESP part2: EFI/BOOT/BOOTX64.EFI, EFI/debian/grubx64.efi",
    )


def test_a_forced_firmware_is_the_only_one_booted_and_keeps_the_screenshot_name(
    debian: Path, tmp_path: Path
) -> None:
    runner = RecordingRunner(serial=b"GNU GRUB  version 2.06\r\n")
    report = boot_test(debian, runner, firmware="uefi", screenshot=tmp_path / "s.png")
    assert runner.calls == [("raw", "uefi", tmp_path / "s.png")]
    assert runner.settled_answers == [False]  # still booting: keep watching
    assert not report.passed and report.boots[0].verdict.outcome == "no-login"


def test_a_missing_firmware_stops_before_any_boot(debian: Path) -> None:
    runner = RecordingRunner(missing="uefi")
    with pytest.raises(BootError, match="apt-get install ovmf"):
        boot_test(debian, runner)
    assert runner.calls == []


def test_a_kernel_without_a_serial_console_is_named_when_the_console_stays_silent() -> None:
    runner = RecordingRunner(serial=b"GNU GRUB  version 2.06\r\n  Booting `Debian GNU/Linux 12'")
    report = boot_test(gi.guest_raw("gpt-bios-esp-ext4-defects"), runner, firmware="bios")
    assert report.kernel_consoles == ()
    assert report.boots[0].summary.endswith(
        "The serial console stayed silent after the boot loader (the default kernel command "
        "line (/boot/grub/grub.cfg:10) has no console=ttyS0); the screenshot shows the screen."
    )


def test_an_image_that_claims_no_firmware_is_booted_under_bios(tmp_path: Path) -> None:
    fs = tmp_path / "fs.raw"
    fs.write_bytes(b"")
    subprocess.run(["truncate", "-s", "64M", str(fs)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(fs)], check=True)
    runner = RecordingRunner(serial=b"")
    report = boot_test(fs, runner, screenshot=None)
    assert report.claimed == ()
    assert runner.calls == [("raw", "bios", None)]
    assert report.claim_evidence["bios"] == ("sector 0: no boot code",)


def test_an_unsafe_image_is_refused_before_any_boot() -> None:
    top = fx.backing_qcow2()  # names a host file as its backing file
    runner = RecordingRunner()
    with pytest.raises(ImageRefusedError) as caught:
        boot_test(top, runner)
    assert "IMG-SAFE" in str(caught.value)
    assert runner.calls == []


@pytest.mark.parametrize(("firmware", "timeout"), [("arm", 60.0), (None, 5.0), (None, 7200.0)])
def test_bad_arguments_are_refused(debian: Path, firmware: str | None, timeout: float) -> None:
    with pytest.raises(ValueError):
        boot_test(debian, RecordingRunner(), firmware=firmware, timeout=timeout)
