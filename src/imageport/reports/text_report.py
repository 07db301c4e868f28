"""The human-readable report of a check, rendered from its JSON document, so that a report
stored with an image reads the same as ``imageport check`` printed it."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from imageport.findings import Severity
from imageport.limits import KiB, MiB
from imageport.reports.boot_report import boot_section_lines
from imageport.reports.json_report import report_document
from imageport.reports.sizes import human_size
from imageport.reports.terminal import terminal_safe
from imageport.service.tools.check import CheckReport

_GROUP_TITLES = {
    Severity.ERROR: "Errors",
    Severity.WARNING: "Warnings",
    Severity.INFO: "Notes",
}


def render_text(report: CheckReport) -> str:
    """The report as text for a terminal (the text of its JSON document)."""
    return render_document(report_document(report))


def render_document(doc: Mapping[str, Any]) -> str:
    """The report as text for a terminal, from its JSON document (:mod:`.json_report`): what
    ``imageport check`` prints, and what ``imageport image show`` prints for an image's stored
    report. Only the document's fields are read, so both give the same text. Every string
    of it may come from the image, so control characters are shown escaped
    (:func:`~imageport.reports.terminal.terminal_safe`), never sent to the terminal. The
    verdicts of the image's boot tests (the ``boot`` member a stored report may have) come
    after the findings."""
    lines = [f"imageport check: {doc.get('file')}", ""]
    accepted = "accepted format" if doc.get("accepted") else "NOT an accepted format"
    fmt, variant = doc.get("format"), doc.get("variant")
    rows = [
        ("format", f"{fmt} ({variant}), {accepted}" if variant else str(fmt)),
        ("virtual size", human_size(doc.get("virtual_size"))),
        ("file size", human_size(doc.get("file_size"))),
        ("allocated", human_size(doc.get("allocated_bytes"))),
    ]
    rows += [(str(k), str(v)) for k, v in (doc.get("properties") or {}).items()]
    bitmap = doc.get("bitmap")
    if bitmap is not None:
        rows.append(("bitmap file", _bitmap_doc_line(bitmap)))
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    guest = doc.get("guest")
    if guest is not None:
        lines += _guest_doc_lines(guest)
    findings = [f for f in doc.get("findings") or () if isinstance(f, Mapping)]
    for severity in Severity:
        group = [f for f in findings if f.get("severity") == severity.value]
        if not group:
            continue
        lines.append(f"{_GROUP_TITLES[severity]} ({len(group)})")
        for f in group:
            lines.append(f"  {f.get('rule_id')}")
            lines += _wrapped(str(f.get("message", "")), "    ")
            for ev in f.get("evidence") or ():
                lines += _wrapped(f"evidence: {ev}", "    ")
            if f.get("advice"):
                lines += _wrapped(f"fix: {f.get('advice')}", "    ")
        lines.append("")
    left_out = doc.get("findings_left_out") or {}
    if isinstance(left_out, Mapping) and left_out:
        lines.append("Left out (the same rule again, over the report's limit)")
        lines += [f"  {rule_id}: {count} more finding(s)" for rule_id, count in left_out.items()]
        lines.append("")
    boot = doc.get("boot")
    if isinstance(boot, Mapping):
        lines += boot_section_lines(boot)
    summary = doc.get("summary") or {}
    verdict = "PASS" if summary.get("verdict") == "pass" else "FAIL"
    elapsed = doc.get("elapsed_seconds")
    lines.append(
        f"Result: {verdict} ({summary.get('errors', 0)} error(s), "
        f"{summary.get('warnings', 0)} warning(s)); read {human_size(doc.get('bytes_read'))} "
        f"in {elapsed if not isinstance(elapsed, int | float) else format(elapsed, '.3f')} s"
    )
    return "\n".join(terminal_safe(line) for line in lines) + "\n"


def _bitmap_doc_line(bitmap: Mapping[str, Any]) -> str:
    where = " (found beside the image)" if bitmap.get("origin") == "beside" else ""
    if bitmap.get("block_count") is None:
        verdict = "cannot be read"
    else:
        bs = bitmap.get("block_size") or 0
        unit = f"{bs // MiB} MiB" if bs % MiB == 0 else f"{bs // KiB} KiB"
        verdict = (
            f"{'matches' if bitmap.get('matches') else 'DOES NOT MATCH'}; "
            f"{bitmap.get('blocks_marked')} of {bitmap.get('block_count')} blocks ({unit}) "
            f"marked as data, {bitmap.get('blocks_checked')} checked"
        )
    return f"{bitmap.get('path')}{where}: {verdict}"


def _guest_doc_lines(guest: Mapping[str, Any]) -> list[str]:
    os_doc = guest.get("os")
    os_name = (
        (os_doc.get("pretty_name") or f"{os_doc.get('id')} {os_doc.get('version_id')}")
        if os_doc
        else None
    )
    rooted = guest.get("root") is not None
    lines = ["Guest", f"  OS               {os_name or 'not identified'}"]
    if guest.get("hostname"):
        lines.append(f"  hostname         {guest['hostname']}")
    if guest.get("architecture"):
        lines.append(f"  architecture     {guest['architecture']}")
    if rooted:
        lines.append(f"  cloud-init       {guest.get('cloud_init') or 'not installed'}")
    for k in guest.get("kernels") or ():
        mark = " (default)" if k.get("default") else ""
        initrd = (
            f", initrd {k['initrd']} ({k.get('initrd_modules')} modules)" if k.get("initrd") else ""
        )
        lines.append(f"  kernel           {k.get('version')}{mark}{initrd}")
    if rooted:
        lines.append(
            f"  boot mode        {' + '.join(guest.get('boot_modes') or ()) or 'none found'}"
        )
    lines.append(f"  partition table  {guest.get('partition_table')}")
    for v in guest.get("volumes") or ():
        ident = f" UUID={v['uuid']}" if v.get("uuid") else ""
        label = f" LABEL={v['label']}" if v.get("label") else ""
        ptype = f" [{v['partition_type']}]" if v.get("partition_type") is not None else ""
        size = human_size(v.get("size"))
        lines.append(f"    {v.get('name'):<14} {size:<28} {v.get('kind')}{ptype}{ident}{label}")
    if not rooted:
        lines.append("  root             not found")
    for m in guest.get("mounts") or ():
        lines.append(f"  mount {m.get('mountpoint'):<10} {m.get('volume')} ({m.get('fstype')})")
    lines += [f"  problem: {p}" for p in guest.get("problems") or ()]
    lines.append("")
    return lines


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        terminal_safe(text),  # escaped first: wrapping would turn CR and LF into spaces
        width=100,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]
