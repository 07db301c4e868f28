"""Glance v2 image data use cases: upload, stage, import, download (no HTTP here).

Learned from Glance's v2 API (``glance/api/v2/image_data.py`` and ``images.py``'s import
action) and from the requests python-glanceclient 4.13.0 and openstacksdk 4.22.0 send
(captured on a loopback server):

* ``PUT /v2/images/{id}/file``: :func:`open_upload` checks the image before a byte is read
  (the caller's, ``queued``, no job, nothing staged: else 409 as Glance answers) and gives the
  size cap; the API layer streams the body into :attr:`UploadSlot.part`; :func:`commit_upload`
  stages it (:mod:`imageport.service.images.staging`) and starts the same
  ``imsNativeImportImageJob`` as ``PUT /v1/cloudimages/{id}/upload``, with the staged data as
  its source. The image then goes ``queued -> saving -> active | killed`` as every import.
* ``PUT /v2/images/{id}/stage`` then ``POST /v2/images/{id}/import``
  ``{"method": {"name": "glance-direct"}}``: :func:`commit_stage` keeps the data, and
  :func:`import_staged` starts the job later. ``web-download`` (and every other method) is
  refused: fetching a URL a user names from inside the service is a server-side request
  forgery risk (internal addresses, metadata services), and an image can be put in a bucket
  and registered instead.
* ``GET /v2/images/{id}/file``: :func:`stored_file`, the active image's stored file.

Data is capped while it streams at ``normal_import_max_bytes`` (and ``import_max_bytes``):
IMG.0059 naming IMG-SIZE, as an object that large is refused on the normal import path. The
Glance image's ``disk_format``, when set, is passed to the job as the declared format: a file
of another format fails IMG-FORMAT.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, RequestInvalid
from imageport.service.images import staging
from imageport.service.images.import_request import NATIVE_IMPORT_JOB, native_job_params
from imageport.service.images.lifecycle import check_accepts_data
from imageport.service.images.records import ImageRecord, image_row
from imageport.service.images.source_checks import check_import_offered
from imageport.service.jobs.manage import insert_job, running_job_of
from imageport.service.quotas import admit, write_room
from imageport.service.statuses import ImageStatus
from imageport.service.tables import images

IMPORT_METHODS = ("glance-direct",)
"""Import methods offered by ``POST /v2/images/{id}/import``."""
DATA_ORIGIN = "file,upload"
"""``__data_origin`` of an image whose file came through the Glance data routes."""
_REFUSED_METHODS = {
    "web-download": "web-download is not offered: fetching a URL named by a user from inside "
    "the service is a server-side request forgery risk; upload the file to a bucket and "
    "register it (PUT /v1/cloudimages/{id}/upload), or use glance-direct",
    "copy-image": "copy-image needs several stores; this service has one",
    "glance-download": "glance-download needs another Glance region; this service has none",
}


@dataclass(frozen=True, slots=True)
class UploadSlot:
    """Where the API layer streams one upload's body, and how many bytes it may have."""

    image_id: str
    part: Path
    limit: int


def upload_limit(services: Services) -> int:
    """Largest image file taken on the Glance routes (the normal import path's cap)."""
    settings = services.settings
    return min(settings.normal_import_max_bytes, settings.import_max_bytes)


def too_large(services: Services, size: int | None = None) -> RequestInvalid:
    """IMG.0059 naming IMG-SIZE (413: the body is refused while it streams)."""
    limit = upload_limit(services)
    what = "the image data is larger" if size is None else f"the image data is {size} bytes"
    return RequestInvalid(
        codes.FILE_TOO_LARGE,
        f"IMG-SIZE: {what} than the {limit} bytes the normal import takes; "
        "larger RAW or ZVHD2 files must use fast import (upload to a bucket, then "
        "POST /v2/cloudimages/quickimport/action)",
        status=413,
    )


def open_upload(
    services: Services, project_id: str, image_id: str, declared_size: int | None
) -> UploadSlot:
    """Check that the caller's image may take data now and give the slot for its body;
    ``declared_size`` (Content-Length or ``x-openstack-image-size``) is checked against the
    cap before anything is read."""
    check_import_offered(services.settings)
    with services.db.connect() as conn:
        check_accepts_data(conn, services, image_row(conn, project_id, image_id))
        admit(conn, services.settings, project_id)  # before the data, not after it
    if declared_size is not None and declared_size > upload_limit(services):
        raise too_large(services, declared_size)
    room = write_room(services, project_id, declared_size)  # staged data is the project's too
    return UploadSlot(
        image_id, staging.part_path(services.settings, image_id), min(upload_limit(services), room)
    )


def _commit(
    services: Services, project_id: str, slot: UploadSlot, size: int, *, start_job: bool
) -> str | None:
    """Stage the received body (removing the part file in all cases); with ``start_job`` also
    create the import job. The job id."""
    settings = services.settings
    staged: Path | None = None
    try:
        if size <= 0:
            raise RequestInvalid(codes.SOURCE_FILE_UNUSABLE, "the image data is empty")
        now = time_text(services.clock())
        with services.db.begin() as conn:
            row = image_row(conn, project_id, slot.image_id)
            check_accepts_data(conn, services, row)
            staged = staging.claim(settings, slot.part, slot.image_id)
            job_id = None
            if start_job:
                job_id = _insert_import_job(conn, services, row, size, now)
    except BaseException:
        if staged is not None:
            staging.remove(settings, slot.image_id)
        raise
    finally:
        slot.part.unlink(missing_ok=True)
    if job_id is not None:
        services.submit_job(job_id)
    return job_id


