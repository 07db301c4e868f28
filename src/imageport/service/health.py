"""What the operations endpoints report: whether the database answers, and jobs and images by
status (``GET /health`` and the ``imageport_jobs`` / ``imageport_images`` gauges of ``GET
/metrics``, :mod:`imageport.api.ops`).

Neither ever raises because the database is down: that is what they report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from imageport.service.context import Services
from imageport.service.statuses import ImageStatus, JobStatus
from imageport.service.tables import images, jobs


@dataclass(frozen=True, slots=True)
class StatusCounts:
    """Jobs and images by status: every known status present (0 when none), and any other
    status found in the database as well."""

    jobs: Mapping[str, int]
    images: Mapping[str, int]


def _counts(db: Engine) -> StatusCounts:
    with db.connect() as conn:
        job_rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status))
        job_counts = dict.fromkeys(map(str, JobStatus), 0) | {str(s): int(n) for s, n in job_rows}
        image_rows = conn.execute(select(images.c.status, func.count()).group_by(images.c.status))
        image_counts = dict.fromkeys(map(str, ImageStatus), 0) | {
            str(s): int(n) for s, n in image_rows
        }
    return StatusCounts(job_counts, image_counts)


def status_counts(services: Services) -> StatusCounts | None:
    """Jobs and images by status; None when the database did not answer."""
    try:
        return _counts(services.db)
    except SQLAlchemyError:
        return None


@dataclass(frozen=True, slots=True)
class Health:
    """The service's health: the database's answer and the job queue's figures."""

    #: the number of jobs run at once (the ``workers`` setting)
    workers: int
    #: None when the database answered; else the name of the error it gave
    database_error: str | None = None
    #: whether this process runs a job queue
    queue_running: bool = False
    jobs_waiting: int = 0
    jobs_running: int = 0


def health(services: Services) -> Health:
    """Ask the database a trivial query, then count the waiting (INIT) and running jobs."""
    workers = services.settings.workers
    try:
        with services.db.connect() as conn:
            conn.execute(text("SELECT 1"))
        counts = _counts(services.db)
    except SQLAlchemyError as exc:
        return Health(workers, database_error=type(exc).__name__)
    return Health(
        workers,
        queue_running=services.queue is not None,
        jobs_waiting=counts.jobs[JobStatus.INIT],
        jobs_running=counts.jobs[JobStatus.RUNNING],
    )
