"""The steps every job that makes an image from new bytes shares: check the file with every rule,
verify the stored output, store it and make the image active.

The import job (:mod:`.import_job`: a file someone uploaded) and the job that makes an image from
a server (:mod:`.server_image_job`: a copy of the server's disk, flattened) differ in where their
bytes come from; from the file to check on they do the same, here, so that an image made either
way has been judged by the same rules, kept the same report and been stored the same way.

Untrusted bytes are read only by the worker processes (:class:`ImageWorker`); this module moves
files and hashes them.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Collection, Mapping
from pathlib import Path

from imageport import metrics
from imageport.durable import fsync_dir
from imageport.rules.base import CheckOptions
from imageport.rules.container import ISO_FORMAT
from imageport.service import codes
from imageport.service.clock import new_id
from imageport.service.context import Services
from imageport.service.images.properties import active_image_values
from imageport.service.jobs import state
from imageport.service.jobs.errors import JobFailedError
from imageport.service.jobs.fail_reason import failure_reason
from imageport.service.jobs.file_links import hash_file
from imageport.service.jobs.run import activate
from imageport.service.ports import ImageInspection, ImageWorker, WorkerError

#: Checker limits whose hit is a finding about the file (IMG-SAFE), not a service failure: a
#: well-formed image is checked in about a second and its report is small. (Memory is not
#: among them: the readers' caps bound it, so running short is the service's own limit.)
CHECK_LIMIT_FINDINGS = frozenset({"cpu", "wall", "output"})


def scratch_file(services: Services, scratch: list[Path], suffix: str) -> Path:
    """A fresh path in ``tmp_dir`` for a job's output, registered in ``scratch`` (removed when
    the job ends unless it was stored)."""
    tmp = services.settings.tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"job-{new_id()}.{suffix}"
    scratch.append(path)
    return path


def inspect_file(
    worker: ImageWorker, path: Path, options: CheckOptions, progress: state.Progress
) -> ImageInspection:
    """Probe, safety and guest checks of ``path`` in a worker. A check that hits the checker's
    tight limits is itself a finding (IMG-SAFE); the rules' findings are the caller's to
    judge (:func:`refuse_failed`)."""
    try:
        inspection = worker.inspect(path, options, cancelled=progress.cancelled)
    except WorkerError as exc:
        if exc.limit in CHECK_LIMIT_FINDINGS:
            raise JobFailedError(
                "IMG-SAFE",
                f"IMG-SAFE: {exc.reason}; a well-formed image of "
                "any size is checked well within these limits, so this file "
                "is refused",
            ) from exc
        raise
    if inspection.report is not None:
        read = inspection.report.get("bytes_read")
        if isinstance(read, int) and read > 0:
            metrics.BYTES_PROCESSED.labels("check").inc(read)
    return inspection


def convert_bounded(
    worker: ImageWorker,
    source: Path,
    source_format: str,
    target: Path,
    fmt: str,
    bound: int,
    inspection: ImageInspection,
    progress: state.Progress,
    share: float = 1.0,
) -> None:
    """Convert ``source`` (``source_format``) to ``fmt`` at ``target`` in a worker, stopping a
    conversion whose output takes more disk than ``bound`` allows (FAIL with IMG-SAFE and the
    check's report). It reports its progress as ``share`` of the current phase."""
    virtual = inspection.virtual_size or 0
    try:
        worker.convert(
            source,
            source_format,
            target,
            fmt,
            progress=lambda pct: progress.update(
                share * pct / 100, int(virtual * pct / 100), virtual
            ),
            cancelled=progress.cancelled,
            max_output_bytes=worker.disk_needed(source_format, bound),
        )
    except WorkerError as exc:
        if exc.limit == "watch":
            raise JobFailedError("IMG-SAFE", f"IMG-SAFE: {exc.reason}", inspection.report) from exc
        raise


def refuse_failed(
    inspection: ImageInspection,
    notes: Mapping[str, str] | None = None,
    *,
    tolerated: Collection[str] = (),
) -> None:
    """FAIL the job with the first failing rule as its code and every failing rule in its
    reason (with ``notes`` about some of them), keeping the report, when any rule erred, other
    than the ``tolerated`` ones (the rules automatic configuration fixes, judged again after
    it)."""
    failed = tuple(f for f in inspection.failed_rules if f.rule_id not in tolerated)
    if failed:
        raise JobFailedError(failed[0].rule_id, failure_reason(failed, notes), inspection.report)


def renamed(value: object, names: Mapping[str, str]) -> object:
    """``value`` (a JSON document) with every string's server paths replaced by their names."""
    if isinstance(value, str):
        for path, name in names.items():
            value = value.replace(path, name)
        return value
    if isinstance(value, list):
        return [renamed(item, names) for item in value]
    if isinstance(value, dict):
        return {key: renamed(item, names) for key, item in value.items()}
    return value


def hash_output(path: Path, progress: state.Progress) -> tuple[str, int]:
    """sha256 and size of ``path``, fsynced (the file is about to become the image)."""
    (checksum,), size = hash_file(path, progress, "sha256")
    metrics.BYTES_PROCESSED.labels("verify").inc(size)
    return checksum, size


def verify_output(
    worker: ImageWorker,
    output: Path,
    disk_format: str,
    inspection: ImageInspection,
    progress: state.Progress,
) -> tuple[str, int]:
    """Re-probe the output in a worker while hashing it; it must be a clean file of the stored
    format with the input's virtual size."""
    progress.phase("verify", output.stat().st_size)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="imageport-probe") as pool:
        probing = pool.submit(worker.probe, output, cancelled=progress.cancelled)
        try:
            checksum, size = hash_output(output, progress)
        except BaseException:
            progress.cancel_now()
            raise
        found = probing.result()
    problems = verification_problems(found, disk_format, inspection)
    if problems:
        raise JobFailedError(
            codes.INTERNAL,
            "the converted image failed verification: " + "; ".join(problems),
            inspection.report,
        )
    return checksum, size


