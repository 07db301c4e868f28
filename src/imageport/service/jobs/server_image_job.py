"""The job that makes an image from a server (``imsCreateImageByInstance``), one function per
phase::

    claim    INIT -> RUNNING (only one worker wins), image queued -> saving
    fetch    a point-in-time copy of the server's system disk           0-5 %
             (ServerHost.copy_disk: directly when the server is off, with
             the guest paused for the copy when it runs); the server's
             task_state is image_snapshot while it is copied, and only then
    convert  the copy flattened into one standalone image of the stored   5-80 %
             format (ImageWorker.flatten: the overlay over the server's
             stored image, both formats pinned, the backing file named in
             the overlay never opened), within the bound qemu-img measured,
             which must fit in the project's storage quota (IMG.0015) and
             the free disk space (IMG.1075); the copy is then discarded
    check    every rule, in a limited worker, as an import's check         80-90 %
             (:mod:`.steps`): any error finding FAILs the job with the rule
             IDs and kills the image, the report kept
    verify   re-probe the image while hashing it (sha256)                  90-99 %
    store    rename into ``images/<image id>.<format>``, image active,      99-100 %
             ``__is_config_init`` "true" when the initialization rules
             passed (:func:`~imageport.service.images.properties.initialization_done`),
             job SUCCESS

The copy is discarded and the server's task state given back whatever happens; a cancellation
(``IMG.CANCELLED``), a failed copy (``IMG.1075`` with the host's words), a server that is no
longer ACTIVE or SHUTOFF or busy with another task when the job runs (``IMG.STATE``) end the
job as every job ends (:func:`~imageport.service.jobs.run.run_to_end`), its image killed and
its scratch files removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from sqlalchemy import select

from imageport import metrics
from imageport.rules.base import CheckOptions
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.images.properties import CONFIG_INIT, initialization_done
from imageport.service.jobs import state, steps
from imageport.service.jobs.errors import JobCancelledError, JobFailedError
from imageport.service.jobs.run import claim_and_run
from imageport.service.ports import (
    DiskCopy,
    ImageInspection,
    ImageWorker,
    MachineError,
    ServerHost,
    WorkerError,
)
from imageport.service.quotas import METADATA_SLACK, room_for
from imageport.service.servers import disk_snapshot
from imageport.service.tables import jobs

log = logging.getLogger(__name__)

#: The job's phases and the share of ``percent`` each covers.
PHASES: Mapping[str, tuple[float, float]] = {
    "fetch": (0.0, 5.0),
    "convert": (5.0, 80.0),
    "check": (80.0, 90.0),
    "verify": (90.0, 99.0),
    "store": (99.0, 100.0),
}


def run_server_image_job(services: Services, job_id: str) -> None:
    """Run job ``job_id`` to its end, unless another worker has it or it is not INIT."""
    claim_and_run(services, job_id, PHASES, "making the image from the server", _run_phases)


def _check_cancelled(progress: state.Progress) -> None:
    if progress.cancelled():
        raise JobCancelledError


def _server_id(services: Services, job: state.ClaimedJob) -> str:
    """The server the job makes its image from (``params.server_id``)."""
    with services.db.connect() as conn:
        params = conn.execute(select(jobs.c.params).where(jobs.c.id == job.id)).scalar()
    server_id = params.get("server_id") if isinstance(params, dict) else None
    if not isinstance(server_id, str) or not server_id:
        raise JobFailedError(codes.INTERNAL, "the job names no server")
    return server_id


def _run_phases(
    services: Services, job: state.ClaimedJob, progress: state.Progress, scratch: list[Path]
) -> None:
    host = services.host
    if host is None:
        raise JobFailedError(codes.SOURCE_NOT_OFFERED, "this service runs no servers")
    if state.image_row(services, job.image_id) is None:
        raise JobFailedError(codes.INTERNAL, f"the image {job.image_id} no longer exists")
    server_id = _server_id(services, job)
    worker = services.worker
    _check_cancelled(progress)
    fmt = job.params.stored_format or services.settings.stored_format
    with contextlib.ExitStack() as room:  # held until the image is stored
        with _disk_copy(services, host, job, server_id, progress) as copy:
            _check_cancelled(progress)
            bound = worker.flattened_size(copy, fmt, cancelled=progress.cancelled)
            bound += METADATA_SLACK
            target = steps.scratch_file(services, scratch, fmt)
            room.enter_context(
                room_for(services, job.project_id, stored=bound, disk=bound, writing=target)
            )
            _flatten(worker, copy, target, fmt, bound, progress)
        _check_cancelled(progress)
        inspection = _check(worker, job, target, server_id, progress)
        _check_cancelled(progress)
        checksum, size = steps.verify_output(worker, target, fmt, inspection, progress)
        _check_cancelled(progress)
        initialized = "true" if initialization_done(inspection) else "false"
        steps.store_output(
            services,
            job,
            target,
            fmt,
            inspection,
            checksum,
            size,
            progress,
            {CONFIG_INIT: initialized},
        )


@contextlib.contextmanager
def _disk_copy(
    services: Services,
    host: ServerHost,
    job: state.ClaimedJob,
    server_id: str,
    progress: state.Progress,
) -> Iterator[DiskCopy]:
    """A point-in-time copy of the server's system disk, in a folder of the job's own under
    ``tmp_dir``, for as long as the block runs (then discarded, the folder removed). The
    server is marked ``image_snapshot`` while it is copied."""
    progress.phase("fetch")
    folder = services.settings.tmp_dir / f"copy-{job.id}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if not disk_snapshot.begin(services, server_id):
            raise JobFailedError(
                codes.STATE,
                f"server {server_id} is no longer ACTIVE or SHUTOFF, or is busy with another "
                "task; make the image again once it is",
            )
        try:
            copy = host.copy_disk(server_id, folder)
        except MachineError as exc:
            raise JobFailedError(
                codes.INTERNAL, f"the system disk of server {server_id} could not be copied: {exc}"
            ) from exc
        finally:
            disk_snapshot.end(services, server_id)
        try:
            progress.phase_done()
            yield copy
        finally:
            _discard(host, copy)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _discard(host: ServerHost, copy: DiskCopy) -> None:
    """Discard the copy; a host that cannot is logged (the folder is removed anyway)."""
    try:
        host.discard_copy(copy)
    except Exception:
        log.exception("the disk copy %s could not be discarded", copy.top)


def _flatten(
    worker: ImageWorker,
    copy: DiskCopy,
    target: Path,
    fmt: str,
    bound: int,
    progress: state.Progress,
) -> None:
    """Flatten the copy into ``target`` (scratch space), stopping it once it takes more disk
    than ``bound`` (IMG-SAFE)."""
    virtual = copy.virtual_size
    progress.phase("convert", virtual)
    try:
        worker.flatten(
            copy,
            target,
            fmt,
            progress=lambda pct: progress.update(pct / 100, int(virtual * pct / 100), virtual),
            cancelled=progress.cancelled,
            max_output_bytes=bound,
        )
    except WorkerError as exc:
        if exc.limit == "watch":
            raise JobFailedError("IMG-SAFE", f"IMG-SAFE: {exc.reason}") from exc
        raise
    metrics.BYTES_PROCESSED.labels("convert").inc(virtual)


def _check(
    worker: ImageWorker,
    job: state.ClaimedJob,
    target: Path,
    server_id: str,
    progress: state.Progress,
) -> ImageInspection:
    """Every rule on the flattened image, as an import's check; FAIL with the rules when any
    errs. The report names the server's disk, not the scratch file."""
    progress.phase("check", target.stat().st_size)
    params = job.params
    options = CheckOptions(
        min_disk_gib=params.min_disk,
        uefi=params.hw_firmware_type == "uefi",
        architecture=params.architecture,
    )
    inspection = steps.inspect_file(worker, target, options, progress)
    if inspection.report is not None:
        names = {str(target): f"the system disk of server {server_id}"}
        report = steps.renamed(dict(inspection.report), names)
        inspection = dataclasses.replace(
            inspection, report=report if isinstance(report, dict) else None
        )
    steps.refuse_failed(inspection)
    if not inspection.readable or inspection.virtual_size is None:
        # the rules pass only readable files; fail closed if that ever changes
        raise JobFailedError(
            "IMG-SAFE",
            f"IMG-SAFE: the flattened {inspection.format} image cannot be read safely",
            inspection.report,
        )
    progress.phase_done()  # the worker reports no bytes as it checks
    return inspection


__all__ = ["PHASES", "run_server_image_job"]