def _insert_import_job(conn: Connection, services: Services, row: Any, size: int, now: str) -> str:
    """The import job of the staged data of image ``row`` (inside the caller's transaction)."""
    params = native_job_params(services, row, object_size=size, staged=row.id)
    props = dict(row.properties or {})
    props["__data_origin"] = DATA_ORIGIN
    conn.execute(
        images.update().where(images.c.id == row.id).values(properties=props, updated_at=now)
    )
    return insert_job(
        conn,
        services.settings,
        project_id=row.project_id,
        job_type=NATIVE_IMPORT_JOB,
        image_id=row.id,
        params=params,
        now=now,
    )


def commit_upload(services: Services, project_id: str, slot: UploadSlot, size: int) -> str:
    """``PUT /v2/images/{id}/file`` received ``size`` bytes into the slot: start the import
    job; its id."""
    job_id = _commit(services, project_id, slot, size, start_job=True)
    assert job_id is not None
    return job_id


def commit_stage(services: Services, project_id: str, slot: UploadSlot, size: int) -> None:
    """``PUT /v2/images/{id}/stage`` received ``size`` bytes: keep them for the import."""
    _commit(services, project_id, slot, size, start_job=False)


def parse_import_method(body: object) -> str:
    """The method of an import request; ``glance-direct`` only (400 naming why otherwise)."""
    doc = body if isinstance(body, Mapping) else None
    method = doc.get("method") if doc is not None else None
    name = method.get("name") if isinstance(method, Mapping) else None
    if not isinstance(name, str):
        raise RequestInvalid(
            codes.BAD_REQUEST, 'the body must be {"method": {"name": "glance-direct"}}'
        )
    if name in IMPORT_METHODS:
        return name
    reason = _REFUSED_METHODS.get(name, f"import method {name[:64]!r} is not offered")
    raise RequestInvalid(codes.BAD_REQUEST, f"{reason} (offered: {', '.join(IMPORT_METHODS)})")


def import_staged(services: Services, project_id: str, image_id: str, body: object) -> str:
    """``POST /v2/images/{id}/import``: start the import job on the staged data; its id.
    409 when nothing was staged (or the image is no longer queued); IMG.0090 when an import
    job of the image already exists (a repeated import would run the data twice)."""
    parse_import_method(body)
    check_import_offered(services.settings)
    settings = services.settings
    now = time_text(services.clock())
    with services.db.begin() as conn:
        row = image_row(conn, project_id, image_id)
        if running_job_of(conn, image_id) is not None:  # a second import of the same data
            raise RequestInvalid(codes.IMAGE_BUSY, f"image {image_id} is already being imported")
        if not staging.has_staged(settings, image_id):
            raise Conflict(
                codes.STATE,
                f"image {image_id} has no staged data; PUT /v2/images/{{id}}/stage first",
            )
        if row.status != ImageStatus.QUEUED:
            raise Conflict(
                codes.STATE,
                f"image {image_id} is {row.status}; only a queued image can be imported",
            )
        size = staging.staged_path(settings, image_id).stat().st_size
        job_id = _insert_import_job(conn, services, row, size, now)
    services.submit_job(job_id)
    return job_id


def stored_file(services: Services, project_id: str, image_id: str) -> tuple[Path, int] | None:
    """The caller's active image's stored file and its size; None when it has no data
    (not active). :class:`NotFound` for another project's or a missing image."""
    with services.db.connect() as conn:
        image = ImageRecord.from_row(image_row(conn, project_id, image_id))
    blob = image.blob
    if image.status != ImageStatus.ACTIVE or not blob or "/" in blob or blob.startswith("."):
        return None
    path = services.settings.images_dir / blob
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    return path, size


def import_info() -> dict[str, object]:
    """``GET /v2/info/import``: the methods offered."""
    return {
        "import-methods": {
            "description": "Import methods available: glance-direct (stage the data with "
            "PUT /v2/images/{id}/stage, then import it). web-download is not "
            "offered (fetching user-named URLs from the server is an SSRF risk).",
            "type": "array",
            "value": list(IMPORT_METHODS),
        }
    }


def declared_size(values: Mapping[str, str]) -> int | None:
    """The body size a request announces (``Content-Length``, else glanceclient's
    ``x-openstack-image-size``); IMG.0001 for a value that is not a number."""
    for name in ("content-length", "x-openstack-image-size"):
        raw = values.get(name)
        if raw is None:
            continue
        raw = raw.strip()
        if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
            raise RequestInvalid(codes.BAD_REQUEST, f"{name} is not a number")
        return int(raw)
    return None


__all__ = [
    "IMPORT_METHODS",
    "UploadSlot",
    "commit_stage",
    "commit_upload",
    "declared_size",
    "import_info",
    "import_staged",
    "open_upload",
    "parse_import_method",
    "stored_file",
    "upload_limit",
]
