"""The boot phase of an import (``params.boot_test``): boot the file about to become the image,
and judge it with the check.

It runs after the file is converted and verified, before the image goes active, on the file
that will be stored (an overlay on it: the file is never written). It boots each firmware the
check found the image claims (its boot code: ``boot_modes``; an image that claims none, which
only an uninitialized registration lets this far, under BIOS), each for
``settings.boot_test_timeout_seconds``, after waiting for a place to boot
(:mod:`imageport.service.boot_slots`). The verdicts join the image's report as its ``boot``
member (:mod:`imageport.service.images.boot_results`), the screenshots are kept with the image,
and what they mean for the import is a finding of the report, ``IMG-BOOT``:

* a boot that reached a login prompt: no finding;
* a boot that certainly never reached a kernel (the firmware found no bootable device, or the
  boot loader failed: rescue mode, its bare command line, no kernel) is an **error**: the image
  cannot start under a firmware it claims, so the job fails with ``IMG-BOOT`` (its image
  ``killed``, its report and screenshots kept as the evidence), as a failed rule fails it;
* any other end (a kernel panic, an emergency shell, a start job waiting for a disk, no login
  prompt within the time, a serial console that stayed silent) is a **warning**: the image is
  stored, and ``alarm_code`` names ``IMG-BOOT``. These are the failures whose cause the check
  reads on the disk itself and judges with its own rules (``IMG-DRIVERS``,
  ``IMG-FSTAB-DATA-DISK``, ``IMG-BOOT-SAME-DISK``, ``IMG-CONSOLE``), and whose symptom here
  depends on the machine (TCG on a shared host is slow; a kernel that writes nothing to the
  serial console shows nothing);
* a firmware that could not be booted here at all (a quick import's ZVHD2, which QEMU does not
  read; OVMF or QEMU missing) is a **note** saying why.

So a clean image passes both, and an image that cannot start fails both: the check and the boot
test agree on the images the tests build (``docs/boot.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from imageport.service.clock import new_id
from imageport.service.context import Services
from imageport.service.images.boot_results import (
    BOOTABLE_FORMATS,
    boot_entries,
    console_hint,
    keep_screenshots,
    screenshot_route,
    with_boots,
)
from imageport.service.jobs import state
from imageport.service.jobs.errors import JobCancelledError, JobFailedError
from imageport.service.jobs.fail_reason import failure_reason
from imageport.service.ports import BootError, ImageInspection
from imageport.service.tools.boot_test import FIRMWARES, FirmwareBoot, boot_firmwares

RULE_ID = "IMG-BOOT"
#: Outcomes that mean the boot never reached a kernel, whatever the machine: errors.
NO_KERNEL = ("no-bootable-device", "boot-loader-failed")
#: Console lines a finding quotes as its evidence.
MAX_EVIDENCE = 8

_ADVICE = {
    "no-bootable-device": "The firmware found nothing to boot although the image's boot code "
    "claims this firmware: reinstall the boot loader for it (`grub-install --target=i386-pc "
    "/dev/vda` for BIOS, `grub-install --target=x86_64-efi --removable` for UEFI), then boot "
    "the file locally with `imageport boot FILE` before exporting it again.",
    "boot-loader-failed": "GRUB started but found no configuration or kernel to boot: "
    "regenerate its configuration (`update-grub`, or `grub2-mkconfig -o /boot/grub2/grub.cfg`) "
    "and make sure /boot is on the system disk, then check with `imageport boot FILE`.",
    "kernel-panic": "The kernel could not mount the root filesystem: the initrd lacks the "
    "disk's driver (virtio_blk) or root= names no disk. Rebuild the initrd with the virtio "
    "drivers (`update-initramfs -u`, `dracut -f --add-drivers 'virtio_blk virtio_pci'`).",
    "emergency-shell": "The system stopped in an emergency shell: a root= or /etc/fstab entry "
    "names a disk or filesystem that is not there. The quoted lines name it.",
    "waiting-for-disk": "systemd was still waiting for a disk that /etc/fstab requires: remove "
    "the line, or add `nofail` (and `x-systemd.device-timeout=10s`) to its options.",
    "no-login": "No login prompt appeared in time. When the serial console stayed silent, add "
    "console=ttyS0,115200 to the kernel command line (IMG-CONSOLE); the screenshot shows the "
    "screen when the boot was stopped.",
}


def boot_phase(
    services: Services,
    job: state.ClaimedJob,
    output: Path,
    disk_format: str,
    inspection: ImageInspection,
    progress: state.Progress,
) -> ImageInspection:
    """Boot ``output`` (``disk_format``), join the verdicts and the ``IMG-BOOT`` findings to
    the inspection's report; the inspection with that report. Raises
    :class:`JobFailedError` (``IMG-BOOT``, the report kept) when a boot reached no kernel."""
    progress.phase("boot")
    report: dict[str, Any] = dict(inspection.report or {})
    claimed = tuple(fw for fw in FIRMWARES if fw in inspection.boot_modes)
    boots, notes = _boot(
        services, job, output, disk_format, claimed or ("bios",), progress, console_hint(report)
    )
    timeout = services.settings.boot_test_timeout_seconds
    entries = boot_entries(
        boots,
        image_id=job.image_id,
        job_id=job.id,
        tested_at=state.now_text(services),
        timeout=timeout,
    )
    findings = [_finding(boot, job.image_id) for boot in boots if not boot.passed]
    findings += [_note(note) for note in notes]
    report = _with_findings(with_boots(report, entries, claimed), findings)
    judged = dataclasses.replace(inspection, report=report)
    failed = [rule for rule in judged.failed_rules if rule.rule_id == RULE_ID]
    if failed:
        raise JobFailedError(RULE_ID, failure_reason(failed), report)
    return judged


def _boot(
    services: Services,
    job: state.ClaimedJob,
    output: Path,
    disk_format: str,
    firmwares: tuple[str, ...],
    progress: state.Progress,
    hint: str | None,
) -> tuple[tuple[FirmwareBoot, ...], list[str]]:
    """The boots of ``firmwares`` that could run here, and a note for each that could not."""
    runner = services.boot
    if disk_format not in BOOTABLE_FORMATS:
        return (), [f"not booted: the file is stored as {disk_format}, which QEMU does not read"]
    if runner is None:
        return (), ["not booted: this server does not boot-test images"]
    notes, ready = [], []
    for fw in firmwares:
        try:
            runner.ready(fw)
            ready.append(fw)
        except BootError as exc:
            notes.append(f"not booted under {fw.upper()}: {exc}")
    if not ready:
        return (), notes
    timeout = services.settings.boot_test_timeout_seconds
    if not services.boot_slots.take(progress.cancelled):
        if progress.cancelled():
            raise JobCancelledError
        return (), [*notes, "not booted: boot tests are turned off on this server"]
    tmp = services.settings.tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    shots = {fw: tmp / f"boot-{new_id()}-{fw}.png" for fw in ready}
    budget = float(timeout * len(ready))

    def stop(firmware: str, seconds: float) -> bool:
        done = ready.index(firmware) * timeout + min(seconds, timeout)
        progress.update(done / budget, 0, 0)
        return progress.cancelled()

    try:
        boots = boot_firmwares(
            runner,
            output,
            disk_format,
            ready,
            timeout=float(timeout),
            screenshot_for=shots.get,
            console_hint=hint,
            stop=stop,
        )
        if progress.cancelled():
            raise JobCancelledError
        keep_screenshots(
            services.settings,
            job.image_id,
            {b.firmware: b.run.screenshot for b in boots},
        )
    except BootError as exc:
        return (), [*notes, f"not booted: no machine could start: {exc}"]
    finally:
        services.boot_slots.give_back()
        for path in shots.values():
            path.unlink(missing_ok=True)
    return boots, notes


def _finding(boot: FirmwareBoot, image_id: str) -> dict[str, Any]:
    outcome = boot.verdict.outcome
    why = [f"console: {e.line.strip()}" for e in boot.verdict.why[:MAX_EVIDENCE]]
    if boot.run.screenshot is not None:
        why.append(f"screenshot: GET {screenshot_route(image_id, boot.firmware)}")
    return {
        "rule_id": RULE_ID,
        "severity": "error" if outcome in NO_KERNEL else "warning",
        "message": f"Booted under {boot.firmware.upper()}, the image did not reach a login "
        f"prompt: {boot.summary}",
        "evidence": why,
        "advice": _ADVICE.get(outcome, _ADVICE["no-login"]),
    }


def _note(text: str) -> dict[str, Any]:
    return {
        "rule_id": RULE_ID,
        "severity": "info",
        "message": f"The import's boot test did not run fully: {text}.",
        "evidence": [],
        "advice": "Boot-test the image once it is active (`imageport image boot-test ID`) "
        "on a server that can boot it.",
    }


def _with_findings(report: Mapping[str, Any], findings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``report`` with ``findings`` added and its ``summary`` counting them."""
    if not findings:
        return dict(report)
    summary = dict(report.get("summary") or {})
    for severity, key in (("error", "errors"), ("warning", "warnings"), ("info", "info")):
        added = sum(1 for f in findings if f["severity"] == severity)
        count = summary.get(key)
        summary[key] = (count if isinstance(count, int) else 0) + added
    if summary.get("errors"):
        summary["verdict"] = "fail"
    old = report.get("findings")
    return {
        **report,
        "findings": [*(old if isinstance(old, list) else []), *findings],
        "summary": summary,
    }
