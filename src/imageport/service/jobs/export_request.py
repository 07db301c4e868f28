"""Export an image to a bucket (the vendor's ExportImage): the request, checked synchronously.

:func:`export_image` serves ``POST /v1/cloudimages/{image_id}/file`` with the body
``{"bucket_url": "bucket:key", "file_format": "qcow2", "is_quick_export": false}``: it checks
the request, then inserts an ``imsNativeExportImageJob`` job (:mod:`.export_job` does the
work) and submits it. Checks, in order:

============= ====== ==================================================================
code          status raised when
============= ====== ==================================================================
IMG.0001      400    the body is not an object, has other fields, ``is_quick_export`` is
                     not a boolean, or ``file_format`` is missing (normal export)
IMG.0017      400    ``bucket_url`` is not ``bucket:key`` (IMG.0109 bad bucket name,
                     IMG.0175 a space in the folder or file name)
IMG.NOT_FOUND 404    no such image in the caller's project
IMG.STATE     409    the image is not ``active`` (it has no stored file yet, or failed)
IMG.0072      400    ``file_format`` is not one of :data:`EXPORT_FORMATS`; or, for a quick
                     export, not the stored file's own format; an ISO image exported
                     other than quickly (it is an ISO file, not a disk to convert)
IMG.0069      400    the bucket does not exist or is another project's (one answer)
IMG.0058      400    the bucket is not of the STANDARD storage class
============= ====== ==================================================================

An object already at the key is replaced when the job commits, as an S3 PUT does (the old
object stays readable until the new one is complete). A quick export
(``is_quick_export: true``) writes the stored file as it is, in its own format; the vendor
says ``file_format`` cannot be given then, we accept it when it names that format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, RequestInvalid
from imageport.service.images import validation as v
from imageport.service.images.records import image_row
from imageport.service.images.source_checks import STANDARD, check_bucket_access
from imageport.service.jobs.manage import insert_job
from imageport.service.statuses import ImageStatus

EXPORT_JOB = "imsNativeExportImageJob"
#: ``file_format`` values: the vendor's four, then raw and zvhd2 (ours).
EXPORT_FORMATS = ("qcow2", "vhd", "zvhd", "vmdk", "raw", "zvhd2")
_FIELDS = frozenset({"bucket_url", "file_format", "is_quick_export"})


@dataclass(frozen=True, slots=True)
class ExportParams:
    """The export job's ``params`` document, read defensively."""

    bucket: str
    key: str
    #: the format written: the requested one, or the stored one for a quick export
    file_format: str
    quick: bool

    @classmethod
    def from_document(cls, doc: object) -> ExportParams:
        d: Mapping[str, Any] = doc if isinstance(doc, dict) else {}

        def text(name: str) -> str:
            value = d.get(name)
            return value if isinstance(value, str) else ""

        return cls(
            bucket=text("bucket"),
            key=text("key"),
            file_format=text("file_format"),
            quick=d.get("quick") is True,
        )

    def document(self) -> dict[str, object]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "file_format": self.file_format,
            "quick": self.quick,
        }


def check_file_format(value: object, *, quick: bool, stored: str) -> str:
    """The format to write: ``value`` (IMG.0072 unless in :data:`EXPORT_FORMATS`), or for a
    quick export the stored format (``value`` may only repeat it). An ISO image (stored
    ``iso``) is exported only as it is: a quick export (IMG.0072 otherwise)."""
    if value is not None and not isinstance(value, str):
        raise RequestInvalid(codes.BAD_REQUEST, "file_format must be a string")
    fmt = value.lower() if isinstance(value, str) and value else None
    if quick:
        if fmt is not None and fmt != stored:
            raise RequestInvalid(
                codes.FORMAT_NOT_SUPPORTED,
                f"a quick export writes the stored file as it is "
                f"({stored}); omit file_format or give {stored}",
            )
        return stored
    if stored == "iso":
        raise RequestInvalid(
            codes.FORMAT_NOT_SUPPORTED,
            "an ISO image is the ISO file it was registered from, not a disk to convert: "
            "export it as it is with is_quick_export true (and no file_format)",
        )
    if fmt is None:
        raise RequestInvalid(
            codes.BAD_REQUEST, "file_format is required: one of " + ", ".join(EXPORT_FORMATS)
        )
    if fmt not in EXPORT_FORMATS:
        raise RequestInvalid(
            codes.FORMAT_NOT_SUPPORTED,
            f"file_format {fmt[:32]!r} is not supported; use one of " + ", ".join(EXPORT_FORMATS),
        )
    return fmt


def export_image(services: Services, project_id: str, image_id: str, body: object) -> str:
    """Check the request (see the module docstring), insert the export job and submit it; the
    job id."""
    doc = v.require_object(body, _FIELDS)
    url = v.check_image_url(doc.get("bucket_url"), "bucket_url")
    quick = v.check_bool(doc.get("is_quick_export"), "is_quick_export")
    now = time_text(services.clock())
    with services.db.begin() as conn:
        row = image_row(conn, project_id, image_id)
        if row.status != ImageStatus.ACTIVE or not row.blob or not row.disk_format:
            raise Conflict(
                codes.STATE,
                f"image {image_id} is {row.status}; only an active image can be exported",
            )
        fmt = check_file_format(doc.get("file_format"), quick=quick, stored=row.disk_format)
        bucket = check_bucket_access(services.store.get_bucket(url.bucket), url.bucket, project_id)
        if bucket.storage_class != STANDARD:
            raise RequestInvalid(
                codes.NOT_STANDARD_STORAGE,
                f"IMG-STORAGE-CLASS: bucket {bucket.name!r} is of "
                f"storage class {bucket.storage_class}; images are exported "
                "to STANDARD buckets only",
            )
        params = ExportParams(url.bucket, url.key, fmt, quick)
        job_id = insert_job(
            conn,
            services.settings,
            project_id=project_id,
            job_type=EXPORT_JOB,
            image_id=image_id,
            params=params.document(),
            now=now,
        )
    services.submit_job(job_id)
    return job_id


def export_entities(params: Mapping[str, object]) -> dict[str, object]:
    """What an export job's ``entities`` add to the image's: ``bucket_url`` and
    ``file_format``, and once it succeeded the object's ``object_size``, ``object_etag``
    (its md5, quoted, as S3 shows it) and ``object_sha256``."""
    p = ExportParams.from_document(dict(params))
    doc: dict[str, object] = {
        "bucket_url": f"{p.bucket}:{p.key}",
        "file_format": p.file_format,
        "is_quick_export": p.quick,
    }
    result = params.get("result")
    if isinstance(result, dict):
        for name in ("object_size", "object_etag", "object_sha256"):
            if name in result:
                doc[name] = result[name]
    return doc
