"""The JSON document of a check (``imageport check --json``); see ``docs/check-json.md``.

The document is versioned by ``schema``; fields are only ever added within a version.
"""

from __future__ import annotations

from typing import Any

from imageport.findings import Finding, Severity
from imageport.service.check import CheckReport

SCHEMA = "imageport.check/1"


def finding_document(finding: Finding) -> dict[str, Any]:
    return {
        "rule_id": finding.rule_id,
        "severity": finding.severity.value,
        "message": finding.message,
        "evidence": list(finding.evidence),
        "advice": finding.advice,
    }


def report_document(report: CheckReport) -> dict[str, Any]:
    """The JSON-ready document for ``report``."""
    c = report.container
    counts = {s.value: 0 for s in Severity}
    for f in report.findings:
        counts[f.severity.value] += 1
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
        "findings": [finding_document(f) for f in report.findings],
        "summary": {
            "verdict": "pass" if report.passed else "fail",
            "errors": counts["error"],
            "warnings": counts["warning"],
            "info": counts["info"],
        },
        "bytes_read": report.bytes_read,
        "elapsed_seconds": round(report.elapsed_seconds, 6),
    }
