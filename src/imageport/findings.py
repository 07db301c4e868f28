"""What a check reports: findings with a rule ID, a severity, evidence and advice."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.Enum):
    """How bad a finding is; only ``ERROR`` stops an import."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a rule found, phrased for the user who has to fix it."""

    rule_id: str
    severity: Severity
    message: str
    evidence: tuple[str, ...] = ()
    advice: str = ""
