"""Making a private image from a server: ``POST /v2/cloudimages/action {"name", "instance_id",
...}`` (the vendor's SDK: ``ImsClient.create_image``), the end of the path for images that were
not ready for the cloud (registered uninitialized, booted, fixed in a server).

:func:`create_image` is the route's one use case: a body naming a server (``instance_id``) makes
an image from that server (:func:`create_image_from_server`); any other body registers a file
(:func:`imageport.service.images.lifecycle.create_image_from_file`).

The request is checked at once, with the codes of the other ways to create an image
(:mod:`.validation`): ``name``, ``description``, ``tags``/``image_tags``, ``min_ram``/``max_ram``,
``type``, ``architecture``, ``hw_firmware_type``, ``enterprise_project_id`` as for a file. The
fields of the other creation modes are refused with ``IMG.0001`` naming the field (``image_url``,
``min_disk``, ``os_version`` ...: the image's disk is the server's, its size the server's system
disk and its system the one the job finds on it); ``data_images`` with ``IMG.SOURCE`` (servers
here have no data disks); ``cmk_id`` with ``IMG.0095`` as everywhere. The server must be the
caller's (another project's is ``IMG.NOT_FOUND``, 404, as a missing one), ``ACTIVE`` or
``SHUTOFF`` with no task under way (``IMG.STATE``, 409: BUILD, ERROR, DELETED, a reboot or a
stop under way, another image being made of it), with a system disk of 40-1024 GiB (the vendor's
rule; ``IMG.0055``). The name must be free (``IMG.0009``), the project under its image quota
(``IMG.0015``) and its unfinished jobs (``IMG.0194``).

The image is created ``queued`` with its job (``imsCreateImageByInstance``, the vendor's job
type), in one transaction, and the job submitted; the answer is the job's id. The image starts
with:

* ``min_disk`` = the server's system disk (GiB); ``min_ram``/``max_ram`` as requested;
* ``__data_origin`` = ``instance,<server id>`` (the vendor's form) and ``__originalimagename``
  = the server's image (the vendor's "parent image"); no ``__root_origin``: the vendor sets it
  (``file``) on images imported from a file, and this one was not;
* the architecture and firmware requested, else the server's image's architecture and the
  server's firmware; the OS properties of the server's image until the job finds the guest's;
* ``__is_config_init`` ``false``, until the job's check decides
  (:func:`~imageport.service.images.properties.initialization_done`).

The job is :mod:`imageport.service.jobs.server_image_job`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from imageport.service import codes
from imageport.service.clock import new_uuid, time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, NotFound, RequestInvalid
from imageport.service.images import lifecycle, os_versions
from imageport.service.images import validation as v
from imageport.service.images.import_request import base_properties, job_params
from imageport.service.servers.statuses import ServerStatus
from imageport.service.tables import images, servers

SERVER_IMAGE_JOB = "imsCreateImageByInstance"
"""The job of an image made from a server (the vendor's job type)."""
DATA_ORIGIN_PREFIX = "instance,"
"""``__data_origin`` of an image made from a server: ``instance,<server id>``."""
#: Server statuses an image can be made from: running, or shut off.
SERVER_STATUSES = (ServerStatus.ACTIVE, ServerStatus.SHUTOFF)

_FIELDS = frozenset(
    {
        "name",
        "description",
        "instance_id",
        "tags",
        "image_tags",
        "min_ram",
        "max_ram",
        "type",
        "architecture",
        "hw_firmware_type",
        "enterprise_project_id",
    }
)
#: Fields of the other creation modes, refused next to ``instance_id`` (IMG.0001), with why.
_OTHER_MODES: Mapping[str, str] = {
    "image_url": "it names a file to import; the image is made from the server's disk",
    "min_disk": "the image's min_disk is the size of the server's system disk",
    "os_version": "the job finds the system on the server's disk",
    "os_type": "the job finds the system on the server's disk",
    "is_config": "an image from a server is taken as it is",
    "is_config_init": "the job's check decides it (__is_config_init)",
    "is_quick_import": "fast import is for files",
    "license_type": "it goes with a file import",
    "volume_id": "it names a volume; give the server in instance_id",
}
_SERVER_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_ARCHITECTURE_OF = {"x86_64": "x86", "aarch64": "arm"}


@dataclass(frozen=True, slots=True)
class ServerImageRequest:
    """A validated request to make an image from a server."""

    name: str
    description: str
    server_id: str
    min_ram: int
    max_ram: int | None
    image_type: str
    #: ``x86``/``arm`` as requested; None: the server's image's
    architecture: str | None
    #: ``bios``/``uefi`` as requested; None: the server's
    firmware: str | None
    tags: list[str]
    enterprise_project_id: str | None


def names_a_server(body: object) -> bool:
    """Whether a cloudimages action body asks for an image from a server (``instance_id``)."""
    return isinstance(body, dict) and body.get("instance_id") not in (None, "")


def create_image(services: Services, project_id: str, body: object) -> str:
    """``POST /v2/cloudimages/action``: an image from the server the body names, or from the
    file it names; the id of the job that makes it."""
    if names_a_server(body):
        return create_image_from_server(services, project_id, body)
    return lifecycle.create_image_from_file(services, project_id, body)


def parse_server_image_request(body: object) -> ServerImageRequest:
    """Validate a cloudimages action body naming a server (see the module docstring)."""
    doc = v.require_object(body, _FIELDS | _OTHER_MODES.keys() | {"data_images", "cmk_id"})
    for field, why in _OTHER_MODES.items():
        if doc.get(field) not in (None, False, "", []):
            raise RequestInvalid(codes.BAD_REQUEST, f"{field} does not go with instance_id: {why}")
    if doc.get("data_images") not in (None, []):
        raise RequestInvalid(
            codes.SOURCE_NOT_OFFERED,
            "data_images: servers here have no data disks; only the system disk becomes an image",
        )
    if doc.get("cmk_id") not in (None, ""):
        raise RequestInvalid(
            codes.KMS_KEY_NOT_FOUND,
            "cmk_id: no KMS key can be found (encrypted images are not offered here)",
        )
    server_id = doc.get("instance_id")
    if not isinstance(server_id, str) or not _SERVER_ID.fullmatch(server_id):
        raise RequestInvalid(codes.BAD_REQUEST, "instance_id must be the id of a server")
    architecture = doc.get("architecture")
    firmware = doc.get("hw_firmware_type")
    min_ram, max_ram = v.check_ram(doc.get("min_ram"), doc.get("max_ram"))
    return ServerImageRequest(
        name=v.check_name(doc.get("name")),
        description=v.check_description(doc.get("description")),
        server_id=server_id,
        min_ram=min_ram,
        max_ram=max_ram,
        image_type=v.check_image_type(doc.get("type")),
        architecture=None if architecture is None else v.check_architecture(architecture),
        firmware=None
        if firmware is None
        else v.check_firmware(firmware, v.check_architecture(architecture)),
        tags=v.check_tags(doc.get("tags"), doc.get("image_tags")),
        enterprise_project_id=v.check_enterprise_project(doc.get("enterprise_project_id")),
    )


def usable_server(conn: Connection, project_id: str, server_id: str) -> Any:
    """The caller's server ``server_id``, if an image can be made from it now (see the module
    docstring for the refusals)."""
    server = conn.execute(
        select(servers).where(servers.c.id == server_id, servers.c.project_id == project_id)
    ).first()
    if server is None:
        raise NotFound(codes.NOT_FOUND, f"server {server_id} not found")
    if server.status not in SERVER_STATUSES:
        raise Conflict(
            codes.STATE,
            f"server {server_id} is {server.status}; an image can be made from an ACTIVE or "
            "SHUTOFF server",
        )
    if server.task_state is not None:
        raise Conflict(
            codes.STATE,
            f"server {server_id} is busy ({server.task_state}); try again once it is done",
        )
    if not v.MIN_SYSTEM_DISK_GIB <= server.disk_gib <= v.MAX_SYSTEM_DISK_GIB:
        raise RequestInvalid(
            codes.DISK_OR_RAM_INVALID,
            f"server {server_id} has a {server.disk_gib} GiB system disk; an image can be made "
            f"from a system disk of {v.MIN_SYSTEM_DISK_GIB}-{v.MAX_SYSTEM_DISK_GIB} GiB",
        )
    return server


def create_image_from_server(services: Services, project_id: str, body: object) -> str:
    """Make a private image from the caller's server named in ``body``; the id of its
    ``imsCreateImageByInstance`` job (submitted to the queue)."""
    request = parse_server_image_request(body)
    if services.host is None:
        raise RequestInvalid(
            codes.SOURCE_NOT_OFFERED,
            "this service runs no servers: an image can only be registered from a file here",
        )
    now = time_text(services.clock())
    with services.db.begin() as conn:
        server = usable_server(conn, project_id, request.server_id)
        v.check_unique_name(conn, project_id, request.name)
        v.check_quota(conn, project_id, services.settings.image_quota)
        source = conn.execute(select(images).where(images.c.id == server.image_id)).first()
        source_props: Mapping[str, Any] = (source.properties if source is not None else None) or {}
        architecture = request.architecture or _ARCHITECTURE_OF.get(
            str(source_props.get("architecture")), "x86"
        )
        firmware = v.check_firmware(request.firmware or server.firmware, architecture)
        os_version = source_props.get("__os_version")
        if not isinstance(os_version, str) or os_versions.find(os_version) is None:
            os_version = None
        props = base_properties(
            os_version=os_version,
            description=request.description,
            config_init=False,
            architecture=architecture,
            firmware=firmware,
            data_origin=f"{DATA_ORIGIN_PREFIX}{server.id}",
            image_type=request.image_type,
        )
        props["__originalimagename"] = server.image_id
        del props["__root_origin"]  # the vendor's mark of an image imported from a file
        if request.enterprise_project_id is not None:
            props["enterprise_project_id"] = request.enterprise_project_id
        params = job_params(
            services,
            url=None,
            object_size=0,
            object_etag="",
            quick=False,
            is_config=False,
            uninitialized=False,
            min_disk=server.disk_gib,
            os_version=os_version,
            architecture=architecture,
            firmware=firmware,
        )
        params["server_id"] = server.id
        job_id = lifecycle.insert_queued_image(
            conn,
            services,
            project_id=project_id,
            image_id=new_uuid(),
            name=request.name,
            min_disk=server.disk_gib,
            min_ram=request.min_ram,
            max_ram=request.max_ram,
            properties=props,
            tags=request.tags,
            job_type=SERVER_IMAGE_JOB,
            params=params,
            now=now,
        )
    services.submit_job(job_id)
    return job_id


__all__ = [
    "DATA_ORIGIN_PREFIX",
    "SERVER_IMAGE_JOB",
    "SERVER_STATUSES",
    "ServerImageRequest",
    "create_image",
    "create_image_from_server",
    "names_a_server",
    "parse_server_image_request",
    "usable_server",
]
