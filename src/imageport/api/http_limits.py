"""HTTP/1.1 limits of both listeners: what they are, how refusals are answered, and how
connections are counted (:class:`HttpLimits`, :class:`Refusal`, :class:`Listener`).

uvicorn's httptools protocol puts no bound on what a client that never authenticates can make
the server hold; :mod:`imageport.api.http_protocol` applies these limits to it (its docstring
says how): request heads (the URL at most :attr:`HttpLimits.max_url_bytes`, 414; the rest at most
:attr:`HttpLimits.max_header_bytes` and :data:`MAX_HEADER_FIELDS` lines, 431), pipelining (one
request waiting behind the one served), head and body timeouts (408), and connections per
listener and per client address (503 ``SlowDown``, closed before anything is read).

A WebSocket (the image API's consoles) is a connection upgraded from HTTP
(:mod:`imageport.api.websocket_protocol`): its head passed the limits above, it keeps its
place in the connection counts until it closes, and its messages are bounded by
:data:`WS_MAX_MESSAGE_BYTES` and its liveness by :data:`WS_PING_SECONDS`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import resource
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
)

from imageport import metrics
from imageport.limits import KiB
from imageport.service import codes
from imageport.settings import Settings

log = logging.getLogger("imageport.http")

MAX_HEADER_FIELDS = 100
"""Most header lines (and trailer lines) in one request (Apache's ``LimitRequestFields``)."""
FD_RESERVE = 1024
"""Open files kept free for the database, stored files and job processes when the process's
open-file limit is fitted to the connection caps."""
REFUSAL_LOG_SECONDS = 10.0
"""At most one log line per listener in this time for connections refused by a cap (a flood
of connections must not flood the log too)."""
WS_MAX_MESSAGE_BYTES = 64 * KiB
"""Largest WebSocket message a client may send (the image API's console WebSockets carry key
and pointer events, screen requests and typed text); a longer one closes the connection
(1009). Messages are not compressed (``permessage-deflate`` is not offered), so this bounds
what one message holds in memory."""
WS_PING_SECONDS = 20.0
"""A WebSocket is pinged after this long and closed when the pong does not come within as
long again: a client that is gone, or reads nothing, is cut off after at most 40 s."""

Api = Literal["ims", "s3"]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The bounds one listener enforces (see the module docstring; 0 turns a connection cap
    off, the others must be positive)."""

    max_url_bytes: int
    max_header_bytes: int
    head_timeout: float
    body_timeout: float
    max_connections: int
    max_connections_per_client: int
    #: body bytes that must arrive within each ``body_timeout`` while the application waits
    #: (with the default timeout ~550 bytes/s, Apache's ``MinRate`` is 500): a body trickled a
    #: byte at a time would otherwise hold its connection (and buffers) for ever
    min_body_bytes: int = 32 * KiB

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_url_bytes=settings.http_max_url_bytes,
            max_header_bytes=settings.http_max_header_bytes,
            head_timeout=float(settings.http_head_timeout_seconds),
            body_timeout=float(settings.http_body_timeout_seconds),
            max_connections=settings.http_max_connections,
            max_connections_per_client=settings.http_max_connections_per_client,
        )

    @property
    def poll_seconds(self) -> float:
        """Longest time between two looks of a connection's timer: no deadline can start and
        pass between two looks, so the timer never needs re-arming earlier."""
        return min(self.head_timeout, self.body_timeout)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection is ended: the HTTP status, the bucket API's error code, the message,
    and the ``reason`` label of ``imageport_http_refused_total``."""

    status: int
    s3_code: str
    message: str
    reason: str

    def response(self, api: Api, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
        """The whole HTTP response, in ``api``'s error shape, with ``connection: close`` after
        ``headers`` (uvicorn's defaults: ``date``)."""
        if api == "s3":
            content_type = b"application/xml"
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                f"{self.s3_code}</Code><Message>{self.message}</Message></Error>"
            ).encode()
        else:
            code = codes.http_status(self.status)
            content_type = b"application/json"
            body = json.dumps(
                {
                    "error": {"code": code, "message": self.message},
                    "error_code": code,
                    "error_msg": self.message,
                }
            ).encode()
        return b"".join(
            [
                STATUS_LINE[self.status],
                *(b"%s: %s\r\n" % (name, value) for name, value in headers),
                b"content-type: ",
                content_type,
                b"\r\ncontent-length: ",
                str(len(body)).encode(),
                b"\r\nconnection: close\r\n\r\n",
                body,
            ]
        )


def url_too_long(limits: HttpLimits) -> Refusal:
    return Refusal(
        414,
        "InvalidURI",
        f"the request target is longer than {limits.max_url_bytes} bytes",
        "url_too_long",
    )


def head_too_large(limits: HttpLimits) -> Refusal:
    return Refusal(
        431,
        "RequestHeaderSectionTooLarge",
        f"the request header section is larger than {limits.max_header_bytes} bytes",
        "header_too_large",
    )


TOO_MANY_FIELDS = Refusal(
    431,
    "RequestHeaderSectionTooLarge",
    f"the request has more than {MAX_HEADER_FIELDS} header lines",
    "too_many_headers",
)
FRAMING_TOO_LARGE = Refusal(
    431,
    "RequestHeaderSectionTooLarge",
    "a chunk-size line or the trailers of the chunked body are too large",
    "trailers_too_large",
)
MALFORMED = Refusal(400, "InvalidRequest", "the request is not valid HTTP/1.1", "malformed")
HEAD_TIMEOUT = Refusal(
    408, "RequestTimeout", "the request head was not received in time", "head_timeout"
)
BODY_TIMEOUT = Refusal(
    408,
    "RequestTimeout",
    "the request body stopped arriving: the connection was not read from within the timeout period",
    "body_timeout",
)
TOO_MANY_CONNECTIONS = Refusal(
    503, "SlowDown", "too many connections; retry later", "connection_limit"
)


def client_key(host: str) -> str:
    """The address a client's connections are counted under: its IPv4 address (also when
    IPv4-mapped), or the /64 network of an IPv6 address (one host may hold a whole /64)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Listener:
    """What the connections of one listener share: its limits and per-client counts."""

    def __init__(self, limits: HttpLimits, api: Api) -> None:
        self.limits = limits
        self.api = api
        self.per_client: dict[str, int] = {}
        self.refused_since_log = 0
        self.last_refusal_log = float("-inf")

    def admit(self, key: str, open_connections: int) -> str | None:
        """Count a new connection from ``key``; the cap it would break instead (then it is
        not counted)."""
        limits = self.limits
        if limits.max_connections and open_connections > limits.max_connections:
            return "max_connections"
        if (
            limits.max_connections_per_client
            and self.per_client.get(key, 0) >= limits.max_connections_per_client
        ):
            return "max_connections_per_client"
        self.per_client[key] = self.per_client.get(key, 0) + 1
        metrics.HTTP_CONNECTIONS.labels(self.api).inc()
        return None

    def release(self, key: str) -> None:
        left = self.per_client.get(key, 0) - 1
        if left > 0:
            self.per_client[key] = left
        else:
            self.per_client.pop(key, None)
        metrics.HTTP_CONNECTIONS.labels(self.api).dec()

    def note_refused(self, now: float, cap: str, client: str) -> None:
        """Log a connection refused by ``cap``: at most one line per
        :data:`REFUSAL_LOG_SECONDS`, with how many were refused since the last."""
        self.refused_since_log += 1
        if now - self.last_refusal_log >= REFUSAL_LOG_SECONDS:
            log.warning(
                "refused %d connection(s) over %s (latest from %s)",
                self.refused_since_log,
                cap,
                client,
                extra={"api": self.api},
            )
            self.refused_since_log = 0
            self.last_refusal_log = now


def fit_open_file_limit(limits: HttpLimits, listeners: int = 2) -> None:
    """Raise the soft open-file limit so that full listeners leave :data:`FD_RESERVE` files
    for the rest (a systemd service starts with 1024); warn when the hard limit is too low."""
    if not limits.max_connections:
        return
    needed = listeners * limits.max_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log.warning(
                "open-file limit %d is below the %d that %d connections per listener "
                "need: lower http_max_connections or raise the limit",
                target,
                needed,
                limits.max_connections,
            )
