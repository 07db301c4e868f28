"""The life of a claimed job, whatever it does: one way in, every way out.

Every job runner (import, export, copy, image from a server) claims its job, then hands its
work to :func:`run_to_end` (:func:`claim_and_run` does both for a job with fixed phases), which
ends the job on every path: a :class:`JobFailedError` (FAIL with its code, reason and report), a
cancellation (``IMG.CANCELLED``), a worker process that failed (``IMG.1075`` with the worker's
reason) or any unexpected error (``IMG.1075``, logged). The work's scratch files are removed
and the job's metrics counted in all cases.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from imageport import metrics
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.jobs import state
from imageport.service.jobs.errors import JobCancelledError, JobFailedError
from imageport.service.ports import WorkerCancelledError, WorkerError
from imageport.service.statuses import JobStatus

log = logging.getLogger(__name__)

Work = Callable[[list[Path]], bool]
"""A job's work: given the list to register its scratch files in, True when it ended the job
SUCCESS (False: the job was no longer RUNNING, e.g. cancelled at the last moment)."""

Phases = Callable[[Services, state.ClaimedJob, state.Progress, list[Path]], None]
"""A job's phases run one after the other: they end the job SUCCESS or raise."""


def end_failed(
    services: Services, job: state.ClaimedJob, code: str, reason: str, report: object = None
) -> None:
    """End ``job`` FAIL (its image killed); when the database cannot be reached, leave it to
    start-up recovery."""
    try:
        state.fail(
            services,
            job.id,
            job.image_id,
            code,
            reason,
            report if isinstance(report, dict) else None,
        )
    except Exception:
        log.exception("job %s: cannot record its failure (%s: %s)", job.id, code, reason)


def run_to_end(
    services: Services,
    job: state.ClaimedJob,
    doing: str,
    work: Work,
    *,
    finally_: Callable[[], None] | None = None,
) -> None:
    """Run ``work`` for the claimed ``job`` and end the job whatever happens (``doing`` names
    the work in an unexpected error's reason: "importing", "exporting"...); ``finally_`` runs
    after it in all cases."""
    started = time.monotonic()
    scratch: list[Path] = []
    status = JobStatus.FAIL
    try:
        if work(scratch):
            status = JobStatus.SUCCESS
    except JobFailedError as exc:
        end_failed(services, job, exc.code, exc.reason, exc.report)
    except (JobCancelledError, WorkerCancelledError):
        end_failed(services, job, codes.CANCELLED, "the job was cancelled at the user's request")
    except WorkerError as exc:
        end_failed(services, job, codes.INTERNAL, exc.reason)
    except Exception as exc:  # never leave a job RUNNING
        log.exception("job %s: unexpected error", job.id)
        end_failed(
            services,
            job,
            codes.INTERNAL,
            f"internal error while {doing}: {type(exc).__name__}: {exc}",
        )
    finally:
        if finally_ is not None:
            finally_()
        for path in scratch:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        metrics.JOBS_FINISHED.labels(job.job_type, status).inc()
        metrics.JOB_SECONDS.labels(job.job_type).observe(time.monotonic() - started)


def claim_and_run(
    services: Services,
    job_id: str,
    shares: Mapping[str, tuple[float, float]],
    doing: str,
    phases: Phases,
) -> None:
    """Claim job ``job_id`` and run its ``phases`` to its end (:func:`run_to_end`), its
    progress reported per phase over ``shares`` (the share of ``percent`` each covers);
    nothing when another worker has it or it is not INIT. The runner of a job whose phases
    are fixed (copy, image from a server)."""
    job = state.claim(services, job_id)
    if job is None:
        return
    progress = state.Progress(services, job.id, shares)

    def work(scratch: list[Path]) -> bool:
        phases(services, job, progress, scratch)
        return True

    run_to_end(services, job, doing, work)


def activate(
    services: Services, job: state.ClaimedJob, final: Path, values: Mapping[str, object]
) -> None:
    """Make the job's image active with ``values`` and end the job SUCCESS, its stored file
    ``final`` already in place. When that cannot be recorded ``final`` is removed and the job
    ends cancelled (a cancel was requested) or failed (the image or job changed meanwhile)."""
    try:
        stored = state.succeed(services, job.id, job.image_id, values)
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    if not stored:
        final.unlink(missing_ok=True)
        if state.cancel_requested(services, job.id):
            raise JobCancelledError
        raise JobFailedError(codes.INTERNAL, "the image or its job changed while it was stored")
