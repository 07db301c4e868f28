"""How a job's work ends early: failed with a reason, or cancelled by its user.

Raised anywhere inside a job's work (fetching its source, checking room, converting, storing)
and caught once, by :func:`imageport.service.jobs.run.run_to_end`, which ends the job: FAIL
with :attr:`JobFailedError.code` and :attr:`~JobFailedError.reason` (the reason is what
``GET /v1/{project_id}/jobs/{job_id}`` shows as ``fail_reason``), or cancelled. Their place in
the tree is drawn in :mod:`imageport.errors`.
"""

from __future__ import annotations

from imageport.errors import ImageportError


class JobFailedError(ImageportError):
    """Ends the job FAIL with ``code`` and ``reason`` (and the check ``report``, if any)."""

    def __init__(self, code: str, reason: str, report: object = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.report = report if isinstance(report, dict) else None


class JobCancelledError(ImageportError):
    """The user cancelled the job."""
