"""Servers after a restart: jobs that were cut short, and rows made to say what the machines are.

Called by start-up recovery, before the job queue starts:

1. :func:`fail_interrupted_jobs` (from :func:`imageport.service.jobs.recovery.recover`, in its
   transaction): a server job left RUNNING is not run again (half a stop or a create cannot be
   resumed, and running it again could act on a server twice): it FAILs, with its operation's
   code (``Ecs.0204``, ``Ecs.0501``, ``Ecs.MACHINE``) and :data:`RESTARTED`, and so does every
   unfinished sub-job whose batch has ended. An INIT batch (not started) stays INIT and runs
   again with its sub-jobs; recovery does not hand its sub-jobs to the queue on their own.
2. :func:`recover_servers` (from ``imageport serve`` next): the host re-attaches every machine
   of a server that is not deleted and removes what belongs to no server
   (:meth:`~imageport.service.ports.ServerHost.recover`); then every server whose job will not
   run again is made to say what its machine is: running -> ACTIVE (with its SSH port now),
   off -> SHUTOFF, a server still being built with no machine -> ERROR with a fault; its task
   state is cleared. A server whose job is still INIT keeps its task for that job; only its SSH
   port follows the machine.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, select, update

from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.ports import MachineError, MachineState
from imageport.service.servers import job_types as jt
from imageport.service.servers.jobs import end_job
from imageport.service.servers.lifecycle import fault, truth
from imageport.service.servers.operations import FAILURE_CODE
from imageport.service.servers.statuses import POWER_RUNNING, POWER_SHUTDOWN, VmState
from imageport.service.statuses import UNFINISHED_JOB, JobStatus
from imageport.service.tables import jobs, servers

log = logging.getLogger(__name__)

RESTARTED = "the service restarted while this job ran; it is not run again"
STOPPED_BUILDING = "the service stopped before the server's machine was made"


def _code(job_type: str) -> str:
    return FAILURE_CODE.get(jt.SUB_JOB_OF.get(job_type, job_type), codes.ECS_MACHINE_FAILED)


def fail_interrupted_jobs(conn: Connection, now: str) -> int:
    """Fail the server jobs a restart cut short (step 1 of the module docstring); how many."""
    failed = 0
    running = conn.execute(
        select(jobs.c.id, jobs.c.job_type).where(
            jobs.c.status == JobStatus.RUNNING, jobs.c.job_type.in_(sorted(jt.SERVER_JOBS))
        )
    ).all()
    for job_id, job_type in running:
        failed += end_job(conn, job_id, now, code=_code(job_type), reason=RESTARTED)
        log.warning("server job %s (%s) failed: %s", job_id, job_type, RESTARTED)
    waiting = conn.execute(
        select(jobs.c.id, jobs.c.job_type, jobs.c.params).where(
            jobs.c.status.in_(UNFINISHED_JOB), jobs.c.job_type.in_(sorted(jt.SUB_JOBS))
        )
    ).all()
    for job_id, job_type, params in waiting:
        parent = params.get("parent_job") if isinstance(params, dict) else None
        status = conn.execute(select(jobs.c.status).where(jobs.c.id == parent)).scalar()
        if status not in UNFINISHED_JOB:
            failed += end_job(
                conn, job_id, now, code=_code(job_type), reason=RESTARTED, was=UNFINISHED_JOB
            )
    return failed


def _pending_servers(conn: Connection) -> set[str]:
    """Servers an unfinished sub-job will still work on."""
    rows = conn.execute(
        select(jobs.c.params).where(
            jobs.c.status.in_(UNFINISHED_JOB), jobs.c.job_type.in_(sorted(jt.SUB_JOBS))
        )
    ).scalars()
    return {str(p.get("server_id")) for p in rows if isinstance(p, dict)}


def _says(row: Any, machine: MachineState) -> bool:
    """Whether the row already says what the machine is (no task under way)."""
    if row.task_state is not None:
        return False
    if machine.running:
        return (row.vm_state, row.power_state, row.ssh_port) == (
            VmState.ACTIVE,
            POWER_RUNNING,
            machine.ssh_port,
        )
    return row.vm_state == VmState.ERROR or (
        (row.vm_state, row.power_state, row.ssh_port) == (VmState.STOPPED, POWER_SHUTDOWN, None)
    )


def recover_servers(services: Services) -> int:
    """Step 2 of the module docstring; the number of servers whose row changed."""
    host = services.host
    if host is None:
        return 0
    with services.db.connect() as conn:
        rows = conn.execute(select(servers).where(servers.c.vm_state != VmState.DELETED)).all()
    try:
        states = host.recover([r.id for r in rows])
    except MachineError:
        log.exception("the server host cannot recover its machines; all are taken as off")
        states = {}
    now = time_text(services.clock())
    changed = 0
    with services.db.begin() as conn:
        pending = _pending_servers(conn)
        for row in rows:
            machine = states.get(row.id, MachineState(row.id, running=False))
            if row.id in pending:
                port = machine.ssh_port if machine.running else None
                conn.execute(update(servers).where(servers.c.id == row.id).values(ssh_port=port))
                continue
            if _says(row, machine):
                continue
            truth(
                conn,
                row,
                machine,
                now,
                build_fault=fault(codes.ECS_CREATE_FAILED, STOPPED_BUILDING),
            )
            changed += 1
            log.info(
                "server %s was %s (%s); its machine is %s",
                row.id,
                row.status,
                row.task_state,
                "running" if machine.running else "off",
            )
    return changed


__all__ = ["RESTARTED", "fail_interrupted_jobs", "recover_servers"]
