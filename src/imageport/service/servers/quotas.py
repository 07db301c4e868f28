"""What servers may take: how many a project has, and what the host hands out.

* **Servers per project** (:func:`check_server_quota`): at most ``server_quota`` servers that
  are not deleted (ERROR ones count: they keep their disk until deleted); more is
  ``Ecs.0001``. 0 means no servers at all.
* **The host's budget** (:func:`check_host_budget`): the vCPUs and memory of every server whose
  machine runs or is about to (BUILD, ACTIVE in any task, SHUTOFF being started) together stay
  within ``server_host_vcpus`` and ``server_host_memory_mib``; a create or start that would
  pass them is ``Ecs.0319``. A stopped server takes nothing.
* **Per server**: the flavors offered stop at ``server_max_memory_mib`` (:mod:`.flavors`).

Checks and the rows they admit are written under :data:`HOST_LOCK` (held from the count to the
commit), so two requests cannot both take the last vCPU: the budget is the whole host's, and
one process serves every request of its database.
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection, and_, func, or_, select

from imageport.service import codes
from imageport.service.errors import RequestInvalid
from imageport.service.servers.statuses import TaskState, VmState
from imageport.service.tables import servers
from imageport.settings import Settings

#: Held by every request that admits servers or starts them, from its checks to its commit.
HOST_LOCK = threading.Lock()


def check_server_quota(conn: Connection, settings: Settings, project_id: str, adding: int) -> None:
    """``Ecs.0001`` when ``adding`` more servers would pass the project's quota."""
    held = conn.execute(
        select(func.count())
        .select_from(servers)
        .where(servers.c.project_id == project_id, servers.c.vm_state != VmState.DELETED)
    ).scalar_one()
    if held + adding > settings.server_quota:
        raise RequestInvalid(
            codes.ECS_QUOTA,
            f"the project has {held} server(s) and its server quota is "
            f"{settings.server_quota}; {adding} more do not fit (delete servers first)",
        )


def host_use(conn: Connection) -> tuple[int, int]:
    """The vCPUs and MiB of memory taken by machines that run or are about to."""
    taking = or_(
        servers.c.vm_state.in_([VmState.BUILDING, VmState.ACTIVE]),
        and_(
            servers.c.vm_state == VmState.STOPPED,
            servers.c.task_state == TaskState.POWERING_ON,
        ),
    )
    vcpus, memory = conn.execute(
        select(
            func.coalesce(func.sum(servers.c.vcpus), 0),
            func.coalesce(func.sum(servers.c.memory_mib), 0),
        ).where(taking)
    ).one()
    return int(vcpus), int(memory)


def check_host_budget(conn: Connection, settings: Settings, vcpus: int, memory_mib: int) -> None:
    """``Ecs.0319`` when machines of ``vcpus`` and ``memory_mib`` more do not fit the host."""
    used_vcpus, used_memory = host_use(conn)
    if (
        used_vcpus + vcpus > settings.server_host_vcpus
        or used_memory + memory_mib > settings.server_host_memory_mib
    ):
        raise RequestInvalid(
            codes.ECS_NO_RESOURCES,
            f"the host has {settings.server_host_vcpus - used_vcpus} vCPU(s) and "
            f"{settings.server_host_memory_mib - used_memory} MiB of memory left for servers; "
            f"{vcpus} vCPU(s) and {memory_mib} MiB are asked for (stop or delete servers first)",
        )


__all__ = ["HOST_LOCK", "check_host_budget", "check_server_quota", "host_use"]
