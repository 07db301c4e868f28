"""The import job: from an uploaded file to an active image, one small function per phase.

::

    claim    INIT -> RUNNING (only one worker wins), image queued -> saving
    fetch    the object as a local read-only file; it must still be the one registered
    check    probe + safety + guest rules, in a limited worker process      0-10 %
             any error finding: FAIL with the rule IDs, image killed, report kept
    convert  qemu-img (format pinned, no backing file) to the stored format 10-90 %
             (quick import: RAW or ZVHD2 stored as is, by copy/reflink)
    verify   re-probe the output in a worker while hashing it (sha256)      90-99 %
    store    rename into ``images/<image id>.<format>``, image active, job SUCCESS

Untrusted image bytes are read only by the worker processes (:class:`ImageWorker`): this module
only moves files and hashes them. Every way out ends the job: a rule failure, a worker limit
(named in the reason), a cancellation (``IMG.CANCELLED``) or an unexpected error
(``IMG.1075``); temporary files are removed in all cases.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from imageport import metrics
from imageport.rules.base import CheckOptions
from imageport.service import job_state as state
from imageport.service.clock import new_id
from imageport.service.context import Services
from imageport.service.image_properties import active_image_values
from imageport.service.image_worker import (
    ImageInspection,
    ImageWorker,
    WorkerCancelledError,
    WorkerError,
)

log = logging.getLogger(__name__)

#: Formats a quick-import job stores as they are (requirements W4).
QUICK_FORMATS = ("raw", "zvhd2")
HASH_CHUNK = 8 << 20


class JobFailedError(Exception):
    """Ends the job FAIL with ``code`` and ``reason`` (and the check ``report``, if any)."""

    def __init__(self, code: str, reason: str, report: object = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.report = report if isinstance(report, dict) else None


class JobCancelledError(Exception):
    """The user cancelled the job."""


def run_job(services: Services, job_id: str) -> None:
    """Run job ``job_id`` to its end, unless another worker has it or it is not INIT."""
    job = state.claim(services, job_id)
    if job is None:
        return
    started = time.monotonic()
    progress = state.Progress(services, job.id)
    scratch: list[Path] = []
    status = "FAIL"
    try:
        _run_phases(services, job, progress, scratch)
        status = "SUCCESS"
    except JobFailedError as exc:
        _end_failed(services, job, exc.code, exc.reason, exc.report)
    except (JobCancelledError, WorkerCancelledError):
        _end_failed(services, job, state.CANCELLED, "the job was cancelled at the user's request")
    except WorkerError as exc:
        _end_failed(services, job, state.INTERNAL, exc.reason)
    except Exception as exc:  # never leave a job RUNNING
        log.exception("job %s: unexpected error", job.id)
        _end_failed(services, job, state.INTERNAL,
                    f"internal error while importing: {type(exc).__name__}: {exc}")
    finally:
        for path in scratch:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        metrics.JOBS_FINISHED.labels(job.job_type, status).inc()
        metrics.JOB_SECONDS.labels(job.job_type).observe(time.monotonic() - started)


def _end_failed(services: Services, job: state.ClaimedJob, code: str, reason: str,
                report: object = None) -> None:
    try:
        state.fail(services, job.id, job.image_id, code, reason,
                   report if isinstance(report, dict) else None)
    except Exception:
        # the database is unreachable: start-up recovery will end or restart the job
        log.exception("job %s: cannot record its failure (%s: %s)", job.id, code, reason)


def _run_phases(services: Services, job: state.ClaimedJob, progress: state.Progress,
                scratch: list[Path]) -> None:
    worker = _image_worker(services)
    registered = state.image_row(services, job.image_id)
    if registered is None:
        raise JobFailedError(state.INTERNAL, f"the image {job.image_id} no longer exists")
    _check_cancelled(progress)
    with _fetch(services, job, progress) as source:
        inspection = _check(worker, job, source, progress)
        _check_cancelled(progress)
        output, disk_format = _convert(services, worker, job, source, inspection, progress,
                                       scratch)
    _check_cancelled(progress)
    checksum, size = _verify(worker, output, disk_format, inspection, progress)
    _check_cancelled(progress)
    _store(services, job, output, disk_format, inspection, checksum, size, progress)


def _image_worker(services: Services) -> ImageWorker:
    converter = services.converter
    if not isinstance(converter, ImageWorker):
        raise JobFailedError(state.INTERNAL, "the configured converter cannot inspect images")
    return converter


def _check_cancelled(progress: state.Progress) -> None:
    if progress.cancelled():
        raise JobCancelledError


@contextlib.contextmanager
def _fetch(services: Services, job: state.ClaimedJob,
           progress: state.Progress) -> Iterator[Path]:
    """The uploaded object as a local read-only file, if it is still the registered one."""
    params = job.params
    progress.phase("fetch", params.object_size)
    where = f"{params.bucket}:{params.key}"
    info = services.store.get_object(params.bucket, params.key)
    if info is None:
        raise JobFailedError(state.SOURCE_CHANGED, f"the file {where} no longer exists")
    if info.size != params.object_size or info.etag != params.object_etag:
        raise JobFailedError(state.SOURCE_CHANGED,
                             f"the file {where} was replaced after the image was registered")
    with services.store.local_path(params.bucket, params.key) as path:
        if path.stat().st_size != params.object_size:
            raise JobFailedError(state.SOURCE_CHANGED,
                                 f"the file {where} was replaced after the image was registered")
        yield path


def check_options(params: state.JobParams) -> CheckOptions:
    """What the rules are told about this import."""
    return CheckOptions(fast_import=params.quick_import, min_disk_gib=params.min_disk,
                        uefi=params.hw_firmware_type == "uefi",
                        uninitialized=params.uninitialized)


def failure_reason(inspection: ImageInspection) -> str:
    """One line per failing rule: ``IMG-SAFE: the qcow2 names a backing file ...``."""
    return "\n".join(f"{rule}: {message}" for rule, message in inspection.failures)


def _check(worker: ImageWorker, job: state.ClaimedJob, source: Path,
           progress: state.Progress) -> ImageInspection:
    """Probe, safety and guest checks in a worker; FAIL with the rules when any errs."""
    progress.phase("check", job.params.object_size)
    inspection = worker.inspect(source, check_options(job.params), cancelled=progress.cancelled)
    if inspection.report is not None:
        read = inspection.report.get("bytes_read")
        if isinstance(read, int) and read > 0:
            metrics.BYTES_PROCESSED.labels("check").inc(read)
    failures = inspection.failures
    if failures:
        raise JobFailedError(failures[0][0], failure_reason(inspection), inspection.report)
    if not inspection.readable or inspection.virtual_size is None:
        # the rules pass only readable files; fail closed if that ever changes
        raise JobFailedError("IMG-SAFE", f"IMG-SAFE: the {inspection.format} file cannot be "
                             "read safely", inspection.report)
    return inspection


def _scratch_file(services: Services, scratch: list[Path], suffix: str) -> Path:
    tmp = services.settings.tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"job-{new_id()}.{suffix}"
    scratch.append(path)
    return path


def _convert(services: Services, worker: ImageWorker, job: state.ClaimedJob, source: Path,
             inspection: ImageInspection, progress: state.Progress,
             scratch: list[Path]) -> tuple[Path, str]:
    """The file to store, in scratch space, and its format."""
    virtual = inspection.virtual_size or 0
    progress.phase("convert", virtual)
    if job.params.quick_import:
        if inspection.format not in QUICK_FORMATS:
            raise JobFailedError(
                state.FORMAT_NOT_SUPPORTED,
                f"quick import stores RAW or ZVHD2 files as they are; this file is "
                f"{inspection.format}", inspection.report)
        target = _scratch_file(services, scratch, inspection.format)
        copy_file(source, target, lambda done: progress.update(
            done / max(1, inspection.file_size), done, inspection.file_size),
            progress.cancelled)
        metrics.BYTES_PROCESSED.labels("convert").inc(inspection.file_size)
        return target, inspection.format
    fmt = job.params.stored_format or services.settings.stored_format
    target = _scratch_file(services, scratch, fmt)
    worker.convert(source, inspection.format, target, fmt,
                   progress=lambda pct: progress.update(pct / 100, int(virtual * pct / 100),
                                                        virtual),
                   cancelled=progress.cancelled)
    metrics.BYTES_PROCESSED.labels("convert").inc(virtual)
    return target, fmt


def copy_file(source: Path, target: Path, progress: Callable[[int], None],
              cancelled: Callable[[], bool]) -> None:
    """Copy ``source`` to a new ``target`` with ``copy_file_range`` (a reflink or an in-kernel
    copy where the filesystem offers one), in steps that report progress and honour cancel."""
    step = 256 << 20
    with open(source, "rb") as src, open(target, "xb") as dst:
        size = os.fstat(src.fileno()).st_size
        done = 0
        while done < size:
            if cancelled():
                raise JobCancelledError
            try:
                n = os.copy_file_range(src.fileno(), dst.fileno(), min(step, size - done),
                                       done, done)
            except OSError:
                n = 0
            if n <= 0:  # not supported here: copy in user space
                chunk = os.pread(src.fileno(), min(HASH_CHUNK, size - done), done)
                if not chunk:
                    raise JobFailedError(state.SOURCE_CHANGED, "the file shrank while copied")
                n = os.pwrite(dst.fileno(), chunk, done)
            done += n
            progress(done)


def _hash_file(path: Path, progress: state.Progress) -> tuple[str, int]:
    """sha256 and size of ``path``, fsynced (the file is about to become the image)."""
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            progress.update(done / max(1, size), done, size)
            if progress.cancelled():
                raise JobCancelledError
        os.fsync(f.fileno())
    metrics.BYTES_PROCESSED.labels("verify").inc(done)
    return digest.hexdigest(), done


def _verify(worker: ImageWorker, output: Path, disk_format: str, inspection: ImageInspection,
            progress: state.Progress) -> tuple[str, int]:
    """Re-probe the output in a worker while hashing it; it must be a clean file of the stored
    format with the input's virtual size."""
    progress.phase("verify", output.stat().st_size)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="imageport-probe") as pool:
        probing = pool.submit(worker.probe, output, cancelled=progress.cancelled)
        try:
            checksum, size = _hash_file(output, progress)
        except BaseException:
            progress.cancel_now()
            raise
        found = probing.result()
    problems = []
    if found.format != disk_format:
        problems.append(f"it is {found.format}, not {disk_format}")
    if not found.readable:
        detail = "; ".join((*found.hazards, found.damage or "", found.encryption or ""))
        problems.append(f"it is not a clean image ({detail.strip('; ')})")
    if found.virtual_size != inspection.virtual_size:
        problems.append(f"its virtual size {found.virtual_size} differs from the file's "
                        f"{inspection.virtual_size}")
    if problems:
        raise JobFailedError(state.INTERNAL, "the converted image failed verification: "
                             + "; ".join(problems), inspection.report)
    return checksum, size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _store(services: Services, job: state.ClaimedJob, output: Path, disk_format: str,
           inspection: ImageInspection, checksum: str, size: int,
           progress: state.Progress) -> None:
    """Move the output into the image directory and make the image active."""
    progress.phase("store", size)
    images_dir = services.settings.images_dir
    images_dir.mkdir(parents=True, exist_ok=True)
    blob = f"{job.image_id}.{disk_format}"
    final = images_dir / blob
    os.replace(output, final)
    _fsync_dir(images_dir)
    registered = state.image_row(services, job.image_id)  # now: the user may have edited it
    values = active_image_values(
        registered_properties=getattr(registered, "properties", None) or {},
        inspection=inspection, disk_format=disk_format, size=size, checksum=checksum,
        blob=blob)
    try:
        stored = state.succeed(services, job.id, job.image_id, values)
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    if not stored:
        final.unlink(missing_ok=True)
        if progress.cancelled():
            raise JobCancelledError
        raise JobFailedError(state.INTERNAL, "the image or its job changed while it was stored")
