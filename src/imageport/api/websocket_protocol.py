"""WebSockets on the image API's listener: the connection a console handshake upgrades to.

:class:`~imageport.api.http_protocol.LimitedHttpToolsProtocol` parses the handshake as any
request head (so its size, field count and arrival time are bounded as every head's), then
hands the connection to :class:`CountedWebSocketProtocol`: uvicorn's WebSocket protocol on
websockets' sans-I/O implementation (the one uvicorn 0.55 keeps working with websockets 14 and
later; its ``legacy`` one is deprecated there), which

* keeps the connection's place in its listener's counts (total and per client) until the
  connection closes, so WebSockets count against the same caps as HTTP connections;
* takes client messages of at most
  :data:`~imageport.api.http_limits.WS_MAX_MESSAGE_BYTES`, uncompressed, one at a time (it
  stops reading until the application has taken the message before);
* pings the client every :data:`~imageport.api.http_limits.WS_PING_SECONDS` and closes the
  connection when no pong comes as long after;
* waits for the transport to drain before the application's next message goes out.

:func:`websocket_settings` are the ``uvicorn.Config`` arguments that select it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from imageport.api.http_limits import WS_MAX_MESSAGE_BYTES, WS_PING_SECONDS


class CountedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol that calls :attr:`release` once its connection
    is lost (the upgrading protocol sets it: the connection's place in the listener's counts)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.release: Callable[[], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            release, self.release = self.release, None
            if release is not None:
                release()


def websocket_settings() -> dict[str, Any]:
    """The ``uvicorn.Config`` arguments of a listener that takes WebSockets."""
    return {
        "ws": CountedWebSocketProtocol,
        "ws_max_size": WS_MAX_MESSAGE_BYTES,
        "ws_per_message_deflate": False,
        "ws_ping_interval": WS_PING_SECONDS,
        "ws_ping_timeout": WS_PING_SECONDS,
    }
