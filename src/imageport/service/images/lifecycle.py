"""Image use cases that create, register (initialized, uninitialized, fast) and delete images.

* :func:`create_image_from_file` — ``POST /v2/cloudimages/action`` (and ``/v2.1/``): validate,
  check the object, create a ``queued`` image and an ``imsImportImageJob`` job, submit it.
* :func:`quick_import` — ``POST /v2/cloudimages/quickimport/action``: the same with
  ``quick_import`` set (``os_version`` required, files up to ``import_max_bytes``); the
  fast-import work itself belongs to the job.
* :func:`create_glance_image` — ``POST /v2/images``: a ``queued`` image with metadata only.
* :func:`register_image_file` — ``PUT /v1/cloudimages/{id}/upload``: give a queued image its file
  through an ``imsNativeImportImageJob`` job (``uninitialized`` = true: the image is fixed
  at the console of a server booted from it).
* :func:`delete_image` — ``DELETE /v2/images/{id}``: remove the row and the stored file.

Reads are in :mod:`imageport.service.images.queries`, updates in
:mod:`imageport.service.images.updates`, jobs in :mod:`imageport.service.jobs.manage`.
Every function takes the caller's ``project_id``; another project's image is :class:`NotFound`.

``__is_config_init`` ("is the image's initial configuration done") is ``"true"`` for images
registered from a file through the cloudimages API unless the body says ``is_config_init:
false``, and ``"false"`` for the Glance path, which exists to register uninitialized images.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from imageport.service import codes
from imageport.service.clock import new_uuid, time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, Forbidden, RequestInvalid
from imageport.service.images import os_versions, staging
from imageport.service.images import validation as v
from imageport.service.images.records import ImageRecord, image_row
from imageport.service.images.source_checks import check_import_offered, check_source
from imageport.service.jobs.manage import insert_job, running_job_of
from imageport.service.statuses import ImageStatus
from imageport.service.tables import images

IMPORT_JOB = "imsImportImageJob"
NATIVE_IMPORT_JOB = "imsNativeImportImageJob"

_ACTION_FIELDS = frozenset(
    {
        "name",
        "description",
        "image_url",
        "min_disk",
        "os_version",
        "os_type",
        "is_config",
        "is_config_init",
        "cmk_id",
        "type",
        "architecture",
        "hw_firmware_type",
        "is_quick_import",
        "data_images",
        "tags",
        "image_tags",
        "enterprise_project_id",
        "min_ram",
        "max_ram",
        "instance_id",
        "volume_id",
        "license_type",
    }
)
_GLANCE_FIELDS = frozenset(
    {
        "name",
        "__os_version",
        "container_format",
        "disk_format",
        "min_disk",
        "min_ram",
        "tags",
        "visibility",
        "protected",
        "id",
        "hw_firmware_type",
        "architecture",
        "__description",
    }
)
OWNER_SPECIFIED = frozenset(
    {
        "owner_specified.openstack.md5",
        "owner_specified.openstack.sha256",
        "owner_specified.openstack.object",
    }
)
"""String properties openstacksdk's ``create_image`` sends (the file's digests and name as the
client saw them); kept on the image as they are, at most 255 characters each."""
GLANCE_DISK_FORMATS = frozenset(
    {"zvhd", "qcow2", "vhd", "raw", "vhdx", "qed", "vdi", "qcow", "zvhd2", "vmdk"}
)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ARCH_PROPERTY = {"x86": "x86_64", "arm": "aarch64"}


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """A validated file-import request (the fields the job and the image row need)."""

    name: str
    description: str
    url: v.ImageUrl
    min_disk: int
    min_ram: int
    max_ram: int | None
    os_version: str | None
    architecture: str
    firmware: str | None
    image_type: str
    is_config: bool
    is_config_init: bool
    quick: bool
    tags: list[str]
    enterprise_project_id: str | None


def parse_import_request(body: object, *, quick: bool) -> ImportRequest:
    """Validate a cloudimages action or quick-import body (see :mod:`validation` for codes)."""
    doc = v.require_object(body, _ACTION_FIELDS)
    v.refuse_other_sources(doc)
    quick = quick or v.check_bool(doc.get("is_quick_import"), "is_quick_import")
    name = v.check_name(doc.get("name"))
    description = v.check_description(doc.get("description"))
    url = v.check_image_url(doc.get("image_url"))
    min_disk = v.check_min_disk(doc.get("min_disk"))
    min_ram, max_ram = v.check_ram(doc.get("min_ram"), doc.get("max_ram"))
    os_version = v.check_os_version(doc.get("os_version"), required=quick)
    v.check_os_type(doc.get("os_type"), os_version)
    architecture = v.check_architecture(doc.get("architecture"))
    firmware = v.check_firmware(doc.get("hw_firmware_type"), architecture)
    v.check_license_type(doc.get("license_type"))
    return ImportRequest(
        name=name,
        description=description,
        url=url,
        min_disk=min_disk,
        min_ram=min_ram,
        max_ram=max_ram,
        os_version=os_version,
        architecture=architecture,
        firmware=firmware,
        image_type=v.check_image_type(doc.get("type")),
        is_config=v.check_bool(doc.get("is_config"), "is_config"),
        is_config_init=v.check_bool(doc.get("is_config_init"), "is_config_init", default=True),
        quick=quick,
        tags=v.check_tags(doc.get("tags"), doc.get("image_tags")),
        enterprise_project_id=v.check_enterprise_project(doc.get("enterprise_project_id")),
    )


def base_properties(
    *,
    os_version: str | None,
    description: str,
    config_init: bool,
    architecture: str,
    firmware: str | None,
    data_origin: str,
    image_type: str = "ECS",
) -> dict[str, str]:
    """The ``__`` properties (all strings) a new image starts with; the job overwrites the OS
    ones with what it detects in the guest."""
    version = os_version or os_versions.OTHER_LINUX_64
    return {
        "__imagetype": "private",
        "__isregistered": "true",
        "__image_source_type": "uds",
        "__originalimagename": "",
        "__data_origin": data_origin,
        "__root_origin": "file",
        "__description": description,
        "__os_version": version,
        "__os_type": "Linux",
        "__os_bit": str(os_versions.bits_of(version)),
        "__platform": os_versions.platform_of(version),
        "__is_config_init": "true" if config_init else "false",
        "hw_firmware_type": firmware or "bios",
        "architecture": _ARCH_PROPERTY[architecture],
        "__support_kvm": "true",
        "__support_arm": "true" if architecture == "arm" else "false",
        "virtual_env_type": "FusionCompute"
        if image_type in ("ECS", "FusionCompute")
        else image_type,
        "__lazyloading": "true",
        "__os_feature_list": "{}",
    }


def job_params(
    services: Services,
    *,
    url: v.ImageUrl | None,
    object_size: int,
    object_etag: str,
    quick: bool,
    is_config: bool,
    uninitialized: bool,
    min_disk: int,
    os_version: str | None,
    architecture: str,
    firmware: str | None,
    staged: str | None = None,
    declared_format: str | None = None,
) -> dict[str, object]:
    """The job's ``params`` document (every key always present, as
    :class:`~imageport.service.jobs.state.JobParams` reads it). The source is the
    object ``url``, or (``staged``, an image id) data received on the Glance routes and staged
    by :mod:`imageport.service.images.staging`; ``declared_format`` is the image's Glance
    ``disk_format``, which the file must then be (rule IMG-FORMAT)."""
    return {
        "bucket": None if url is None else url.bucket,
        "key": None if url is None else url.key,
        "staged": staged,
        "object_size": object_size,
        "object_etag": object_etag,
        "quick_import": quick,
        "is_config": is_config,
        "uninitialized": uninitialized,
        "min_disk": min_disk,
        "os_version": os_version,
        "architecture": architecture,
        "hw_firmware_type": firmware,
        "stored_format": services.settings.stored_format,
        "declared_format": declared_format,
    }


def native_job_params(
    services: Services,
    row: Any,
    *,
    url: v.ImageUrl | None = None,
    object_size: int,
    object_etag: str = "",
    staged: str | None = None,
) -> dict[str, object]:
    """The params of an ``imsNativeImportImageJob`` giving the queued image ``row`` its file
    (the OS, architecture and firmware it was created with). Data sent on the Glance routes
    (``staged``) must be of the image's declared ``disk_format``, as Glance means it; a file
    registered from a bucket (``url``) may be of any accepted format, as the vendor converts
    whatever it is given (its ``disk_format`` there only describes the result)."""
    props = dict(row.properties or {})
    os_version = props.get("__os_version")
    return job_params(
        services,
        url=url,
        object_size=object_size,
        object_etag=object_etag,
        quick=False,
        is_config=False,
        uninitialized=True,
        min_disk=row.min_disk,
        os_version=None if os_version == os_versions.OTHER_LINUX_64 else os_version,
        architecture="arm" if props.get("architecture") == "aarch64" else "x86",
        firmware=props.get("hw_firmware_type"),
        staged=staged,
        declared_format=row.disk_format if staged is not None else None,
    )


def check_accepts_data(conn: Connection, services: Services, row: Any) -> None:
    """IMG.0090 while the image has a job; ``IMG.STATE`` (409) unless it is queued with no
    staged data: the states in which an image may be given its file."""
    if running_job_of(conn, row.id) is not None:
        raise RequestInvalid(codes.IMAGE_BUSY, f"image {row.id} is still being created")
    if row.status != ImageStatus.QUEUED:
        raise Conflict(
            codes.STATE, f"image {row.id} is {row.status}; only a queued image can be given a file"
        )
    if staging.has_staged(services.settings, row.id):
        raise Conflict(
            codes.STATE, f"image {row.id} already has staged data; import it or delete the image"
        )


def id_taken(image_id: str) -> Conflict:
    """409 for a client-chosen ``id`` (Glance's ``POST /v2/images {"id"}``) that an image
    already has, in any project: ids are unique across the service (files, jobs and staged data
    are named by them). The answer is the same whoever holds the id, and does not say that an
    image exists: to another project the id stays as unknown as a missing one (404 everywhere
    else); what remains is that this one id cannot be chosen, which Glance answers too and
    which tells nothing about ids the caller does not already know (122 random bits)."""
    return Conflict(
        codes.NAME_TAKEN,
        f"id {image_id} cannot be used: choose another id, or omit id "
        "to let the service choose one",
    )


def insert_image_row(conn: Connection, values: dict[str, object]) -> None:
    """Insert an image row; IMG.0009 when a concurrent request took its name (or id) first."""
    try:
        with conn.begin_nested():
            conn.execute(insert(images).values(**values))
    except IntegrityError as exc:  # a concurrent request took the name (or the id) first
        raise RequestInvalid(
            codes.NAME_TAKEN,
            f"an image named {values['name']!r} already exists, or its id cannot be used",
        ) from exc


def create_image_from_file(
    services: Services, project_id: str, body: object, *, quick: bool = False
) -> str:
    """Register the file named by ``image_url`` as a private image; the id of the job that
    imports it (the job is submitted to the queue)."""
    request = parse_import_request(body, quick=quick)
    obj = check_source(services, project_id, request.url, quick=request.quick)
    now = time_text(services.clock())
    image_id = new_uuid()
    props = base_properties(
        os_version=request.os_version,
        description=request.description,
        config_init=request.is_config_init,
        architecture=request.architecture,
        firmware=request.firmware,
        data_origin=f"file,{request.url}",
        image_type=request.image_type,
    )
    if request.enterprise_project_id is not None:
        props["enterprise_project_id"] = request.enterprise_project_id
    params = job_params(
        services,
        url=request.url,
        object_size=obj.size,
        object_etag=obj.etag,
        quick=request.quick,
        is_config=request.is_config,
        uninitialized=False,
        min_disk=request.min_disk,
        os_version=request.os_version,
        architecture=request.architecture,
        firmware=request.firmware,
    )
    with services.db.begin() as conn:
        v.check_unique_name(conn, project_id, request.name)
        v.check_quota(conn, project_id, services.settings.image_quota)
        insert_image_row(
            conn,
            dict(
                id=image_id,
                project_id=project_id,
                name=request.name,
                status=ImageStatus.QUEUED,
                visibility="private",
                protected=False,
                container_format="bare",
                disk_format=None,
                min_disk=request.min_disk,
                min_ram=request.min_ram,
                max_ram=request.max_ram,
                properties=props,
                tags=request.tags,
                created_at=now,
                updated_at=now,
            ),
        )
        job_id = insert_job(
            conn,
            services.settings,
            project_id=project_id,
            job_type=IMPORT_JOB,
            image_id=image_id,
            params=params,
            now=now,
        )
    services.submit_job(job_id)
    return job_id


def quick_import(services: Services, project_id: str, body: object) -> str:
    """``POST /v2/cloudimages/quickimport/action``: :func:`create_image_from_file` with fast
    import (``os_version`` required; files up to ``import_max_bytes``)."""
    return create_image_from_file(services, project_id, body, quick=True)


def create_glance_image(services: Services, project_id: str, body: object) -> ImageRecord:
    """``POST /v2/images``: a ``queued`` private image with metadata and no file yet.

    ``name`` is required; ``__os_version`` defaults to ``Other Linux(64 bit)``; ``min_disk``
    defaults to 40 (the smallest system disk) and must be 40-1024 when given;
    ``container_format`` is ``bare``; ``disk_format`` one of the ten importable formats;
    ``visibility`` ``private``; ``tags`` free strings (``"k=v"`` by convention).
    """
    check_import_offered(services.settings)
    doc = v.require_object(body, _GLANCE_FIELDS | OWNER_SPECIFIED)
    name = v.check_name(doc.get("name"))
    os_version = v.check_os_version(doc.get("__os_version"))
    min_disk = (
        v.MIN_SYSTEM_DISK_GIB
        if doc.get("min_disk") is None
        else v.check_min_disk(doc.get("min_disk"))
    )
    min_ram, _ = v.check_ram(doc.get("min_ram"), None)
    if doc.get("container_format", "bare") != "bare":
        raise RequestInvalid(codes.BAD_REQUEST, "container_format must be bare")
    disk_format = doc.get("disk_format")
    if disk_format is not None and (
        not isinstance(disk_format, str) or disk_format not in GLANCE_DISK_FORMATS
    ):
        raise RequestInvalid(
            codes.FORMAT_NOT_SUPPORTED,
            f"disk_format {str(disk_format)[:32]!r} is not "
            f"supported; use one of {', '.join(sorted(GLANCE_DISK_FORMATS))}",
        )
    if doc.get("visibility", "private") != "private":
        raise RequestInvalid(codes.BAD_REQUEST, "visibility must be private")
    image_id = new_uuid() if doc.get("id") is None else doc["id"]
    if not isinstance(image_id, str) or not _UUID.fullmatch(image_id):
        raise RequestInvalid(codes.BAD_REQUEST, "id must be a lower-case UUID")
    architecture = v.check_architecture(doc.get("architecture"))
    props = base_properties(
        os_version=os_version,
        description=v.check_description(doc.get("__description")),
        config_init=False,
        architecture=architecture,
        firmware=v.check_firmware(doc.get("hw_firmware_type"), architecture),
        data_origin="",
    )
    for key in sorted(OWNER_SPECIFIED & doc.keys()):
        value = doc[key]
        if not isinstance(value, str) or len(value) > 255:
            raise RequestInvalid(
                codes.BAD_REQUEST, f"{key} must be a string of at most 255 characters"
            )
        props[key] = value
    now = time_text(services.clock())
    with services.db.begin() as conn:
        v.check_unique_name(conn, project_id, name)
        v.check_quota(conn, project_id, services.settings.image_quota)
        if conn.execute(select(images.c.id).where(images.c.id == image_id)).first():
            raise id_taken(image_id)
        insert_image_row(
            conn,
            dict(
                id=image_id,
                project_id=project_id,
                name=name,
                status=ImageStatus.QUEUED,
                visibility="private",
                protected=v.check_bool(doc.get("protected"), "protected"),
                container_format="bare",
                disk_format=disk_format,
                min_disk=min_disk,
                min_ram=min_ram,
                max_ram=None,
                properties=props,
                tags=v.check_glance_tags(doc.get("tags")),
                created_at=now,
                updated_at=now,
            ),
        )
        return ImageRecord.from_row(image_row(conn, project_id, image_id))


def register_image_file(services: Services, project_id: str, image_id: str, body: object) -> str:
    """``PUT /v1/cloudimages/{id}/upload {"image_url"}``: import the file into the queued image
    as an uninitialized image; the job id. ``IMG.STATE`` (409) unless the image is queued
    with no job running."""
    doc = v.require_object(body, frozenset({"image_url"}))
    url = v.check_image_url(doc.get("image_url"))
    with services.db.connect() as conn:
        row = image_row(conn, project_id, image_id)
    obj = check_source(services, project_id, url, quick=False)
    params = native_job_params(services, row, url=url, object_size=obj.size, object_etag=obj.etag)
    props = dict(row.properties or {})
    props["__data_origin"] = f"file,{url}"
    now = time_text(services.clock())
    with services.db.begin() as conn:
        check_accepts_data(conn, services, image_row(conn, project_id, image_id))
        conn.execute(
            images.update().where(images.c.id == image_id).values(properties=props, updated_at=now)
        )
        job_id = insert_job(
            conn,
            services.settings,
            project_id=project_id,
            job_type=NATIVE_IMPORT_JOB,
            image_id=image_id,
            params=params,
            now=now,
        )
    services.submit_job(job_id)
    return job_id


def delete_image(services: Services, project_id: str, image_id: str, body: object) -> None:
    """``DELETE /v2/images/{id}`` (optional body ``{"delete_backup": bool}``): remove the image
    and its stored file. ``IMG.0090`` while its job is INIT or RUNNING; ``IMG.PROTECTED``
    (403) for a protected image."""
    if body is not None:
        doc = body if isinstance(body, Mapping) else None
        if doc is None or set(doc) - {"delete_backup"}:
            raise RequestInvalid(codes.BAD_REQUEST, "the body may only hold delete_backup")
        v.check_bool(doc.get("delete_backup"), "delete_backup")
    with services.db.begin() as conn:
        row = image_row(conn, project_id, image_id)
        busy = running_job_of(conn, image_id)
        if busy is not None:
            raise RequestInvalid(
                codes.IMAGE_BUSY,
                f"image {image_id} has a job in progress "
                f"({busy.id}: an import, export or copy); cancel it or wait "
                "for it to end",
            )
        if row.protected:
            raise Forbidden(
                codes.PROTECTED, f"image {image_id} is protected; set protected to false first"
            )
        conn.execute(delete(images).where(images.c.id == image_id))
    if row.blob:
        _remove_blob(services, row.blob)
    staging.remove(services.settings, image_id)


def _remove_blob(services: Services, blob: str) -> None:
    """Delete the stored file ``blob`` (a bare file name under ``images_dir``, never a path)."""
    if "/" in blob or "\\" in blob or blob in (".", "..") or not blob:
        return
    (services.settings.images_dir / blob).unlink(missing_ok=True)


__all__ = [
    "IMPORT_JOB",
    "NATIVE_IMPORT_JOB",
    "ImportRequest",
    "check_accepts_data",
    "create_glance_image",
    "create_image_from_file",
    "delete_image",
    "insert_image_row",
    "native_job_params",
    "parse_import_request",
    "quick_import",
    "register_image_file",
]
