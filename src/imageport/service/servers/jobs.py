"""Server jobs: their rows in the shared ``jobs`` table, the runner of a batch, and how they read.

A request that changes machines adds, in the transaction that sets its servers' task state, one
batch job (``createServer``, ``deleteServer``, ``batchStartServers``...: :mod:`.job_types`) and
one sub-job per server. Both are rows of ``jobs`` with no ``image_id``: the batch's ``params``
name its sub-jobs (``sub_jobs``, in order), each sub-job's name its batch (``parent_job``),
its server (``server_id``) and what the operation needs (``hard`` for stop and reboot; a
create's in :class:`~imageport.service.servers.machines.CreateParams`).

Only the batch is submitted to the job queue. Its runner (:func:`run_batch_job`) claims it
(``INIT -> RUNNING``), then runs its sub-jobs one after the other, each claimed and ended on its
own (:mod:`.operations` does the work), and ends the batch ``SUCCESS`` when every sub-job
succeeded, else ``FAIL`` with the first failed sub-job's ``error_code`` and ``fail_reason``
(naming its server). A sub-job handed to the queue by itself (a stale submission) is left for
its batch: :func:`leave_to_batch`. Every path ends every claimed job; an error nobody expected
fails the sub-job it happened in and the batch goes on with the next server.

Server jobs cannot be cancelled (the IMS cancel route refuses them: a half-done stop would
leave a server whose row lies), and a service restart fails those that were running
(:mod:`.recovery`) instead of running them again.

``GET /v1/{project_id}/jobs/{job_id}`` shows a server job as :class:`ServerJobRecord`: the
vendor's ECS shape, ``entities.sub_jobs`` with each sub-job's own status and ``server_id``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, update

from imageport import metrics
from imageport.service import codes
from imageport.service.clock import new_id, time_text
from imageport.service.context import Services
from imageport.service.errors import NotFound
from imageport.service.jobs.errors import JobFailedError
from imageport.service.jobs.fail_reason import stored_reason
from imageport.service.jobs.manage import insert_job_row
from imageport.service.ports import MachineError, ServerHost
from imageport.service.servers import job_types as jt
from imageport.service.servers.create_request import MAX_BATCH
from imageport.service.servers.operations import FAILURE_CODE, OPERATIONS, after_error, no_host
from imageport.service.servers.records import ServerJobRecord
from imageport.service.statuses import JobStatus
from imageport.service.tables import jobs

log = logging.getLogger(__name__)


def insert_batch(
    conn: Connection,
    *,
    project_id: str,
    batch_type: str,
    subs: Sequence[tuple[str, dict[str, object]]],
    now: str,
    params: dict[str, object] | None = None,
    job_id: str | None = None,
    sub_ids: Sequence[str] | None = None,
) -> str:
    """Insert a batch job of ``batch_type`` (id ``job_id``, or a new one) with one sub-job per
    ``(server_id, params)`` of ``subs`` (ids ``sub_ids``, or new ones); the batch's id."""
    batch_id = job_id or new_id()
    ids = list(sub_ids) if sub_ids is not None else [new_id() for _ in subs]
    insert_job_row(
        conn,
        job_id=batch_id,
        project_id=project_id,
        job_type=batch_type,
        image_id=None,
        params={**(params or {}), "sub_jobs": ids},
        now=now,
    )
    for sub_id, (server_id, sub_params) in zip(ids, subs, strict=True):
        insert_job_row(
            conn,
            job_id=sub_id,
            project_id=project_id,
            job_type=jt.SUB_JOB_OF[batch_type],
            image_id=None,
            params={**sub_params, "server_id": server_id, "parent_job": batch_id},
            now=now,
        )
    return batch_id


# -- running ------------------------------------------------------------------------------------


def _claim(services: Services, job_id: str) -> Any:
    """Move the job INIT -> RUNNING; its row, or None when it was not INIT."""
    with services.db.begin() as conn:
        done = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.INIT)
            .values(status=JobStatus.RUNNING, attempts=jobs.c.attempts + 1)
        )
        if done.rowcount != 1:
            return None
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).one()


def end_job(
    conn: Connection,
    job_id: str,
    now: str,
    *,
    code: str | None = None,
    reason: str | None = None,
    was: Sequence[str] = (JobStatus.RUNNING,),
) -> bool:
    """End the job (if it is still in ``was``): SUCCESS, or FAIL with ``code``/``reason``."""
    values: dict[str, object] = {"status": JobStatus.SUCCESS, "end_time": now, "percent": 100.0}
    if code is not None:
        values.update(
            status=JobStatus.FAIL, error_code=code, fail_reason=stored_reason(reason or "")
        )
    done = conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(list(was))).values(**values)
    )
    return done.rowcount == 1


def leave_to_batch(services: Services, job_id: str) -> None:
    """The job queue's runner of a sub-job type: nothing; the sub-job's batch runs it."""
    log.debug("sub-job %s is run by its batch job, not by itself", job_id)


