"""The human-readable report of a check."""

from __future__ import annotations

import textwrap

from imageport.limits import GiB, KiB, MiB, TiB
from imageport.service.check import CheckReport


def human_size(n: int | None) -> str:
    """``n`` bytes as e.g. ``48.0 MiB (50331648 bytes)``; ``unknown`` for None."""
    if n is None:
        return "unknown"
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def render_text(report: CheckReport) -> str:
    """The report as text for a terminal."""
    c = report.container
    lines = [f"imageport check: {report.path}", ""]
    accepted = "accepted format" if c.accepted else "NOT an accepted format"
    rows = [
        ("format", f"{c.format} ({c.variant}), {accepted}" if c.variant else c.format),
        ("virtual size", human_size(c.virtual_size)),
        ("file size", human_size(c.file_size)),
        ("allocated", human_size(report.allocated_bytes)),
    ]
    rows += [(k, v) for k, v in c.properties.items()]
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    if report.findings:
        lines.append("Findings")
        for f in report.findings:
            lines.append(f"  {f.severity.value.upper():<7} {f.rule_id}")
            lines += _wrapped(f.message, "    ")
            for ev in f.evidence:
                lines += _wrapped(f"evidence: {ev}", "    ")
            if f.advice:
                lines += _wrapped(f"fix: {f.advice}", "    ")
        lines.append("")
    verdict = "PASS" if report.passed else "FAIL"
    lines.append(
        f"Result: {verdict} ({report.error_count} error(s), {report.warning_count} warning(s)); "
        f"read {human_size(report.bytes_read)} in {report.elapsed_seconds:.3f} s"
    )
    return "\n".join(lines) + "\n"


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        text, width=100, initial_indent=indent, subsequent_indent=indent + "  ",
        break_long_words=False, break_on_hyphens=False,
    ) or [indent]
