"""Job use cases: create the row (for :mod:`images`), show it, show its progress, cancel it.

A job is created ``INIT`` by the image use cases and advanced by the worker
(:mod:`imageport.service.jobs.import_job`): ``INIT -> RUNNING -> SUCCESS | FAIL``. Its ``params``
document, written by :func:`imageport.service.images.import_request.job_params` and read by
:class:`imageport.service.jobs.state.JobParams`, always has every key.

Cancelling is ours, not the vendor's (``POST /v1/cloudimages/job/{job_id}/cancel``). A job
still ``INIT`` (no worker has claimed it) ends at once: ``FAIL`` with ``IMG.CANCELLED``, its image
``killed``; the claim is a conditional update on ``status = 'INIT'``, so exactly one of the
cancel and the worker's claim wins. A ``RUNNING`` job gets ``cancel_requested``; the worker
notices between phases (and kills a running subprocess) and ends it the same way. A job that
has already ended cannot be cancelled (``IMG.STATE``, 409), and neither can a server job
(``IMG.STATE``: a machine operation stopped half-way would leave a server whose row lies).

Jobs are private to their project: another project's job is ``IMG.NOT_FOUND`` (404), and so is
a ``GET /v1/{project_id}/jobs/{job_id}`` whose path names a project other than the caller's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from imageport import metrics
from imageport.service import codes
from imageport.service.clock import new_id, time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, NotFound
from imageport.service.images import staging
from imageport.service.images.records import JobRecord, job_record
from imageport.service.quotas import admit
from imageport.service.servers.job_types import is_server_job
from imageport.service.statuses import UNFINISHED_JOB, ImageStatus, JobStatus
from imageport.service.tables import images, jobs
from imageport.settings import Settings

CANCELLED_REASON = "the job was cancelled at the user's request before it started"


def insert_job(
    conn: Connection,
    settings: Settings,
    *,
    project_id: str,
    job_type: str,
    image_id: str,
    params: dict[str, object],
    now: str,
) -> str:
    """Insert a new ``INIT`` job (inside the caller's transaction); its id. A project that
    already has ``project_job_limit`` unfinished jobs is refused (``IMG.0194``)."""
    admit(conn, settings, project_id)
    job_id = new_id()
    insert_job_row(
        conn,
        job_id=job_id,
        project_id=project_id,
        job_type=job_type,
        image_id=image_id,
        params=params,
        now=now,
    )
    return job_id


def insert_job_row(
    conn: Connection,
    *,
    job_id: str,
    project_id: str,
    job_type: str,
    image_id: str | None,
    params: dict[str, object],
    now: str,
) -> None:
    """Insert one ``INIT`` job row with no progress yet (inside the caller's transaction),
    admitted or not: :func:`insert_job` for an image's job, a server batch and its sub-jobs
    (``image_id`` None) in :mod:`imageport.service.servers.jobs`."""
    conn.execute(
        insert(jobs).values(
            id=job_id,
            project_id=project_id,
            job_type=job_type,
            status=JobStatus.INIT,
            image_id=image_id,
            params=params,
            phase=None,
            percent=0.0,
            bytes_done=0,
            bytes_total=0,
            error_code=None,
            fail_reason=None,
            cancel_requested=False,
            attempts=0,
            begin_time=now,
            end_time=None,
        )
    )


def link_sub_jobs(conn: Connection, parent: str, subs: list[str]) -> None:
    """Make ``subs`` the sub-jobs of ``parent`` (inside the caller's transaction): the
    parent's ``params.sub_jobs`` names them, each one's ``params.parent_job`` the parent.
    Shown by :func:`~imageport.service.images.records.job_record`; cancelling the parent
    cancels them too."""
    for job_id, key, value in (
        (parent, "sub_jobs", list(subs)),
        *((s, "parent_job", parent) for s in subs),
    ):
        params = conn.execute(select(jobs.c.params).where(jobs.c.id == job_id)).scalar_one()
        conn.execute(
            update(jobs).where(jobs.c.id == job_id).values(params={**(params or {}), key: value})
        )


def running_job_of(conn: Connection, image_id: str) -> Row[Any] | None:
    """The image's job that is INIT or RUNNING, if any."""
    return conn.execute(
        select(jobs.c.id).where(jobs.c.image_id == image_id, jobs.c.status.in_(UNFINISHED_JOB))
    ).first()


def show_job(
    services: Services, project_id: str, job_id: str, path_project_id: str | None = None
) -> JobRecord:
    """The caller's job ``job_id``; NotFound when it is another project's, or when the path's
    ``{project_id}`` is not the caller's."""
    if path_project_id is not None and path_project_id != project_id:
        raise NotFound(codes.NOT_FOUND, f"job {job_id[:64]!r} not found")
    with services.db.connect() as conn:
        return job_record(conn, project_id, job_id)


def cancel_job(services: Services, project_id: str, job_id: str) -> JobRecord:
    """Ask the worker to stop the job, and its sub-jobs (a registration's ``data_images``);
    the job as it is now (``cancel_requested`` set)."""
    record = _cancel_one(services, project_id, job_id)
    for sub in record.sub_jobs:
        if sub.status in UNFINISHED_JOB:
            _cancel_one(services, project_id, sub.id)
    with services.db.connect() as conn:
        return job_record(conn, project_id, job_id)


def _cancel_one(services: Services, project_id: str, job_id: str) -> JobRecord:
    """Cancel one job (see :func:`cancel_job`); IMG.STATE when the job and its sub-jobs
    have all ended."""
    with services.db.begin() as conn:
        record = job_record(conn, project_id, job_id)
        if is_server_job(record.job_type):
            raise Conflict(codes.STATE, f"job {job_id} is a server job; it cannot be cancelled")
        running = [r for r in (record, *record.sub_jobs) if r.status in UNFINISHED_JOB]
        if not running:
            raise Conflict(codes.STATE, f"job {job_id} has already ended ({record.status})")
        if record.status not in UNFINISHED_JOB:
            return record  # its sub-jobs still run: the caller cancels them
        now = time_text(services.clock())
        ended = (
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.INIT)
                .values(
                    status=JobStatus.FAIL,
                    error_code=codes.CANCELLED,
                    fail_reason=CANCELLED_REASON,
                    cancel_requested=True,
                    end_time=now,
                )
            ).rowcount
            == 1
        )
        if ended:
            conn.execute(
                update(images)
                .where(images.c.id == record.image_id, images.c.status == ImageStatus.QUEUED)
                .values(
                    status=ImageStatus.KILLED,
                    error_code=codes.CANCELLED,
                    fail_reason=CANCELLED_REASON,
                    updated_at=now,
                )
            )
        else:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))
        result = job_record(conn, project_id, job_id)
    if ended:
        staged = result.params.get("staged")
        staging.remove(services.settings, staged if isinstance(staged, str) else None)
        metrics.JOBS_FINISHED.labels(job_type=result.job_type, status=JobStatus.FAIL).inc()
    return result
