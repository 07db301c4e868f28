"""The rules a job's ``alarm_code`` names: the warnings, then the notes, of its image's report,
each once, bounded, and nothing from a document that is not a report."""

from __future__ import annotations

from imageport.service.images.alarms import MAX_ALARMS, MAX_FINDINGS_READ, alarm_rules


def _finding(rule_id: object, severity: object) -> dict[str, object]:
    return {"rule_id": rule_id, "severity": severity, "message": "m", "evidence": [], "advice": ""}


def test_warnings_come_before_notes_each_rule_once_and_errors_are_left_to_fail_reason() -> None:
    report = {
        "findings": [
            _finding("IMG-CLOUD-INIT", "info"),
            _finding("IMG-FSTAB-DATA-DISK", "error"),
            _finding("IMG-NET-STATIC", "warning"),
            _finding("IMG-NET-MAC", "warning"),
            _finding("IMG-NET-STATIC", "warning"),
        ]
    }
    assert alarm_rules(report) == ("IMG-NET-STATIC", "IMG-NET-MAC", "IMG-CLOUD-INIT")


def test_a_passing_report_without_findings_and_non_reports_name_nothing() -> None:
    assert alarm_rules({"findings": []}) == ()
    assert alarm_rules(None) == ()
    assert alarm_rules({"findings": "IMG-X"}) == ()
    assert alarm_rules([_finding("IMG-X", "warning")]) == ()


def test_hostile_findings_are_skipped_and_the_list_is_bounded() -> None:
    odd = [
        _finding("img-lower", "warning"),
        _finding("IMG-X,IMG-Y", "warning"),  # would forge a second code in the list
        _finding("IMG-" + "A" * 100, "warning"),
        _finding(7, "warning"),
        _finding("IMG-OK", "fatal"),
        "not a finding",
    ]
    assert alarm_rules({"findings": odd}) == ()
    many = [_finding(f"IMG-R{i}", "warning") for i in range(MAX_FINDINGS_READ + 10)]
    assert len(alarm_rules({"findings": many})) == MAX_ALARMS
    late = [_finding("IMG-A", "info")] * MAX_FINDINGS_READ + [_finding("IMG-LATE", "warning")]
    assert alarm_rules({"findings": late}) == ("IMG-A",)  # past the read bound
