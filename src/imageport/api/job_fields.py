"""The fields every job document starts with, in the vendor's order: ``status``, ``job_id``,
``job_type``, ``begin_time``, ``end_time``, ``error_code``, ``fail_reason``.

An IMS sub-job (the SDK's ``SubJobResult``), an ECS server job and each of its sub-jobs are
these fields plus their own ``entities``; one function writes them so the documents cannot
drift apart.
"""

from __future__ import annotations

from typing import Protocol


class JobFacts(Protocol):
    """What a job record offers for its document (an image job's or a server job's)."""

    @property
    def id(self) -> str: ...
    @property
    def job_type(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def begin_time(self) -> str: ...
    @property
    def end_time(self) -> str | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def fail_reason(self) -> str | None: ...


def job_with_entities(job: JobFacts, entities: dict[str, object]) -> dict[str, object]:
    """The job's shared fields, then ``entities``."""
    return {
        "status": job.status,
        "job_id": job.id,
        "job_type": job.job_type,
        "begin_time": job.begin_time,
        "end_time": job.end_time,
        "error_code": job.error_code,
        "fail_reason": job.fail_reason,
        "entities": entities,
    }


__all__ = ["JobFacts", "job_with_entities"]
