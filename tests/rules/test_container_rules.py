"""Each container rule: a fixture that triggers it and one that does not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imageport.findings import Finding, Severity
from imageport.formats.base import Container, Hazard
from imageport.limits import GiB, TiB
from imageport.rules.base import CheckOptions, ImageFacts, Rule
from imageport.rules.catalogue import RULES, rule_by_id
from imageport.rules.container import (
    DiskSizeRule,
    EncryptionRule,
    FormatRule,
    SafeRule,
    SizeRule,
)
from imageport.rules.docs import rules_markdown
from imageport.rules.engine import run_rules

REPO = Path(__file__).resolve().parents[2]


def facts(options: CheckOptions | None = None, **kw: Any) -> ImageFacts:
    base: dict[str, Any] = {
        "format": "qcow2",
        "variant": "v3",
        "accepted": True,
        "file_size": 10 * GiB,
        "virtual_size": 40 * GiB,
    }
    base.update(kw)
    return ImageFacts(Container(**base), 1 * GiB, options or CheckOptions())


def ids(rule: Rule, f: ImageFacts) -> list[str]:
    return [x.message for x in rule.check(f)]


def test_a_clean_qcow2_passes_every_rule() -> None:
    assert run_rules(RULES, facts()) == ()


def test_format_rule_names_the_detected_format_and_its_hint() -> None:
    found = list(
        FormatRule().check(
            facts(
                format="gzip",
                variant="gzip-compressed",
                accepted=False,
                properties={"hint": "decompress it first"},
            )
        )
    )
    assert len(found) == 1
    assert "gzip" in found[0].message and found[0].advice == "decompress it first"
    assert "detected format: gzip" in found[0].evidence


def test_format_rule_reports_damage_with_the_reason() -> None:
    found = list(FormatRule().check(facts(damage="L1 table beyond end of file")))
    assert "L1 table beyond end of file" in found[0].message


def test_format_rule_names_an_unsupported_variant_as_such() -> None:
    found = list(
        FormatRule().check(
            facts(
                format="vmdk",
                variant="seSparse",
                damage="unsupported: seSparse extents are not read",
            )
        )
    )
    assert found[0].message.startswith("The file is vmdk (seSparse), a variant imageport cannot")


def test_safe_rule_lists_every_hazard() -> None:
    hazards = (
        Hazard("backing-file", "backing file '/etc/passwd'"),
        Hazard("feature-bit", "unknown incompatible feature bit 9"),
    )
    found = list(SafeRule().check(facts(hazards=hazards)))
    assert [f.evidence[0] for f in found] == [
        "backing-file: backing file '/etc/passwd'",
        "feature-bit: unknown incompatible feature bit 9",
    ]
    assert list(SafeRule().check(facts())) == []


def test_polyglot_is_reported_once_by_img_safe_not_img_format() -> None:
    f = facts(
        format="polyglot",
        variant="qcow2, iso9660",
        accepted=False,
        hazards=(Hazard("polyglot", "valid as qcow2 and iso9660"),),
    )
    assert [x.rule_id for x in run_rules(RULES, f)] == ["IMG-SAFE"]


def test_encryption_rule() -> None:
    assert "luks" in ids(EncryptionRule(), facts(encryption="luks"))[0]
    assert ids(EncryptionRule(), facts()) == []


def test_size_rule_limits() -> None:
    assert ids(SizeRule(), facts(file_size=TiB + 1))
    assert ids(SizeRule(), facts(file_size=200 * GiB))  # qcow2 above 128 GiB
    raw_big = facts(format="raw", variant="mbr", file_size=200 * GiB)
    assert ids(SizeRule(), raw_big)  # needs fast import
    assert (
        ids(
            SizeRule(),
            facts(CheckOptions(fast_import=True), format="raw", variant="mbr", file_size=200 * GiB),
        )
        == []
    )
    assert ids(SizeRule(), facts(file_size=128 * GiB)) == []


def test_disk_size_rule_rounds_up_and_checks_min_disk() -> None:
    vhd = facts(virtual_size=40 * GiB + 1)
    assert ids(DiskSizeRule(), vhd) == []
    assert "41" in "".join(
        f.advice
        for f in DiskSizeRule().check(
            facts(CheckOptions(min_disk_gib=40), virtual_size=40 * GiB + 1)
        )
    )
    min41 = CheckOptions(min_disk_gib=41)
    assert ids(DiskSizeRule(), facts(min41, virtual_size=40 * GiB + 1)) == []
    assert ids(DiskSizeRule(), facts(CheckOptions(min_disk_gib=20), virtual_size=GiB))
    assert ids(DiskSizeRule(), facts(virtual_size=1025 * GiB))


def test_a_crashing_rule_becomes_an_error_finding() -> None:
    class Broken(Rule):
        """Always crashes."""

        id = "IMG-TEST"
        severity = Severity.WARNING
        title = "broken"
        advice = ""

        def check(self, facts: ImageFacts) -> Iterator[Finding]:
            raise ZeroDivisionError("boom")

    (finding,) = run_rules([Broken()], facts())
    assert finding.rule_id == "IMG-TEST" and finding.severity is Severity.ERROR
    assert "boom" in finding.message


def test_every_rule_documents_itself_and_ids_are_unique() -> None:
    assert len({r.id for r in RULES}) == len(RULES)
    for r in RULES:
        assert r.id.startswith("IMG-")
        for part in ("What it checks:", "Why it matters:", "How to fix:", "Example:"):
            assert part in r.docs(), f"{r.id} docs lack '{part}'"
    assert rule_by_id("IMG-SAFE").id == "IMG-SAFE"


def test_committed_rules_page_is_generated_from_the_code() -> None:
    committed = (REPO / "docs" / "rules.md").read_text()
    assert committed == rules_markdown(), (
        "docs/rules.md is stale: run `imageport rules --markdown > docs/rules.md`"
    )
