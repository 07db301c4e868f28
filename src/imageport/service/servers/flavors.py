"""Flavors: the sizes a server can have, a fixed catalogue sized for a small machine.

Names follow the vendor's pattern ``<family>.<size>.<GiB of memory per vCPU>``: ``small`` and
``medium`` have one vCPU, ``large`` two. A flavor is offered when one server of it fits the
host at all: its memory is at most ``server_max_memory_mib`` (the per-server cap) and its
vCPUs and memory at most the host's budgets (``server_host_vcpus``,
``server_host_memory_mib``). A flavor not offered is unknown to every request (``Ecs.0029``).

A server's system disk is sized by its ``root_volume``, not by the flavor (``disk`` is
``"0"``, as the vendor's ECS flavors); the flavor's vCPUs and memory are copied onto the server
row when it is made, so a server keeps its size whatever the catalogue says later.

``GET /v1/{project_id}/cloudservers/flavors`` (:func:`list_flavors`) takes the vendor's query
parameters ``availability_zone`` (ours only: another zone has no flavors), ``flavor_id``,
``limit`` (1-1000) and ``marker`` (the last id of the previous page).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.errors import RequestInvalid
from imageport.settings import Settings

MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Flavor:
    id: str
    vcpus: int
    memory_mib: int


CATALOGUE: Sequence[Flavor] = (
    Flavor("s1.small.1", 1, 1024),
    Flavor("s1.medium.2", 1, 2048),
    Flavor("s1.large.1", 2, 2048),
)


def availability_zone(settings: Settings) -> str:
    """The one availability zone: the region's name and ``a`` (``local-1a``)."""
    return f"{settings.region}a"


def offered(settings: Settings) -> list[Flavor]:
    """The flavors one server may have on this host (see the module docstring)."""
    return [
        f
        for f in CATALOGUE
        if f.memory_mib <= settings.server_max_memory_mib
        and f.memory_mib <= settings.server_host_memory_mib
        and f.vcpus <= settings.server_host_vcpus
    ]


def flavor_by_id(settings: Settings, flavor_id: object) -> Flavor:
    """The offered flavor ``flavor_id``; ``Ecs.0029`` for any other value."""
    for flavor in offered(settings):
        if flavor.id == flavor_id:
            return flavor
    shown = str(flavor_id)[:64] if isinstance(flavor_id, str) else type(flavor_id).__name__
    names = ", ".join(f.id for f in offered(settings)) or "none"
    raise RequestInvalid(
        codes.ECS_FLAVOR_UNKNOWN,
        f"flavorRef {shown!r} is not a flavor of this service (offered: {names})",
    )


def list_flavors(settings: Settings, query: Sequence[tuple[str, str]]) -> list[Flavor]:
    """The offered flavors matching ``query`` (the parameters of the module docstring; any
    other is refused with ``Ecs.0005``)."""
    params: dict[str, str] = {}
    for name, value in query:
        if name not in ("availability_zone", "flavor_id", "limit", "marker") or name in params:
            raise RequestInvalid(
                codes.ECS_INVALID,
                f"query parameter {name[:64]!r} is not supported (or given twice)",
            )
        params[name] = value[:256]
    found = offered(settings)
    zone = params.get("availability_zone")
    if zone is not None and zone != availability_zone(settings):
        found = []
    if "flavor_id" in params:
        found = [f for f in found if f.id == params["flavor_id"]]
    marker = params.get("marker")
    if marker is not None:
        index = next((i for i, f in enumerate(found) if f.id == marker), None)
        if index is None:
            raise RequestInvalid(codes.ECS_INVALID, f"marker {marker[:64]!r} is not a flavor id")
        found = found[index + 1 :]
    if "limit" in params:
        limit = whole_number(params["limit"])
        if limit is None or not 1 <= limit <= MAX_LIMIT:
            raise RequestInvalid(codes.ECS_INVALID, f"limit must be 1-{MAX_LIMIT}")
        found = found[:limit]
    return found


__all__ = [
    "CATALOGUE",
    "Flavor",
    "availability_zone",
    "flavor_by_id",
    "list_flavors",
    "offered",
]
