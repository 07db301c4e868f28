"""The boot test's output: the ``imageport.boot/1`` JSON document (``imageport boot --json``)
and the text for people. Fields are only ever added within a schema version; docs/boot.md
describes them."""

from __future__ import annotations

from collections.abc import Mapping
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
            firmware_boot_document(b, str(b.run.screenshot) if b.run.screenshot else None)
            for b in report.boots
        ],
    }


def firmware_boot_document(boot: FirmwareBoot, screenshot: str | None) -> dict[str, Any]:
    """One member of ``boots``: how one firmware's boot went (``screenshot``: where its PNG
    is, as the reader finds it: a file name, or the service's route)."""
    return {
        "firmware": boot.firmware,
        "passed": boot.passed,
        "summary": boot.summary,
        **_verdict_document(boot.verdict),
        "seconds": boot.run.seconds,
        "ended": boot.run.ended,
        "accelerator": boot.run.accelerator,
        "screenshot": screenshot,
        "serial_tail": _tail(boot),
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


def boot_section_lines(section: Mapping[str, Any]) -> list[str]:
    """The ``boot`` member of a stored check report (the service's boot tests of the image:
    :mod:`imageport.service.images.boot_results`) as text, from the document only: what
    ``imageport image report`` prints after the findings. Any field may be missing."""
    out = ["Boot test"]
    claimed = [str(fw).upper() for fw in _list(section.get("claimed_firmware"))]
    out.append(f"  claims: {', '.join(claimed) or 'neither BIOS nor UEFI'}")
    boots = [b for b in _list(section.get("boots")) if isinstance(b, Mapping)]
    for boot in boots:
        out += _boot_doc_lines(boot)
    if not boots:
        out.append("  no boot has been recorded")
    elif section.get("passed") is True:
        out.append("  result: PASS, every firmware booted reached a login prompt")
    else:
        failed = ", ".join(
            str(b.get("firmware")).upper() for b in boots if b.get("passed") is not True
        )
        out.append(f"  result: FAIL, no login prompt under {failed}")
    out.append("")
    return out


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _boot_doc_lines(boot: Mapping[str, Any]) -> list[str]:
    head = "PASS" if boot.get("passed") is True else "FAIL"
    out = [f"  {str(boot.get('firmware')).upper()}: {head}: {boot.get('summary')}"]
    seconds = boot.get("seconds")
    took = f"{seconds:.0f} s" if isinstance(seconds, int | float) else "? s"
    when = f"; tested {boot.get('tested_at')}" if boot.get("tested_at") else ""
    job = f" by job {boot.get('job_id')}" if boot.get("job_id") else ""
    out.append(
        f"    ({str(boot.get('accelerator')).upper()}, {took}, stopped: {boot.get('ended')}"
        f"{when}{job})"
    )
    for stage in _list(boot.get("stages")):
        if not isinstance(stage, Mapping):
            continue
        mark = "yes" if stage.get("reached") is True else "no "
        evidence = [e for e in _list(stage.get("evidence")) if isinstance(e, Mapping)]
        quote = str(evidence[0].get("line", "")).strip() if evidence else ""
        name = _STAGE_NAMES.get(str(stage.get("stage")), str(stage.get("stage")))
        out.append(f"    {mark} {name:<16} {quote}".rstrip())
    why = [e for e in _list(boot.get("why")) if isinstance(e, Mapping)]
    if why:
        out.append("    why:")
        out += [f"      {str(e.get('line', '')).strip()}" for e in why]
    if boot.get("screenshot"):
        out.append(f"    screenshot: GET {boot.get('screenshot')}")
    tail = [str(line) for line in _list(boot.get("serial_tail"))]
    if tail and boot.get("passed") is not True:
        out.append("    last serial console lines:")
        out += [f"      {line}" for line in tail]
    return out
