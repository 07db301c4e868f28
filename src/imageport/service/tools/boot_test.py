"""The boot test of a local image file: does it actually start, under each firmware it claims?

1. The file is probed and opened by imageport's own readers, refused like a conversion is when
   it is not safe to read (:func:`~imageport.service.tools.to_raw.open_checked`); its format
   comes from that probe and is passed on pinned, never guessed by QEMU.
2. The firmware modes it claims come from its partition table and boot code
   (:func:`imageport.guest.boot.modes.read_boot`: a BIOS boot loader in sector 0 and what it
   loads; an EFI system partition with a loader). ``firmware`` forces one instead. An image that
   claims neither is booted under BIOS, to show what a machine does with it.
3. Each one is booted by the :class:`~imageport.service.ports.BootRunner` (QEMU), which stops as
   soon as :func:`imageport.boot.verdict.is_settled` says the console cannot tell more; the
   console is read as a :class:`~imageport.boot.verdict.Verdict`.

The image passes when every firmware booted reached a login prompt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imageport.boot.console import clean_lines
from imageport.boot.summary import describe
from imageport.boot.verdict import Verdict, classify, is_settled
from imageport.guest.boot.modes import BootFacts, read_boot
from imageport.guest.facts.inspect import inspect_guest
from imageport.service.ports import BootRun, BootRunner
from imageport.service.tools.to_raw import open_checked

FIRMWARES = ("bios", "uefi")
#: Bounds of the per-firmware timeout (seconds): a TCG boot of Debian 12 takes 35-120 s here.
MIN_TIMEOUT = 10.0
MAX_TIMEOUT = 3600.0
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class FirmwareBoot:
    """One boot of the image and what it showed."""

    firmware: str
    run: BootRun
    verdict: Verdict
    summary: str

    @property
    def passed(self) -> bool:
        return self.verdict.outcome == "login"


@dataclass(frozen=True, slots=True)
class BootTestReport:
    path: str
    format: str
    virtual_size: int | None
    #: The modes the image claims, and the evidence for and against each.
    claimed: tuple[str, ...]
    claim_evidence: dict[str, tuple[str, ...]]
    #: The firmware given on the command line instead of the claims, if any.
    forced: str | None
    #: ``console=`` values of the default kernel command line, and where it is written.
    kernel_consoles: tuple[str, ...]
    kernel_line: str | None
    boots: tuple[FirmwareBoot, ...]

    @property
    def passed(self) -> bool:
        return bool(self.boots) and all(b.passed for b in self.boots)


@dataclass(frozen=True, slots=True)
class _Image:
    format: str
    virtual_size: int | None
    facts: BootFacts


def boot_test(
    path: str | os.PathLike[str],
    runner: BootRunner,
    *,
    firmware: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    screenshot: Path | None = None,
) -> BootTestReport:
    """Boot ``path`` under each firmware it claims (or ``firmware``), each for at most
    ``timeout`` seconds. ``screenshot``: where to save the display as PNG (with ``-bios`` or
    ``-uefi`` before the suffix when two firmwares are booted); None for no screenshot.
    Raises :class:`~imageport.service.tools.to_raw.ImageRefusedError` when the file is not safe
    to read, :class:`~imageport.service.ports.BootError` when no machine can start."""
    if firmware is not None and firmware not in FIRMWARES:
        raise ValueError(f"firmware must be one of {FIRMWARES}, not {firmware!r}")
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        raise ValueError(f"the timeout must be {MIN_TIMEOUT:.0f}-{MAX_TIMEOUT:.0f} seconds")
    image = _read_image(path)
    facts = image.facts
    claimed = facts.modes
    chosen = (firmware,) if firmware else (claimed or ("bios",))
    for fw in chosen:
        runner.ready(fw)
    consoles = facts.default.values("console") if facts.default else ()
    hint = None
    if facts.default is not None and not any(c.startswith("ttyS") for c in consoles):
        hint = (
            f"the default kernel command line ({facts.default.source}:{facts.default.line_no}) "
            "has no console=ttyS0"
        )
    boots = boot_firmwares(
        runner,
        Path(path),
        image.format,
        chosen,
        timeout=timeout,
        screenshot_for=lambda fw: _screenshot_path(screenshot, fw, len(chosen)),
        console_hint=hint,
    )
    return BootTestReport(
        path=os.fspath(path),
        format=image.format,
        virtual_size=image.virtual_size,
        claimed=claimed,
        claim_evidence={"bios": facts.bios.evidence, "uefi": facts.uefi.evidence},
        forced=firmware,
        kernel_consoles=consoles,
        kernel_line=facts.default.line if facts.default else None,
        boots=boots,
    )


def boot_firmwares(
    runner: BootRunner,
    path: Path,
    image_format: str,
    firmwares: Sequence[str],
    *,
    timeout: float,
    screenshot_for: Callable[[str], Path | None],
    console_hint: str | None = None,
    stop: Callable[[str, float], bool] | None = None,
) -> tuple[FirmwareBoot, ...]:
    """Boot the file ``path`` (of ``image_format``, never guessed) under each of ``firmwares``
    in turn, each for at most ``timeout`` seconds, and judge each console. ``screenshot_for``
    says where each firmware's screenshot goes (None: none); ``console_hint`` why the serial
    console may stay silent (for the summary). ``stop(firmware, seconds)`` is asked about
    once a second while a machine runs: True ends that boot at once (the caller was
    cancelled; the verdict is of what the console showed so far). Shared by the local
    ``imageport boot`` and the service's boot tests of stored images."""
    boots = []
    for fw in firmwares:

        def settled(
            serial: bytes, firmware_log: bytes, fw: str = fw, started: float = time.monotonic()
        ) -> bool:
            if stop is not None and stop(fw, time.monotonic() - started):
                return True
            return _settled(serial, firmware_log)

        run = runner.boot(
            path,
            image_format,
            fw,
            timeout=timeout,
            settled=settled,
            screenshot=screenshot_for(fw),
        )
        verdict = verdict_of(run)
        summary = describe(
            verdict,
            ended=run.ended,
            seconds=run.seconds,
            timeout=timeout,
            qemu_message=run.qemu_message,
            console_hint=console_hint,
        )
        boots.append(FirmwareBoot(fw, run, verdict, summary))
    return tuple(boots)


def _read_image(path: str | os.PathLike[str]) -> _Image:
    with open_checked(path) as (container, disk):
        facts = inspect_guest(disk).derive(read_boot)
        return _Image(container.format, container.virtual_size, facts)


def verdict_of(run: BootRun) -> Verdict:
    """What the consoles of ``run`` showed."""
    return classify(clean_lines(run.serial), clean_lines(run.firmware_log))


def _settled(serial: bytes, firmware_log: bytes) -> bool:
    return is_settled(classify(clean_lines(serial), clean_lines(firmware_log)))


def _screenshot_path(base: Path | None, firmware: str, count: int) -> Path | None:
    if base is None or count == 1:
        return base
    return base.with_name(f"{base.stem}-{firmware}{base.suffix or '.png'}")
