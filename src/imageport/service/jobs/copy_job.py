"""Copying an image within the region (``POST /v1/cloudimages/{image_id}/copy``, the SDK's
``CopyImageInRegion``): a new private image with the same disk, through an
``imsCopyImageInRegionJob`` job.

The request (:func:`copy_image`) is checked at once: the source is the caller's, or shared with
it and accepted (:mod:`imageport.service.images.members`; a pending share is ``IMG.0092``, 403),
and ``active`` (else ``IMG.STATE``, 409), the new name follows the name rules and is not taken
(``IMG.0009``), the project is under its image quota (``IMG.0015``), and ``cmk_id`` is refused
(``IMG.0095``: there is no KMS here, as for create). The new image row is inserted ``queued``
in the same transaction as its job, with the source's columns and properties except:

* ``id``, ``name``, ``__description`` (the request's; empty when not given);
* ``__originalimagename`` = the source image's id (the SDK documents it as the parent image
  id, empty for images made from a file);
* ``__data_origin`` = ``image,<source id>`` (the ``kind,id`` form of ``instance,<id>``);
* ``enterprise_project_id`` when the request names one (a shared source's own is dropped: it
  names the owner's enterprise project, not the caller's);
* ``protected`` false, no tags (tags label one resource; the vendor's body has none).

The job (:func:`run_copy_job`) gives the new image the source's stored file under its own name
``images/<new id>.<format>``: a **hard link** (stored files are never modified in place, so
the two names stay the same bytes; deleting either image removes only its own name), or a
hole-keeping copy where no link can be made (:mod:`imageport.service.jobs.file_links`); then it
fsyncs the directory and makes the image ``active`` with the source's size, virtual size,
checksum and check report. A shared source must still be shared with the copy's project and
accepted when the job runs. Progress: ``fetch`` 0-5 %, ``store`` 5-100 %. A source deleted
before the job links its file fails the job with ``IMG.0057``; a restart while the job runs
puts it back to INIT and runs it again (:mod:`imageport.service.jobs.recovery`), which is safe as
every attempt links afresh under a temporary name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select

from imageport import metrics
from imageport.durable import fsync_dir
from imageport.service import codes
from imageport.service.clock import new_id, new_uuid, time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict
from imageport.service.images import validation as v
from imageport.service.images.boot_results import copied_report
from imageport.service.images.lifecycle import insert_image_row
from imageport.service.images.members import accepted_by, copy_source
from imageport.service.jobs import state
from imageport.service.jobs.errors import JobCancelledError, JobFailedError
from imageport.service.jobs.file_links import link_or_copy
from imageport.service.jobs.manage import insert_job
from imageport.service.jobs.run import activate, claim_and_run
from imageport.service.quotas import room_for
from imageport.service.statuses import ImageStatus
from imageport.service.tables import images, jobs

log = logging.getLogger(__name__)

COPY_JOB = "imsCopyImageInRegionJob"
COPY_PHASES: Mapping[str, tuple[float, float]] = {"fetch": (0.0, 5.0), "store": (5.0, 100.0)}
"""The copy job's phases and the share of ``percent`` each covers."""
ORIGINAL_IMAGE = "__originalimagename"
DATA_ORIGIN = "__data_origin"
_FIELDS = frozenset({"name", "description", "cmk_id", "enterprise_project_id"})


def copy_image(services: Services, project_id: str, image_id: str, body: object) -> str:
    """Copy the caller's active image ``image_id`` (or one shared with it and accepted) to a new
    image named in ``body``; the id of the job that makes it active (submitted to the
    queue)."""
    doc = v.require_object(body, _FIELDS)
    v.refuse_other_sources(doc)  # of its fields, only cmk_id can be here: IMG.0095
    name = v.check_name(doc.get("name"))
    description = v.check_description(doc.get("description"))
    enterprise_project = v.check_enterprise_project(doc.get("enterprise_project_id"))
    now = time_text(services.clock())
    new_image_id = new_uuid()
    with services.db.begin() as conn:
        source = copy_source(conn, project_id, image_id)
        if source.status != ImageStatus.ACTIVE or not source.blob:
            raise Conflict(
                codes.STATE,
                f"image {image_id} is {source.status}; only an active image can be copied",
            )
        v.check_unique_name(conn, project_id, name)
        v.check_quota(conn, project_id, services.settings.image_quota)
        props = {
            str(k): str(val) for k, val in (source.properties or {}).items() if val is not None
        }
        if source.project_id != project_id:  # shared with the caller: not its enterprise project
            props.pop("enterprise_project_id", None)
        props.update(
            {
                "__description": description,
                ORIGINAL_IMAGE: source.id,
                DATA_ORIGIN: f"image,{source.id}",
            }
        )
        if enterprise_project is not None:
            props["enterprise_project_id"] = enterprise_project
        insert_image_row(
            conn,
            dict(
                id=new_image_id,
                project_id=project_id,
                name=name,
                status=ImageStatus.QUEUED,
                visibility="private",
                protected=False,
                container_format=source.container_format,
                disk_format=source.disk_format,
                min_disk=source.min_disk,
                min_ram=source.min_ram,
                max_ram=source.max_ram,
                properties=props,
                tags=[],
                created_at=now,
                updated_at=now,
            ),
        )
        job_id = insert_job(
            conn,
            services.settings,
            project_id=project_id,
            job_type=COPY_JOB,
            image_id=new_image_id,
            params={"source_image_id": source.id},
            now=now,
        )
    services.submit_job(job_id)
    return job_id


