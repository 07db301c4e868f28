"""The job queue's dispatcher: each job type to its runner, and no guessing at an unknown one."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from imageport.service.context import Services
from imageport.service.images.import_request import IMPORT_JOB, NATIVE_IMPORT_JOB
from imageport.service.jobs import import_job
from imageport.service.jobs.dispatch import RUNNERS, run_job
from imageport.service.tables import jobs
from support import import_fixtures as fx


def test_both_import_types_run_as_imports() -> None:
    assert RUNNERS[IMPORT_JOB] is RUNNERS[NATIVE_IMPORT_JOB] is import_job.run_job


def test_an_unknown_job_type_fails_the_job_and_its_image_without_running(
    services: Services, tmp_path: Path
) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    job_id = fx.register(services, disk)
    with services.db.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(job_type="imsFutureJob"))

    run_job(services, job_id)

    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code, job.attempts) == ("FAIL", "IMG.1075", 0)
    assert "job type 'imsFutureJob' is not one this server runs" in job.fail_reason
    image = fx.image_row(services, job_id)
    assert (image.status, image.error_code, image.fail_reason) == (
        "killed",
        "IMG.1075",
        job.fail_reason,
    )
    run_job(services, job_id)  # an ended job is left as it is
    assert fx.job_row(services, job_id).end_time == job.end_time
