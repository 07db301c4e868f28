"""What the server use cases return: read-only records of ``servers`` rows and server jobs.

The API layer renders them into the vendor's JSON (:mod:`imageport.api.ecs.render`). Servers
are private to their project: another project's server is ``Ecs.0114`` (404), as a missing
one is, and so is a deleted one for every use case but a list filtered ``status=DELETED``
(the row stays, so that list can show it; the vendor does not say how long a deleted server
stays visible, and here it is not shown by id at all once deleted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, select

from imageport.service import codes
from imageport.service.errors import NotFound
from imageport.service.servers.statuses import VmState
from imageport.service.tables import servers

MAX_ID = 64


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """One server as the API shows it."""

    id: str
    project_id: str
    name: str
    description: str
    status: str
    vm_state: str
    task_state: str | None
    power_state: int
    flavor_id: str
    vcpus: int
    memory_mib: int
    image_id: str
    disk_gib: int
    firmware: str
    key_name: str | None
    metadata: Mapping[str, str]
    availability_zone: str
    mac: str
    #: the loopback port forwarded to the guest's SSH port while the machine runs
    ssh_port: int | None
    #: ``{"code", "message"}`` of the last failure, else None
    fault: Mapping[str, str] | None
    created_at: str
    updated_at: str
    launched_at: str | None
    deleted_at: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> ServerRecord:
        meta = row.metadata if isinstance(row.metadata, dict) else {}
        fault = row.fault if isinstance(row.fault, dict) else None
        return cls(
            id=row.id,
            project_id=row.project_id,
            name=row.name,
            description=row.description,
            status=row.status,
            vm_state=row.vm_state,
            task_state=row.task_state,
            power_state=row.power_state,
            flavor_id=row.flavor_id,
            vcpus=row.vcpus,
            memory_mib=row.memory_mib,
            image_id=row.image_id,
            disk_gib=row.disk_gib,
            firmware=row.firmware,
            key_name=row.key_name,
            metadata={str(k): str(v) for k, v in meta.items()},
            availability_zone=row.availability_zone,
            mac=row.mac,
            ssh_port=row.ssh_port,
            fault=None if fault is None else {str(k): str(v) for k, v in fault.items()},
            created_at=row.created_at,
            updated_at=row.updated_at,
            launched_at=row.launched_at,
            deleted_at=row.deleted_at,
        )


def not_found(server_id: str) -> NotFound:
    return NotFound(codes.ECS_NOT_FOUND, f"server {server_id[:MAX_ID]!r} not found")


def server_row(conn: Connection, project_id: str, server_id: str) -> Row[Any]:
    """The project's server row, unless deleted; ``Ecs.0114`` otherwise."""
    if len(server_id) > MAX_ID:
        raise not_found(server_id)
    row = conn.execute(
        select(servers).where(
            servers.c.id == server_id,
            servers.c.project_id == project_id,
            servers.c.vm_state != VmState.DELETED,
        )
    ).first()
    if row is None:
        raise not_found(server_id)
    return row


@dataclass(frozen=True, slots=True)
class ServerJobRecord:
    """A server job (or one of its sub-jobs) as ``GET /v1/{project_id}/jobs/{id}`` shows it."""

    id: str
    job_type: str
    status: str
    begin_time: str
    end_time: str | None
    error_code: str | None
    fail_reason: str | None
    #: the server of a sub-job; a batch's when it names one server only
    server_id: str | None
    sub_jobs: Sequence[ServerJobRecord] = field(default_factory=tuple)


__all__ = ["ServerJobRecord", "ServerRecord", "not_found", "server_row"]
