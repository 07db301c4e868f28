"""Creating servers (``POST /v1/{project_id}/cloudservers``, the SDK's CreatePostPaidServers, and
``POST /v1.1/{project_id}/cloudservers``, its CreateServers).

The body is checked field by field first (:mod:`.create_request`), then against the records,
in one transaction:

* ``imageRef``: an image the project owns or has accepted a share of (else ``Ecs.0031``, as for
  a missing one), ``active`` (``Ecs.0032``), a system disk (not a data or ISO image), x86, and
  stored as ``qcow2`` or ``raw`` (``Ecs.0005``);
* the flavor's memory is within the image's ``min_ram``/``max_ram`` (``Ecs.0005``);
* ``root_volume.size`` at least the image's ``min_disk`` and its virtual size (default: 40 GiB
  or ``min_disk`` when larger);
* ``key_name``: a key pair of the project (``Ecs.0314``);
* the project's server quota (``Ecs.0001``) and the host's vCPU and memory budget
  (``Ecs.0319``), :mod:`.quotas`.

``dry_run: true`` stops there: nothing is written, and the route answers 202 with no body.
Otherwise each server gets its row (BUILD, task ``spawning``, a fresh MAC address), and the
request one ``createServer`` job with a ``createSingleServer`` sub-job per server
(:mod:`.jobs`; each sub-job's id is its server's UUID without dashes, and its params keep the
key pair's public key and ``user_data`` for later starts: :mod:`.machines`). The job is
submitted to the queue; the answer names it and the servers' ids.

**Idempotency.** A request with an ``X-Client-Token`` (1-64 printable ASCII characters) gets a
job whose id is derived from the project and the token, so the same token again (a client's
retry after a lost answer) finds that job and gets the same answer, with nothing created twice,
even when both requests arrive at once (the second insert hits the same primary key). The job's
params keep the token and a digest of the request; the same token with another request is
``Ecs.0005``. The digest leaves out ``adminPass`` (it would be a password hash in the
database): a retry that only changes the password gets the first answer.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from imageport.limits import GiB
from imageport.service import codes
from imageport.service.clock import new_uuid, time_text
from imageport.service.context import Services
from imageport.service.errors import Forbidden, RequestInvalid
from imageport.service.images.import_request import DATA_IMAGE_TYPE, ISO_IMAGE_TYPE
from imageport.service.images.members import accepted_by
from imageport.service.ports import ServerHost
from imageport.service.servers import job_types as jt
from imageport.service.servers.create_request import (
    MAX_DISK_GIB,
    MIN_DISK_GIB,
    CreateRequest,
    Version,
    invalid,
    parse_create_request,
)
from imageport.service.servers.jobs import insert_batch
from imageport.service.servers.machines import CreateParams
from imageport.service.servers.network import new_mac
from imageport.service.servers.passwords import VAULT
from imageport.service.servers.quotas import HOST_LOCK, check_host_budget, check_server_quota
from imageport.service.servers.statuses import POWER_NOSTATE, TaskState, VmState, status_of
from imageport.service.statuses import ImageStatus
from imageport.service.tables import images, jobs, keypairs, servers
from imageport.settings import STORED_FORMATS

MAX_CLIENT_TOKEN = 64


@dataclass(frozen=True, slots=True)
class Created:
    """The answer: the job and the new servers' ids (None and none for a dry run)."""

    job_id: str | None
    server_ids: tuple[str, ...]


def require_host(services: Services) -> ServerHost:
    """The server host; ``Ecs.NOT_OFFERED`` (403) when this service runs none."""
    if services.host is None:
        raise Forbidden(
            codes.ECS_NOT_OFFERED,
            "this service does not run servers (it was started without a server host)",
        )
    return services.host


