"""The console URL routes of the server API: each view parses, calls one function of
:mod:`imageport.service.servers.consoles` and renders the vendor's document.

The URLs point at this listener, as the request reached it (its scheme and ``Host``); the
WebSockets they lead to are :mod:`imageport.api.ecs.console_sockets`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.service.context import Services
from imageport.service.servers import consoles


def _url(base_url: str, path: str, token: str, *, websocket: bool = False) -> str:
    base = base_url.rstrip("/")
    if websocket:
        base = "ws" + base.removeprefix("http")  # http -> ws, https -> wss
    return f"{base}{path}?{urlencode({'token': token})}"


def remote_console(services: Services, call: Call) -> Response:
    """The display's noVNC URL (valid 10 minutes, for one connection) of an ``ACTIVE`` server:
    `{"remote_console": {"protocol": "vnc", "type": "novnc"}}` in,
    `{"remote_console": {"protocol", "type", "url"}}` out."""
    ticket = consoles.remote_console(
        services,
        call.project_id,
        call.path_params["project_id"],
        call.path_params["server_id"],
        call.body,
    )
    url = _url(call.base_url, consoles.VNC_PAGE_PATH, ticket.token)
    return JSONResponse({"remote_console": {**consoles.REMOTE_CONSOLE, "url": url}})


def serial_console(services: Services, call: Call) -> Response:
    """The serial console's WebSocket URL (valid 10 minutes, for one connection) of an
    ``ACTIVE`` server: no body in, `{"serial_console": {"url": "ws://.../serial/websocket?token=..."}}`
    out."""
    ticket = consoles.serial_console(
        services,
        call.project_id,
        call.path_params["project_id"],
        call.path_params["server_id"],
        call.body,
    )
    url = _url(call.base_url, consoles.SERIAL_SOCKET_PATH, ticket.token, websocket=True)
    return JSONResponse({"serial_console": {"url": url}})
