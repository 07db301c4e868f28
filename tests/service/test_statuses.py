"""Image and job statuses are enums whose members are the strings clients and rows hold."""

from __future__ import annotations

import json

from imageport.service.statuses import IMAGE_IN_PROGRESS, UNFINISHED_JOB, ImageStatus, JobStatus


def test_the_strings_clients_read_are_unchanged() -> None:
    assert [str(s) for s in JobStatus] == ["INIT", "RUNNING", "SUCCESS", "FAIL"]
    assert [str(s) for s in ImageStatus] == ["queued", "saving", "active", "killed"]
    doc = {"status": JobStatus.FAIL, "image": ImageStatus.ACTIVE, "label": f"{JobStatus.INIT}"}
    assert json.dumps(doc) == '{"status": "FAIL", "image": "active", "label": "INIT"}'


def test_a_status_read_from_a_row_is_its_member() -> None:
    assert JobStatus("RUNNING") is JobStatus.RUNNING
    assert "saving" in IMAGE_IN_PROGRESS
    assert "INIT" in UNFINISHED_JOB and "SUCCESS" not in UNFINISHED_JOB
