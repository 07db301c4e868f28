"""The console WebSockets: the display (VNC) and the serial console, bridged to the machine.

``GET /vnc/websockify?token=T`` (noVNC's WebSocket, subprotocol ``binary`` as websockify
speaks it) carries the VNC protocol's bytes both ways between the client and QEMU's VNC unix
socket; ``GET /serial/websocket?token=T`` carries the serial console: what the guest prints
arrives as binary messages, what the client sends (text or binary messages) is typed.

Neither is signed with SDK-HMAC (a browser cannot): the token of a console URL
(:mod:`imageport.service.servers.console_tokens`) is the only credential. Before the handshake
is accepted:

1. an ``Origin`` header, when there is one, must be this listener's own origin (the ``Host``
   the request was sent to, under ``http`` or ``https``): a page of another site cannot open a
   console with a URL it got hold of (403);
2. the client may offer the ``binary`` subprotocol and nothing else (400);
3. at most :data:`MAX_SESSIONS` consoles are open at once, :data:`MAX_SESSIONS_PER_PROJECT`
   per project (503 ``IMG.HTTP503``, as the listener's own refusals);
4. the token is redeemed (used up) and the server must still be ``ACTIVE`` with its machine
   running (403 ``Ecs.0003`` for a bad token, 400 ``Ecs.0100`` for a server without a console).

Refusals are HTTP answers to the handshake in the API's JSON error shape. An open console ends
(a close frame with the reason) when its machine stops (the socket ends, or a look every
:data:`CHECK_SECONDS` finds the server not ``ACTIVE`` or its machine off), when the client
sends nothing for :data:`IDLE_SECONDS`, or when the client goes; a client that stops reading
is cut off by the listener's WebSocket pings (:mod:`imageport.api.http_limits`). A client
message is at most :data:`~imageport.api.http_limits.WS_MAX_MESSAGE_BYTES` (a longer one
closes the connection, 1009); a message to the client at most :data:`CHUNK_BYTES`.

The serial console port is synchronous: its reads (:data:`SERIAL_READ_SECONDS` at most each)
and writes run in threads of a pool of their own, two per session, so open consoles never take
the threads the API's views run in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from imageport.api.ims.errors import error_response
from imageport.limits import KiB
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.ports import ConsoleSession, MachineError
from imageport.service.servers import consoles
from imageport.service.servers.console_tokens import ConsoleGrant

log = logging.getLogger("imageport.consoles")

SUBPROTOCOL = "binary"
"""The one subprotocol spoken (websockify's name for raw binary frames)."""
MAX_SESSIONS = 32
"""Consoles (display and serial together) open at once on this service."""
MAX_SESSIONS_PER_PROJECT = 8
"""Consoles one project may have open at once."""
IDLE_SECONDS = 900.0
"""A console whose client sent nothing (no key, no pointer, no screen request) for this long is
closed; what the machine sends does not count, so a guest printing a log keeps nothing open."""
CHECK_SECONDS = 2.0
"""How often an open console looks whether its server still runs."""
CHUNK_BYTES = 64 * KiB
"""Largest message sent to the client (the bytes read from the machine at once)."""
SERIAL_READ_SECONDS = 0.2
"""Longest wait of one read of the serial console (a closing session waits for it)."""

#: close codes (RFC 6455)
NORMAL = 1000
UNSUPPORTED_DATA = 1003


@dataclass
class _Sessions:
    """The open consoles of one application, and the threads the serial consoles use."""

    by_project: dict[str, int] = field(default_factory=dict)
    total: int = 0
    _threads: anyio.CapacityLimiter | None = None

    def full(self) -> bool:
        return self.total >= MAX_SESSIONS

    def project_full(self, project_id: str) -> bool:
        return self.by_project.get(project_id, 0) >= MAX_SESSIONS_PER_PROJECT

    def admit(self, project_id: str) -> bool:
        if self.full() or self.project_full(project_id):
            return False
        self.total += 1
        self.by_project[project_id] = self.by_project.get(project_id, 0) + 1
        return True

    def release(self, project_id: str) -> None:
        self.total -= 1
        left = self.by_project.get(project_id, 0) - 1
        if left > 0:
            self.by_project[project_id] = left
        else:
            self.by_project.pop(project_id, None)

    @property
    def threads(self) -> anyio.CapacityLimiter:
        """A read and a write per serial console (made on first use: it needs the loop)."""
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(2 * MAX_SESSIONS)
        return self._threads


@dataclass(frozen=True, slots=True)
class _Ended:
    """Why a console closed: the close code and the reason sent with it."""

    code: int
    reason: str


def console_routes(services: Services) -> list[BaseRoute]:
    """The console WebSockets and the display's page."""
    sessions = _Sessions()

    async def display(websocket: WebSocket) -> None:
        """WebSocket: the server's display (noVNC connects here with `?token=` of a
        remote_console URL): VNC bytes both ways, subprotocol `binary`."""
        await _display(services, sessions, websocket)

    async def serial(websocket: WebSocket) -> None:
        """WebSocket: the server's serial console (`?token=` of a serial-console URL): the
        guest's output as binary messages; text or binary messages from the client are
        typed."""
        await _serial(services, sessions, websocket)

    return [
        Route(consoles.VNC_PAGE_PATH, display_page, methods=["GET"]),
        WebSocketRoute(consoles.VNC_SOCKET_PATH, display, name="console_display"),
        WebSocketRoute(consoles.SERIAL_SOCKET_PATH, serial, name="console_serial"),
    ]


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imageport: server display</title>
<link rel="stylesheet" href="/console/static/console.css">
<script type="module" src="/console/static/vnc_auto.js"></script>
</head>
<body class="vnc-page">
<header><strong>Server display</strong>
<button type="button" id="ctrl-alt-del" disabled>Send Ctrl+Alt+Del</button>
<span id="status" role="status" aria-live="polite">Loading the viewer&hellip;</span></header>
<main id="screen" aria-label="Server display"></main>
<noscript><p>The viewer (noVNC) needs JavaScript. Any VNC client that speaks WebSockets can use
the display's WebSocket, <code>/vnc/websockify</code> with the same <code>token</code> query
parameter (subprotocol <code>binary</code>).</p></noscript>
</body></html>
"""
#: the display page's policy: the viewer's files and its WebSocket from this origin only
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def display_page(request: Request) -> Response:
    """The display's page of a remote_console URL, unauthenticated: noVNC connected to the
    display's WebSocket with the URL's token (the same page for every request).

    The viewer ships with the web console (``/console/static/``). The page shows nothing of the
    request; its script takes the token from the address bar, removes it from there and sends
    it only to the WebSocket (no referrer; scripts, styles and fetches from this origin only)."""
    return HTMLResponse(
        _PAGE,
        headers={
            "Content-Security-Policy": _PAGE_CSP,
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        },
    )


# -- the handshake ------------------------------------------------------------------------------


class _Refused(Exception):
    """The handshake is answered with ``status`` and the API's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def same_origin(headers: Headers) -> bool:
    """Whether the request's ``Origin`` (if any) is the origin its ``Host`` names: the same
    host and port (a missing port is the scheme's default), under ``http`` or ``https``."""
    origin = headers.get("origin")
    if origin is None:
        return True
    try:
        theirs = urlsplit(origin)
        ours = urlsplit("//" + headers.get("host", ""))
        if theirs.scheme not in ("http", "https") or not theirs.hostname:
            return False
        default = 443 if theirs.scheme == "https" else 80
        return (theirs.hostname, theirs.port or default) == (ours.hostname, ours.port or default)
    except ValueError:  # a port that is not a number
        return False


def _subprotocol(websocket: WebSocket) -> str | None:
    offered = list(websocket.scope.get("subprotocols", []))
    if not offered:
        return None
    if SUBPROTOCOL not in offered:
        raise _Refused(
            400, codes.ECS_INVALID, f"the console speaks only the {SUBPROTOCOL!r} subprotocol"
        )
    return SUBPROTOCOL


def _token(websocket: WebSocket) -> str:
    tokens = websocket.query_params.getlist("token")
    if len(tokens) != 1:
        raise _Refused(403, codes.ECS_FORBIDDEN, "the console URL needs exactly one token")
    return tokens[0]


def _precheck(
    services: Services, websocket: WebSocket, sessions: _Sessions
) -> tuple[str, str | None]:
    """Steps 1-3 of the module docstring (before the token is used up): the token and the
    subprotocol to accept."""
    if not same_origin(websocket.headers):
        raise _Refused(403, codes.ECS_FORBIDDEN, "the Origin of the page is not this service's own")
    subprotocol = _subprotocol(websocket)
    if sessions.full():
        raise _Refused(503, codes.http_status(503), "too many consoles are open; retry later")
    token = _token(websocket)
    project_id = consoles.token_project(services, token)
    if project_id is not None and sessions.project_full(project_id):
        raise _project_full()
    return token, subprotocol


def _project_full() -> _Refused:
    return _Refused(
        503, codes.http_status(503), "too many consoles of this project are open; close one"
    )


def _admit(sessions: _Sessions, grant: ConsoleGrant) -> None:
    """Count the console (a project that filled up since :func:`_precheck`: 503, the token
    used up)."""
    if not sessions.admit(grant.project_id):
        raise _project_full()


async def _deny(websocket: WebSocket, refusal: _Refused | ServiceError) -> None:
    """Answer the handshake with an HTTP error (the WebSocket is never opened)."""
    await websocket.send_denial_response(
        error_response(refusal.status, refusal.code, refusal.message)
    )


# -- the bridges --------------------------------------------------------------------------------


async def _display(services: Services, sessions: _Sessions, websocket: WebSocket) -> None:
    writer: asyncio.StreamWriter | None = None
    try:
        token, subprotocol = _precheck(services, websocket, sessions)
        target = await run_in_threadpool(consoles.open_display, services, token)
        try:
            reader, writer = await asyncio.open_unix_connection(
                str(target.socket), limit=CHUNK_BYTES
            )
        except OSError as exc:
            raise _Refused(
                400, codes.ECS_STATE, f"the display of server {target.grant.server_id} is gone"
            ) from exc
        _admit(sessions, target.grant)
    except (_Refused, ServiceError) as refusal:
        if writer is not None:
            writer.close()
        await _deny(websocket, refusal)
        return
    grant = target.grant
    try:
        await websocket.accept(subprotocol)
        activity = _Activity()

        async def from_client() -> _Ended | None:
            while True:
                data = await _next_input(websocket, activity, text_allowed=False)
                if isinstance(data, _Ended) or data is None:
                    return data
                try:
                    writer.write(data)
                    await writer.drain()
                except OSError:
                    return _Ended(NORMAL, "the server's display closed")

        async def to_client() -> _Ended:
            with contextlib.suppress(OSError):
                while data := await reader.read(CHUNK_BYTES):
                    await websocket.send_bytes(data)
            return _Ended(NORMAL, "the server's display closed")

        await _run_session(services, websocket, grant, activity, from_client, to_client)
    finally:
        writer.close()
        sessions.release(grant.project_id)


async def _serial(services: Services, sessions: _Sessions, websocket: WebSocket) -> None:
    session: ConsoleSession | None = None
    try:
        token, subprotocol = _precheck(services, websocket, sessions)
        target = await run_in_threadpool(consoles.open_serial, services, token)
        session = target.session
        _admit(sessions, target.grant)
    except (_Refused, ServiceError) as refusal:
        if session is not None:
            await run_in_threadpool(session.close)
        await _deny(websocket, refusal)
        return
    grant, threads = target.grant, sessions.threads
    try:
        await websocket.accept(subprotocol)
        activity = _Activity()

        async def from_client() -> _Ended | None:
            while True:
                data = await _next_input(websocket, activity, text_allowed=True)
                if isinstance(data, _Ended) or data is None:
                    return data
                try:
                    await anyio.to_thread.run_sync(session.write, data, limiter=threads)
                except MachineError:
                    return _Ended(NORMAL, "the server stopped")

        async def to_client() -> _Ended:
            while True:
                try:
                    data = await anyio.to_thread.run_sync(
                        session.read, SERIAL_READ_SECONDS, limiter=threads
                    )
                except MachineError:
                    return _Ended(NORMAL, "the server stopped")
                for start in range(0, len(data), CHUNK_BYTES):
                    await websocket.send_bytes(data[start : start + CHUNK_BYTES])

        await _run_session(services, websocket, grant, activity, from_client, to_client)
    finally:
        await anyio.to_thread.run_sync(session.close, limiter=threads)
        sessions.release(grant.project_id)


@dataclass
class _Activity:
    """When the client last sent something (monotonic seconds)."""

    last_input: float = field(default_factory=time.monotonic)


async def _next_input(
    websocket: WebSocket, activity: _Activity, *, text_allowed: bool
) -> bytes | _Ended | None:
    """The next message's bytes; None when the client has gone, an :class:`_Ended` for a
    message the console does not take."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    activity.last_input = time.monotonic()
    data = message.get("bytes")
    if data is not None:
        return bytes(data)
    if text_allowed:
        return str(message.get("text") or "").encode()
    return _Ended(UNSUPPORTED_DATA, "the display takes binary messages only")


async def _run_session(
    services: Services,
    websocket: WebSocket,
    grant: ConsoleGrant,
    activity: _Activity,
    from_client: Callable[[], Awaitable[_Ended | None]],
    to_client: Callable[[], Awaitable[_Ended]],
) -> None:
    """Run both directions and the watch until one ends; close the WebSocket with its reason
    (unless the client went away first: then the input it sent before is still delivered)."""

    async def watch() -> _Ended:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            if time.monotonic() - activity.last_input >= IDLE_SECONDS:
                return _Ended(NORMAL, f"nothing was sent for {IDLE_SECONDS:g} s")
            if not await run_in_threadpool(consoles.machine_running, services, grant):
                return _Ended(NORMAL, "the server stopped")

    async def output() -> _Ended:
        try:
            return await to_client()
        except WebSocketDisconnect:
            # the client has gone; what it sent before it left is still taken, and the input
            # side ends the session when it reaches the disconnect
            await asyncio.Event().wait()
            raise

    started = time.monotonic()
    log.info("console %s of server %s opened", grant.kind, grant.server_id)
    tasks = [asyncio.ensure_future(step()) for step in (from_client, output, watch)]
    ended: _Ended | None = None
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        first = done.pop()
        error = first.exception()
        if error is None:
            ended = first.result()
        elif not isinstance(error, WebSocketDisconnect):  # the client went away: nobody to tell
            raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.info(
            "console %s of server %s closed after %.0f s: %s",
            grant.kind,
            grant.server_id,
            time.monotonic() - started,
            ended.reason if ended else "the client left",
        )
    if ended is not None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.close(ended.code, ended.reason)
