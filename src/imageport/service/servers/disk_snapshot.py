"""A server's ``task_state`` while an image is made from it.

The job that makes an image from a server (:mod:`imageport.service.jobs.server_image_job`)
marks the server ``image_snapshot`` (the vendor's task state, as Nova's) for exactly as long as
the server's system disk is being copied: the server API shows it, its status stays ``ACTIVE``
or ``SHUTOFF`` (:func:`~imageport.service.servers.statuses.status_of`), and a second image of
the same server waits for the first copy. Once the copy is made the mark is taken off, whatever
happened; a service stopped meanwhile takes it off at start-up (:func:`end_left_over`), since
the copy was scratch (``tmp_dir`` is emptied then).

Each change is one conditional UPDATE, so it never overrides another task the server has
started (a stop, a reboot, a deletion).
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.servers.statuses import TaskState, VmState, status_of
from imageport.service.tables import servers

#: The ``vm_state`` of the servers whose disk can be copied: running, or powered off.
COPYABLE = (VmState.ACTIVE, VmState.STOPPED)


def begin(services: Services, server_id: str) -> bool:
    """Mark the server ``image_snapshot`` if it is running or off with no task under way;
    False (nothing changed) otherwise."""
    now = time_text(services.clock())
    with services.db.begin() as conn:
        row = conn.execute(
            select(servers.c.vm_state, servers.c.task_state).where(servers.c.id == server_id)
        ).first()
        if row is None or row.vm_state not in COPYABLE or row.task_state is not None:
            return False
        done = conn.execute(
            update(servers)
            .where(
                servers.c.id == server_id,
                servers.c.vm_state == row.vm_state,
                servers.c.task_state.is_(None),
            )
            .values(
                task_state=TaskState.IMAGE_SNAPSHOT,
                status=status_of(row.vm_state, TaskState.IMAGE_SNAPSHOT),
                updated_at=now,
            )
        )
        return done.rowcount == 1


def end(services: Services, server_id: str) -> None:
    """Take the ``image_snapshot`` mark off the server (if it still has it)."""
    with services.db.begin() as conn:
        _end_in(conn, time_text(services.clock()), server_id)


def end_left_over(services: Services) -> int:
    """At start-up: take the mark off every server that has it (no copy survives a restart);
    how many there were."""
    now = time_text(services.clock())
    with services.db.begin() as conn:
        marked = conn.execute(
            select(servers.c.id).where(servers.c.task_state == TaskState.IMAGE_SNAPSHOT)
        ).scalars()
        return sum(_end_in(conn, now, server_id) for server_id in list(marked))


def _end_in(conn: Connection, now: str, server_id: str) -> int:
    row = conn.execute(
        select(servers.c.vm_state).where(
            servers.c.id == server_id, servers.c.task_state == TaskState.IMAGE_SNAPSHOT
        )
    ).first()
    if row is None:
        return 0
    done = conn.execute(
        update(servers)
        .where(servers.c.id == server_id, servers.c.task_state == TaskState.IMAGE_SNAPSHOT)
        .values(task_state=None, status=status_of(row.vm_state, None), updated_at=now)
    )
    return done.rowcount


__all__ = ["COPYABLE", "begin", "end", "end_left_over"]