def run_copy_job(services: Services, job_id: str) -> None:
    """Run copy job ``job_id`` to its end, unless another worker has it or it is not INIT."""
    claim_and_run(services, job_id, COPY_PHASES, "copying", _copy)


def _source_row(services: Services, job: state.ClaimedJob) -> Any:
    """The active source image's row (with its check report): of the new image's project, or
    shared with it and accepted."""
    with services.db.connect() as conn:
        params = conn.execute(select(jobs.c.params).where(jobs.c.id == job.id)).scalar()
        target = conn.execute(select(images).where(images.c.id == job.image_id)).first()
        source_id = params.get("source_image_id") if isinstance(params, dict) else None
        source = (
            None
            if not isinstance(source_id, str) or target is None
            else conn.execute(select(images).where(images.c.id == source_id)).first()
        )
        if (
            source is not None
            and target is not None
            and source.project_id != target.project_id
            and not accepted_by(conn, target.project_id, source.id)
        ):
            source = None  # no longer shared with the copy's project (or another's id now)
    if target is None:
        raise JobFailedError(codes.INTERNAL, f"the image {job.image_id} no longer exists")
    if source is None or source.status != ImageStatus.ACTIVE or not source.blob:
        raise JobFailedError(
            codes.SOURCE_FILE_UNUSABLE,
            f"the source image {source_id} was deleted "
            "(or is no longer active, or no longer shared) before it could be copied",
        )
    return source


def _copy(
    services: Services, job: state.ClaimedJob, progress: state.Progress, scratch: list[Path]
) -> None:
    source = _source_row(services, job)
    if progress.cancelled():
        raise JobCancelledError
    size = int(source.size or 0)
    # a hard link takes no new disk, but the copy counts against the project's quota
    with room_for(services, job.project_id, stored=size):
        _link(services, job, source, size, progress, scratch)


def _link(
    services: Services,
    job: state.ClaimedJob,
    source: Any,
    size: int,
    progress: state.Progress,
    scratch: list[Path],
) -> None:
    """Link (or copy) the source's file under a temporary name and store it as the copy's."""
    progress.phase("store", size)
    images_dir = services.settings.images_dir
    images_dir.mkdir(parents=True, exist_ok=True)
    fmt = source.disk_format or Path(source.blob).suffix.lstrip(".")
    temporary = images_dir / f".job-{new_id()}.{fmt}"
    scratch.append(temporary)
    try:
        linked = link_or_copy(
            images_dir / source.blob,
            temporary,
            lambda done: progress.update(done / max(1, size), done, size),
            progress.cancelled,
        )
    except FileNotFoundError as exc:
        raise JobFailedError(
            codes.SOURCE_FILE_UNUSABLE,
            f"the source image {source.id} was deleted while it was being copied",
        ) from exc
    if not linked:
        metrics.BYTES_PROCESSED.labels("convert").inc(size)
    stored = temporary.stat().st_size
    if stored != size:
        raise JobFailedError(
            codes.INTERNAL,
            f"the source image's file is {stored} bytes, not the {size} its record says",
        )
    if progress.cancelled():
        raise JobCancelledError
    _store(services, job, temporary, fmt, source)


def _store(
    services: Services, job: state.ClaimedJob, temporary: Path, fmt: str, source: Any
) -> None:
    """Rename the file into place and make the image active with the source's facts."""
    images_dir = services.settings.images_dir
    blob = f"{job.image_id}.{fmt}"
    final = images_dir / blob
    os.replace(temporary, final)
    fsync_dir(images_dir)
    current = state.image_row(services, job.image_id)  # now: a Glance PATCH may have edited it
    props = dict(getattr(current, "properties", None) or {})
    props["__image_size"] = str(source.size)
    values = {
        "disk_format": source.disk_format,
        "size": source.size,
        "virtual_size": source.virtual_size,
        "checksum": source.checksum,
        "blob": blob,
        "properties": props,
        "report": copied_report(source.report),
    }
    activate(services, job, final, values)


__all__ = ["COPY_JOB", "copy_image", "run_copy_job"]
