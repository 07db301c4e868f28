"""A terminal attached to a server's serial console, over the service's WebSocket.

:func:`websocket_url` points the URL the service answered at the endpoint this client uses
(the service builds it from the ``Host`` it was asked on; a proxy in front may have changed
that), and :func:`attach` connects (``websockets``' synchronous client) and copies bytes both
ways until one side ends: what the guest prints goes to ``out`` as it comes, what is read from
``stdin_fd`` is sent as binary messages, except that :data:`DETACH` (``Ctrl-]``, as telnet and
``virsh console`` use it) or the end of the input detaches. The console's URL works for one
connection: attaching again asks for a new one.
"""

from __future__ import annotations

import os
import select
import threading
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

from imageport.client.errors import ClientError
from imageport.client.ims import ims_error

DETACH = b"\x1d"
"""``Ctrl-]``: typed on the terminal, it detaches instead of reaching the guest."""
READ_BYTES = 4096
"""Most input bytes sent in one message."""
MAX_MESSAGE_BYTES = 1024 * 1024
"""Largest message taken from the service (it sends at most 64 KiB at once)."""
OPEN_SECONDS = 10.0
POLL_SECONDS = 0.2
"""How often the input loop looks whether the service closed the console."""


@dataclass(frozen=True, slots=True)
class ConsoleEnd:
    """How an attachment ended: ``detached`` by the user (``Ctrl-]`` or the end of the
    input), else closed by the service, with its ``reason`` (the machine stopped, idle...)."""

    detached: bool
    reason: str = ""


def websocket_url(endpoint: str, console_url: str) -> str:
    """``console_url``'s path and query on ``endpoint`` (``http`` -> ``ws``, ``https`` ->
    ``wss``)."""
    base, url = urlsplit(endpoint), urlsplit(console_url)
    scheme = {"http": "ws", "https": "wss"}.get(base.scheme)
    if scheme is None:
        raise ClientError(f"the endpoint {endpoint!r} is not an http or https URL")
    return urlunsplit((scheme, base.netloc, url.path, url.query, ""))


def attach(url: str, stdin_fd: int, out: BinaryIO) -> ConsoleEnd:
    """Connect to the console WebSocket ``url`` and copy both ways (see the module
    docstring) until the user detaches or the service closes it. A refused handshake (an
    expired or used URL, a server that stopped) raises :class:`ClientError`."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
    from websockets.sync.client import connect

    try:
        ws = connect(
            url,
            open_timeout=OPEN_SECONDS,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
            user_agent_header="imageport-client",
        )
    except InvalidStatus as exc:
        response = exc.response
        request_id = response.headers.get("x-request-id", "")
        raise ims_error(response.status_code, bytes(response.body or b""), request_id) from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ClientError(f"cannot open the console at {urlsplit(url).netloc}: {exc}") from exc

    with ws:
        closed = threading.Event()

        def show_output() -> None:
            try:
                for message in ws:
                    out.write(message if isinstance(message, bytes) else message.encode())
                    out.flush()
            except (ConnectionClosed, OSError):
                pass
            finally:
                closed.set()

        printer = threading.Thread(target=show_output, name="console-output", daemon=True)
        printer.start()
        detached = False
        while not closed.is_set():
            ready, _, _ = select.select([stdin_fd], [], [], POLL_SECONDS)
            if not ready:
                continue
            data = os.read(stdin_fd, READ_BYTES)
            cut = data.find(DETACH)
            detached = not data or cut >= 0
            data = data[:cut] if cut >= 0 else data
            try:
                if data:
                    ws.send(data)
            except ConnectionClosed:
                break
            if detached:
                break
        ws.close()
        printer.join(5)
    return ConsoleEnd(detached, "" if detached else (ws.close_reason or "the console closed"))
