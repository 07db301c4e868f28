"""The export job: from an active image's stored file to an object in the caller's bucket.

Normal export::

    claim    INIT -> RUNNING (only one worker wins); the image stays ``active``
    fetch    the image must still be active with its stored file                 0-1 %
    convert  the stored file to ``file_format`` in a limited worker (qemu-img,   1-75 %
             source format pinned, no backing file; ZVHD/ZVHD2 by our writer),
             into the object store's scratch space (``settings.tmp_dir``)
    verify   re-probe the output in a worker: the right format, clean, the     75-80 %
             image's virtual size
    upload   hash it (md5: the ETag; sha256), fsync, and commit it as the      80-100 %
             object (a rename: the object is never half-visible; an object at
             the key is replaced), job SUCCESS

Quick export (``params.quick``) writes the stored file as it is: ``convert`` is a hard link of
it into scratch space (a hole-preserving copy where no link can be made; stored files and
objects are both immutable), then ``upload`` hashes it (the sha256 must be the image's
checksum) and commits it.

Every way out ends the job: a failure (``IMG.STATE`` the image went away, ``IMG.0069`` the
bucket went away, a worker limit or an unexpected error ``IMG.1075``), or a cancellation
(``IMG.CANCELLED``: no object is written); scratch files are removed in all cases. The image is
never changed by an export job (:func:`.state.fail` only kills images still being
created).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select

from imageport import metrics
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.images.source_checks import STANDARD
from imageport.service.jobs import state
from imageport.service.jobs.errors import JobCancelledError, JobFailedError
from imageport.service.jobs.export_request import ExportParams
from imageport.service.jobs.file_links import hash_file, link_or_copy
from imageport.service.jobs.run import run_to_end
from imageport.service.ports import StagedFile, WorkerError
from imageport.service.quotas import METADATA_SLACK, room_for, write_room
from imageport.service.statuses import ImageStatus
from imageport.service.tables import jobs

log = logging.getLogger(__name__)

PHASES: Mapping[str, tuple[float, float]] = {
    "fetch": (0.0, 1.0),
    "convert": (1.0, 75.0),
    "verify": (75.0, 80.0),
    "upload": (80.0, 100.0),
}
QUICK_PHASES: Mapping[str, tuple[float, float]] = {
    "fetch": (0.0, 1.0),
    "convert": (1.0, 5.0),
    "upload": (5.0, 100.0),
}
#: What the prober calls each export format.
PROBED_AS = {
    "qcow2": "qcow2",
    "raw": "raw",
    "vhd": "vhd",
    "vmdk": "vmdk",
    "zvhd": "zvhd",
    "zvhd2": "zvhd2",
}
CONTENT_TYPE = "application/octet-stream"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def run_job(services: Services, job_id: str) -> None:
    """Run export job ``job_id`` to its end, unless another worker has it or it is not INIT."""
    job = state.claim(services, job_id)
    if job is None:
        return
    project_id, params = _job_params(services, job.id)
    progress = state.Progress(services, job.id, QUICK_PHASES if params.quick else PHASES)

    def work(scratch: list[Path]) -> bool:
        result = _run_phases(services, job, project_id, params, progress, scratch)
        return state.succeed_with_result(services, job.id, result, "upload")

    run_to_end(services, job, "exporting", work)


def _job_params(services: Services, job_id: str) -> tuple[str, ExportParams]:
    with services.db.connect() as conn:
        row = conn.execute(
            select(jobs.c.project_id, jobs.c.params).where(jobs.c.id == job_id)
        ).one()
    return row.project_id, ExportParams.from_document(row.params)


def _check_cancelled(progress: state.Progress) -> None:
    if progress.cancelled():
        raise JobCancelledError


def stored_file(services: Services, image_id: str) -> tuple[Path, Any]:
    """The image's stored file and row; IMG.STATE when it is no longer active."""
    row = state.image_row(services, image_id)
    blob = getattr(row, "blob", None) or ""
    if row is None or row.status != ImageStatus.ACTIVE or not row.disk_format:
        raise JobFailedError(codes.STATE, f"the image {image_id} is no longer active")
    if "/" in blob or "\\" in blob or blob in ("", ".", ".."):
        raise JobFailedError(codes.INTERNAL, f"the image {image_id} has no stored file")
    path = services.settings.images_dir / blob
    if not path.is_file():
        raise JobFailedError(codes.INTERNAL, f"the stored file of image {image_id} is missing")
    return path, row


def _check_bucket(services: Services, project_id: str, params: ExportParams) -> None:
    bucket = services.store.get_bucket(params.bucket)
    if bucket is None or bucket.project_id != project_id or bucket.storage_class != STANDARD:
        raise JobFailedError(
            codes.BUCKET_UNAVAILABLE,
            f"the bucket {params.bucket!r} no longer exists, is "
            "not accessible or is no longer STANDARD",
        )


