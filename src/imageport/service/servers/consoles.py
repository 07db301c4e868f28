"""A server's consoles: the URLs the API hands out, and what a console WebSocket may open.

Two consoles, each reached through a WebSocket of the image API's listener that the service
bridges to the machine (:mod:`imageport.api.ecs.console_sockets`):

* the display (``POST .../remote_console``, the vendor's ShowServerRemoteConsole): a noVNC URL
  whose WebSocket the service bridges to QEMU's VNC unix socket
  (:meth:`~imageport.service.ports.ServerHost.vnc_socket`); QEMU's VNC never listens on a port;
* the serial console (``POST .../actions/serial-console``, the vendor's optional
  ShowSerialConsoleActions): a WebSocket bridged to
  :meth:`~imageport.service.ports.ServerHost.attach_console`.

Asking for a URL is an authenticated API call on a server of the caller's project that is
``ACTIVE``; the URL carries a token (:mod:`.console_tokens`: random, single use, 10 minutes,
in memory only) that is the WebSocket's only credential. Opening a WebSocket redeems the token
and checks again that the server is ``ACTIVE`` and its machine runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import Forbidden, NotFound, RequestInvalid, ServiceError
from imageport.service.images.validation import parse_json_body
from imageport.service.ports import ConsoleSession, MachineError, ServerHost
from imageport.service.servers.console_tokens import ConsoleGrant, ConsoleKind, expiry
from imageport.service.servers.statuses import ServerStatus
from imageport.service.tables import servers

#: The only ``remote_console`` the vendor's API defines (and the SDK's model allows).
REMOTE_CONSOLE = {"protocol": "vnc", "type": "novnc"}
#: Where the URLs point, on the image API's listener.
VNC_PAGE_PATH = "/vnc/vnc_auto.html"
VNC_SOCKET_PATH = "/vnc/websockify"
SERIAL_SOCKET_PATH = "/serial/websocket"


@dataclass(frozen=True, slots=True)
class ConsoleTicket:
    """A console URL's token and when it stops working."""

    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class DisplayTarget:
    """A redeemed display token: whose machine, and its VNC unix socket."""

    grant: ConsoleGrant
    socket: Path


@dataclass(frozen=True, slots=True)
class SerialTarget:
    """A redeemed serial token: whose machine, and the attached console (the caller closes it)."""

    grant: ConsoleGrant
    session: ConsoleSession


def remote_console(
    services: Services, project_id: str, path_project_id: str, server_id: str, body: bytes
) -> ConsoleTicket:
    """A display token for the caller's ``ACTIVE`` server; ``body`` must be
    ``{"remote_console": {"protocol": "vnc", "type": "novnc"}}`` (``Ecs.0005`` otherwise)."""
    _check_project(project_id, path_project_id)
    _remote_console_option(_json(body, required=True))
    return _issue(services, project_id, server_id, ConsoleKind.VNC)


def serial_console(
    services: Services, project_id: str, path_project_id: str, server_id: str, body: bytes
) -> ConsoleTicket:
    """A serial-console token for the caller's ``ACTIVE`` server; the request has no body (an
    empty JSON object is taken too, anything else is ``Ecs.0005``)."""
    _check_project(project_id, path_project_id)
    doc = _json(body, required=False)
    if doc not in (None, {}):
        raise RequestInvalid(codes.ECS_INVALID, "the serial-console action takes no body")
    return _issue(services, project_id, server_id, ConsoleKind.SERIAL)


def open_display(services: Services, token: str) -> DisplayTarget:
    """Redeem a display token: the machine's VNC socket. :class:`Forbidden` (``Ecs.0003``)
    for a token that is unknown, used, expired or not a display token; :class:`RequestInvalid`
    (``Ecs.0100``) when the server is no longer ``ACTIVE`` or its machine does not run."""
    grant = _redeem(services, token, ConsoleKind.VNC)
    host = _running_host(services, grant)
    try:
        return DisplayTarget(grant, host.vnc_socket(grant.server_id))
    except MachineError as exc:
        raise _not_running(grant.server_id, str(exc)) from exc