def verification_problems(
    found: ImageInspection, disk_format: str, inspection: ImageInspection
) -> list[str]:
    """What is wrong with a stored file a worker re-probed (nothing: it may become the image)."""
    problems = []
    if found.format != disk_format:
        problems.append(f"it is {found.format}, not {disk_format}")
    iso_intact = found.format == ISO_FORMAT and not (found.hazards or found.damage)
    if not found.readable and not (iso_intact and found.encryption is None):
        detail = "; ".join((*found.hazards, found.damage or "", found.encryption or ""))
        problems.append(f"it is not a clean image ({detail.strip('; ')})")
    if found.virtual_size != inspection.virtual_size:
        problems.append(
            f"its virtual size {found.virtual_size} differs from the file's "
            f"{inspection.virtual_size}"
        )
    return problems


def store_output(
    services: Services,
    job: state.ClaimedJob,
    output: Path,
    disk_format: str,
    inspection: ImageInspection,
    checksum: str,
    size: int,
    progress: state.Progress,
    extra_properties: Mapping[str, str] | None = None,
    *,
    enter_phase: bool = True,
) -> None:
    """Move the output into the image directory and make the image active (the job ends in
    phase ``store`` at 100 %; ``enter_phase``: announce the phase first)."""
    if enter_phase:
        progress.phase("store", size)
    images_dir = services.settings.images_dir
    images_dir.mkdir(parents=True, exist_ok=True)
    blob = f"{job.image_id}.{disk_format}"
    final = images_dir / blob
    os.replace(output, final)
    fsync_dir(images_dir)
    registered = state.image_row(services, job.image_id)  # now: the user may have edited it
    values = active_image_values(
        registered_properties=getattr(registered, "properties", None) or {},
        inspection=inspection,
        disk_format=disk_format,
        size=size,
        checksum=checksum,
        blob=blob,
        extra_properties=extra_properties,
    )
    activate(services, job, final, values)


__all__ = [
    "CHECK_LIMIT_FINDINGS",
    "hash_output",
    "inspect_file",
    "refuse_failed",
    "renamed",
    "scratch_file",
    "store_output",
    "verification_problems",
    "verify_output",
]
