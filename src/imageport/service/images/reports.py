"""The check report an image keeps: the ``imageport.check/1`` document of the check its job ran
on the file (:mod:`imageport.reports.json_report`, the same as ``imageport check --json``).

An import job stores it on the image whether the image went active or was killed, so a user
can read every finding (errors, warnings, notes) with its evidence and fix. It is reached by
the image and by the job that checked it; a member of a shared image (pending or accepted,
:mod:`imageport.service.images.members`) reads it too, as it reads the image; another
project's image or job is 404 as a missing one, and one without a report (not checked yet, or
a job that checks nothing, such as an export) is 404 ``IMG.NO_REPORT``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import NotFound
from imageport.service.images.member_batches import MEMBER_JOBS
from imageport.service.images.members import visible_row
from imageport.service.images.records import job_record
from imageport.service.jobs.export_request import EXPORT_JOB
from imageport.service.tables import images


def image_report(services: Services, project_id: str, image_id: str) -> dict[str, Any]:
    """The check report of the caller's image ``image_id`` (or of one shared with it)."""
    with services.db.connect() as conn:
        visible_row(conn, project_id, image_id)  # the caller's or shared with it, or NotFound
        report = conn.execute(select(images.c.report).where(images.c.id == image_id)).scalar()
    if not isinstance(report, dict):
        raise NotFound(
            codes.NO_REPORT,
            f"image {image_id} has no check report: no job has checked its file yet",
        )
    return report


def job_report(services: Services, project_id: str, job_id: str) -> dict[str, Any]:
    """The check report of the caller's job ``job_id``: the report the image it made keeps (an
    import's own check, or for a copy the source's report, copied with the file); an export
    makes no image and has none, nor do the jobs that share images."""
    with services.db.connect() as conn:
        job = job_record(conn, project_id, job_id)
    if job.image_id is None or job.job_type in (EXPORT_JOB, *MEMBER_JOBS):
        raise NotFound(codes.NO_REPORT, f"job {job_id} checks no image file: it has no report")
    try:
        return image_report(services, project_id, job.image_id)
    except NotFound as missing:
        if missing.code == codes.NOT_FOUND:  # the image was deleted since
            raise NotFound(
                codes.NO_REPORT, f"job {job_id}'s image {job.image_id} was deleted, with its report"
            ) from missing
        raise


__all__ = ["image_report", "job_report"]