def open_serial(services: Services, token: str) -> SerialTarget:
    """Redeem a serial-console token and attach to the machine's serial console (errors as
    :func:`open_display`)."""
    grant = _redeem(services, token, ConsoleKind.SERIAL)
    host = _running_host(services, grant)
    try:
        return SerialTarget(grant, host.attach_console(grant.server_id))
    except MachineError as exc:
        raise _not_running(grant.server_id, str(exc)) from exc


def token_project(services: Services, token: str) -> str | None:
    """The project whose console ``token`` would open, without using it up (None: unknown), so
    a console refused for its project's count keeps its URL."""
    return services.console_tokens.project_of(token)


def machine_running(services: Services, grant: ConsoleGrant) -> bool:
    """Whether the console's server is still ``ACTIVE`` and its machine runs (an open console
    is closed once it is not)."""
    try:
        _running_host(services, grant)
    except ServiceError:
        return False
    return True


# -- the steps ----------------------------------------------------------------------------------


def _check_project(project_id: str, path_project_id: str) -> None:
    if path_project_id != project_id:
        raise RequestInvalid(
            codes.ECS_PROJECT_MISMATCH,
            "the project id in the path is not the one of the credentials",
        )


def _json(body: bytes, *, required: bool) -> object:
    """The body's JSON, the image API's checks with the server API's codes."""
    try:
        return parse_json_body(body, required=required)
    except RequestInvalid as exc:
        raise RequestInvalid(codes.ECS_BAD_REQUEST, exc.message) from exc


def _remote_console_option(doc: object) -> None:
    if not isinstance(doc, dict) or set(doc) != {"remote_console"}:
        raise RequestInvalid(
            codes.ECS_INVALID, 'the body must be {"remote_console": {"protocol", "type"}}'
        )
    option = doc["remote_console"]
    if not isinstance(option, Mapping):
        raise RequestInvalid(codes.ECS_INVALID, "remote_console must be an object")
    for name in option:
        if name not in REMOTE_CONSOLE:
            raise RequestInvalid(
                codes.ECS_INVALID, f"remote_console.{str(name)[:64]} is not a known field"
            )
    for name, wanted in REMOTE_CONSOLE.items():
        if option.get(name) != wanted:
            raise RequestInvalid(
                codes.ECS_INVALID, f"remote_console.{name} must be {wanted!r} (the only one)"
            )


def _issue(services: Services, project_id: str, server_id: str, kind: ConsoleKind) -> ConsoleTicket:
    status = _server_status(services, project_id, server_id)
    if status is None:
        raise NotFound(codes.ECS_NOT_FOUND, f"server {server_id[:64]!r} not found")
    if status != ServerStatus.ACTIVE:
        raise RequestInvalid(
            codes.ECS_STATE, f"server {server_id} is {status}: a console needs it ACTIVE"
        )
    now = services.clock()
    grant = ConsoleGrant(server_id, project_id, kind, expiry(now))
    return ConsoleTicket(services.console_tokens.issue(grant, now), grant.expires_at)


def _server_status(services: Services, project_id: str, server_id: str) -> str | None:
    """The status of the project's server ``server_id`` (None: none such, or deleted)."""
    with services.db.connect() as conn:
        status = conn.execute(
            select(servers.c.status).where(
                servers.c.id == server_id,
                servers.c.project_id == project_id,
                servers.c.deleted_at.is_(None),
            )
        ).scalar_one_or_none()
    return None if status is None or status == ServerStatus.DELETED else str(status)


def _redeem(services: Services, token: str, kind: ConsoleKind) -> ConsoleGrant:
    grant = services.console_tokens.redeem(token, kind, services.clock())
    if grant is None:
        raise Forbidden(
            codes.ECS_FORBIDDEN,
            "the console token is unknown, already used or expired: ask for a new console URL",
        )
    return grant


def _running_host(services: Services, grant: ConsoleGrant) -> ServerHost:
    status = _server_status(services, grant.project_id, grant.server_id)
    if status != ServerStatus.ACTIVE:
        raise _not_running(grant.server_id, f"it is {status or 'deleted'}")
    host = services.host
    if host is None or not host.state(grant.server_id).running:
        raise _not_running(grant.server_id, "its machine does not run")
    return host


def _not_running(server_id: str, why: str) -> RequestInvalid:
    return RequestInvalid(codes.ECS_STATE, f"server {server_id} has no console now: {why}")
