"""The batch routes of image sharing (the vendor's extension API; the rules of sharing are in
:mod:`imageport.service.images.members`).

* ``POST /v1/cloudimages/members {"images", "projects"}`` (:func:`batch_add`): the owner shares
  every image with every project (a share that exists is left as it is);
* ``PUT /v1/cloudimages/members {"images", "project_id", "status"}`` (:func:`batch_update`):
  the member accepts or rejects the images shared with it (``project_id`` is its own);
* ``DELETE /v1/cloudimages/members {"images", "projects"}`` (:func:`batch_delete`): the owner
  stops sharing every image with every project (each must be a member of each).

The body is checked first (400 ``IMG.0001``): 1-:data:`MAX_BATCH_IMAGES` image UUIDs and
1-:data:`MAX_BATCH_PROJECTS` project ids, duplicates dropped; ``domains``, ``organizations``
and ``vault_id`` are refused (there are no accounts, organizations or CBR vaults here). Each
route then answers ``{"job_id"}`` at once, as the vendor does, of a job
(:data:`ADD_JOB`, :data:`UPDATE_JOB`, :data:`DELETE_JOB`) that has already ended: the work is a
few rows, done in one transaction, so the job is ``SUCCESS`` with every pair done, or ``FAIL``
with none done and ``error_code``/``fail_reason`` naming the first image or project that could
not be. The job is read with the job routes like any other, has no check report, and never
reaches the queue.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from sqlalchemy import Connection, insert
from sqlalchemy.exc import IntegrityError

from imageport import metrics
from imageport.service import codes
from imageport.service.clock import new_id, time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, RequestInvalid, ServiceError
from imageport.service.images import validation as v
from imageport.service.images.members import (
    PROJECT_ID,
    add_shares,
    check_answer,
    check_project_id,
    check_projects,
    refuse_unoffered,
    remove_share,
    require_membership,
    set_status,
    shareable_row,
)
from imageport.service.images.records import image_row
from imageport.service.statuses import JobStatus
from imageport.service.tables import jobs

ADD_JOB = "imsAddImageMembersJob"
UPDATE_JOB = "imsUpdateImageMembersJob"
DELETE_JOB = "imsDelImageMembersJob"
MEMBER_JOBS = (ADD_JOB, UPDATE_JOB, DELETE_JOB)
"""The job types of the batch routes (they check no image file: no report)."""
MAX_BATCH_IMAGES = 100
"""Most images one batch request names (ours; the vendor documents none)."""
MAX_BATCH_PROJECTS = 100
"""Most projects one batch request names (ours; with :data:`MAX_BATCH_IMAGES`, at most 10,000
shares are written by one request)."""

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _id_list(
    doc: Mapping[str, object], field: str, pattern: re.Pattern[str], cap: int
) -> list[str]:
    """``doc[field]``: a non-empty list of at most ``cap`` ids of ``pattern``, duplicates
    dropped (IMG.0001 otherwise)."""
    value = doc.get(field)
    if not isinstance(value, list) or not value:
        raise RequestInvalid(codes.BAD_REQUEST, f"{field} must be a non-empty list of ids")
    if len(value) > cap:
        raise RequestInvalid(codes.BAD_REQUEST, f"{field} may name at most {cap} ids")
    ids: list[str] = []
    for item in value:
        if not isinstance(item, str) or not pattern.fullmatch(item):
            shown = str(item)[:64] if isinstance(item, str) else type(item).__name__
            raise RequestInvalid(codes.BAD_REQUEST, f"{field}: {shown!r} is not a valid id")
        if item not in ids:
            ids.append(item)
    return ids


Work = Callable[[Connection, str], None]


def _run_batch(
    services: Services,
    project_id: str,
    job_type: str,
    image_ids: Sequence[str],
    params: dict[str, object],
    work: Work,
) -> str:
    """Do ``work`` in one transaction and record it as a job that has ended: SUCCESS, or
    FAIL with the refusal's code and message and nothing changed; the job's id."""
    now = time_text(services.clock())
    try:
        with services.db.begin() as conn:
            work(conn, now)
            job_id = _ended_job(conn, project_id, job_type, image_ids, params, now, None)
    except ServiceError as error:
        refusal: ServiceError | None = error
    except IntegrityError:  # a concurrent request changed the same shares first
        refusal = Conflict(
            codes.STATE, "the shares were changed by another request meanwhile; send it again"
        )
    else:
        refusal = None
    if refusal is not None:
        with services.db.begin() as conn:
            job_id = _ended_job(conn, project_id, job_type, image_ids, params, now, refusal)
    metrics.JOBS_FINISHED.labels(
        job_type=job_type, status=JobStatus.FAIL if refusal else JobStatus.SUCCESS
    ).inc()
    return job_id


def _ended_job(
    conn: Connection,
    project_id: str,
    job_type: str,
    image_ids: Sequence[str],
    params: dict[str, object],
    now: str,
    refusal: ServiceError | None,
) -> str:
    job_id = new_id()
    conn.execute(
        insert(jobs).values(
            id=job_id,
            project_id=project_id,
            job_type=job_type,
            status=JobStatus.FAIL if refusal else JobStatus.SUCCESS,
            # entities.image_id: the image when there is one (several: see params)
            image_id=image_ids[0] if len(image_ids) == 1 else None,
            params=params,
            phase=None,
            percent=0.0 if refusal else 100.0,
            bytes_done=0,
            bytes_total=0,
            error_code=refusal.code if refusal else None,
            fail_reason=refusal.message if refusal else None,
            cancel_requested=False,
            attempts=1,
            begin_time=now,
            end_time=now,
        )
    )
    return job_id


_BATCH_FIELDS = frozenset({"images", "projects", "domains", "organizations"})
_NO_ACCOUNTS = "images are shared with projects here (there are no accounts or organizations)"


def _batch_request(body: object) -> tuple[list[str], list[str]]:
    doc = v.require_object(body, _BATCH_FIELDS)
    refuse_unoffered(doc, ("domains", "organizations"), _NO_ACCOUNTS)
    return (
        _id_list(doc, "images", _UUID, MAX_BATCH_IMAGES),
        _id_list(doc, "projects", PROJECT_ID, MAX_BATCH_PROJECTS),
    )


def batch_add(services: Services, project_id: str, body: object) -> str:
    """``POST /v1/cloudimages/members``: share every image with every project; the job id."""
    image_ids, project_ids = _batch_request(body)

    def work(conn: Connection, now: str) -> None:
        check_projects(conn, project_id, project_ids)
        for image_id in image_ids:
            shareable_row(conn, project_id, image_id)
            add_shares(conn, image_id, project_ids, now)

    params: dict[str, object] = {"images": image_ids, "projects": project_ids}
    return _run_batch(services, project_id, ADD_JOB, image_ids, params, work)


def batch_update(services: Services, project_id: str, body: object) -> str:
    """``PUT /v1/cloudimages/members``: the caller (a member) accepts or rejects the images
    shared with it; the job id. ``project_id`` must be the caller's project."""
    doc = v.require_object(body, frozenset({"images", "project_id", "status", "vault_id"}))
    refuse_unoffered(doc, ("vault_id",), "there are no CBR vaults (full-server images) here")
    image_ids = _id_list(doc, "images", _UUID, MAX_BATCH_IMAGES)
    if check_project_id(doc.get("project_id"), "project_id") != project_id:
        raise RequestInvalid(
            codes.BAD_REQUEST,
            "project_id must be the caller's project: a member answers for itself",
        )
    status = check_answer(doc.get("status"))

    def work(conn: Connection, now: str) -> None:
        for image_id in image_ids:
            require_membership(conn, project_id, image_id)
            set_status(conn, image_id, project_id, status, now)

    params: dict[str, object] = {"images": image_ids, "status": str(status)}
    return _run_batch(services, project_id, UPDATE_JOB, image_ids, params, work)


def batch_delete(services: Services, project_id: str, body: object) -> str:
    """``DELETE /v1/cloudimages/members``: the owner stops sharing every image with every
    project (each must be a member of each image); the job id."""
    image_ids, project_ids = _batch_request(body)

    def work(conn: Connection, now: str) -> None:
        for image_id in image_ids:
            image_row(conn, project_id, image_id)
            for member in project_ids:
                remove_share(conn, image_id, member)

    params: dict[str, object] = {"images": image_ids, "projects": project_ids}
    return _run_batch(services, project_id, DELETE_JOB, image_ids, params, work)


__all__ = [
    "ADD_JOB",
    "DELETE_JOB",
    "MAX_BATCH_IMAGES",
    "MAX_BATCH_PROJECTS",
    "MEMBER_JOBS",
    "UPDATE_JOB",
    "batch_add",
    "batch_delete",
    "batch_update",
]
