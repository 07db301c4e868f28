"""The import job: from an uploaded file to an active image, one small function per phase.

Normal import::

    claim    INIT -> RUNNING (only one worker wins), image queued -> saving
    fetch    the object as a local read-only file; it must still be the one registered
             (or the data received on the Glance routes, staged under the data dir and
             removed when the job ends: ``params.staged``, :mod:`.staging`)
    check    probe + safety + guest rules, in a limited worker process      0-10 %
             any error finding: FAIL with the rule IDs, image killed, report kept
             (``fail_reason``: each failing rule with its first evidence line
             and its fix, :mod:`.fail_reason`);
             a check that hits the checker's tight limits (a well-formed image
             is checked in about a second) is itself a finding: FAIL with
             IMG-SAFE (CPU, wall clock, report size)
    configure  only with ``params.is_config`` (automatic configuration): the
             checked file copied to raw, the fixes planned from it in a worker and
             applied in the editing appliance; then ``convert`` works from that
             copy and ``recheck`` judges the result with every rule, and
             ``__is_config_init`` says whether the initialization rules pass
             (:mod:`.import_configure`; the percentages are then
             :data:`.state.CONFIG_PHASES`'). The first check lets through the
             errors a fix may clear; the recheck fails on any error left
    convert  qemu-img (format pinned, no backing file) to the stored format 10-90 %
             within a bound known before it starts (:mod:`.quotas`: the
             data the check measured, plus metadata), which must fit in the
             project's storage quota (IMG.0015) and the free disk space
             (IMG.1075); a conversion outgrowing it is stopped (IMG-SAFE)
    verify   re-probe the output in a worker while hashing it (sha256)      90-99 %
    boot     only with ``params.boot_test`` (the registration's ``boot_test``, or
             ``settings.import_boot_test``): boot the output under each firmware
             the image claims; the verdicts join the report, and a boot that
             reached no kernel fails the job with IMG-BOOT (:mod:`.import_boot`;
             the percentages are then :data:`.state.BOOT_PHASES`')
    store    rename into ``images/<image id>.<format>``, image active, job SUCCESS

Quick (fast) import (``params.quick_import``; RAW or ZVHD2 up to 1 TiB) stores the file as it
is::

    fetch    the object, and its bitmap ``<base>.mf`` from the same bucket   0-1 %
             when there is one (``dir/disk.raw`` -> ``dir/disk.mf``)
    check    as above, told ``fast_import`` and the bitmap's path: the rules   1-90 %
             IMG-FAST-RAW / IMG-FAST-ZVHD2 verify the bitmap and the guest
    store    a hard link of the object's file into ``images/`` (O(1) for any  90-98 %
             size; objects are immutable blobs, so the link never changes);
             a hole-preserving copy only where no link can be made
    verify   re-probe the stored file in a worker (format, clean, virtual     98-100 %
             size); no hash pass: ``checksum`` is the sha256 the object store
             computed when the object was uploaded (the same bytes)
    store    rename into place, image active (``__bitmap_file`` names the bitmap)

A data image (``params.disk_kind`` ``data``: ``imsImportDataImageJob``) takes the normal
path (or the quick one), checked by the rules about the file only (no guest rules: it has no
system to boot). An ISO image (``disk_kind`` ``iso``) takes the quick path's phases without
a bitmap: the ISO 9660 file is checked (format, safety, size) and stored as it is, as
``images/<image id>.iso`` with ``disk_format`` ``iso``: it is installation media, not a disk
to convert.

Untrusted image bytes are read only by the worker processes (:class:`ImageWorker`): this module
only moves files and hashes them. Every way out ends the job: a rule failure, a worker limit
(named in the reason), a cancellation (``IMG.CANCELLED``) or an unexpected error
(``IMG.1075``); temporary files are removed in all cases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from pathlib import Path

from imageport import metrics
from imageport.fastimport.naming import bitmap_key_for
from imageport.rules.base import CheckOptions
from imageport.rules.container import ISO_FORMAT
from imageport.service import codes
from imageport.service.clock import new_id
from imageport.service.context import Services
from imageport.service.images import staging
from imageport.service.images.properties import BITMAP_FILE, CONFIG_INIT
from imageport.service.jobs import import_configure, state, steps
from imageport.service.jobs.errors import JobCancelledError, JobFailedError
from imageport.service.jobs.file_links import link_or_copy
from imageport.service.jobs.import_boot import boot_phase
from imageport.service.jobs.import_source import Fetched, fetch, source_name
from imageport.service.jobs.run import run_to_end
from imageport.service.ports import (
    ImageInspection,
    ImageWorker,
)
from imageport.service.quotas import output_bound, room_for

log = logging.getLogger(__name__)

#: Formats a quick-import job stores as they are (the vendor's IMS API reference, "Importing
#: an Image File Quickly").
QUICK_FORMATS = ("raw", "zvhd2")
#: The format an ISO image's file is probed as (rule IMG-FORMAT) and the ``disk_format`` it
#: is stored with.
ISO_PROBED, ISO_DISK_FORMAT = ISO_FORMAT, "iso"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def run_job(services: Services, job_id: str) -> None:
    """Run job ``job_id`` to its end, unless another worker has it or it is not INIT."""
    job = state.claim(services, job_id)
    if job is None:
        return
    as_is = job.params.quick_import or job.params.disk_kind == "iso"
    if as_is:
        phases = state.QUICK_BOOT_PHASES if job.params.boot_test else state.QUICK_PHASES
    elif job.params.is_config:
        phases = state.CONFIG_BOOT_PHASES if job.params.boot_test else state.CONFIG_PHASES
    else:
        phases = state.BOOT_PHASES if job.params.boot_test else state.PHASES
    progress = state.Progress(services, job.id, phases)

    def work(scratch: list[Path]) -> bool:
        _run_phases(services, job, progress, scratch)
        return True

    run_to_end(
        services,
        job,
        "importing",
        work,
        finally_=lambda: staging.remove(services.settings, job.params.staged),
    )


def _run_phases(
    services: Services, job: state.ClaimedJob, progress: state.Progress, scratch: list[Path]
) -> None:
    worker = services.worker
    registered = state.image_row(services, job.image_id)
    if registered is None:
        raise JobFailedError(codes.INTERNAL, f"the image {job.image_id} no longer exists")
    _check_cancelled(progress)
    if job.params.quick_import or job.params.disk_kind == "iso":
        _run_quick_phases(services, worker, job, progress, scratch)
        return
    fmt = job.params.stored_format or services.settings.stored_format
    extra: dict[str, str] = {}
    with contextlib.ExitStack() as room:  # held until the image is stored
        with fetch(services, job, progress) as fetched:
            inspection = _check(worker, job, fetched, progress)
            _check_cancelled(progress)
            source, source_format = fetched.path, inspection.format
            bound = conversion_bound(inspection, fmt)
            configured = None
            if job.params.is_config:
                configured = import_configure.configure(
                    services, job, source, inspection, progress, scratch, room
                )
                source, source_format = configured.raw, "raw"
                bound = import_configure.stored_bound(configured, inspection, fmt)
            _check_cancelled(progress)
            target = steps.scratch_file(services, scratch, fmt)
            room.enter_context(
                room_for(
                    services,
                    job.project_id,
                    stored=bound,
                    disk=worker.disk_needed(source_format, bound),
                    writing=target,
                )
            )
            output = _convert(
                worker, source, source_format, inspection, fmt, bound, progress, target
            )
        if configured is not None:
            configured.raw.unlink(missing_ok=True)  # the stored format holds it now
            _check_cancelled(progress)
            inspection = import_configure.recheck(
                services,
                output,
                inspection,
                configured,
                check_options(job.params),
                source_name(job.params),
                progress,
            )
            extra[CONFIG_INIT] = import_configure.config_init(inspection)
        _check_cancelled(progress)
        checksum, size = steps.verify_output(worker, output, fmt, inspection, progress)
        _check_cancelled(progress)
        if job.params.boot_test:
            inspection = boot_phase(services, job, output, fmt, inspection, progress)
            _check_cancelled(progress)
        steps.store_output(services, job, output, fmt, inspection, checksum, size, progress, extra)


def _run_quick_phases(
    services: Services,
    worker: ImageWorker,
    job: state.ClaimedJob,
    progress: state.Progress,
    scratch: list[Path],
) -> None:
    """Quick import: check (with the bitmap), then store the file as it is (an ISO image
    too, without a bitmap)."""
    iso = job.params.disk_kind == "iso"
    with contextlib.ExitStack() as room:  # held until the image is stored
        with fetch(services, job, progress) as fetched:
            inspection = _check(worker, job, fetched, progress)
            if inspection.format not in ((ISO_PROBED,) if iso else QUICK_FORMATS):
                # the rules refuse other formats (IMG-FAST-RAW, IMG-FORMAT); fail closed
                raise JobFailedError(
                    codes.FORMAT_NOT_SUPPORTED,
                    "an ISO image stores an ISO 9660 file as it is; this file is "
                    f"{inspection.format}"
                    if iso
                    else "quick import stores RAW or ZVHD2 files as they are; this file is "
                    f"{inspection.format}",
                    inspection.report,
                )
            _check_cancelled(progress)
            # stored as it is (a hard link: no new disk), but it counts against the quota
            room.enter_context(room_for(services, job.project_id, stored=inspection.file_size))
            output = _place_as_is(services, fetched.path, inspection, progress, scratch)
            progress.phase_done()  # a hard link reports no bytes as it goes
        _check_cancelled(progress)
        size = _verify_as_is(worker, output, inspection, fetched.info.size, progress)
        progress.phase_done()
        checksum = fetched.info.sha256
        if not _SHA256_HEX.fullmatch(checksum):  # a store that kept no digest: hash it
            checksum, size = steps.hash_output(output, progress)
        _check_cancelled(progress)
        if job.params.boot_test:
            inspection = boot_phase(services, job, output, inspection.format, inspection, progress)
            _check_cancelled(progress)
        extra: dict[str, str] = {}
        if inspection.format == "raw" and fetched.bitmap_key is not None:
            extra[BITMAP_FILE] = f"{job.params.bucket}:{fetched.bitmap_key}"
        steps.store_output(
            services,
            job,
            output,
            ISO_DISK_FORMAT if iso else inspection.format,
            inspection,
            checksum,
            size,
            progress,
            extra,
            enter_phase=False,
        )


def _check_cancelled(progress: state.Progress) -> None:
    if progress.cancelled():
        raise JobCancelledError


def check_options(params: state.JobParams, bitmap_path: Path | None = None) -> CheckOptions:
    """What the rules are told about this import (``bitmap_path``: the RAW's bitmap file, for
    quick import)."""
    return CheckOptions(
        fast_import=params.quick_import,
        min_disk_gib=params.min_disk,
        uefi=params.hw_firmware_type == "uefi",
        uninitialized=params.uninitialized,
        bitmap_path=None if bitmap_path is None else str(bitmap_path),
        declared_format=params.declared_format,
        architecture=params.architecture,
        disk_kind=params.disk_kind,
    )


def _named_as_uploaded(
    inspection: ImageInspection, params: state.JobParams, fetched: Fetched
) -> ImageInspection:
    """The inspection with the scratch paths the worker was given (``tmp/link-...``) replaced
    by the ``bucket:key`` the user uploaded, in the report and so in the failure reasons."""
    if inspection.report is None:
        return inspection
    names = {str(fetched.path): source_name(params)}
    if fetched.bitmap_path is not None:
        names[str(fetched.bitmap_path)] = f"{params.bucket}:{fetched.bitmap_key}"
    report = steps.renamed(dict(inspection.report), names)
    return dataclasses.replace(inspection, report=report if isinstance(report, dict) else None)


def _check(
    worker: ImageWorker, job: state.ClaimedJob, fetched: Fetched, progress: state.Progress
) -> ImageInspection:
    """Probe, safety and guest checks in a worker; FAIL with the rules when any errs."""
    progress.phase("check", job.params.object_size)
    inspection = steps.inspect_file(
        worker, fetched.path, check_options(job.params, fetched.bitmap_path), progress
    )
    inspection = _named_as_uploaded(inspection, job.params, fetched)
    params = job.params
    mf_key = bitmap_key_for(params.key)
    notes: dict[str, str] = {}
    if params.quick_import and fetched.bitmap_path is None and mf_key is not None:
        notes["IMG-FAST-RAW"] = (
            f"looked for the bitmap file {params.bucket}:{mf_key} "
            f"beside {params.bucket}:{params.key}; there is none"
        )
    # with automatic configuration, the errors a fix may clear are judged after it (recheck)
    tolerated = import_configure.FIXABLE_RULES if params.is_config else frozenset()
    steps.refuse_failed(inspection, notes, tolerated=tolerated)
    if not _stored_safely(inspection, job.params) or inspection.virtual_size is None:
        # the rules pass only readable files; fail closed if that ever changes
        raise JobFailedError(
            "IMG-SAFE",
            f"IMG-SAFE: the {inspection.format} file cannot be read safely",
            inspection.report,
        )
    progress.phase_done()  # the worker reports no bytes as it checks
    return inspection


def _stored_safely(inspection: ImageInspection, params: state.JobParams) -> bool:
    """Whether the checked file may be stored: a readable disk, or for an ISO image an intact
    ISO 9660 file (no disk is opened in it: it is stored as it is)."""
    if params.disk_kind == "iso":
        return (
            inspection.format == ISO_PROBED
            and not inspection.hazards
            and inspection.damage is None
            and inspection.encryption is None
        )
    return inspection.readable


def _convert(
    worker: ImageWorker,
    source: Path,
    source_format: str,
    inspection: ImageInspection,
    fmt: str,
    bound: int,
    progress: state.Progress,
    target: Path,
) -> Path:
    """Convert ``source`` (the checked file, or its configured raw copy: ``source_format``)
    to ``fmt`` at ``target`` (scratch space), stopping a conversion whose output takes more
    disk than ``bound`` (IMG-SAFE)."""
    virtual = inspection.virtual_size or 0
    progress.phase("convert", virtual)
    steps.convert_bounded(worker, source, source_format, target, fmt, bound, inspection, progress)
    metrics.BYTES_PROCESSED.labels("convert").inc(virtual)
    return target


def conversion_bound(inspection: ImageInspection, target_format: str) -> int:
    """The most disk the conversion of the checked file to ``target_format`` may take
    (:func:`~imageport.service.quotas.output_bound`); a checker that measured nothing
    (never, for a file that passed) bounds it by the virtual size."""
    virtual = inspection.virtual_size or 0
    allocated = inspection.allocated_bytes
    extents = inspection.data_extents
    if allocated is None or extents is None:
        allocated, extents = virtual, 1
    return output_bound(allocated, extents, virtual, target_format)


def _place_as_is(
    services: Services,
    source: Path,
    inspection: ImageInspection,
    progress: state.Progress,
    scratch: list[Path],
) -> Path:
    """Quick import: the object's file under a temporary name in ``images/``, as a hard link
    (no bytes move), or a hole-preserving copy where the filesystem cannot link."""
    size = inspection.file_size
    progress.phase("store", size)
    images_dir = services.settings.images_dir
    images_dir.mkdir(parents=True, exist_ok=True)
    target = images_dir / f".job-{new_id()}.{inspection.format}"
    scratch.append(target)
    linked = link_or_copy(
        source,
        target,
        lambda done: progress.update(done / max(1, size), done, size),
        progress.cancelled,
    )
    if not linked:
        metrics.BYTES_PROCESSED.labels("convert").inc(size)
    return target


def _verify_as_is(
    worker: ImageWorker,
    output: Path,
    inspection: ImageInspection,
    object_size: int,
    progress: state.Progress,
) -> int:
    """Quick import: re-probe the stored file in a worker (format, clean, virtual size, and the
    object's size), without reading it all; its size."""
    size = output.stat().st_size
    progress.phase("verify", size)
    found = worker.probe(output, cancelled=progress.cancelled)
    problems = steps.verification_problems(found, inspection.format, inspection)
    if size != object_size:
        problems.append(f"it is {size} bytes, not the uploaded file's {object_size}")
    if problems:
        raise JobFailedError(
            codes.INTERNAL,
            "the stored image failed verification: " + "; ".join(problems),
            inspection.report,
        )
    return size
