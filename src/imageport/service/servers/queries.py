"""Reading servers: one server, filtered pages of them, and a server's console log.

``GET /v1/{project_id}/cloudservers/detail`` (:func:`list_servers`) takes the vendor's query
parameters, each at most once (any other is refused, ``Ecs.0005``):

* ``name`` (part of the name), ``flavor`` (a flavor id), ``status`` (one of the vendor's
  statuses; ``DELETED`` lists deleted servers, which no other list shows), ``server_id``,
  ``ip`` (part of an address) and ``ip_eq`` (an address);
* ``tags`` and ``not-tags``: servers here have no tags, so ``tags`` matches none and
  ``not-tags`` every server; ``reservation_id``: servers here have none, so it matches none;
  ``enterprise_project_id``: every server is in the default one, ``0``, so ``0`` (or
  ``all_granted_eps``) matches every server and any other none;
* paging: ``limit`` (1-1000, 25 by default) servers a page, ``offset`` the page **number**
  (from 1; 0 means 1), or ``marker``, the id of the last server of the previous page (not with
  ``offset``). ``count`` is the number of servers matching the filters, all pages together.

Servers are listed newest first. ``GET .../cloudservers/{id}/console-output``
(:func:`console_output`) answers the last ``length`` lines of the serial console's log (50 by
default; ``-1``: everything the host keeps; at most :data:`MAX_CONSOLE_LINES`), ``Ecs.0321``
when the host cannot read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.ports import MachineError
from imageport.service.servers.create import require_host
from imageport.service.servers.create_request import invalid
from imageport.service.servers.network import GUEST_ADDRESS
from imageport.service.servers.records import ServerRecord, server_row
from imageport.service.servers.statuses import ServerStatus, VmState
from imageport.service.tables import servers

MAX_LIMIT = 1000
DEFAULT_LIMIT = 25
MAX_VALUE = 256
DEFAULT_CONSOLE_LINES = 50
MAX_CONSOLE_LINES = 10_000
#: The statuses the vendor documents; those this service never gives match no server.
STATUSES = frozenset(
    {
        *ServerStatus,
        "REBUILD",
        "MIGRATING",
        "RESIZE",
        "REVERT_RESIZE",
        "VERIFY_RESIZE",
        "SHELVED",
        "SHELVED_OFFLOADED",
    }
)
_PARAMS = frozenset(
    {
        "enterprise_project_id",
        "flavor",
        "ip",
        "limit",
        "name",
        "not-tags",
        "offset",
        "reservation_id",
        "status",
        "tags",
        "ip_eq",
        "server_id",
        "marker",
    }
)
_ALL_PROJECTS = ("0", "all_granted_eps")

Predicate = Callable[[ServerRecord], bool]


@dataclass(frozen=True, slots=True)
class ServerPage:
    servers: Sequence[ServerRecord]
    #: servers matching the filters, on every page
    count: int


def show_server(services: Services, project_id: str, server_id: str) -> ServerRecord:
    """The project's server (not deleted); ``Ecs.0114`` otherwise."""
    with services.db.connect() as conn:
        return ServerRecord.from_row(server_row(conn, project_id, server_id))


def addresses_of(server: ServerRecord) -> list[str]:
    """The server's IPv4 addresses (none once deleted)."""
    return [] if server.vm_state == VmState.DELETED else [GUEST_ADDRESS]


def list_servers(
    services: Services, project_id: str, query: Sequence[tuple[str, str]]
) -> ServerPage:
    """The project's servers matching ``query`` (see the module docstring)."""
    params: dict[str, str] = {}
    for name, value in query:
        if name not in _PARAMS:
            raise invalid(name[:64], "is not a query parameter of this list")
        if name in params:
            raise invalid(name, "is given twice")
        if len(value) > MAX_VALUE:
            raise invalid(name, f"is longer than {MAX_VALUE} characters")
        params[name] = value
    status = params.get("status")
    if status is not None and status not in STATUSES:
        raise invalid("status", f"must be one of {', '.join(sorted(STATUSES))}")
    statement = select(servers).where(servers.c.project_id == project_id)
    if status is None:
        statement = statement.where(servers.c.vm_state != VmState.DELETED)
    else:
        statement = statement.where(servers.c.status == status)
    with services.db.connect() as conn:
        rows = conn.execute(statement).all()
    records = [ServerRecord.from_row(r) for r in rows]
    predicates = _predicates(params)
    found = [r for r in records if all(p(r) for p in predicates)]
    found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    limit = _number(params.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    if "marker" in params:
        if "offset" in params:
            raise invalid("marker", "cannot be given with offset")
        index = next((i for i, r in enumerate(found) if r.id == params["marker"]), None)
        if index is None:
            raise invalid("marker", "is not a server of this list")
        start = index + 1
    else:
        page = _number(params.get("offset"), "offset", 1, 0, 1_000_000)
        start = (max(page, 1) - 1) * limit
    return ServerPage(found[start : start + limit], len(found))


def _predicates(params: dict[str, str]) -> list[Predicate]:
    tests: list[Predicate] = []
    if "name" in params:
        part = params["name"]
        tests.append(lambda r: part in r.name)
    if "flavor" in params:
        flavor = params["flavor"]
        tests.append(lambda r: r.flavor_id == flavor)
    if "server_id" in params:
        wanted = params["server_id"]
        tests.append(lambda r: r.id == wanted)
    if "ip" in params:
        ip = params["ip"]
        tests.append(lambda r: any(ip in a for a in addresses_of(r)))
    if "ip_eq" in params:
        ip_eq = params["ip_eq"]
        tests.append(lambda r: ip_eq in addresses_of(r))
    if "tags" in params or "reservation_id" in params:
        tests.append(lambda r: False)  # no server here has tags or a reservation id
    eps = params.get("enterprise_project_id")
    if eps is not None and eps not in _ALL_PROJECTS:
        tests.append(lambda r: False)  # every server is in the default enterprise project
    return tests


def _number(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    number = whole_number(raw)
    if number is None or not low <= number <= high:
        raise invalid(name, f"must be a whole number {low}-{high}")
    return number


def console_output(
    services: Services, project_id: str, server_id: str, query: Sequence[tuple[str, str]]
) -> str:
    """The last lines of the server's serial console log (see the module docstring)."""
    host = require_host(services)
    lines: int | None = DEFAULT_CONSOLE_LINES
    for name, value in query:
        if name != "length" or len(query) > 1:
            raise invalid(name[:64], "is not a query parameter here (only length, once)")
        if value == "-1":
            lines = None
        else:
            lines = _number(value, "length", DEFAULT_CONSOLE_LINES, 0, MAX_CONSOLE_LINES)
    with services.db.connect() as conn:
        server_row(conn, project_id, server_id)
    try:
        return host.console_output(server_id, lines)
    except MachineError as exc:
        raise RequestInvalid(
            codes.ECS_CONSOLE_FAILED, f"the console log of server {server_id} cannot be read: {exc}"
        ) from exc


__all__ = [
    "ServerPage",
    "addresses_of",
    "console_output",
    "list_servers",
    "show_server",
]
