"""A server's status, as the vendor derives it from its ``vm_state`` and ``task_state``.

The row keeps all three (``status`` is stored so that lists filter on it in SQL); every change
goes through :func:`status_of`, so they never disagree::

    create  BUILD ──▶ ACTIVE ──stop──▶ (ACTIVE, powering-off) ──▶ SHUTOFF
              └──▶ ERROR   │ ▲                                     │
                    reboot │ └──────────── (SHUTOFF, powering-on) ◀─start
                           ▼
                   REBOOT / HARD_REBOOT ──▶ ACTIVE
    delete  (any, deleting) ──▶ DELETED
"""

from __future__ import annotations

import enum


class ServerStatus(enum.StrEnum):
    BUILD = "BUILD"
    ACTIVE = "ACTIVE"
    SHUTOFF = "SHUTOFF"
    REBOOT = "REBOOT"
    HARD_REBOOT = "HARD_REBOOT"
    ERROR = "ERROR"
    DELETED = "DELETED"
    UNKNOWN = "UNKNOWN"


class VmState(enum.StrEnum):
    BUILDING = "building"
    ACTIVE = "active"
    STOPPED = "stopped"
    ERROR = "error"
    DELETED = "deleted"


class TaskState(enum.StrEnum):
    SPAWNING = "spawning"
    POWERING_OFF = "powering-off"
    POWERING_ON = "powering-on"
    REBOOTING = "rebooting"
    REBOOTING_HARD = "rebooting_hard"
    DELETING = "deleting"
    IMAGE_SNAPSHOT = "image_snapshot"


#: ``OS-EXT-STS:power_state``: 0 no state, 1 running, 4 shut down.
POWER_NOSTATE = 0
POWER_RUNNING = 1
POWER_SHUTDOWN = 4

_STEADY = {None, TaskState.POWERING_OFF, TaskState.DELETING, TaskState.IMAGE_SNAPSHOT}
_BY_STATE: dict[VmState, dict[str | None, ServerStatus]] = {
    VmState.ACTIVE: {
        **dict.fromkeys(_STEADY, ServerStatus.ACTIVE),
        TaskState.REBOOTING: ServerStatus.REBOOT,
        TaskState.REBOOTING_HARD: ServerStatus.HARD_REBOOT,
    },
    VmState.STOPPED: dict.fromkeys(
        {None, TaskState.POWERING_ON, TaskState.DELETING, TaskState.IMAGE_SNAPSHOT},
        ServerStatus.SHUTOFF,
    ),
    VmState.ERROR: dict.fromkeys({None, TaskState.DELETING}, ServerStatus.ERROR),
    VmState.DELETED: {None: ServerStatus.DELETED},
}


def status_of(vm_state: str, task_state: str | None) -> ServerStatus:
    """The vendor's ``status`` for a ``vm_state`` and ``task_state`` (doc "ECS Statuses");
    UNKNOWN for any other combination."""
    if vm_state == VmState.BUILDING:
        return ServerStatus.BUILD
    if vm_state not in VmState.__members__.values():
        return ServerStatus.UNKNOWN
    by_task = _BY_STATE.get(VmState(vm_state), {})
    return by_task.get(task_state, ServerStatus.UNKNOWN)
