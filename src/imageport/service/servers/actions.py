"""Start, stop, reboot and delete servers in a batch (the vendor's batch APIs).

* ``POST /v1/{project_id}/cloudservers/action`` (:func:`server_action`): the body has exactly
  one of ``{"os-start": {"servers"}}``, ``{"os-stop": {"servers", "type"?}}`` (``SOFT``, the
  default, or ``HARD``) and ``{"reboot": {"servers", "type"}}`` (``SOFT`` or ``HARD``, required);
* ``POST /v1/{project_id}/cloudservers/delete`` (:func:`delete_servers`):
  ``{"servers", "delete_publicip"?, "delete_volume"?}``. There are no public IPs and no data
  disks here, and the system disk always goes with its server, so both flags are honoured
  whatever their value.

``servers`` is ``[{"id"}, ...]``: 1 to :data:`~.create_request.MAX_BATCH` servers (more:
``Ecs.0118``), each named once. The request is all or nothing: every server must be the
project's and not deleted (else ``Ecs.0114``, 404) and in a status that allows the action (else
``Ecs.0100``): start a SHUTOFF server, stop or reboot an ACTIVE one, delete an ACTIVE, SHUTOFF
or ERROR one, in each case with no other task under way (a server being built, stopped,
started, rebooted or deleted is refused until its job ends). Starting must also fit the host's
budget (``Ecs.0319``, :mod:`.quotas`).

In one transaction each server's task state is set (stop: ``powering-off``, start:
``powering-on``, reboot: ``rebooting``/``rebooting_hard`` so the status is REBOOT/HARD_REBOOT,
delete: ``deleting`` with the status unchanged) and the batch job with a sub-job per server is
added (:mod:`.jobs`); the job is submitted and its id answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row

from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.servers import job_types as jt
from imageport.service.servers.create import require_host
from imageport.service.servers.create_request import MAX_BATCH, invalid
from imageport.service.servers.jobs import insert_batch
from imageport.service.servers.lifecycle import set_state
from imageport.service.servers.quotas import HOST_LOCK, check_host_budget
from imageport.service.servers.records import server_row
from imageport.service.servers.statuses import TaskState, VmState
from imageport.service.tables import servers

ACTIONS = ("os-start", "os-stop", "reboot")
HARDNESS = ("SOFT", "HARD")


@dataclass(frozen=True, slots=True)
class _Action:
    batch_type: str
    #: vm_states the server may be in (with no task under way)
    allowed: tuple[str, ...]
    #: the task state the request sets (the job ends it)
    task: str


_START = _Action(jt.START_SERVERS, (VmState.STOPPED,), TaskState.POWERING_ON)
_STOP = _Action(jt.STOP_SERVERS, (VmState.ACTIVE,), TaskState.POWERING_OFF)
_REBOOT = _Action(jt.REBOOT_SERVERS, (VmState.ACTIVE,), TaskState.REBOOTING)
_HARD_REBOOT = _Action(jt.REBOOT_SERVERS, (VmState.ACTIVE,), TaskState.REBOOTING_HARD)
_DELETE = _Action(
    jt.DELETE_SERVERS, (VmState.ACTIVE, VmState.STOPPED, VmState.ERROR), TaskState.DELETING
)


#: what each action of :func:`server_action` and :func:`delete_servers` needs, by name
_BY_NAME = {"os-start": _START, "os-stop": _STOP, "reboot": _REBOOT, "delete": _DELETE}


def allowed_actions(vm_state: str, task_state: str | None) -> tuple[str, ...]:
    """The actions (``os-start``, ``os-stop``, ``reboot``, ``delete``) a server in ``vm_state``
    with ``task_state`` may be given now: the rule the batch requests check, for a client that
    offers only those (the web console's buttons)."""
    if task_state is not None:
        return ()
    return tuple(name for name, action in _BY_NAME.items() if vm_state in action.allowed)


def server_action(services: Services, project_id: str, body: object) -> str:
    """Start, stop or reboot the servers ``body`` names; the batch job's id."""
    require_host(services)
    if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in ACTIONS:
        raise invalid("body", f"must hold exactly one of {', '.join(ACTIONS)}")
    name, doc = next(iter(body.items()))
    if not isinstance(doc, dict):
        raise invalid(name, "must be an object")
    fields = {"servers"} if name == "os-start" else {"servers", "type"}
    for key in sorted(doc):
        if key not in fields:
            raise invalid(f"{name}.{key[:64]}", "is not a field of the action")
    ids = _server_ids(doc.get("servers"), f"{name}.servers")
    if name == "os-start":
        return _run(services, project_id, ids, _START, {})
    kind = doc.get("type", "SOFT" if name == "os-stop" else None)
    if kind not in HARDNESS:
        raise invalid(f"{name}.type", "must be SOFT or HARD")
    hard = kind == "HARD"
    if name == "os-stop":
        return _run(services, project_id, ids, _STOP, {"hard": hard})
    return _run(services, project_id, ids, _HARD_REBOOT if hard else _REBOOT, {"hard": hard})


def delete_servers(services: Services, project_id: str, body: object) -> str:
    """Delete the servers ``body`` names; the batch job's id."""
    require_host(services)
    if not isinstance(body, dict):
        raise invalid("body", "must be an object")
    for key in sorted(body):
        if key not in ("servers", "delete_publicip", "delete_volume"):
            raise invalid(key[:64], "is not a field of the request")
    for flag in ("delete_publicip", "delete_volume"):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            raise invalid(flag, "must be true or false")
    ids = _server_ids(body.get("servers"), "servers")
    return _run(services, project_id, ids, _DELETE, {})


def _server_ids(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise invalid(name, 'must be a list of {"id": ...}')
    if len(value) > MAX_BATCH:
        raise RequestInvalid(
            codes.ECS_BATCH_TOO_LARGE, f"{name}: at most {MAX_BATCH} servers in one request"
        )
    ids: list[str] = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"id"} or not isinstance(item["id"], str):
            raise invalid(name, 'each item must be {"id": "<server id>"}')
        if item["id"] in ids:
            raise invalid(name, f"server {item['id'][:64]!r} is named twice")
        ids.append(item["id"])
    return ids


def _run(
    services: Services,
    project_id: str,
    ids: Sequence[str],
    action: _Action,
    params: Mapping[str, object],
) -> str:
    now = time_text(services.clock())
    with HOST_LOCK, services.db.begin() as conn:
        rows = [server_row(conn, project_id, server_id) for server_id in ids]
        for row in rows:
            if row.vm_state not in action.allowed or row.task_state is not None:
                raise RequestInvalid(
                    codes.ECS_STATE,
                    f"server {row.id} is {row.status}"
                    + (f" ({row.task_state})" if row.task_state else "")
                    + f"; {action.batch_type} needs "
                    + " or ".join(_shown(s) for s in action.allowed)
                    + " with no task under way",
                )
        if action is _START:
            check_host_budget(
                conn,
                services.settings,
                sum(r.vcpus for r in rows),
                sum(r.memory_mib for r in rows),
            )
        for row in rows:
            _set_task(conn, row, action, now)
        job_id = insert_batch(
            conn,
            project_id=project_id,
            batch_type=action.batch_type,
            subs=[(row.id, dict(params)) for row in rows],
            now=now,
        )
    services.submit_job(job_id)
    return job_id


def _set_task(conn: Connection, row: Row[Any], action: _Action, now: str) -> None:
    """Set the row's task state, unless a concurrent request set one first (``Ecs.0100``)."""
    if not set_state(
        conn,
        row.id,
        now,
        row.vm_state,
        action.task,
        row.power_state,
        where=(servers.c.task_state.is_(None),),
    ):
        raise RequestInvalid(codes.ECS_STATE, f"server {row.id} has another task under way")


def _shown(vm_state: str) -> str:
    return {
        VmState.ACTIVE: "ACTIVE",
        VmState.STOPPED: "SHUTOFF",
        VmState.ERROR: "ERROR",
    }.get(VmState(vm_state), vm_state)


__all__ = ["ACTIONS", "allowed_actions", "delete_servers", "server_action"]
