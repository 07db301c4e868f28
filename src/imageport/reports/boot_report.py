"""The boot test's output: the ``imageport.boot/1`` JSON document (``imageport boot --json``)
and the text for people. Fields are only ever added within a schema version; docs/boot.md
describes them."""

from __future__ import annotations

from typing import Any

from imageport.boot.console import clean_lines
from imageport.boot.verdict import Evidence, Verdict
from imageport.reports.sizes import human_size
from imageport.service.tools.boot_test import BootTestReport, FirmwareBoot

SCHEMA = "imageport.boot/1"
#: Console lines quoted at the end of each boot (the JSON's ``serial_tail``).
TAIL_LINES = 15

_STAGE_NAMES = {
    "firmware": "firmware",
    "boot-loader": "boot loader",
    "kernel": "kernel",
    "root-filesystem": "root filesystem",
    "login": "login prompt",
    "cloud-init": "cloud-init",
}


def _evidence(items: tuple[Evidence, ...]) -> list[dict[str, str]]:
    return [{"source": e.source, "line": e.line} for e in items]


def _verdict_document(verdict: Verdict) -> dict[str, Any]:
    return {
        "outcome": verdict.outcome,
        "stages": [
            {"stage": s.stage, "reached": s.reached, "evidence": _evidence(s.evidence)}
            for s in verdict.stages
        ],
        "why": _evidence(verdict.why),
        "serial_silent": verdict.serial_silent,
    }


def _tail(boot: FirmwareBoot) -> list[str]:
    return clean_lines(boot.run.serial)[-TAIL_LINES:]


def boot_document(report: BootTestReport) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "file": report.path,
        "format": report.format,
        "virtual_size": report.virtual_size,
        "claimed_firmware": list(report.claimed),
        "claim_evidence": {k: list(v) for k, v in report.claim_evidence.items()},
        "forced_firmware": report.forced,
        "kernel_command_line": report.kernel_line,
        "kernel_consoles": list(report.kernel_consoles),
        "passed": report.passed,
        "boots": [
            {
                "firmware": b.firmware,
                "passed": b.passed,
                "summary": b.summary,
                **_verdict_document(b.verdict),
                "seconds": b.run.seconds,
                "ended": b.run.ended,
                "accelerator": b.run.accelerator,
                "screenshot": str(b.run.screenshot) if b.run.screenshot else None,
                "serial_tail": _tail(b),
            }
            for b in report.boots
        ],
    }


def render_boot_text(report: BootTestReport) -> str:
    out = [
        f"imageport boot: {report.path} ({report.format}, "
        f"{human_size(report.virtual_size)} virtual)"
    ]
    claimed = ", ".join(fw.upper() for fw in report.claimed) or "neither BIOS nor UEFI"
    out.append(f"claims: {claimed}")
    for fw in ("bios", "uefi"):
        for line in report.claim_evidence.get(fw, ()):
            out.append(f"  {fw.upper()}: {line}")
    if report.forced:
        out.append(f"booted: {report.forced.upper()} only (as asked)")
    elif not report.claimed:
        out.append("booted: BIOS, to show what a machine does with it")
    for boot in report.boots:
        out.append("")
        out += _boot_text(boot)
    out.append("")
    if report.passed:
        out.append("result: PASS, every firmware booted reached a login prompt")
    else:
        failed = ", ".join(b.firmware.upper() for b in report.boots if not b.passed)
        out.append(f"result: FAIL, no login prompt under {failed}")
    return "\n".join(out) + "\n"


def _boot_text(boot: FirmwareBoot) -> list[str]:
    run = boot.run
    head = "PASS" if boot.passed else "FAIL"
    out = [f"{boot.firmware.upper()}: {head}: {boot.summary}"]
    out.append(f"  ({run.accelerator.upper()}, {run.seconds:.0f} s, stopped: {run.ended})")
    for stage in boot.verdict.stages:
        mark = "yes" if stage.reached else "no "
        quote = stage.evidence[0].line.strip() if stage.evidence else ""
        out.append(f"  {mark} {_STAGE_NAMES[stage.stage]:<16} {quote}".rstrip())
    if boot.verdict.why:
        out.append("  why:")
        out += [f"    {e.line.strip()}" for e in boot.verdict.why]
    if run.screenshot:
        out.append(f"  screenshot: {run.screenshot}")
    tail = _tail(boot)
    if tail and not boot.passed:
        out.append("  last serial console lines:")
        out += [f"    {line}" for line in tail]
    return out
