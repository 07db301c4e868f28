"""The ``fail_reason`` built from a check report's error findings: its shape, and its caps on
strings that come from the image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imageport.rules.base import CheckOptions
from imageport.service.context import Services
from imageport.service.jobs.fail_reason import (
    MAX_PART_CHARS,
    MAX_REASON_CHARS,
    MAX_RULE_ID_CHARS,
    failure_reason,
    stored_reason,
)
from imageport.service.jobs.import_job import run_job
from imageport.service.ports import FailedRule, ImageInspection, WorkerError
from support import import_fixtures as fx
from support import service_fixtures
from support.fakes.image_worker import FakeImageWorker


def _inspection(findings: Any) -> ImageInspection:
    return ImageInspection(
        format="qcow2",
        variant="v3",
        file_size=1,
        virtual_size=1,
        readable=True,
        hazards=(),
        damage=None,
        encryption=None,
        report={"findings": findings},
    )


def _rule(
    rule_id: str = "IMG-X", message: str = "m", *evidence: str, advice: str = ""
) -> FailedRule:
    return FailedRule(
        rule_id=rule_id,
        message=message,
        evidence=evidence[0] if evidence else None,
        more_evidence=max(0, len(evidence) - 1),
        advice=advice,
    )


def test_failed_rules_are_the_error_findings_with_their_first_evidence_line() -> None:
    found = _inspection(
        [
            {"rule_id": "IMG-A", "severity": "warning", "message": "w", "evidence": ["x"]},
            {
                "rule_id": "IMG-B",
                "severity": "error",
                "message": "b",
                "evidence": ["first", "second", "third"],
                "advice": "fix b",
            },
            {
                "rule_id": "IMG-C",
                "severity": "error",
                "message": "c",
                "evidence": [],
                "advice": None,
            },
            {"severity": "error", "evidence": "not a list"},
            "not a finding",
        ]
    )
    assert found.failed_rules == (
        FailedRule("IMG-B", "b", "first", 2, "fix b"),
        FailedRule("IMG-C", "c", None, 0, ""),
        FailedRule("?", "", None, 0, ""),
    )
    assert found.failures == (("IMG-B", "b"), ("IMG-C", "c"), ("?", ""))
    assert _inspection("not a list").failed_rules == ()


def test_each_rule_names_its_message_first_evidence_line_and_fix() -> None:
    reason = failure_reason(
        [
            _rule("IMG-A", "a is wrong", "a.conf:1: bad", "a.conf:2: bad", advice="fix a"),
            _rule("IMG-B", "b is wrong"),
        ]
    )
    assert reason == (
        "IMG-A: a is wrong\n"
        "  evidence: a.conf:1: bad (+1 more in the check report)\n"
        "  fix: fix a\n"
        "IMG-B: b is wrong"
    )


def test_a_note_goes_to_the_first_entry_of_its_rule() -> None:
    reason = failure_reason(
        [_rule("IMG-FAST-RAW", "one"), _rule("IMG-FAST-RAW", "two")],
        {"IMG-FAST-RAW": "looked for the bitmap", "IMG-OTHER": "never shown"},
    )
    assert reason == "IMG-FAST-RAW: one\n  note: looked for the bitmap\nIMG-FAST-RAW: two"


def test_strings_from_the_image_are_put_on_one_line_and_capped() -> None:
    long = "x" * (MAX_PART_CHARS * 10)
    reason = failure_reason(
        [_rule("IMG-\n" + "R" * 100, "line one\nline two\r\x1b[2J", long, advice=long)]
    )
    first, evidence, fix = reason.splitlines()
    assert first == f"{('IMG- ' + 'R' * 100)[: MAX_RULE_ID_CHARS - 1]}…: line one line two [2J"
    assert evidence == f"  evidence: {'x' * (MAX_PART_CHARS - 1)}…"
    assert fix == f"  fix: {'x' * (MAX_PART_CHARS - 1)}…"
    # whitespace that collapses still counts as cut when the text went past the window read
    spaced = failure_reason([_rule("IMG-X", " " * (MAX_PART_CHARS * 5) + "end")])
    assert spaced == "IMG-X: …"


def test_too_many_findings_are_cut_and_the_rest_counted_and_named() -> None:
    many = [
        _rule(f"IMG-R{i % 7}", f"message {i} " + "m" * 300, "e" * 300, advice="f" * 300)
        for i in range(40)
    ]
    reason = failure_reason(many)
    assert len(reason) <= MAX_REASON_CHARS
    entries = [line for line in reason.splitlines() if not line.startswith(" ")]
    kept = len(entries) - 1
    assert 0 < kept < 40
    assert entries[-1] == (
        f"(+{40 - kept} more failing finding(s) left out to keep this short, the check report "
        "has them all: " + ", ".join(dict.fromkeys(f"IMG-R{i % 7}" for i in range(kept, 40))) + ")"
    )


def test_the_cap_holds_for_the_longest_entries() -> None:
    long = "y" * (MAX_PART_CHARS * 2)
    worst = [_rule("R" * 100, long, long, long, advice=long) for _ in range(1000)]
    reason = failure_reason(worst, {"R" * 100: long})
    assert len(reason) <= MAX_REASON_CHARS
    assert reason.splitlines()[-1].startswith("(+")
    assert failure_reason([]) == ""


class _CrashingChecker(FakeImageWorker):
    """A checker that ends with ``error`` (a worker quoting its last line of stderr, or a
    bug's message), as one crashed by an image's content would."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def inspect(
        self, path: Path, options: CheckOptions, *, cancelled: Callable[[], bool]
    ) -> ImageInspection:
        raise self.error


#: What a crashed worker's stderr or an exception can quote from an image: terminal escapes,
#: CR, NUL, a bidi override, and far more text than a reason holds.
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\r\x00\u202e" + "A" * 200_000


@pytest.mark.parametrize(
    "error", [WorkerError(f"the image checker failed: {HOSTILE}"), KeyError(HOSTILE)]
)
def test_any_failure_is_stored_without_control_characters_and_capped(
    tmp_path: Path, error: Exception
) -> None:
    """Not only the findings' reason: a job failed by a crashed worker or a bug keeps (and
    ShowJob and the killed image's ``__fail_reason`` show) a clean reason of bounded size."""
    services: Services = service_fixtures.make_fake_services(tmp_path / "data")
    try:
        services.worker = _CrashingChecker(error)
        job_id = fx.register(services, fx.good_image("qcow2"), name="crash")
        run_job(services, job_id)
        job, image = fx.job_row(services, job_id), fx.image_row(services, job_id)
    finally:
        services.db.dispose()
    assert job.status == "FAIL" and image.status == "killed"
    for reason in (job.fail_reason, image.fail_reason):
        assert len(reason) <= MAX_REASON_CHARS and reason.endswith("AAA…")
        assert reason.isprintable(), reason[:80]
        assert "]0;PWNED" in reason  # the text is kept, its control characters are not


def test_a_stored_reason_keeps_the_lines_of_a_built_one() -> None:
    built = failure_reason([_rule("IMG-A", "m", "e\x1b[2J", advice="f")])
    assert stored_reason(built) == built
    assert stored_reason("a\r\n  b\x00") == "a\n  b"