def _run_phases(
    services: Services,
    job: state.ClaimedJob,
    project_id: str,
    params: ExportParams,
    progress: state.Progress,
    scratch: list[Path],
) -> dict[str, object]:
    stored, image = stored_file(services, job.image_id)
    _check_bucket(services, project_id, params)
    _check_cancelled(progress)
    output = services.store.staging_path()
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch.append(output)
    if params.quick:
        _place_as_is(stored, output, progress)
    else:
        bound = export_bound(stored, int(image.virtual_size or 0))
        write_room(services, project_id, bound)  # the object it becomes counts as the project's
        with room_for(services, project_id, disk=bound, writing=output):
            _convert(services, stored, image, output, params.file_format, bound, progress)
        _check_cancelled(progress)
        _verify(services, output, image, params.file_format, progress)
    _check_cancelled(progress)
    staged = _hash_file(output, progress)
    if (
        params.quick
        and _SHA256_HEX.fullmatch(image.checksum or "")
        and staged.sha256_hex != image.checksum
    ):
        raise JobFailedError(
            codes.INTERNAL, f"the stored file of image {job.image_id} does not match its checksum"
        )
    _check_cancelled(progress)
    _check_bucket(services, project_id, params)
    info = services.store.commit_object(
        params.bucket,
        params.key,
        staged,
        content_type=CONTENT_TYPE,
        storage_class=STANDARD,
        metadata={"imageport-image-id": job.image_id, "imageport-format": params.file_format},
    )
    metrics.BYTES_PROCESSED.labels("export").inc(info.size)
    return {"object_size": info.size, "object_etag": info.etag, "object_sha256": info.sha256}


def export_bound(stored: Path, virtual_size: int) -> int:
    """The most disk an export of the stored file may take: its data (the file's allocated
    blocks: a stored image is ours, checked when it came in) and every format's metadata (at
    most an 8-byte entry per 64 KiB of the virtual disk), plus room for headers."""
    return stored.stat().st_blocks * 512 + virtual_size // 4096 + METADATA_SLACK


def _convert(
    services: Services,
    stored: Path,
    image: Any,
    output: Path,
    fmt: str,
    bound: int,
    progress: state.Progress,
) -> None:
    virtual = int(image.virtual_size or 0)
    progress.phase("convert", virtual)
    try:
        services.worker.export(
            stored,
            image.disk_format,
            output,
            fmt,
            progress=lambda pct: progress.update(pct / 100, int(virtual * pct / 100), virtual),
            cancelled=progress.cancelled,
            max_output_bytes=bound,
        )
    except WorkerError as exc:
        if exc.limit == "watch":  # never for a file of ours: a converter bug, not the user's
            raise JobFailedError(codes.INTERNAL, f"{codes.INTERNAL}: {exc.reason}") from exc
        raise


def _verify(
    services: Services, output: Path, image: Any, fmt: str, progress: state.Progress
) -> None:
    """The output must be a clean ``fmt`` file of the image's virtual size."""
    progress.phase("verify", output.stat().st_size)
    found = services.worker.probe(output, cancelled=progress.cancelled)
    problems = []
    if found.format != PROBED_AS.get(fmt, fmt):
        problems.append(f"it is {found.format}, not {fmt}")
    if not found.readable:
        detail = "; ".join((*found.hazards, found.damage or "", found.encryption or ""))
        problems.append(f"it is not a clean image ({detail.strip('; ')})")
    if image.virtual_size is not None and found.virtual_size != image.virtual_size:
        problems.append(
            f"its virtual size {found.virtual_size} differs from the image's {image.virtual_size}"
        )
    if problems:
        raise JobFailedError(
            codes.INTERNAL, f"the exported {fmt} file failed verification: " + "; ".join(problems)
        )


def _place_as_is(stored: Path, output: Path, progress: state.Progress) -> None:
    """Quick export: the stored file at ``output``, as a hard link, or a hole-preserving copy
    where the filesystem cannot link."""
    size = stored.stat().st_size
    progress.phase("convert", size)
    link_or_copy(
        stored,
        output,
        lambda done: progress.update(done / max(1, size), done, size),
        progress.cancelled,
    )


def _hash_file(path: Path, progress: state.Progress) -> StagedFile:
    """``path`` as a staged file: its size, md5 and sha256, fsynced (``upload`` phase)."""
    progress.phase("upload", path.stat().st_size)
    (md5, sha256), size = hash_file(path, progress, "md5", "sha256")
    return StagedFile(path, size, md5, sha256)
