"""What each server sub-job does: one server's machine and row, from its task to its end.

Each operation is called by the batch runner (:mod:`.jobs`) with the server's id and its
sub-job's params, the server's task state already set by the request:

* create (``createSingleServer``): the host makes the machine (overlay disk, config drive) and
  starts it with the spec of :mod:`.machines` (with the ``adminPass`` taken from
  :mod:`.passwords`); BUILD -> ACTIVE. On failure the server is ERROR with a ``fault`` and the
  job's code is ``Ecs.0204``; a machine that was left running is stopped.
* start: SHUTOFF/powering-on -> ACTIVE. stop: ACTIVE/powering-off -> SHUTOFF, the guest given
  :data:`SOFT_STOP_SECONDS` to power off when ``SOFT``. reboot: REBOOT or HARD_REBOOT ->
  ACTIVE. On failure the row is made to say what the machine really is (running: ACTIVE,
  off: SHUTOFF) and the job's code is ``Ecs.MACHINE``.
* delete: the host removes the machine and all its files; the row becomes DELETED (kept, for
  lists filtered ``status=DELETED``) and its ``user_data`` and key are dropped from its create
  sub-job. On failure the task is cleared (``Ecs.0501``).

An operation raises :class:`~imageport.service.jobs.errors.JobFailedError` with the job's code
and reason after putting the row right; it never leaves a task state behind.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Row

from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.jobs.errors import JobFailedError
from imageport.service.ports import MachineError, MachineState, ServerHost
from imageport.service.servers import job_types as jt
from imageport.service.servers.lifecycle import (
    current_row,
    fault,
    machine_state,
    set_state,
    settle,
    truth,
)
from imageport.service.servers.machines import (
    create_params,
    forget_create_inputs,
    machine_spec,
)
from imageport.service.servers.passwords import VAULT
from imageport.service.servers.statuses import (
    POWER_NOSTATE,
    POWER_RUNNING,
    POWER_SHUTDOWN,
    TaskState,
    VmState,
)
from imageport.service.tables import servers

log = logging.getLogger(__name__)

_T = TypeVar("_T")

Operation = Callable[[Services, ServerHost, str, Mapping[str, Any]], None]

#: How long a SOFT stop waits for the guest to power off before the host pulls the plug.
SOFT_STOP_SECONDS = 60.0

#: The sub-job's type -> the code its failure is reported with.
FAILURE_CODE: Mapping[str, str] = {
    jt.CREATE_SERVER: codes.ECS_CREATE_FAILED,
    jt.DELETE_SERVER: codes.ECS_DELETE_FAILED,
    jt.START_SERVER: codes.ECS_MACHINE_FAILED,
    jt.STOP_SERVER: codes.ECS_MACHINE_FAILED,
    jt.REBOOT_SERVER: codes.ECS_MACHINE_FAILED,
}
RESTARTED_BEFORE_CREATE = (
    "the service restarted before this server was made; its adminPass is never stored, so it "
    "is gone: delete the server and create it again"
)


def _now(services: Services) -> str:
    return time_text(services.clock())


def _row(services: Services, server_id: str, code: str) -> Row[Any]:
    row = current_row(services, server_id)
    if row is None or row.vm_state == VmState.DELETED:
        raise JobFailedError(code, "the server no longer exists")
    return row


def _put_right(
    services: Services,
    server_id: str,
    code: str,
    reason: str,
    *,
    build_fault: Mapping[str, str] | None = None,
) -> JobFailedError:
    """Make the row say what its machine is (task cleared; a server being built becomes
    ERROR with ``build_fault``); the error to raise."""
    machine = machine_state(services, server_id)
    with services.db.begin() as conn:
        row = conn.execute(servers.select().where(servers.c.id == server_id)).first()
        if row is not None and row.vm_state != VmState.DELETED:
            truth(conn, row, machine, _now(services), build_fault=build_fault)
    return JobFailedError(code, reason)


def _on_machine(services: Services, server_id: str, code: str, act: Callable[[Row[Any]], _T]) -> _T:
    """What ``act`` returns, given the server's row (the server must still exist); a
    :class:`MachineError` from the host puts the row right and fails the job with ``code``.
    The shape of every operation but create (which has its own clean-up)."""
    row = _row(services, server_id, code)
    try:
        return act(row)
    except MachineError as exc:
        raise _put_right(services, server_id, code, str(exc)) from exc


def after_error(services: Services, job_type: str, server_id: str, message: str) -> None:
    """An operation of ``job_type`` ended in an error it did not expect: make the row say what
    the machine is (a server being built becomes ERROR with ``message``), as far as the
    database lets us; never raises."""
    code = FAILURE_CODE.get(job_type, codes.ECS_MACHINE_FAILED)
    try:
        _put_right(services, server_id, code, message, build_fault=fault(code, message))
    except Exception:
        log.exception("server %s: its row could not be put right after an error", server_id)


def no_host(services: Services, server_id: str) -> None:
    """A job found no server host (servers are no longer offered): end the task, and fail."""
    reason = "this service runs no server host now (servers are not offered)"
    build = fault(codes.ECS_NOT_OFFERED, reason)
    raise _put_right(services, server_id, codes.ECS_NOT_OFFERED, reason, build_fault=build)


def create_machine(
    services: Services, host: ServerHost, server_id: str, params: Mapping[str, Any]
) -> None:
    """Make and start the server's machine (see the module docstring)."""
    code = codes.ECS_CREATE_FAILED
    row = _row(services, server_id, code)
    if row.vm_state != VmState.BUILDING:
        raise JobFailedError(code, f"the server is {row.status}, no longer being built")
    password = VAULT.take(server_id)
    if create_params(services, server_id).admin_pass_given and password is None:
        raise _put_right(
            services,
            server_id,
            code,
            RESTARTED_BEFORE_CREATE,
            build_fault=fault(code, RESTARTED_BEFORE_CREATE),
        )
    try:
        spec = machine_spec(services, row, admin_pass=password)
        host.create(spec)
        machine = host.start(spec)
    except MachineError as exc:
        with contextlib.suppress(MachineError):
            if host.state(server_id).running:
                host.stop(server_id, hard=True, timeout=0)
        raise _put_right(
            services, server_id, code, str(exc), build_fault=fault(code, str(exc))
        ) from exc
    _became_active(services, server_id, machine, was=VmState.BUILDING, launched=True)


