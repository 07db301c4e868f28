"""Start-up recovery: put right what a crash (or kill -9) left behind, before jobs run again.

Called once by the server before the job queue starts. In order:

1. empty ``settings.tmp_dir`` (scratch only: staged bodies, conversions in progress, links);
2. remove files in ``settings.images_dir`` that no image row points at (a crash between the
   rename and the commit of the store phase);
3. jobs left RUNNING go back to INIT and their image from ``saving`` to ``queued``, unless the
   job has already been started :data:`MAX_ATTEMPTS` times: then it FAILs ("server restarted
   3 times during this job") and its image is killed, so a file that crashes the server cannot
   do it forever. This holds for every image job type: an interrupted export job
   (:mod:`.export_job`) starts again from its image's stored file (its partial output was in
   ``tmp_dir``, and no object was committed), and its image, active, is left as it is. Server
   jobs left RUNNING FAIL instead (:func:`imageport.service.servers.recovery.fail_interrupted_jobs`:
   half a machine operation is not resumed); ``imageport serve`` then makes the servers' rows
   say what their machines are (:func:`~imageport.service.servers.recovery.recover_servers`);
4. any image still ``saving`` without a live job is killed (no image stays ``saving``);
5. remove object and part files that no object or part record points at (a crash between a
   staged body's rename and its commit, or during an abort);
6. in ``settings.staged_dir`` (image data received on the Glance routes), remove bodies that
   were still arriving and data whose image is no longer ``queued`` or ``saving``
   (:func:`imageport.service.images.staging.remove_orphans`);
7. servers left ``image_snapshot`` by a job that was copying their disk lose the mark (the copy
   was in ``tmp_dir``; the job, back to INIT, copies again:
   :func:`imageport.service.servers.disk_snapshot.end_left_over`);
8. remove boot-test screenshots whose image no longer exists (a crash between an image's
   deletion and the removal of its files).

Returns the ids of all INIT jobs, oldest first, for the caller to submit (but server sub-jobs:
their batch job runs them).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from sqlalchemy import select, update

from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.images import staging
from imageport.service.images.boot_results import remove_orphan_screenshots
from imageport.service.jobs import state
from imageport.service.servers import disk_snapshot
from imageport.service.servers import job_types as server_jobs
from imageport.service.servers.recovery import fail_interrupted_jobs
from imageport.service.statuses import UNFINISHED_JOB, ImageStatus, JobStatus
from imageport.service.tables import images, jobs

log = logging.getLogger(__name__)

#: Starts of one job after which a restart fails it instead of running it again.
MAX_ATTEMPTS = 3
RESTARTED = f"server restarted {MAX_ATTEMPTS} times during this job"
STOPPED_SAVING = "the server stopped while the image was being saved"


def _remove(entry: Path) -> int:
    """Remove a file, link or whole directory (not following symlinks); 1 if it was there."""
    with contextlib.suppress(FileNotFoundError):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        return 1
    return 0


def _empty_dir(folder: Path) -> int:
    """Remove everything inside ``folder``; the number of entries removed."""
    if not folder.is_dir():
        return 0
    return sum(_remove(entry) for entry in folder.iterdir())


def _remove_orphan_images(services: Services) -> int:
    folder = services.settings.images_dir
    if not folder.is_dir():
        return 0
    with services.db.connect() as conn:
        in_use = {
            blob
            for (blob,) in conn.execute(select(images.c.blob).where(images.c.blob.is_not(None)))
        }
    return sum(
        _remove(entry)
        for entry in folder.iterdir()
        if not (entry.name in in_use and entry.is_file() and not entry.is_symlink())
    )


def _reset_jobs(services: Services) -> None:
    now = time_text(services.clock())
    with services.db.begin() as conn:
        fail_interrupted_jobs(conn, now)
        running = conn.execute(
            select(jobs.c.id, jobs.c.image_id, jobs.c.attempts).where(
                jobs.c.status == JobStatus.RUNNING,
                jobs.c.job_type.not_in(sorted(server_jobs.SERVER_JOBS)),
            )
        ).all()
        for job_id, image_id, attempts in running:
            if attempts >= MAX_ATTEMPTS:
                state.fail_in(conn, job_id, image_id, codes.INTERNAL, RESTARTED, now)
                log.warning("job %s failed: %s", job_id, RESTARTED)
                continue
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(status=JobStatus.INIT, phase=None, percent=0.0, bytes_done=0, bytes_total=0)
            )
            conn.execute(
                update(images)
                .where(images.c.id == image_id, images.c.status == ImageStatus.SAVING)
                .values(status=ImageStatus.QUEUED, updated_at=now)
            )
            log.info("job %s was interrupted by a restart; it runs again", job_id)
        live = select(jobs.c.image_id).where(
            jobs.c.status.in_(UNFINISHED_JOB), jobs.c.image_id.is_not(None)
        )
        conn.execute(
            update(images)
            .where(images.c.status == ImageStatus.SAVING, images.c.id.not_in(live))
            .values(
                status=ImageStatus.KILLED,
                error_code=codes.INTERNAL,
                fail_reason=STOPPED_SAVING,
                updated_at=now,
            )
        )


def recover(services: Services) -> list[str]:
    """Repair the state left by a crash; the INIT job ids to submit, in ``begin_time`` order."""
    settings = services.settings
    removed = _empty_dir(settings.tmp_dir)
    orphans = _remove_orphan_images(services) + services.store.remove_orphans()
    if removed or orphans:
        log.info(
            "recovery removed %d temporary file(s) and %d orphan image or object file(s)",
            removed,
            orphans,
        )
    _reset_jobs(services)
    staged = staging.remove_orphans(services)
    if staged:
        log.info("recovery removed %d staged upload file(s)", staged)
    marked = disk_snapshot.end_left_over(services)
    if marked:
        log.info("recovery took image_snapshot off %d server(s)", marked)
    screens = remove_orphan_screenshots(services)
    if screens:
        log.info("recovery removed %d screenshot(s) of deleted images", screens)
    with services.db.connect() as conn:
        return [
            job_id
            for (job_id,) in conn.execute(
                select(jobs.c.id)
                .where(
                    jobs.c.status == JobStatus.INIT,
                    jobs.c.job_type.not_in(sorted(server_jobs.SUB_JOBS)),
                )
                .order_by(jobs.c.begin_time, jobs.c.id)
            )
        ]
