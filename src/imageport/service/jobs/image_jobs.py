"""Which jobs work on an image: for pages that show an image's progress.

An image row does not name its jobs; a job names its image (``jobs.image_id``: the image an
import, a copy or a server's image makes, or the image an export or a boot test reads). The
image API answers a registration with the job's id and leaves finding it again to the client;
the web console shows each image's progress without being told, so it asks here. Only the
caller's own jobs are found (jobs are private to their project, as ``GET
/v1/cloudimages/job/{job_id}`` says): a member of a shared image sees none of the owner's.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from imageport.service.context import Services
from imageport.service.images.records import JobRecord, job_record
from imageport.service.statuses import UNFINISHED_JOB
from imageport.service.tables import jobs

MAX_IMAGES = 1000
"""Most images asked about at once (a list page holds far fewer)."""
MAX_RECENT = 20
"""Most jobs of one image listed."""
_CHUNK = 200
"""Image ids per ``IN`` clause (SQLite allows a few hundred bound values comfortably)."""


def unfinished_jobs(
    services: Services, project_id: str, image_ids: Sequence[str]
) -> dict[str, JobRecord]:
    """The caller's INIT or RUNNING job of each image of ``image_ids`` that has one (the one
    begun last when several run: an export and a boot test may run on one active image)."""
    wanted = [i for i in dict.fromkeys(image_ids[:MAX_IMAGES]) if len(i) <= 64]
    latest: dict[str, tuple[str, str]] = {}
    with services.db.connect() as conn:
        for start in range(0, len(wanted), _CHUNK):
            rows = conn.execute(
                select(jobs.c.id, jobs.c.image_id, jobs.c.begin_time).where(
                    jobs.c.project_id == project_id,
                    jobs.c.image_id.in_(wanted[start : start + _CHUNK]),
                    jobs.c.status.in_(UNFINISHED_JOB),
                )
            ).all()
            for row in rows:
                key = (row.begin_time, row.id)
                if row.image_id not in latest or key > latest[row.image_id]:
                    latest[row.image_id] = key
        return {
            image_id: job_record(conn, project_id, job_id)
            for image_id, (_, job_id) in latest.items()
        }


def recent_jobs(
    services: Services, project_id: str, image_id: str, limit: int = 5
) -> list[JobRecord]:
    """The caller's last ``limit`` (at most :data:`MAX_RECENT`) jobs on ``image_id``, newest
    first; none for another project's image."""
    if len(image_id) > 64:
        return []
    count = max(1, min(limit, MAX_RECENT))
    with services.db.connect() as conn:
        ids = (
            conn.execute(
                select(jobs.c.id)
                .where(jobs.c.project_id == project_id, jobs.c.image_id == image_id)
                .order_by(jobs.c.begin_time.desc(), jobs.c.id.desc())
                .limit(count)
            )
            .scalars()
            .all()
        )
        return [job_record(conn, project_id, job_id) for job_id in ids]


__all__ = ["MAX_IMAGES", "MAX_RECENT", "recent_jobs", "unfinished_jobs"]
