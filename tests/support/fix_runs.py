"""Run rules and configuration plans on guest disk files, for the fixes' tests."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from imageport.configure.plan import Plan, plan_configuration
from imageport.findings import Finding
from imageport.rules.base import CheckOptions, ImageFacts, Rule
from imageport.rules.engine import run_rules
from imageport.service.tools.check import inspect_source
from imageport.source import FileSource
from support.kernel_fixtures import open_guest


def findings(path: Path, *rules: Rule) -> list[Finding]:
    """The findings of ``rules`` on the image at ``path``, as the check computes them."""
    with FileSource(path) as src:
        found = inspect_source(src)
        facts = ImageFacts(found.container, found.allocated_bytes, CheckOptions(), found.guest)
        return list(run_rules(rules, facts))


def plan(path: Path, only: Collection[str] | None = None) -> Plan:
    """The configuration plan for the guest at ``path`` (the fixes of ``only``, or all)."""
    with open_guest(path) as guest:
        return plan_configuration(guest, only)


def shown(found: list[Finding]) -> list[str]:
    """Findings as text a test can compare: rule, message and evidence."""
    return [f"{f.rule_id}: {f.message} | {' | '.join(f.evidence)}" for f in found]
