"""Image use cases that create, register (initialized, uninitialized, fast) and delete images.

* :func:`create_image_from_file` — ``POST /v2/cloudimages/action`` (and ``/v2.1/``): validate,
  check the object and its header (:mod:`.header_checks`: a file the job would refuse from its
  header alone, e.g. a ``min_disk`` below its virtual size, is refused at once), create a
  ``queued`` image and an ``imsImportImageJob`` job, submit it.
* :func:`create_data_image` — ``POST /v1/cloudimages/dataimages/action``: the same for a data
  image (``imsImportDataImageJob``); a registration's ``data_images`` are data images too, each
  with a sub-job of the registration's job.
* :func:`quick_import` — ``POST /v2/cloudimages/quickimport/action``: the same with
  ``quick_import`` set (``os_version`` required, files up to ``import_max_bytes``); the
  fast-import work itself belongs to the job.
* :func:`create_glance_image` — ``POST /v2/images``: a ``queued`` image with metadata only.
* :func:`register_image_file` — ``PUT /v1/cloudimages/{id}/upload``: give a queued image its file
  through an ``imsNativeImportImageJob`` job (``uninitialized`` = true: the image is fixed
  at the console of a server booted from it).
* :func:`delete_image` — ``DELETE /v2/images/{id}``: remove the row and the stored file
  (refused while a server that is not deleted was made from the image: its system disk is an
  overlay on the stored file).

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
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from imageport.service import codes
from imageport.service.clock import new_uuid, time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, Forbidden, RequestInvalid
from imageport.service.images import staging
from imageport.service.images import validation as v
from imageport.service.images.boot_results import remove_screenshots
from imageport.service.images.header_checks import check_header
from imageport.service.images.import_request import (
    NATIVE_IMPORT_JOB,
    ImportRequest,
    base_properties,
    check_boot_test,
    job_params,
    native_job_params,
    parse_data_image_request,
    parse_import_request,
)
from imageport.service.images.members import delete_members_of
from imageport.service.images.records import ImageRecord, image_row
from imageport.service.images.source_checks import check_import_offered, check_source
from imageport.service.jobs.boot_request import check_boot_offered
from imageport.service.jobs.manage import insert_job, link_sub_jobs, running_job_of
from imageport.service.ports import GuestEditError, ObjectInfo
from imageport.service.servers.statuses import VmState
from imageport.service.statuses import ImageStatus
from imageport.service.tables import images, servers

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
LICENSE_TYPE = "__license_type"
"""The property keeping a file import's ``license_type`` (``platform`` or ``byol``)."""
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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
    """Register the file named by ``image_url`` as a private image (with its ``data_images``,
    each a data image of its own); the id of the job that imports it (the job is submitted to
    the queue)."""
    return _register(services, project_id, parse_import_request(body, quick=quick))


def create_data_image(services: Services, project_id: str, body: object) -> str:
    """``POST /v1/cloudimages/dataimages/action``: register the file named by ``image_url``
    as a private data image; the id of its ``imsImportDataImageJob``."""
    return _register(services, project_id, parse_data_image_request(body))


def _register(services: Services, project_id: str, request: ImportRequest) -> str:
    """Check every file, then in one transaction add the images and their jobs, and submit
    them. A registration with ``data_images`` is one job for the whole request, as the
    vendor's: the system image's job, whose ``params.sub_jobs`` name one
    ``imsImportDataImageJob`` per data image (each runs on its own; the parent job shows them
    in ``entities.sub_jobs_list``/``sub_jobs_result`` and ends with the last of them). Each
    file's header is judged before anything is written (:mod:`.header_checks`)."""
    requests = (request, *request.data_images)
    if request.boot_test:
        check_boot_offered(services, ("bios",), field="boot_test")
    if request.is_config:
        check_configuration_offered(services)
    objects = [check_source(services, project_id, r.url, quick=r.quick) for r in requests]
    with services.db.connect() as conn:  # refused before the files are read; again below
        for r in requests:
            v.check_unique_name(conn, project_id, r.name)
        v.check_quota(conn, project_id, services.settings.image_quota, adding=len(requests))
    for index, (r, obj) in enumerate(zip(requests, objects, strict=True)):
        try:
            check_header(
                services, r.url, obj, min_disk=r.min_disk, quick=r.quick, disk_kind=r.disk_kind
            )
        except RequestInvalid as refused:
            if index == 0:
                raise
            raise RequestInvalid(  # say which of the request's files it is
                refused.code,
                f"data_images[{index - 1}] ({r.name}): {refused.message}",
                field="data_images",
            ) from refused
    now = time_text(services.clock())
    with services.db.begin() as conn:
        for r in requests:
            v.check_unique_name(conn, project_id, r.name)
        v.check_quota(conn, project_id, services.settings.image_quota, adding=len(requests))
        job_ids = [
            _insert_image_and_job(conn, services, project_id, r, obj, now)
            for r, obj in zip(requests, objects, strict=True)
        ]
        parent, subs = job_ids[0], job_ids[1:]
        if subs:
            link_sub_jobs(conn, parent, subs)
    for job_id in job_ids:
        services.submit_job(job_id)
    return parent


def check_configuration_offered(services: Services) -> None:
    """``IMG.0001`` naming ``is_config`` unless this service can configure images (a guest
    editor, with what it needs installed)."""
    if services.editor is None:
        raise RequestInvalid(
            codes.BAD_REQUEST,
            "is_config: this service does not offer automatic configuration",
            field="is_config",
        )
    try:
        services.editor.ready()
    except GuestEditError as exc:
        raise RequestInvalid(
            codes.BAD_REQUEST,
            f"is_config: automatic configuration cannot run here: {exc}",
            field="is_config",
        ) from exc


