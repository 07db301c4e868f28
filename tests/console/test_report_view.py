"""A check report arranged for a page, the check page's request and the rules' pages, without
a browser: the real checker's document of a failing image, grouped by severity with the rules'
texts in both languages; what it pre-fills the register form with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imageport.console.checks import check_body, register_link, rule_sections
from imageport.console.report_view import inline_code, register_hints, report_view, size_text
from imageport.reports.json_report import report_document
from imageport.rules.base import CheckOptions
from imageport.rules.catalogue import RULES, rule_by_id
from imageport.service.errors import RequestInvalid
from imageport.service.images import object_check
from imageport.service.tools.check import check_image
from support import import_fixtures as fx


@pytest.fixture(scope="module")
def failing() -> dict[str, Any]:
    """The real checker's document of the image failing two rules (and warning of two)."""
    document: dict[str, Any] = json.loads(
        json.dumps(report_document(check_image(fx.failing_twice_qcow2(), CheckOptions())))
    )
    return document


def test_findings_are_grouped_by_severity_with_their_rules_texts(failing: dict[str, Any]) -> None:
    view = report_view(failing)
    assert (view.verdict, view.errors, view.warnings, view.info) == ("fail", 2, 2, 0)
    assert [g.severity for g in view.groups] == ["error", "warning"]  # no empty group
    errors, warnings = view.groups
    assert [f.rule_id for f in errors.findings] == ["IMG-FSTAB-DATA-DISK", "IMG-BOOT-MODE"]
    assert [f.rule_id for f in warnings.findings] == ["IMG-FSTAB-UUID", "IMG-ROOT-PASSWORD"]
    boot = errors.findings[1]
    assert boot.evidence == (
        "BIOS: sector 0: no boot code",
        "UEFI: ESP part2: EFI/BOOT/BOOTX64.EFI",
    )
    assert boot.title == rule_by_id("IMG-BOOT-MODE").title
    assert boot.title_zh == rule_by_id("IMG-BOOT-MODE").title_zh
    assert boot.advice_zh is None  # its own advice, quoting the image: English only
    fstab = errors.findings[0]
    assert fstab.advice == rule_by_id("IMG-FSTAB-DATA-DISK").advice
    assert fstab.advice_zh == rule_by_id("IMG-FSTAB-DATA-DISK").advice_zh  # the default fix
    assert view.format == "qcow2 (v3)" and view.virtual_size == "128 MiB"
    guest = view.guest
    assert guest is not None
    assert guest.os_name == "Debian GNU/Linux 12 (bookworm)"
    assert guest.boot_modes == ("UEFI",) and guest.partition_table == "GPT"
    assert guest.kernels == (("6.1.0-13-amd64", True),)
    assert [m.mountpoint for m in guest.mounts] == ["/", "/boot", "/boot/efi"]
    assert guest.root == "part3"


def test_a_document_missing_members_or_naming_an_unknown_rule_still_shows() -> None:
    view = report_view(
        {
            "summary": {"verdict": "fail", "errors": 1},
            "findings": [{"rule_id": "IMG-FROM-THE-FUTURE", "severity": "error"}, "junk"],
            "findings_left_out": {"IMG-FSTAB-UUID": 7},
            "guest": {"os": None, "volumes": [{"name": "p1", "size": "big"}]},
        }
    )
    (group,) = view.groups
    (finding,) = group.findings
    assert not finding.documented and finding.title == "" and finding.evidence == ()
    assert view.left_out == (("IMG-FSTAB-UUID", 7),)
    assert view.guest is not None and view.guest.os_name == ""
    assert view.guest.volumes[0].size == ""  # not a count: not shown as one
    assert report_view({}).verdict == "fail" and report_view({}).guest is None


def test_the_report_prefills_the_register_form(failing: dict[str, Any]) -> None:
    hints = register_hints(failing)
    assert hints.os_version == "Debian GNU/Linux 12.0.0 64bit"  # as the import job names it
    assert hints.min_disk == 40  # 128 MiB fits the smallest system disk
    assert hints.firmware == "uefi"  # it boots with UEFI only
    assert register_hints(failing, data_disk=True).min_disk == 1
    assert register_hints({"virtual_size": 40 * 2**30 + 1}).min_disk == 41
    assert register_hints({"guest": {"architecture": "aarch64 (/bin/sh)"}}).architecture == "arm"
    link = register_link("images:failing.qcow2", {"image_url": "images:failing.qcow2"}, failing)
    assert link == (
        "/console/register?source=images%3Afailing.qcow2&image_type=system"
        "&os_version=Debian%20GNU%2FLinux%2012.0.0%2064bit&min_disk=40&hw_firmware_type=uefi"
    )
    given = {
        "image_url": "x:y",
        "min_disk": 60,
        "hw_firmware_type": "bios",
        "is_quick_import": True,
    }
    link = register_link("x:y", given, failing)
    assert "min_disk=60" in link and "hw_firmware_type=bios" in link
    assert "is_quick_import=on" in link  # the user's choices win over the report's


def test_the_check_page_sends_the_check_routes_body() -> None:
    query = [
        ("bucket", "images"),
        ("type", "DataImage"),
        ("min_disk", "100"),
        ("is_quick_import", "on"),
        ("architecture", ""),
        ("min_disk", "999"),
    ]
    body = check_body("images:d.raw", query)
    assert body == {
        "image_url": "images:d.raw",
        "type": "DataImage",
        "min_disk": 100,
        "is_quick_import": True,
    }
    object_check.parse_check_request(body)  # the route takes it
    odd = check_body("images:d.raw", [("min_disk", "forty"), ("uninitialized", "maybe")])
    assert odd["min_disk"] == "forty" and odd["uninitialized"] == "maybe"
    with pytest.raises(RequestInvalid) as refused:
        object_check.parse_check_request(odd)
    assert refused.value.field == "min_disk"  # shown at its input


def test_rule_pages_show_every_rules_documentation_in_parts() -> None:
    for rule in RULES:
        sections = rule_sections(rule)
        headings = [s.heading for s in sections]
        assert headings == ["rule.what", "rule.why", "rule.fix", "rule.example"], rule.id
    what = rule_sections(rule_by_id("IMG-FORMAT"))[0].paragraphs[0]
    assert "<code>disk_format</code>" in what and what.startswith("The file&#39;s real format")


def test_code_spans_are_marked_and_everything_else_escaped() -> None:
    assert inline_code("run ``a <b>`` and `c`, <i>") == (
        "run <code>a &lt;b&gt;</code> and <code>c</code>, &lt;i&gt;"
    )


def test_sizes_read_as_people_read_them() -> None:
    assert size_text(134217728) == "128 MiB"
    assert size_text(1769472) == "1.7 MiB"
    assert size_text(512) == "512 B"
    assert size_text(None) == "" and size_text(True) == "" and size_text(-1) == ""
