"""The ``job_type`` of every server job, and which of them are sub-jobs.

Each request that changes machines (create, delete, start, stop, reboot) is one job for the
whole batch with one sub-job per server, as the vendor's (``GET /v1/{project_id}/jobs/{id}``
shows them in ``entities.sub_jobs``). The vendor documents ``createServer`` and
``createSingleServer``; it does not name the others' types, which are ours, spelled the same
way. Sub-jobs are rows of the shared ``jobs`` table too (job ids are unique across image and
server jobs); the batch's job runs them one after the other
(:mod:`imageport.service.servers.jobs`), so the job queue never runs a sub-job by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Final

CREATE_SERVERS: Final = "createServer"
CREATE_SERVER: Final = "createSingleServer"
DELETE_SERVERS: Final = "deleteServer"
DELETE_SERVER: Final = "deleteSingleServer"
START_SERVERS: Final = "batchStartServers"
START_SERVER: Final = "startServer"
STOP_SERVERS: Final = "batchStopServers"
STOP_SERVER: Final = "stopServer"
REBOOT_SERVERS: Final = "batchRebootServers"
REBOOT_SERVER: Final = "rebootServer"

#: The batch's job type -> the type of its sub-jobs.
SUB_JOB_OF: Mapping[str, str] = {
    CREATE_SERVERS: CREATE_SERVER,
    DELETE_SERVERS: DELETE_SERVER,
    START_SERVERS: START_SERVER,
    STOP_SERVERS: STOP_SERVER,
    REBOOT_SERVERS: REBOOT_SERVER,
}
BATCH_JOBS: Final = frozenset(SUB_JOB_OF)
SUB_JOBS: Final = frozenset(SUB_JOB_OF.values())
SERVER_JOBS: Final = BATCH_JOBS | SUB_JOBS


def create_job_id(server_id: str) -> str:
    """The id of the server's ``createSingleServer`` sub-job: the server's UUID without its
    dashes (32 hex digits, like every job id; unique, as the server id is). Its params keep
    what the guest's metadata is made from at every start (:mod:`.machines`)."""
    return uuid.UUID(server_id).hex


def is_server_job(job_type: str) -> bool:
    """Whether ``job_type`` is a server job (shown in the ECS shape, never cancelled)."""
    return job_type in SERVER_JOBS


__all__ = [
    "BATCH_JOBS",
    "CREATE_SERVER",
    "CREATE_SERVERS",
    "DELETE_SERVER",
    "DELETE_SERVERS",
    "REBOOT_SERVER",
    "REBOOT_SERVERS",
    "SERVER_JOBS",
    "START_SERVER",
    "START_SERVERS",
    "STOP_SERVER",
    "STOP_SERVERS",
    "SUB_JOBS",
    "SUB_JOB_OF",
    "create_job_id",
    "is_server_job",
]