def _insert_image_and_job(
    conn: Connection,
    services: Services,
    project_id: str,
    request: ImportRequest,
    obj: ObjectInfo,
    now: str,
) -> str:
    """Insert the ``queued`` image of ``request`` and its ``INIT`` job; the job's id."""
    image_id = new_uuid()
    props = base_properties(
        os_version=request.os_version,
        description=request.description,
        config_init=request.is_config_init,
        architecture=request.architecture,
        firmware=request.firmware,
        data_origin=f"file,{request.url}",
        image_type=request.image_type,
        os_type=request.os_type,
    )
    if request.enterprise_project_id is not None:
        props["enterprise_project_id"] = request.enterprise_project_id
    if request.license_type is not None:
        # the vendor's image model has no field for it: an extension property, as a string
        props[LICENSE_TYPE] = request.license_type
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
        disk_kind=request.disk_kind,
        boot_test=request.boot_test,
    )
    return insert_queued_image(
        conn,
        services,
        project_id=project_id,
        image_id=image_id,
        name=request.name,
        min_disk=request.min_disk,
        min_ram=request.min_ram,
        max_ram=request.max_ram,
        properties=props,
        tags=request.tags,
        job_type=request.job_type,
        params=params,
        now=now,
    )


def insert_queued_image(
    conn: Connection,
    services: Services,
    *,
    project_id: str,
    image_id: str,
    name: str,
    min_disk: int,
    min_ram: int | None,
    max_ram: int | None,
    properties: dict[str, Any],
    tags: list[str],
    job_type: str,
    params: dict[str, object],
    now: str,
) -> str:
    """Insert a ``queued`` private image with no file yet (no disk format) and the ``INIT``
    job of ``job_type`` that will fill it; the job's id. The steps every "make an image and a
    job" request shares (from a file, from a server)."""
    insert_image_row(
        conn,
        dict(
            id=image_id,
            project_id=project_id,
            name=name,
            status=ImageStatus.QUEUED,
            visibility="private",
            protected=False,
            container_format="bare",
            disk_format=None,
            min_disk=min_disk,
            min_ram=min_ram,
            max_ram=max_ram,
            properties=properties,
            tags=tags,
            created_at=now,
            updated_at=now,
        ),
    )
    return insert_job(
        conn,
        services.settings,
        project_id=project_id,
        job_type=job_type,
        image_id=image_id,
        params=params,
        now=now,
    )


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
    """``PUT /v1/cloudimages/{id}/upload {"image_url", "boot_test"?}``: import the file into
    the queued image as an uninitialized image; the job id. ``IMG.STATE`` (409) unless the
    image is queued with no job running; a file the job would refuse from its header alone (a
    ``min_disk`` below its virtual size, a format not accepted) is refused at once
    (:mod:`.header_checks`) and the image stays as it was. ``boot_test`` (ours): end the
    import with a boot test (:mod:`imageport.service.jobs.import_boot`)."""
    doc = v.require_object(body, frozenset({"image_url", "boot_test"}))
    url = v.check_image_url(doc.get("image_url"))
    boot_test = check_boot_test(doc.get("boot_test"))
    if boot_test:
        check_boot_offered(services, ("bios",))
    with services.db.connect() as conn:
        row = image_row(conn, project_id, image_id)
        check_accepts_data(conn, services, row)  # before reading the file; again below
    obj = check_source(services, project_id, url, quick=False)
    check_header(services, url, obj, min_disk=row.min_disk, quick=False)
    params = native_job_params(
        services, row, url=url, object_size=obj.size, object_etag=obj.etag, boot_test=boot_test
    )
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
    """``DELETE /v2/images/{id}`` (optional body ``{"delete_backup": bool}``): remove the image,
    its shares with other projects, its stored file and its boot tests' screenshots.
    ``IMG.0090`` while its job is INIT or RUNNING; ``IMG.PROTECTED`` (403) for a protected
    image; ``IMG.IN_USE`` (409) while a server (of any project: a shared image's members may
    boot it) that is not deleted was made from it, since its system disk is an overlay on the
    stored file."""
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
        _refuse_in_use(conn, image_id)
        delete_members_of(conn, image_id)  # its shares end with it
        conn.execute(delete(images).where(images.c.id == image_id))
    if row.blob:
        _remove_blob(services, row.blob)
    staging.remove(services.settings, image_id)
    remove_screenshots(services.settings, image_id)


def _refuse_in_use(conn: Connection, image_id: str) -> None:
    """``IMG.IN_USE`` (409) while a server that is not deleted was made from the image."""
    users = conn.execute(
        select(func.count())
        .select_from(servers)
        .where(servers.c.image_id == image_id, servers.c.vm_state != VmState.DELETED)
    ).scalar_one()
    if users:
        raise Conflict(
            codes.IMAGE_IN_USE,
            f"image {image_id} is in use by {users} server(s), whose system disks are made "
            "from it; delete them first",
        )


def _remove_blob(services: Services, blob: str) -> None:
    """Delete the stored file ``blob`` (a bare file name under ``images_dir``, never a path)."""
    if "/" in blob or "\\" in blob or blob in (".", "..") or not blob:
        return
    (services.settings.images_dir / blob).unlink(missing_ok=True)


__all__ = [
    "check_accepts_data",
    "create_data_image",
    "create_glance_image",
    "create_image_from_file",
    "delete_image",
    "insert_image_row",
    "insert_queued_image",
    "quick_import",
    "register_image_file",
]
