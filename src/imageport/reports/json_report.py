"""The JSON document of a check (``imageport check --json``); see ``docs/check-json.md``.

The document is versioned by ``schema``; fields are only ever added within a version.

Its findings quote the image (a line of its fstab, a mount point, a file name), and an image can
hold thousands of lines that each make a finding: a 1 MiB fstab made a 6 MB document, which the
service stores with the image and sends on every report request. So the document is bounded
whatever the image holds: at most :data:`MAX_FINDINGS_PER_RULE` findings of one rule (the rest
counted in ``findings_left_out``; ``summary`` counts them all), at most
:data:`MAX_EVIDENCE_LINES` evidence lines a finding, and at most :data:`MAX_TEXT_CHARS`
characters in its message, advice and each evidence line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imageport.findings import Finding, Severity
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.facts.summary import GuestSummary
from imageport.rules.base import BitmapCheck
from imageport.service.tools.check import CheckReport

SCHEMA = "imageport.check/1"
#: The most findings of one rule ID a document lists (errors first, so an error is never left
#: out for a warning of the same rule); the others are counted in ``findings_left_out``.
MAX_FINDINGS_PER_RULE = 50
#: The most evidence lines of one finding; the last line then says how many more there were.
MAX_EVIDENCE_LINES = 20
#: The most characters of a finding's message, advice or one evidence line.
MAX_TEXT_CHARS = 2000

_ELLIPSIS = "…"


def _capped(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + _ELLIPSIS


def finding_document(finding: Finding) -> dict[str, Any]:
    evidence = [_capped(line) for line in finding.evidence[:MAX_EVIDENCE_LINES]]
    if len(finding.evidence) > MAX_EVIDENCE_LINES:
        more = len(finding.evidence) - MAX_EVIDENCE_LINES + 1
        evidence[-1] = f"(+{more} more evidence lines left out)"
    return {
        "rule_id": finding.rule_id,
        "severity": finding.severity.value,
        "message": _capped(finding.message),
        "evidence": evidence,
        "advice": _capped(finding.advice),
    }


def findings_documents(findings: Sequence[Finding]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The documents of ``findings`` in order, at most :data:`MAX_FINDINGS_PER_RULE` of a rule
    ID, and how many of each rule ID were left out."""
    shown: dict[str, int] = {}
    left_out: dict[str, int] = {}
    documents = []
    for finding in findings:
        if shown.get(finding.rule_id, 0) >= MAX_FINDINGS_PER_RULE:
            left_out[finding.rule_id] = left_out.get(finding.rule_id, 0) + 1
            continue
        shown[finding.rule_id] = shown.get(finding.rule_id, 0) + 1
        documents.append(finding_document(finding))
    return documents, left_out


def guest_document(guest: GuestFacts, summary: GuestSummary) -> dict[str, Any]:
    """The ``guest`` member: OS, partitions and volumes, the root and the mounts."""
    layout = guest.layout
    storage = layout.storage
    return {
        "os": None
        if guest.os is None
        else {
            "id": guest.os.id,
            "version_id": guest.os.version_id,
            "pretty_name": guest.os.pretty_name,
            "family": guest.os.family,
            "source": guest.os.source,
        },
        "hostname": summary.hostname,
        "cloud_init": summary.cloud_init,
        "architecture": summary.architecture,
        "kernels": [
            {
                "version": k.version,
                "default": k.default,
                "initrd": k.initrd,
                "initrd_modules": k.initrd_modules,
            }
            for k in summary.kernels
        ],
        "boot_modes": list(summary.boot_modes),
        "partition_table": storage.table.scheme,
        "volumes": [
            {
                "name": v.name,
                "size": v.device.size,
                "kind": v.kind,
                "uuid": v.signature.uuid if v.signature else None,
                "label": v.signature.label if v.signature else None,
                "partition_type": v.partition.type_name if v.partition else None,
                "partuuid": v.partition.partuuid if v.partition else None,
            }
            for v in storage.volumes
        ],
        "root": None if layout.root is None else layout.root.volume.name,
        "mounts": [
            {"mountpoint": m.mountpoint, "volume": m.volume.name, "fstype": m.fs.fs_type}
            for m in layout.mounts
        ],
        "problems": list(layout.problems),
    }


def bitmap_document(bitmap: BitmapCheck) -> dict[str, Any]:
    """The ``bitmap`` member: the RAW image's bitmap file and how it compared with the image."""
    return {
        "path": bitmap.path,
        "origin": bitmap.origin,
        "matches": bitmap.ok,
        "problems": list(bitmap.problems),
        "warnings": list(bitmap.warnings),
        "block_size": bitmap.block_size,
        "block_count": bitmap.block_count,
        "blocks_marked": bitmap.blocks_marked,
        "blocks_checked": bitmap.blocks_checked,
        "bytes_read": bitmap.bytes_read,
    }


def report_document(report: CheckReport) -> dict[str, Any]:
    """The JSON-ready document for ``report``."""
    c = report.container
    counts = {s.value: 0 for s in Severity}
    for f in report.findings:
        counts[f.severity.value] += 1
    findings, left_out = findings_documents(report.findings)
    return {
        "schema": SCHEMA,
        "file": report.path,
        "file_size": c.file_size,
        "format": c.format,
        "variant": c.variant,
        "accepted": c.accepted,
        "virtual_size": c.virtual_size,
        "allocated_bytes": report.allocated_bytes,
        "encryption": c.encryption,
        "damage": c.damage,
        "hazards": [{"kind": h.kind, "detail": h.detail} for h in c.hazards],
        "properties": dict(c.properties),
        "guest": None
        if report.guest is None or report.guest_summary is None
        else guest_document(report.guest, report.guest_summary),
        "bitmap": None if report.bitmap is None else bitmap_document(report.bitmap),
        "findings": findings,
        "findings_left_out": left_out,
        "summary": {
            "verdict": "pass" if report.passed else "fail",
            "errors": counts["error"],
            "warnings": counts["warning"],
            "info": counts["info"],
        },
        "bytes_read": report.bytes_read,
        "elapsed_seconds": round(report.elapsed_seconds, 6),
    }
