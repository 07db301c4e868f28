"""Whether a checked image is initialized (``__is_config_init`` of an image made from a server):
no error and no warning of the initialization rules, the vendor's configuration checklist."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from imageport.rules.catalogue import INITIALIZATION_RULES, RULES
from imageport.service.images.properties import initialization_done
from support.fakes.image_worker import GOOD_DEBIAN


def checked(*findings: dict[str, Any]) -> Any:
    report = {**dict(GOOD_DEBIAN.report or {}), "findings": list(findings)}
    return dataclasses.replace(GOOD_DEBIAN, report=report)


def finding(rule_id: str, severity: str) -> dict[str, Any]:
    return {"rule_id": rule_id, "severity": severity, "message": "m", "evidence": [], "advice": ""}


def test_the_initialization_rules_are_the_checklists_and_in_the_catalogue() -> None:
    assert INITIALIZATION_RULES == {
        "IMG-NET-RULES",
        "IMG-NET-DHCP",
        "IMG-DRIVERS",
        "IMG-FSTAB-UUID",
        "IMG-FSTAB-DATA-DISK",
        "IMG-CLOUD-INIT",
    }
    assert INITIALIZATION_RULES <= {rule.id for rule in RULES}


@pytest.mark.parametrize(
    ("findings", "done"),
    [
        ((), True),
        ((finding("IMG-CLOUD-INIT", "info"),), True),  # a note: settings differ, still set up
        ((finding("IMG-ROOT-PASSWORD", "warning"),), True),  # not a checklist item
        ((finding("IMG-NET-RULES", "warning"),), False),
        ((finding("IMG-CLOUD-INIT", "warning"),), False),
        ((finding("IMG-FSTAB-DATA-DISK", "error"),), False),
        ((finding("IMG-CONSOLE", "warning"), finding("IMG-NET-DHCP", "warning")), False),
    ],
)
def test_initialized_means_no_error_or_warning_of_those_rules(
    findings: tuple[dict[str, Any], ...], done: bool
) -> None:
    assert initialization_done(checked(*findings)) is done


def test_no_guest_or_no_readable_report_is_not_initialized() -> None:
    assert not initialization_done(dataclasses.replace(checked(), os=None))
    assert not initialization_done(dataclasses.replace(GOOD_DEBIAN, report=None))
    assert not initialization_done(dataclasses.replace(GOOD_DEBIAN, report={"findings": "x"}))
    assert not initialization_done(dataclasses.replace(GOOD_DEBIAN, report={"findings": [1]}))
