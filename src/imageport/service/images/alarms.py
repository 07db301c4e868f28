"""The ``alarm_code`` of a job: the rule IDs of the warnings and notes the check found on the
file of the job's image.

``fail_reason`` names the rules that failed; an image that went active with warnings (a static
IP, a MAC-bound network configuration, no cloud-init) has none. The vendor's SDK reads a job's
``entities.alarm_code`` (``JobEntities.alarm_code``, "alarm code"), so a user of the SDK learns
there that the check has more to say, and which rules, without leaving ``ShowJob``: warnings
first, then notes, each rule once, in report order, comma-separated. The evidence and the fix
of each are in the image's report (``GET /v1/cloudimages/{image_id}/report``).

The report is stored by the service, but its findings name rules the image's content chose
(how many, which), so what is read is bounded: at most :data:`MAX_FINDINGS_READ` findings, rule
IDs of the catalogue's shape only, at most :data:`MAX_ALARMS` of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: The most findings of a report looked at.
MAX_FINDINGS_READ = 1000
#: The most rule IDs an ``alarm_code`` names (the catalogue has about 30 rules).
MAX_ALARMS = 40

_RULE_ID = re.compile(r"IMG-[A-Z0-9-]{1,36}")
_ORDER = ("warning", "info")


def alarm_rules(report: object) -> tuple[str, ...]:
    """The rule IDs of ``report``'s warnings, then of its notes (each once); ``()`` when
    ``report`` is not a check report or found neither."""
    if not isinstance(report, Mapping):
        return ()
    findings = report.get("findings")
    if not isinstance(findings, list):
        return ()
    by_severity: dict[str, list[str]] = {severity: [] for severity in _ORDER}
    for finding in findings[:MAX_FINDINGS_READ]:
        if not isinstance(finding, Mapping):
            continue
        severity, rule_id = finding.get("severity"), finding.get("rule_id")
        if severity not in by_severity or not isinstance(rule_id, str):
            continue
        if _RULE_ID.fullmatch(rule_id) and rule_id not in by_severity[str(severity)]:
            by_severity[str(severity)].append(rule_id)
    ordered: list[str] = []
    for severity in _ORDER:
        ordered += [rule for rule in by_severity[severity] if rule not in ordered]
    return tuple(ordered[:MAX_ALARMS])


__all__ = ["MAX_ALARMS", "MAX_FINDINGS_READ", "alarm_rules"]
