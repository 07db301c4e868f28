"""The boot-test job (``imsBootTestJob``): boot an active image's stored file in throw-away
machines and join what each boot showed to the image's check report.

::

    wait     a place for a boot (:mod:`imageport.service.boot_slots`): while there is none
             the job stays INIT, ``current_task`` ``waiting``, holding no worker thread,
             and is submitted again every couple of seconds
    claim    INIT -> RUNNING (only one worker wins); the image stays ``active``
    fetch    the image must still be active, with its stored file, of a format    0-1 %
             QEMU reads
    boot     each firmware of ``params.firmwares`` in turn, each for at most     1-99 %
             ``params.timeout`` seconds (:class:`~imageport.service.ports.BootRunner`:
             an overlay on the stored file, which is never written; no network); the
             percentage follows the clock; a cancel ends the running machine at once
    report   the screenshots replace the image's (``boot-screens/``), the        99-100 %
             verdicts join its report (:mod:`imageport.service.images.boot_results`),
             job SUCCESS with each firmware's outcome in ``params.result``

The job succeeds when its boots ran, whatever they showed: the verdict is in the report and in
the job's ``entities.boot_passed``. It fails when no machine could start (``IMG.1075``, the
message says what to install), when the image stopped being bootable as stored (``IMG.STATE``,
``IMG.0072``) or when cancelled (``IMG.CANCELLED``; the report is left as it was). The image is
never changed but for its report.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import or_, select, update

from imageport.service import codes
from imageport.service.boot_slots import RETRY_SECONDS
from imageport.service.clock import new_id
from imageport.service.context import Services
from imageport.service.images.boot_results import (
    BOOTABLE_FORMATS,
    boot_entries,
    console_hint,
    keep_screenshots,
    record_boots,
)
from imageport.service.jobs import state
from imageport.service.jobs.boot_request import BootTestParams
from imageport.service.jobs.errors import JobCancelledError, JobFailedError
from imageport.service.jobs.export_job import stored_file
from imageport.service.jobs.run import run_to_end
from imageport.service.ports import BootError
from imageport.service.statuses import JobStatus
from imageport.service.tables import images, jobs
from imageport.service.tools.boot_test import boot_firmwares

log = logging.getLogger(__name__)

PHASES: Mapping[str, tuple[float, float]] = {
    "fetch": (0.0, 1.0),
    "boot": (1.0, 99.0),
    "report": (99.0, 100.0),
}
#: ``current_task`` of a job waiting for a place to boot.
WAITING = "waiting"


def run_job(services: Services, job_id: str) -> None:
    """Run boot-test job ``job_id`` to its end when a place to boot is free; otherwise leave
    it INIT (``waiting``) and submit it again in :data:`RETRY_SECONDS`."""
    if not _is_init(services, job_id):
        return
    slots = services.boot_slots
    if not slots.take_now():
        _wait_for_place(services, job_id)
        return
    try:
        job = state.claim(services, job_id)
        if job is None:
            return
        params = _params(services, job.id)
        progress = state.Progress(services, job.id, PHASES)

        def work(scratch: list[Path]) -> bool:
            result = _run_phases(services, job, params, progress, scratch)
            return state.succeed_with_result(services, job.id, result, "report")

        run_to_end(services, job, "boot-testing", work)
    finally:
        slots.give_back()


def _is_init(services: Services, job_id: str) -> bool:
    with services.db.connect() as conn:
        status = conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
    return status == JobStatus.INIT


def _wait_for_place(services: Services, job_id: str) -> None:
    """Show the INIT job as ``waiting`` and submit it again later (the queue's thread is
    free meanwhile)."""
    with services.db.begin() as conn:
        conn.execute(
            update(jobs)
            .where(
                jobs.c.id == job_id,
                jobs.c.status == JobStatus.INIT,
                or_(jobs.c.phase.is_(None), jobs.c.phase != WAITING),
            )
            .values(phase=WAITING)
        )
    timer = threading.Timer(RETRY_SECONDS, services.submit_job, (job_id,))
    timer.daemon = True
    timer.start()


def _params(services: Services, job_id: str) -> BootTestParams:
    with services.db.connect() as conn:
        doc = conn.execute(select(jobs.c.params).where(jobs.c.id == job_id)).scalar()
    return BootTestParams.from_document(doc)


def _run_phases(
    services: Services,
    job: state.ClaimedJob,
    params: BootTestParams,
    progress: state.Progress,
    scratch: list[Path],
) -> dict[str, object]:
    stored, image = stored_file(services, job.image_id)
    if image.disk_format not in BOOTABLE_FORMATS:
        raise JobFailedError(
            codes.FORMAT_NOT_SUPPORTED,
            f"the image is stored as {image.disk_format}, which QEMU does not read",
        )
    runner = services.boot
    if runner is None or not params.firmwares or params.timeout <= 0:
        raise JobFailedError(codes.BOOT_NOT_OFFERED, "this server does not boot-test images")
    if progress.cancelled():
        raise JobCancelledError
    firmwares, timeout = params.firmwares, params.timeout
    progress.phase("boot")
    budget = float(timeout * len(firmwares))

    def stop(firmware: str, seconds: float) -> bool:
        done = firmwares.index(firmware) * timeout + min(seconds, timeout)
        progress.update(done / budget, 0, 0)
        return progress.cancelled()

    tmp = services.settings.tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    shots = {fw: tmp / f"boot-{new_id()}-{fw}.png" for fw in firmwares}
    scratch += shots.values()
    try:
        boots = boot_firmwares(
            runner,
            stored,
            image.disk_format,
            firmwares,
            timeout=float(timeout),
            screenshot_for=shots.get,
            console_hint=console_hint(_report(services, job.image_id)),
            stop=stop,
        )
    except BootError as exc:
        raise JobFailedError(codes.INTERNAL, f"no machine could boot the image: {exc}") from exc
    if progress.cancelled():
        raise JobCancelledError
    progress.phase("report")
    entries = boot_entries(
        boots,
        image_id=job.image_id,
        job_id=job.id,
        tested_at=state.now_text(services),
        timeout=timeout,
    )
    keep_screenshots(
        services.settings,
        job.image_id,
        {b.firmware: b.run.screenshot for b in boots},
    )
    if not record_boots(services, job.image_id, entries, params.claimed):
        raise JobFailedError(codes.STATE, f"the image {job.image_id} no longer has a report")
    for boot in boots:
        log.info("boot test of %s under %s: %s", job.image_id, boot.firmware, boot.summary)
    return {
        "outcomes": {b.firmware: b.verdict.outcome for b in boots},
        "passed": all(b.passed for b in boots),
    }


def _report(services: Services, image_id: str) -> object:
    with services.db.connect() as conn:
        return conn.execute(select(images.c.report).where(images.c.id == image_id)).scalar()