def _became_active(
    services: Services, server_id: str, machine: MachineState, *, was: str, launched: bool = False
) -> None:
    """The machine runs: the row (still ``was``) becomes ACTIVE with its SSH port."""
    now = _now(services)
    values: dict[str, object] = {"ssh_port": machine.ssh_port}
    if launched:
        values["launched_at"] = now
    with services.db.begin() as conn:
        set_state(
            conn,
            server_id,
            now,
            VmState.ACTIVE,
            None,
            POWER_RUNNING,
            where=(servers.c.vm_state == was,),
            **values,
        )
    settle(services, server_id)


def start_machine(
    services: Services, host: ServerHost, server_id: str, params: Mapping[str, Any]
) -> None:
    machine = _on_machine(
        services,
        server_id,
        codes.ECS_MACHINE_FAILED,
        lambda row: host.start(machine_spec(services, row)),
    )
    _became_active(services, server_id, machine, was=VmState.STOPPED)


def stop_machine(
    services: Services, host: ServerHost, server_id: str, params: Mapping[str, Any]
) -> None:
    hard = params.get("hard") is True
    _on_machine(
        services,
        server_id,
        codes.ECS_MACHINE_FAILED,
        lambda _: host.stop(server_id, hard=hard, timeout=SOFT_STOP_SECONDS),
    )
    with services.db.begin() as conn:
        set_state(
            conn,
            server_id,
            _now(services),
            VmState.STOPPED,
            None,
            POWER_SHUTDOWN,
            where=(servers.c.task_state == TaskState.POWERING_OFF,),
            ssh_port=None,
        )


def reboot_machine(
    services: Services, host: ServerHost, server_id: str, params: Mapping[str, Any]
) -> None:
    hard = params.get("hard") is True
    _on_machine(
        services, server_id, codes.ECS_MACHINE_FAILED, lambda _: host.reboot(server_id, hard=hard)
    )
    with services.db.begin() as conn:
        set_state(
            conn,
            server_id,
            _now(services),
            VmState.ACTIVE,
            None,
            POWER_RUNNING,
            where=(servers.c.task_state.in_([TaskState.REBOOTING, TaskState.REBOOTING_HARD]),),
        )
    settle(services, server_id)


def delete_machine(
    services: Services, host: ServerHost, server_id: str, params: Mapping[str, Any]
) -> None:
    _on_machine(services, server_id, codes.ECS_DELETE_FAILED, lambda _: host.destroy(server_id))
    VAULT.forget(server_id)
    now = _now(services)
    with services.db.begin() as conn:
        set_state(
            conn,
            server_id,
            now,
            VmState.DELETED,
            None,
            POWER_NOSTATE,
            ssh_port=None,
            deleted_at=now,
        )
        forget_create_inputs(conn, server_id)


#: The sub-job's type -> its operation.
OPERATIONS: Mapping[str, Operation] = {
    jt.CREATE_SERVER: create_machine,
    jt.START_SERVER: start_machine,
    jt.STOP_SERVER: stop_machine,
    jt.REBOOT_SERVER: reboot_machine,
    jt.DELETE_SERVER: delete_machine,
}

__all__ = ["FAILURE_CODE", "OPERATIONS", "SOFT_STOP_SECONDS", "after_error", "no_host"]
