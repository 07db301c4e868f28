"""Run rules over facts; a rule that crashes becomes a finding of its own, never a crash."""

from __future__ import annotations

from collections.abc import Iterable

from imageport.findings import Finding, Severity
from imageport.rules.base import ImageFacts, Rule


def run_rules(rules: Iterable[Rule], facts: ImageFacts) -> tuple[Finding, ...]:
    """All findings of ``rules`` for ``facts``, errors first, in catalogue order otherwise."""
    findings: list[Finding] = []
    for rule in rules:
        try:
            findings.extend(rule.check(facts))
        except Exception as exc:  # noqa: BLE001 - fail closed: a broken rule is an error
            findings.append(
                Finding(
                    rule_id=rule.id,
                    severity=Severity.ERROR,
                    message=f"The {rule.id} check could not be completed "
                    f"({type(exc).__name__}: {exc}); the image is not confirmed to pass it.",
                    advice="This is a bug in imageport; please report it with the image's "
                    "`imageport check --json` output.",
                )
            )
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return tuple(sorted(findings, key=lambda f: order[f.severity]))