def check_client_token(value: str | None) -> str | None:
    """The ``X-Client-Token`` header, if given: 1-64 printable ASCII characters."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_CLIENT_TOKEN or not all(32 < ord(c) < 127 for c in value):
        raise invalid("X-Client-Token", f"must be 1-{MAX_CLIENT_TOKEN} printable ASCII characters")
    return value


def token_job_id(project_id: str, token: str) -> str:
    """The id of the job a request with ``token`` makes in ``project_id``."""
    return hashlib.sha256(f"{project_id}\n{token}".encode()).hexdigest()[:32]


def create_servers(
    services: Services,
    project_id: str,
    body: object,
    *,
    version: Version,
    client_token: str | None = None,
) -> Created:
    """Create the servers ``body`` asks for (see the module docstring)."""
    require_host(services)
    request = parse_create_request(services.settings, body, version)
    token = check_client_token(client_token)
    # a dry run makes nothing, so it neither finds nor takes the token's job
    job_id = None if token is None or request.dry_run else token_job_id(project_id, token)
    if job_id is not None:
        earlier = _earlier(services, project_id, job_id, request)
        if earlier is not None:
            return earlier
    try:
        return _create(services, project_id, request, token, job_id)
    except IntegrityError:
        if job_id is None:
            raise
        earlier = _earlier(services, project_id, job_id, request)  # the same token, at once
        if earlier is None:
            raise
        return earlier


def _earlier(
    services: Services, project_id: str, job_id: str, request: CreateRequest
) -> Created | None:
    """The answer of an earlier request with the same token (None: there was none)."""
    with services.db.connect() as conn:
        row = conn.execute(
            select(jobs.c.job_type, jobs.c.params).where(
                jobs.c.id == job_id, jobs.c.project_id == project_id
            )
        ).first()
    if row is None:
        return None
    params: dict[str, Any] = row.params if isinstance(row.params, dict) else {}
    if row.job_type != jt.CREATE_SERVERS or params.get("request_digest") != request.digest():
        raise invalid("X-Client-Token", "was already used for another request")
    ids = params.get("server_ids")
    return Created(job_id, tuple(str(i) for i in ids) if isinstance(ids, list) else ())


def _create(
    services: Services,
    project_id: str,
    request: CreateRequest,
    token: str | None,
    job_id: str | None,
) -> Created:
    now = time_text(services.clock())
    with HOST_LOCK, services.db.begin() as conn:
        image = _image(conn, project_id, request.image_ref)
        _check_ram(image, request)
        disk_gib = _disk_gib(image, request.disk_gib)
        public_key = _public_key(conn, project_id, request.key_name)
        check_server_quota(conn, services.settings, project_id, request.count)
        check_host_budget(
            conn,
            services.settings,
            request.flavor.vcpus * request.count,
            request.flavor.memory_mib * request.count,
        )
        if request.dry_run:
            return Created(None, ())
        server_ids = [new_uuid() for _ in request.names]
        macs = _macs(conn, request.count)
        firmware = (image.properties or {}).get("hw_firmware_type") or "bios"
        for server_id, name, mac in zip(server_ids, request.names, macs, strict=True):
            conn.execute(
                insert(servers).values(
                    id=server_id,
                    project_id=project_id,
                    name=name,
                    description=request.description,
                    status=status_of(VmState.BUILDING, TaskState.SPAWNING),
                    vm_state=VmState.BUILDING,
                    task_state=TaskState.SPAWNING,
                    power_state=POWER_NOSTATE,
                    flavor_id=request.flavor.id,
                    vcpus=request.flavor.vcpus,
                    memory_mib=request.flavor.memory_mib,
                    image_id=image.id,
                    disk_gib=disk_gib,
                    firmware=firmware if firmware in ("bios", "uefi") else "bios",
                    key_name=request.key_name,
                    metadata=dict(request.metadata),
                    availability_zone=request.availability_zone,
                    mac=mac,
                    ssh_port=None,
                    fault=None,
                    created_at=now,
                    updated_at=now,
                    launched_at=None,
                    deleted_at=None,
                )
            )
        user_data = (
            None if request.user_data is None else base64.b64encode(request.user_data).decode()
        )
        batch_id = insert_batch(
            conn,
            project_id=project_id,
            batch_type=jt.CREATE_SERVERS,
            subs=[
                (
                    server_id,
                    CreateParams(
                        server_id=server_id,
                        launch_index=index,
                        public_key=public_key,
                        user_data=user_data,
                        admin_pass_given=request.admin_pass is not None,
                    ).document(),
                )
                for index, server_id in enumerate(server_ids)
            ],
            now=now,
            params={
                "server_ids": server_ids,
                "client_token": token,
                "request_digest": request.digest(),
            },
            job_id=job_id,
            sub_ids=[jt.create_job_id(s) for s in server_ids],
        )
    if request.admin_pass is not None:
        for server_id in server_ids:
            VAULT.hold(server_id, request.admin_pass)
    services.submit_job(batch_id)
    return Created(batch_id, tuple(server_ids))


def _image(conn: Connection, project_id: str, image_id: str) -> Any:
    """The image row the project may boot (see the module docstring)."""
    row = conn.execute(select(images).where(images.c.id == image_id)).first()
    if row is None or (row.project_id != project_id and not accepted_by(conn, project_id, row.id)):
        raise RequestInvalid(
            codes.ECS_IMAGE_UNKNOWN,
            f"imageRef: no image {image_id!r} of this project or shared with it and accepted",
        )
    if row.status != ImageStatus.ACTIVE:
        raise RequestInvalid(
            codes.ECS_IMAGE_NOT_ACTIVE, f"imageRef: image {image_id} is {row.status}, not active"
        )
    props = row.properties if isinstance(row.properties, dict) else {}
    kind = props.get("virtual_env_type")
    if kind in (DATA_IMAGE_TYPE, ISO_IMAGE_TYPE):
        raise invalid("imageRef", f"image {image_id} is a {kind}, not a system disk image")
    if props.get("architecture", "x86_64") != "x86_64":
        raise invalid("imageRef", f"image {image_id} is for {props['architecture']}, not x86_64")
    if row.disk_format not in STORED_FORMATS or not row.blob:
        raise invalid(
            "imageRef", f"image {image_id} is stored as {row.disk_format}, which cannot be booted"
        )
    return row


def _check_ram(image: Any, request: CreateRequest) -> None:
    memory = request.flavor.memory_mib
    if memory < (image.min_ram or 0) or (image.max_ram and memory > image.max_ram):
        raise invalid(
            "flavorRef",
            f"{request.flavor.id} has {memory} MiB of memory; the image needs "
            f"{image.min_ram or 0}-{image.max_ram or 'any'} MiB",
        )


def _disk_gib(image: Any, asked: int | None) -> int:
    """The system disk size: ``asked``, or the default; never below the image's needs."""
    virtual_gib = -(-int(image.virtual_size or 0) // GiB)
    needed = max(MIN_DISK_GIB, int(image.min_disk or 0), virtual_gib)
    if needed > MAX_DISK_GIB:
        raise invalid("imageRef", f"the image needs a disk of {needed} GiB, more than the most")
    if asked is None:
        return needed
    if asked < needed:
        raise invalid(
            "root_volume.size", f"the image needs at least {needed} GiB (its min_disk and size)"
        )
    return asked


def _public_key(conn: Connection, project_id: str, key_name: str | None) -> str | None:
    if key_name is None:
        return None
    key = conn.execute(
        select(keypairs.c.public_key).where(
            keypairs.c.project_id == project_id, keypairs.c.name == key_name
        )
    ).scalar()
    if key is None:
        raise RequestInvalid(
            codes.ECS_KEYPAIR_UNKNOWN, f"key_name: the project has no key pair {key_name!r}"
        )
    return str(key)


def _macs(conn: Connection, count: int) -> Sequence[str]:
    """``count`` MAC addresses no server (not deleted) has."""
    taken = set(
        conn.execute(select(servers.c.mac).where(servers.c.vm_state != VmState.DELETED)).scalars()
    )
    found: list[str] = []
    while len(found) < count:
        mac = new_mac()
        if mac not in taken:
            taken.add(mac)
            found.append(mac)
    return found


__all__ = ["Created", "check_client_token", "create_servers", "require_host", "token_job_id"]