def run_batch_job(services: Services, job_id: str) -> None:
    """Run batch job ``job_id`` and its sub-jobs to their end (see the module docstring),
    unless it is not INIT."""
    started = time.monotonic()
    batch = _claim(services, job_id)
    if batch is None:
        return
    subs = batch.params.get("sub_jobs") if isinstance(batch.params, dict) else None
    failures: list[tuple[str, str]] = []
    for sub_id in (subs if isinstance(subs, list) else [])[:MAX_BATCH]:
        failed = _run_sub_job(services, services.host, str(sub_id))
        if failed is not None:
            failures.append(failed)
    now = time_text(services.clock())
    with services.db.begin() as conn:
        if failures:
            end_job(conn, job_id, now, code=failures[0][0], reason=failures[0][1])
        else:
            end_job(conn, job_id, now)
    status = JobStatus.FAIL if failures else JobStatus.SUCCESS
    metrics.JOBS_FINISHED.labels(batch.job_type, status).inc()
    metrics.JOB_SECONDS.labels(batch.job_type).observe(time.monotonic() - started)


def _run_sub_job(
    services: Services, host: ServerHost | None, sub_id: str
) -> tuple[str, str] | None:
    """Claim, run and end one sub-job; its ``(error_code, fail_reason)`` when it failed (or
    was not INIT: someone else ended it), None when it succeeded."""
    sub = _claim(services, sub_id)
    if sub is None:
        return codes.ECS_MACHINE_FAILED, f"sub-job {sub_id} was no longer waiting to run"
    params: dict[str, Any] = sub.params if isinstance(sub.params, dict) else {}
    server_id = str(params.get("server_id", ""))
    operation = OPERATIONS.get(sub.job_type)
    failure: tuple[str, str] | None = None
    try:
        if operation is None:
            raise JobFailedError(codes.ECS_MACHINE_FAILED, f"no operation for {sub.job_type!r}")
        if host is None:
            no_host(services, server_id)
        else:
            operation(services, host, server_id, params)
    except JobFailedError as exc:
        failure = exc.code, f"server {server_id}: {exc.reason}"
    except Exception as exc:  # an operation catches what it expects; never leave it RUNNING
        if not isinstance(exc, MachineError):
            log.exception("server job %s (server %s): unexpected error", sub_id, server_id)
        message = str(exc) if isinstance(exc, MachineError) else f"internal error: {exc!r}"
        after_error(services, sub.job_type, server_id, message)
        code = FAILURE_CODE.get(sub.job_type, codes.ECS_MACHINE_FAILED)
        failure = code, f"server {server_id}: {message}"
    now = time_text(services.clock())
    with services.db.begin() as conn:
        if failure is None:
            end_job(conn, sub_id, now)
        else:
            end_job(conn, sub_id, now, code=failure[0], reason=failure[1])
    if failure is not None:
        log.warning("server job %s failed: %s", sub_id, failure[1])
    return failure


# -- reading ------------------------------------------------------------------------------------


def server_job(services: Services, project_id: str, job_id: str) -> ServerJobRecord:
    """The project's server job ``job_id`` with its sub-jobs; ``IMG.NOT_FOUND`` (the shared
    jobs route's answer) when there is none."""
    with services.db.connect() as conn:
        row = conn.execute(
            select(jobs).where(jobs.c.id == job_id[:64], jobs.c.project_id == project_id)
        ).first()
        if row is None or not jt.is_server_job(row.job_type):
            raise NotFound(codes.NOT_FOUND, f"job {job_id[:64]!r} not found")
        params = row.params if isinstance(row.params, dict) else {}
        sub_ids = params.get("sub_jobs")
        subs: list[ServerJobRecord] = []
        if isinstance(sub_ids, list):
            rows = {
                r.id: r
                for r in conn.execute(
                    select(jobs).where(
                        jobs.c.id.in_([str(s) for s in sub_ids[:MAX_BATCH]]),
                        jobs.c.project_id == project_id,
                    )
                )
            }
            subs = [_record(rows[s], ()) for s in sub_ids[:MAX_BATCH] if s in rows]
    return _record(row, subs)


def _record(row: Any, subs: Sequence[ServerJobRecord]) -> ServerJobRecord:
    params = row.params if isinstance(row.params, dict) else {}
    server = params.get("server_id")
    if not isinstance(server, str):
        server = subs[0].server_id if len(subs) == 1 else None
    return ServerJobRecord(
        id=row.id,
        job_type=row.job_type,
        status=row.status,
        begin_time=row.begin_time,
        end_time=row.end_time,
        error_code=row.error_code,
        fail_reason=row.fail_reason,
        server_id=server,
        sub_jobs=tuple(subs),
    )


__all__ = [
    "end_job",
    "insert_batch",
    "leave_to_batch",
    "run_batch_job",
    "server_job",
]
