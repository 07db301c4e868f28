"""The human-readable report of a check."""

from __future__ import annotations

import textwrap

from imageport.findings import Severity
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.facts.summary import GuestSummary
from imageport.limits import KiB, MiB
from imageport.reports.sizes import human_size
from imageport.rules.base import BitmapCheck
from imageport.service.tools.check import CheckReport

_GROUP_TITLES = {
    Severity.ERROR: "Errors",
    Severity.WARNING: "Warnings",
    Severity.INFO: "Notes",
}


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
    if report.bitmap is not None:
        rows.append(("bitmap file", bitmap_line(report.bitmap)))
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    if report.guest is not None:
        lines += _guest_lines(report.guest, report.guest_summary)
    for severity in Severity:
        group = [f for f in report.findings if f.severity is severity]
        if not group:
            continue
        lines.append(f"{_GROUP_TITLES[severity]} ({len(group)})")
        for f in group:
            lines.append(f"  {f.rule_id}")
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


def bitmap_line(bitmap: BitmapCheck) -> str:
    """One line on the bitmap file: which file, and whether it matches the image."""
    where = " (found beside the image)" if bitmap.origin == "beside" else ""
    if bitmap.block_count is None:
        verdict = "cannot be read"
    else:
        bs = bitmap.block_size or 0
        unit = f"{bs // MiB} MiB" if bs % MiB == 0 else f"{bs // KiB} KiB"
        verdict = (
            f"{'matches' if bitmap.ok else 'DOES NOT MATCH'}; {bitmap.blocks_marked} of "
            f"{bitmap.block_count} blocks ({unit}) marked as data, "
            f"{bitmap.blocks_checked} checked"
        )
    return f"{bitmap.path}{where}: {verdict}"


def _guest_lines(guest: GuestFacts, summary: GuestSummary | None) -> list[str]:
    layout = guest.layout
    storage = layout.storage
    summary = summary or GuestSummary(None, (), ())
    os_name = guest.os.pretty_name or f"{guest.os.id} {guest.os.version_id}" if guest.os else None
    lines = ["Guest", f"  OS               {os_name or 'not identified'}"]
    if summary.hostname:
        lines.append(f"  hostname         {summary.hostname}")
    if summary.architecture:
        lines.append(f"  architecture     {summary.architecture}")
    if layout.root is not None:
        lines.append(f"  cloud-init       {summary.cloud_init or 'not installed'}")
    for k in summary.kernels:
        mark = " (default)" if k.default else ""
        initrd = f", initrd {k.initrd} ({k.initrd_modules} modules)" if k.initrd else ""
        lines.append(f"  kernel           {k.version}{mark}{initrd}")
    if layout.root is not None:
        lines.append(f"  boot mode        {' + '.join(summary.boot_modes) or 'none found'}")
    lines.append(f"  partition table  {storage.table.scheme}")
    for v in storage.volumes:
        sig = v.signature
        ident = f" UUID={sig.uuid}" if sig and sig.uuid else ""
        label = f" LABEL={sig.label}" if sig and sig.label else ""
        ptype = f" [{v.partition.type_name}]" if v.partition else ""
        lines.append(
            f"    {v.name:<14} {human_size(v.device.size):<28} {v.kind}{ptype}{ident}{label}"
        )
    if layout.root is None:
        lines.append("  root             not found")
    for m in layout.mounts:
        lines.append(f"  mount {m.mountpoint:<10} {m.volume.name} ({m.fs.fs_type})")
    lines += [f"  problem: {p}" for p in layout.problems]
    lines.append("")
    return lines


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=100,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]
