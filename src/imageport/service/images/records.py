"""What the image and job use cases return: read-only records of the ``images``/``jobs`` rows.

The API layer renders these into the vendor's JSON (:mod:`imageport.api.ims.render`); the
service layer never builds HTTP documents. Reading a row is the only place the columns are
named, so a schema change shows up here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, Row, select

from imageport.service import codes
from imageport.service.errors import Forbidden, NotFound
from imageport.service.images.alarms import alarm_rules
from imageport.service.statuses import VISIBLE_MEMBER
from imageport.service.tables import image_members, images, jobs

MAX_SUB_JOBS = 3
"""Most sub-jobs read for one job (a registration has at most three ``data_images``)."""

#: image columns listed and rendered (``report`` is kept out of listings: it can be large)
IMAGE_COLUMNS = [c for c in images.c if c.name != "report"]


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image as the API shows it."""

    id: str
    project_id: str
    name: str
    status: str
    visibility: str
    protected: bool
    container_format: str
    disk_format: str | None
    min_disk: int
    min_ram: int
    max_ram: int | None
    size: int | None
    virtual_size: int | None
    checksum: str | None
    properties: Mapping[str, str]
    tags: Sequence[str]
    error_code: str | None
    fail_reason: str | None
    created_at: str
    updated_at: str
    active_at: str | None
    blob: str | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> ImageRecord:
        props = row.properties if isinstance(row.properties, dict) else {}
        return cls(
            id=row.id,
            project_id=row.project_id,
            name=row.name,
            status=row.status,
            visibility=row.visibility,
            protected=bool(row.protected),
            container_format=row.container_format,
            disk_format=row.disk_format,
            min_disk=row.min_disk,
            min_ram=row.min_ram,
            max_ram=row.max_ram,
            size=row.size,
            virtual_size=row.virtual_size,
            checksum=row.checksum,
            properties={str(k): str(v) for k, v in props.items() if v is not None},
            tags=[str(t) for t in (row.tags or [])],
            error_code=row.error_code,
            fail_reason=row.fail_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            active_at=row.active_at,
            blob=row.blob,
        )


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job, with the name of its image (None once the image is deleted)."""

    id: str
    project_id: str
    job_type: str
    status: str
    image_id: str | None
    image_name: str | None
    phase: str | None
    percent: float
    bytes_done: int
    bytes_total: int
    error_code: str | None
    fail_reason: str | None
    cancel_requested: bool
    begin_time: str
    end_time: str | None
    params: Mapping[str, object] = field(default_factory=dict)
    #: The jobs of a registration's ``data_images`` (``params.sub_jobs``), each its own record.
    sub_jobs: tuple[JobRecord, ...] = ()
    #: The rule IDs of the warnings and notes of its image's check report
    #: (:func:`imageport.service.images.alarms.alarm_rules`).
    alarms: tuple[str, ...] = ()

    @property
    def overall_status(self) -> str:
        """The status of the whole request: a job with sub-jobs has ended only when they all
        have, and has failed when any of them failed (its own status otherwise)."""
        statuses = [self.status, *(sub.status for sub in self.sub_jobs)]
        if "FAIL" in statuses:
            return "FAIL"
        if any(status in ("INIT", "RUNNING") for status in statuses[1:]):
            return "RUNNING" if self.status != "INIT" else "INIT"
        return self.status

    @property
    def failed_sub_job(self) -> JobRecord | None:
        """The first sub-job that failed (when the job itself did not)."""
        if self.status == "FAIL":
            return None
        return next((sub for sub in self.sub_jobs if sub.status == "FAIL"), None)

    @property
    def overall_end_time(self) -> str | None:
        """When the last of the job and its sub-jobs ended (None while any runs)."""
        ends = [self.end_time, *(sub.end_time for sub in self.sub_jobs)]
        if self.overall_status not in ("SUCCESS", "FAIL") or any(e is None for e in ends):
            return self.end_time if self.overall_status == "FAIL" else None
        return max(e for e in ends if e is not None)

    @classmethod
    def from_row(cls, row: Row[Any], image_name: str | None) -> JobRecord:
        return cls(
            id=row.id,
            project_id=row.project_id,
            job_type=row.job_type,
            status=row.status,
            image_id=row.image_id,
            image_name=image_name,
            phase=row.phase,
            percent=float(row.percent),
            bytes_done=row.bytes_done,
            bytes_total=row.bytes_total,
            error_code=row.error_code,
            fail_reason=row.fail_reason,
            cancel_requested=bool(row.cancel_requested),
            begin_time=row.begin_time,
            end_time=row.end_time,
            params=dict(row.params or {}),
        )


def image_row(conn: Connection, project_id: str, image_id: str) -> Row[Any]:
    """The project's own image row, for a use case only the owner may run.

    :class:`Forbidden` (``IMG.0092``) when the image is another project's shared with this one
    (pending or accepted: the caller can see it, so 404 would be a lie), :class:`NotFound`
    (``IMG.NOT_FOUND``) otherwise. Reads that members may make go through
    :mod:`imageport.service.images.members` instead."""
    if len(image_id) > 64:
        raise NotFound(codes.NOT_FOUND, "image not found")
    row = conn.execute(
        select(*IMAGE_COLUMNS).where(images.c.id == image_id, images.c.project_id == project_id)
    ).first()
    if row is None:
        if member_status(conn, project_id, image_id) in VISIBLE_MEMBER:
            raise Forbidden(
                codes.NOT_OWNER,
                f"image {image_id} is shared with this project by its owner: only the owner "
                "can change, export, share or delete it (copy it to have your own)",
            )
        raise NotFound(codes.NOT_FOUND, f"image {image_id!r} not found")
    return row


def member_status(conn: Connection, project_id: str, image_id: str) -> str | None:
    """The status of the share of ``image_id`` with ``project_id`` (None: not a member)."""
    status = conn.execute(
        select(image_members.c.status).where(
            image_members.c.image_id == image_id, image_members.c.member_id == project_id
        )
    ).scalar()
    return None if status is None else str(status)


def job_record(conn: Connection, project_id: str, job_id: str) -> JobRecord:
    """The project's job; :class:`NotFound` (``IMG.NOT_FOUND``) otherwise."""
    if len(job_id) > 64:
        raise NotFound(codes.NOT_FOUND, "job not found")
    row = conn.execute(
        select(jobs).where(jobs.c.id == job_id, jobs.c.project_id == project_id)
    ).first()
    if row is None:
        raise NotFound(codes.NOT_FOUND, f"job {job_id!r} not found")
    name: str | None = None
    alarms: tuple[str, ...] = ()
    if row.image_id is not None:
        # the project's own image only: a deleted image's id may since name another
        # project's image (Glance clients may choose ids), whose name must not show here
        image = conn.execute(
            select(images.c.name, images.c.report).where(
                images.c.id == row.image_id, images.c.project_id == project_id
            )
        ).first()
        if image is not None:
            name = image.name
            alarms = alarm_rules(image.report)
    record = replace(JobRecord.from_row(row, name), alarms=alarms)
    subs = record.params.get("sub_jobs")
    if isinstance(subs, list) and subs:
        found = []
        for sub in subs[:MAX_SUB_JOBS]:
            if isinstance(sub, str) and sub != job_id:
                with contextlib.suppress(NotFound):  # never deleted today; shown if present
                    found.append(job_record(conn, project_id, sub))
        record = replace(record, sub_jobs=tuple(r for r in found if not r.sub_jobs))
    return record
