"""Records to the vendor's JSON documents (images, jobs, Glance pages).

An image is the Glance fields plus its properties flattened into the same object (every ``__``
value a string), plus ``self``, ``file`` and ``schema`` links. A ``killed`` image also carries
why, as two extra string properties: ``__error_code`` (the job's code, e.g. ``IMG-SAFE``) and
``__fail_reason`` (each failing rule with its first evidence line and its fix), so a user
reading the image sees the failing rules without finding the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from imageport.api.job_fields import job_with_entities
from imageport.service.images.queries import ImagePage
from imageport.service.images.records import ImageRecord, JobRecord
from imageport.service.jobs.boot_request import BOOT_TEST_JOB, boot_entities
from imageport.service.jobs.export_request import EXPORT_JOB, export_entities
from imageport.service.statuses import ImageStatus


def image_document(image: ImageRecord) -> dict[str, object]:
    """The image as ``GET /v2/images/{id}`` and the cloudimages list show it."""
    doc: dict[str, object] = dict(image.properties)
    if image.status == ImageStatus.KILLED:
        doc["__error_code"] = image.error_code or ""
        doc["__fail_reason"] = image.fail_reason or ""
    doc.update(
        {
            "id": image.id,
            "name": image.name,
            "status": image.status,
            "visibility": image.visibility,
            "owner": image.project_id,
            "protected": image.protected,
            "container_format": image.container_format,
            "disk_format": image.disk_format,
            "min_disk": image.min_disk,
            "min_ram": image.min_ram,
            "max_ram": None if image.max_ram is None else str(image.max_ram),
            "size": image.size,
            "virtual_size": image.virtual_size,
            "checksum": image.checksum,
            # the same sha256 where Glance clients look for a strong digest to verify downloads
            "os_hash_algo": "sha256" if image.checksum else None,
            "os_hash_value": image.checksum,
            "tags": list(image.tags),
            "created_at": image.created_at,
            "updated_at": image.updated_at,
            "active_at": image.active_at,
            "self": f"/v2/images/{image.id}",
            "file": f"/v2/images/{image.id}/file",
            "schema": "/v2/schemas/image",
        }
    )
    return doc


def images_document(page: ImagePage) -> dict[str, object]:
    """``GET /v2/cloudimages``: ``{"images": [...]}``."""
    return {"images": [image_document(i) for i in page.images]}


def glance_images_document(page: ImagePage, query: Sequence[tuple[str, str]]) -> dict[str, object]:
    """``GET /v2/images``: the images plus ``first``/``next`` links (the request's filters kept,
    the marker replaced) and ``schema``."""
    kept = [(k, v) for k, v in query if k not in ("marker", "limit")]
    first = [*kept, ("limit", str(page.limit))]
    doc: dict[str, object] = {
        "images": [image_document(i) for i in page.images],
        "schema": "/v2/schemas/images",
        "first": "/v2/images?" + urlencode(first),
    }
    if page.next_marker is not None:
        doc["next"] = "/v2/images?" + urlencode([*first, ("marker", page.next_marker)])
    return doc


def job_document(job: JobRecord, *, progress: bool = False) -> dict[str, object]:
    """``GET /v1/{project_id}/jobs/{id}`` (and with ``progress``, ``GET
    /v1/cloudimages/job/{id}``, whose entities add ``subJobId`` and the byte counts). An export
    job's entities also name the object
    (:func:`imageport.service.jobs.export_request.export_entities`), a boot-test job the
    firmwares it boots and their outcomes
    (:func:`imageport.service.jobs.boot_request.boot_entities`); a job whose image's check
    found warnings or notes names their rules in ``alarm_code``
    (:mod:`imageport.service.images.alarms`)."""
    entities: dict[str, object] = {
        "image_id": job.image_id,
        "image_name": job.image_name,
        "process_percent": round(job.percent / 100.0, 4),
        "current_task": job.phase,
    }
    if progress:
        entities.update(subJobId=None, bytes_done=job.bytes_done, bytes_total=job.bytes_total)
    if job.job_type == EXPORT_JOB:
        entities.update(export_entities(job.params))
    elif job.job_type == BOOT_TEST_JOB:
        entities.update(boot_entities(job.params))
    elif job.alarms:
        # the warnings and notes of the check (fail_reason has the errors); see
        # imageport.service.images.alarms
        entities["alarm_code"] = ",".join(job.alarms)
    error_code, fail_reason = job.error_code, job.fail_reason
    if job.sub_jobs:
        entities["sub_jobs_list"] = [sub.id for sub in job.sub_jobs]
        entities["sub_jobs_result"] = [_sub_job_document(sub) for sub in job.sub_jobs]
        failed = job.failed_sub_job
        if failed is not None:
            error_code = failed.error_code
            fail_reason = (
                f"data image {failed.image_name or failed.image_id} (sub-job {failed.id}): "
                f"{failed.fail_reason}"
            )
    return {
        "job_id": job.id,
        "job_type": job.job_type,
        "status": job.overall_status,
        "begin_time": job.begin_time,
        "end_time": job.overall_end_time,
        "error_code": error_code,
        "fail_reason": fail_reason,
        "cancel_requested": job.cancel_requested,
        "entities": entities,
    }


def _sub_job_document(job: JobRecord) -> dict[str, object]:
    """One of ``entities.sub_jobs_result``: the sub-job and its image (the SDK's
    ``SubJobResult``)."""
    return job_with_entities(job, {"image_id": job.image_id, "image_name": job.image_name})
