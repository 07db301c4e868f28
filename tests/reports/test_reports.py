"""The two renderings of a check (``imageport check`` and ``--json``) on a real guest image: the
JSON document has exactly the members ``docs/check-json.md`` documents, and the text report
shows what a user needs of each finding (rule, message, evidence, fix) and the verdict."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from imageport.findings import Finding, Severity
from imageport.reports.json_report import (
    MAX_EVIDENCE_LINES,
    MAX_TEXT_CHARS,
    SCHEMA,
    report_document,
)
from imageport.reports.sizes import human_size
from imageport.reports.text_report import render_document, render_text
from imageport.rules.base import CheckOptions
from imageport.service.tools.check import CheckReport, check_image
from support import builders, import_fixtures

DOC = builders.REPO / "docs" / "check-json.md"


@pytest.fixture(scope="module")
def report() -> CheckReport:
    """The check of the good Debian-like guest as qcow2 (a guest, volumes, mounts, kernels)."""
    return check_image(import_fixtures.good_image("qcow2"), CheckOptions())


def _documented_keys() -> list[str]:
    """The keys of the table's rows, in order."""
    return re.findall(r"^\| `(\w+)` \|", DOC.read_text(), re.M)


def _documented_guest_members() -> set[str]:
    row = next(line for line in DOC.read_text().splitlines() if line.startswith("| `guest` |"))
    meaning = row.split(" | ")[2]
    return set(re.findall(r"`(\w+)` \(", meaning))


def test_the_document_has_exactly_the_documented_members(report: CheckReport) -> None:
    doc = report_document(report)
    assert list(doc) == _documented_keys()
    assert doc["schema"] == SCHEMA and SCHEMA in DOC.read_text()
    assert doc["summary"]["verdict"] in ("pass", "fail")


def test_the_guest_member_has_the_documented_members(report: CheckReport) -> None:
    guest = report_document(report)["guest"]
    assert guest is not None, "the good guest must be opened"
    assert set(guest) == _documented_guest_members()
    assert guest["root"] in {v["name"] for v in guest["volumes"]}


def test_the_text_report_shows_each_finding_with_its_evidence_and_fix(
    report: CheckReport,
) -> None:
    finding = Finding(
        "IMG-NET-DHCP",
        Severity.WARNING,
        "eth0 has a static address",
        ("/etc/network/interfaces:7: address 10.0.0.5", "/etc/hostname: web1"),
        "configure DHCP on the first interface",
    )
    text = render_text(dataclasses.replace(report, findings=(finding,)))
    for shown in ("IMG-NET-DHCP", "eth0 has a static address", "address 10.0.0.5", "web1"):
        assert shown in text
    assert "fix: configure DHCP on the first interface" in text
    assert re.search(r"Result: \w+ \(0 error\(s\), 1 warning\(s\)\)", text)


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (None, "unknown"),
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB (1024 bytes)"),
        (3 * 2**30 + 2**29, "3.5 GiB (3758096384 bytes)"),
        (2**40, "1.0 TiB (1099511627776 bytes)"),
    ],
)
def test_sizes_are_shown_in_binary_units_with_the_exact_count(n: int | None, shown: str) -> None:
    assert human_size(n) == shown


def test_the_document_is_bounded_whatever_the_image_holds(report: CheckReport) -> None:
    """Thousands of findings of one rule, each with long quoted text and many evidence lines
    (what a 1 MiB fstab makes): the document lists 50 of the rule, counts the rest in
    ``findings_left_out``, caps each string and evidence list, and ``summary`` counts all."""
    long = "x" * 100_000  # one string shared by every finding: the test stays small
    many = (
        Finding(
            "IMG-FSTAB-DATA-DISK", Severity.ERROR, long, (f"/etc/fstab:7: {long}",) * 100, long
        ),
    ) * 3000
    other = Finding("IMG-CLOUD-INIT", Severity.WARNING, "w", ("e",), "a")
    doc = report_document(dataclasses.replace(report, findings=(*many, other)))
    assert [f["rule_id"] for f in doc["findings"]] == ["IMG-FSTAB-DATA-DISK"] * 50 + [
        "IMG-CLOUD-INIT"
    ]
    assert doc["findings_left_out"] == {"IMG-FSTAB-DATA-DISK": 2950}
    assert doc["summary"]["errors"] == 3000 and doc["summary"]["verdict"] == "fail"
    first = doc["findings"][0]
    assert len(first["evidence"]) == MAX_EVIDENCE_LINES
    assert first["evidence"][-1] == "(+81 more evidence lines left out)"
    assert all(len(s) <= MAX_TEXT_CHARS for s in (first["message"], first["advice"]))
    assert all(len(line) <= MAX_TEXT_CHARS for line in first["evidence"])
    assert len(json.dumps(doc)) < 2_500_000  # 3000 findings of 10 MB before
    text = render_document(doc)
    assert "  IMG-FSTAB-DATA-DISK: 2950 more finding(s)" in text
    assert doc["findings_left_out"] and report_document(report)["findings_left_out"] == {}
