"""Run a job by its type: the one entry point the job queue calls (:mod:`imageport.wiring`).

:data:`RUNNERS` names the runner of every job type this server writes: the imports, the export,
the copy, the image from a server, the boot test, and the server jobs (a batch's runner runs its
sub-jobs, so a sub-job's runner leaves it to its batch: :mod:`imageport.service.servers.jobs`).
A job of any other type (a row written by another version of imageport, or by hand) is not
guessed at: it ends ``FAIL`` with ``IMG.1075`` and a reason that names its type, and its image
(still ``queued`` or ``saving``) is killed with it, so the job neither runs as something it is
not nor waits ``INIT`` forever. An unknown job id, or a job that is no longer ``INIT``, is left
alone, as the runners themselves leave a job that is not INIT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from sqlalchemy import select

from imageport import metrics
from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.images.import_request import (
    DATA_IMPORT_JOB,
    IMPORT_JOB,
    NATIVE_IMPORT_JOB,
)
from imageport.service.images.server_images import SERVER_IMAGE_JOB
from imageport.service.jobs import (
    boot_job,
    copy_job,
    export_job,
    import_job,
    server_image_job,
    state,
)
from imageport.service.jobs.boot_request import BOOT_TEST_JOB
from imageport.service.jobs.export_request import EXPORT_JOB
from imageport.service.servers import job_types as server_jobs
from imageport.service.servers.jobs import leave_to_batch, run_batch_job
from imageport.service.statuses import JobStatus
from imageport.service.tables import jobs

log = logging.getLogger(__name__)

Runner = Callable[[Services, str], None]
#: Job type -> its runner: every type this server writes.
RUNNERS: Mapping[str, Runner] = {
    IMPORT_JOB: import_job.run_job,
    DATA_IMPORT_JOB: import_job.run_job,
    NATIVE_IMPORT_JOB: import_job.run_job,
    EXPORT_JOB: export_job.run_job,
    copy_job.COPY_JOB: copy_job.run_copy_job,
    SERVER_IMAGE_JOB: server_image_job.run_server_image_job,
    **dict.fromkeys(server_jobs.BATCH_JOBS, run_batch_job),
    **dict.fromkeys(server_jobs.SUB_JOBS, leave_to_batch),
    BOOT_TEST_JOB: boot_job.run_job,
}


def run_job(services: Services, job_id: str) -> None:
    """Run job ``job_id`` with the runner of its ``job_type`` (or end it: see the module)."""
    with services.db.connect() as conn:
        job_type = conn.execute(select(jobs.c.job_type).where(jobs.c.id == job_id)).scalar()
    if job_type is None:
        return
    runner = RUNNERS.get(job_type)
    if runner is None:
        end_unknown(services, job_id, job_type)
        return
    runner(services, job_id)


def unknown_type_reason(job_type: str) -> str:
    """The ``fail_reason`` of a job whose type no runner has."""
    return (
        f"job type {job_type[:64]!r} is not one this server runs "
        f"(it runs {', '.join(sorted(RUNNERS))})"
    )


def end_unknown(services: Services, job_id: str, job_type: str) -> None:
    """End the INIT job ``job_id`` of unknown ``job_type`` FAIL without running it, and kill
    its image if it is still ``queued`` or ``saving``."""
    reason = unknown_type_reason(job_type)
    now = time_text(services.clock())
    with services.db.begin() as conn:
        image_id = conn.execute(select(jobs.c.image_id).where(jobs.c.id == job_id)).scalar()
        if not state.fail_in(
            conn, job_id, image_id, codes.INTERNAL, reason, now, was=JobStatus.INIT
        ):
            return
    log.error("job %s failed: %s", job_id, reason)
    metrics.JOBS_FINISHED.labels(job_type, JobStatus.FAIL).inc()
