"""A server row's moves between statuses, and what the host's own news does to them.

Every change of ``vm_state``/``task_state``/``power_state`` goes through :func:`set_state`, which
stores the vendor's ``status`` derived from them (:mod:`.statuses`), so the three never
disagree. The moves, with the power state after each (1 running, 4 shut down, 0 none)::

    create   BUILD/spawning (0) ──▶ ACTIVE (1) | ERROR (0, with a fault)
    stop     ACTIVE/powering-off (1) ──▶ SHUTOFF (4)
    start    SHUTOFF/powering-on (4) ──▶ ACTIVE (1)
    reboot   REBOOT | HARD_REBOOT (1) ──▶ ACTIVE (1)
    delete   <status>/deleting ──▶ DELETED (0)

The task state is set by the request, in the transaction that adds the job (so a second
request sees it and is refused ``Ecs.0100``); the job ends it. A machine that ends by itself
(the guest powered off, QEMU died) is reported by the host: :func:`machine_stopped` makes an
ACTIVE server (no task, or rebooting) SHUTOFF; a server with another task in progress is left
to its job, which reads the machine's state when it ends (:func:`settle`), so the row never
says ACTIVE for a machine that is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, or_, select, update

from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.ports import MachineError, MachineState
from imageport.service.servers.statuses import (
    POWER_NOSTATE,
    POWER_RUNNING,
    POWER_SHUTDOWN,
    TaskState,
    VmState,
    status_of,
)
from imageport.service.tables import servers

log = logging.getLogger(__name__)


def set_state(
    conn: Connection,
    server_id: str,
    now: str,
    vm_state: str,
    task_state: str | None,
    power_state: int,
    *,
    where: tuple[ColumnElement[bool], ...] = (),
    **values: object,
) -> bool:
    """Move the server to ``vm_state``/``task_state``/``power_state`` (and ``values``) if it
    matches ``where``; whether it did."""
    done = conn.execute(
        update(servers)
        .where(servers.c.id == server_id, *where)
        .values(
            status=status_of(vm_state, task_state),
            vm_state=vm_state,
            task_state=task_state,
            power_state=power_state,
            updated_at=now,
            **values,
        )
    )
    return done.rowcount == 1


def fault(code: str, message: str) -> dict[str, str]:
    """The ``fault`` document a server keeps from its last failure."""
    return {"code": code, "message": message[:1000]}


def truth(
    conn: Connection,
    row: Row[Any],
    machine: MachineState,
    now: str,
    *,
    build_fault: Mapping[str, str] | None = None,
) -> None:
    """Make the row say what its machine is (its task ended): running -> ACTIVE with the
    machine's SSH port; off -> SHUTOFF, or ERROR (with ``build_fault``) for a server that was
    still being built, or still ERROR for one that was."""
    if machine.running:
        set_state(
            conn,
            row.id,
            now,
            VmState.ACTIVE,
            None,
            POWER_RUNNING,
            ssh_port=machine.ssh_port,
        )
    elif row.vm_state in (VmState.BUILDING, VmState.ERROR):
        kept = row.fault if build_fault is None else dict(build_fault)
        set_state(conn, row.id, now, VmState.ERROR, None, POWER_NOSTATE, ssh_port=None, fault=kept)
    else:
        set_state(conn, row.id, now, VmState.STOPPED, None, POWER_SHUTDOWN, ssh_port=None)


def machine_state(services: Services, server_id: str) -> MachineState:
    """The machine's state as the host reports it (off when the host cannot tell)."""
    if services.host is None:
        return MachineState(server_id, running=False)
    try:
        return services.host.state(server_id)
    except MachineError:
        log.exception("server %s: the host cannot tell the machine's state", server_id)
        return MachineState(server_id, running=False)


def machine_stopped(services: Services, server_id: str) -> None:
    """The host's news that ``server_id``'s machine ended by itself (the wiring gives this to
    the host as its ``on_stopped``): an ACTIVE server with no task, or rebooting, becomes
    SHUTOFF (power state 4); any other is left to the job that works on it."""
    now = time_text(services.clock())
    with services.db.begin() as conn:
        moved = set_state(
            conn,
            server_id,
            now,
            VmState.STOPPED,
            None,
            POWER_SHUTDOWN,
            where=(
                servers.c.vm_state == VmState.ACTIVE,
                or_(
                    servers.c.task_state.is_(None),
                    servers.c.task_state.in_([TaskState.REBOOTING, TaskState.REBOOTING_HARD]),
                ),
            ),
            ssh_port=None,
        )
    if moved:
        log.info("server %s: its machine stopped by itself; the server is SHUTOFF", server_id)


def settle(services: Services, server_id: str) -> None:
    """After a job made the server ACTIVE: if its machine has ended meanwhile (the host's news
    came before the row said ACTIVE), make it SHUTOFF."""
    if machine_state(services, server_id).running:
        return
    machine_stopped(services, server_id)


def current_row(services: Services, server_id: str) -> Row[Any] | None:
    """The server's row, whatever its status (None if there is none)."""
    with services.db.connect() as conn:
        return conn.execute(select(servers).where(servers.c.id == server_id)).first()


__all__ = [
    "current_row",
    "fault",
    "machine_state",
    "machine_stopped",
    "set_state",
    "settle",
    "truth",
]
