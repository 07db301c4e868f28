"""Server records to the vendor's JSON documents (ECS ``ServerDetail``, Nova ``server``, flavors,
server jobs), with the types its SDK reads: in ECS documents every ``flavor`` field is a
string and ``OS-EXT-STS:power_state`` an integer; in a flavor list ``vcpus`` is a string and
``ram`` an integer; in Nova documents the flavor's numbers are integers.

One key is ours: ``OS-EXT-IMAGEPORT:ssh``, the loopback address and port forwarded to the
guest's SSH port while its machine runs (``127.0.0.1:PORT``; null when it does not), which
``imageport server ssh`` connects to. The vendor's SDK ignores keys it does not know.
"""

from __future__ import annotations

from collections.abc import Sequence

from imageport.api.job_fields import job_with_entities
from imageport.service.servers.flavors import Flavor
from imageport.service.servers.network import NETWORK_ID
from imageport.service.servers.queries import ServerPage, addresses_of
from imageport.service.servers.records import ServerJobRecord, ServerRecord

SSH_KEY = "OS-EXT-IMAGEPORT:ssh"
LOOPBACK = "127.0.0.1"
#: Nova's fault code for a failure on the service's side (the Ecs code is in ``details``).
FAULT_CODE = 500


def _ssh(server: ServerRecord) -> str | None:
    return None if server.ssh_port is None else f"{LOOPBACK}:{server.ssh_port}"


def _fault(server: ServerRecord) -> dict[str, object] | None:
    if server.fault is None:
        return None
    return {
        "code": FAULT_CODE,
        "created": server.updated_at,
        "message": server.fault.get("message", ""),
        "details": server.fault.get("code", ""),
    }


def server_document(server: ServerRecord) -> dict[str, object]:
    """``ServerDetail``: ShowServer's ``server`` and each of ListServersDetails' ``servers``."""
    return {
        "id": server.id,
        "name": server.name,
        "description": server.description,
        "status": server.status,
        "OS-EXT-STS:vm_state": server.vm_state,
        "OS-EXT-STS:task_state": server.task_state,
        "OS-EXT-STS:power_state": server.power_state,
        "progress": 0,
        "locked": False,
        "flavor": {
            "id": server.flavor_id,
            "name": server.flavor_id,
            "vcpus": str(server.vcpus),
            "ram": str(server.memory_mib),
            "disk": "0",
        },
        "image": {"id": server.image_id},
        "key_name": server.key_name,
        "metadata": dict(server.metadata),
        "addresses": {
            NETWORK_ID: [
                {
                    "version": "4",
                    "addr": address,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": server.mac,
                    "OS-EXT-IPS:port_id": server.id,
                    "primary": True,
                }
                for address in addresses_of(server)
            ]
        }
        if addresses_of(server)
        else {},
        "created": server.created_at,
        "updated": server.updated_at,
        "tenant_id": server.project_id,
        "OS-EXT-AZ:availability_zone": server.availability_zone,
        "OS-SRV-USG:launched_at": server.launched_at,
        "OS-SRV-USG:terminated_at": server.deleted_at,
        "security_groups": [],
        "os-extended-volumes:volumes_attached": [],
        "config_drive": "True",
        "tags": [],
        "fault": _fault(server),
        SSH_KEY: _ssh(server),
    }


def servers_document(page: ServerPage) -> dict[str, object]:
    """ListServersDetails: ``{"count", "servers"}``."""
    return {"count": page.count, "servers": [server_document(s) for s in page.servers]}


def nova_server_document(server: ServerRecord) -> dict[str, object]:
    """Nova's ``GET /v2.1/{project_id}/servers/{id}``: the same server, flavor numbers as
    integers and addresses without the ECS extensions."""
    doc = server_document(server)
    doc["flavor"] = {
        "id": server.flavor_id,
        "original_name": server.flavor_id,
        "vcpus": server.vcpus,
        "ram": server.memory_mib,
        "disk": 0,
        "ephemeral": 0,
        "swap": 0,
    }
    doc["addresses"] = (
        {
            NETWORK_ID: [
                {
                    "version": 4,
                    "addr": address,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": server.mac,
                }
                for address in addresses_of(server)
            ]
        }
        if addresses_of(server)
        else {}
    )
    return doc


def flavor_document(flavor: Flavor) -> dict[str, object]:
    """One of ListFlavors' ``flavors``."""
    return {
        "id": flavor.id,
        "name": flavor.id,
        "vcpus": str(flavor.vcpus),
        "ram": flavor.memory_mib,
        "disk": "0",
        "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "OS-FLV-DISABLED:disabled": False,
        "rxtx_factor": 1.0,
        "rxtx_quota": "",
        "rxtx_cap": "",
        "os-flavor-access:is_public": True,
        "links": [],
        "os_extra_specs": {
            "ecs:performancetype": "normal",
            "cond:operation:status": "normal",
            "ecs:virtualization_env_types": "CloudCompute",
        },
    }


def flavors_document(flavors: Sequence[Flavor]) -> dict[str, object]:
    return {"flavors": [flavor_document(f) for f in flavors]}


def server_job_document(job: ServerJobRecord) -> dict[str, object]:
    """ECS ShowJob: the job, ``entities.server_id`` (when it is about one server),
    ``entities.sub_jobs_total`` and ``entities.sub_jobs``."""
    entities: dict[str, object] = {
        "sub_jobs_total": len(job.sub_jobs),
        "sub_jobs": [job_with_entities(s, {"server_id": s.server_id}) for s in job.sub_jobs],
    }
    if job.server_id is not None:
        entities["server_id"] = job.server_id
    return job_with_entities(job, entities)


__all__ = [
    "SSH_KEY",
    "flavors_document",
    "nova_server_document",
    "server_document",
    "server_job_document",
    "servers_document",
]
