"""Run a job by its type: the one entry point the job queue calls (:mod:`imageport.wiring`).

:data:`RUNNERS` names the runner of each job type that is not an import (export, copy); every
other type (the import jobs: ``imsImportImageJob``, ``imsNativeImportImageJob``) goes to
:func:`imageport.service.jobs.import_job.run_job`, as before. An unknown job id is left alone, as
the runners themselves leave a job that is not INIT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy import select

from imageport.service.context import Services
from imageport.service.jobs import copy_job as image_copy
from imageport.service.jobs import export_job, import_job
from imageport.service.jobs.export_request import EXPORT_JOB
from imageport.service.tables import jobs

Runner = Callable[[Services, str], None]
#: Job type -> its runner, for the types that are not imports.
RUNNERS: Mapping[str, Runner] = {
    EXPORT_JOB: export_job.run_job,
    image_copy.COPY_JOB: image_copy.run_copy_job,
}


def run_job(services: Services, job_id: str) -> None:
    """Run job ``job_id`` with the runner of its ``job_type``."""
    with services.db.connect() as conn:
        job_type = conn.execute(select(jobs.c.job_type).where(jobs.c.id == job_id)).scalar()
    if job_type is None:
        return
    RUNNERS.get(job_type, import_job.run_job)(services, job_id)
