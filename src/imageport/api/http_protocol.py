"""The HTTP/1.1 protocol of both listeners: uvicorn's, with the limits of
:mod:`imageport.api.http_limits` (bounded request heads, pipelining, read timeouts, connection
caps).

uvicorn's httptools protocol (uvicorn 0.55 on httptools 0.9 / llhttp 9) puts no bound on what a
client that never authenticates can make the server hold:

* httptools joins a header's name and value, and uvicorn the URL, piece by piece as they arrive,
  with no cap: one 256 MiB header line is held in memory (several times over while it is
  joined), and a 1 MiB header is answered like any other;
* nothing times the request head: uvicorn's keep-alive timer runs only between requests and the
  first byte of the next one stops it, so a head sent a byte at a time (or a connection that
  sends nothing) is kept for ever; nor the body: a request whose body stops half-way waits for
  ever;
* nothing limits connections (``limit_concurrency`` answers 503 but still accepts and keeps them);
* nothing limits pipelining: uvicorn parses all it reads and queues each request that must wait
  for the response before it (~2 KB for a 32-byte ``GET``), and every ``receive()`` of the
  request being served reads on: eight connections that pipeline 4 MiB of requests each and
  read no answer took the server from 66 MiB to 2.4 GiB.

:class:`LimitedHttpToolsProtocol` is uvicorn's protocol with those bounds (one subclass per
listener, from :func:`protocol_class`, so each counts its own connections):

* **head size**: bytes are handed to the parser in slices while a request head is incomplete,
  so it never holds more than the caps: the request target (URL) at most
  :attr:`HttpLimits.max_url_bytes` (414), the rest of the head (method, version, header lines) at
  most :attr:`HttpLimits.max_header_bytes` and :data:`MAX_HEADER_FIELDS` lines (431). A slice
  ends at the head's blank line, so the next pipelined request is counted on its own. Chunk-size
  lines and trailers of a chunked body are held to the same header cap (431), give or take one
  :data:`~imageport.api.http_input.CHUNKED_SLICE`.
* **pipelining**: once a complete head has to wait for the response before it (uvicorn's
  ``pipeline``), nothing more is parsed: the rest of that read (one read of the transport,
  256 KiB at most) is held back unparsed and reading stays paused, whoever asks (a
  ``receive()`` too), until that response is complete; then the waiting request starts and the
  held bytes are parsed first (its body, up to the next head, which waits in turn). So a
  connection holds one request being served, one waiting and one read. A chunked body is
  followed through its chunk-size lines and its last slice ends at the blank line ending it,
  so no head behind it is parsed in the same slice. Answers are bounded too: uvicorn writes a
  response only when the transport's buffer is below its high-water mark (64 KiB), and the
  next request starts only after it.
* **head timeout**: a head must be complete :attr:`HttpLimits.head_timeout` seconds after the
  connection opened or the previous response ended (408, or a plain close when nothing came).
* **body timeout**: while the application waits for body bytes (reading is not paused by flow
  control, no ``100 Continue`` is still owed) the client must send
  :attr:`HttpLimits.min_body_bytes` at least every :attr:`HttpLimits.body_timeout` seconds, so
  a body that stops, or trickles in a byte at a time, ends its connection (408 when no response
  was started, else a plain close); a client that reads nothing of a response for as long is
  cut off (the transport's buffer stays above its high-water mark: it reads less than ~800
  bytes/s with the default).
* **connections**: at most :attr:`HttpLimits.max_connections` open connections per listener and
  :attr:`HttpLimits.max_connections_per_client` per client address (an IPv6 client by its /64);
  one more is answered 503 (S3 ``SlowDown``, which the SDKs retry with back-off) and closed at
  once, before anything of it is read.

Every refusal is answered in the listener's error shape (S3 XML or the image API's JSON) with
``connection: close``, the connection is closed, and one closing for longer than
:data:`CLOSE_GRACE_SECONDS` (a client that does not read its answer) is aborted. Throughput is
not paid for: a body with a ``Content-Length`` is handed to the parser as it arrives (exactly the
bytes of the body, so the next head is counted), and the timers are one per connection that
re-arms itself, not one per read. ``Expect: 100-continue``, keep-alive and pipelining (answers
in order) work as in uvicorn. A request asking for another protocol (``Upgrade``, ``CONNECT``)
is answered as plain HTTP and its connection then ends (uvicorn kept it open, with a parser that
read nothing more), except a WebSocket handshake on a listener that takes them (the image
API's): its connection passes to :mod:`imageport.api.websocket_protocol`, unless it was
pipelined behind a response still being sent (then the connection ends after that one). A
client that goes away is noticed by the request being served (uvicorn told only the last one
parsed, which is the one waiting when there is one: the other wrote to the closed transport,
which uvloop refuses, and logged an error).
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import TimerHandle
from typing import Any, ClassVar

import httptools
from uvicorn._types import ASGI3Application
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from imageport import metrics
from imageport.api.http_input import Slicer, WatchedFlow
from imageport.api.http_limits import (
    BODY_TIMEOUT,
    FRAMING_TOO_LARGE,
    HEAD_TIMEOUT,
    MALFORMED,
    MAX_HEADER_FIELDS,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_FIELDS,
    Api,
    HttpLimits,
    Listener,
    Refusal,
    client_key,
    head_too_large,
    url_too_long,
)
from imageport.api.websocket_protocol import CountedWebSocketProtocol

log = logging.getLogger("imageport.http")

CLOSE_GRACE_SECONDS = 5.0
"""How long a closing connection may take to flush its last bytes before it is aborted."""


# Not an ImageportError on purpose: it is control flow. httptools wraps an exception raised in
# a callback into its own HttpParserError, which ``_feed`` catches; no caller ever sees a _Stop,
# so it is not in the tree of imageport.errors.
class _Stop(Exception):
    """Raised in a parser callback to stop the parser; the refusal is kept on the protocol."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of the module docstring."""

    listener: ClassVar[Listener]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = self.listener.limits
        self._client_key: str | None = None
        self._refusal: Refusal | None = None  # set by a parser callback that stopped it
        self._ended = False  # refused or timed out: input is dropped
        self._deferred: Refusal | None = None  # the answer owed once earlier responses are out
        self._lost = False
        # the request head being received
        self._head_open = True
        self._head_bytes = 0
        self._slices = Slicer()  # where the input is cut (see http_input)
        self._url_bytes = 0
        self._fields = 0
        # the request body being received
        self._body_left: int | None = None  # bytes to come of a Content-Length body
        self._body_seen = False
        self._framing_run = 0
        # input not yet fed to the parser, from ``_held_at`` on: it follows a pipelined
        # request that waits for the response before it (one read of the transport at most)
        self._held = b""
        self._held_at = 0
        self._serving: RequestResponseCycle | None = None  # the request being served
        # clocks (loop time)
        self._head_since = 0.0
        self._body_clock = 0.0  # when the body last made progress
        self._progress = 0  # bytes received since the body clock moved
        self._continue_owed = False
        self._write_paused_since: float | None = None
        self._closing_since: float | None = None
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0

    # -- connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        now = self.loop.time()
        self.flow = WatchedFlow(transport, self._reading_resumed, self._holding)
        self._head_since = self._body_clock = now
        host = self.client[0] if self.client else ""
        key = client_key(host)
        cap = self.listener.admit(key, len(self.connections))
        if cap is not None:
            self.listener.note_refused(now, cap, host)
            self._end(TOO_MANY_CONNECTIONS, answer=True)
            return
        self._client_key = key
        self._arm(now + self.limits.poll_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._client_key is not None:
            self.listener.release(self._client_key)
            self._client_key = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held = b""
        self.pipeline.clear()  # a request still waiting will not be served
        serving = self._serving
        if serving is not None and not serving.response_complete:
            # uvicorn tells only the last request parsed (``self.cycle``), which is not the
            # one being served when another waits: that one wrote to the closed transport
            # (uvloop raises) and logged an error for each such connection
            serving.disconnected = True
            serving.message_event.set()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused_since = self.loop.time()
        super().pause_writing()

    def resume_writing(self) -> None:
        self._write_paused_since = None
        super().resume_writing()

    # -- input --------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._progress += len(data)
        if self._progress >= self.limits.min_body_bytes:
            self._body_clock = self.loop.time()
            self._progress = 0
        self._unset_keepalive_if_required()
        if self._ended:
            return
        if self._holding():
            # reading is paused; what a transport still hands over waits with the rest
            self._held = self._held[self._held_at :] + data
            self._held_at = 0
            self.flow.pause_reading()
            return
        self._feed(data, 0)

    def _holding(self) -> bool:
        """Whether input is held back: a pipelined request waits for the response before
        it, or bytes received after it are not yet parsed."""
        return bool(self.pipeline) or self._held_at < len(self._held)

    def _feed(self, data: bytes, pos: int) -> None:
        """Hand ``data[pos:]`` to the parser in slices (see the module docstring). Once a
        complete head waits for the response before it (uvicorn queued it in
        ``pipeline``), the rest is held back, unparsed, and reading stays paused until that
        response is complete (:meth:`_release`): a connection queues one request at most."""
        end = len(data)
        view = memoryview(data)
        while pos < end:
            if self.pipeline:
                self._held, self._held_at = data, pos
                self.flow.pause_reading()
                return
            in_head = self._head_open
            if in_head:
                room = self.limits.max_header_bytes + self._url_bytes - self._head_bytes
                stop = pos + self._slices.cut(data, pos, end, room)
            elif self._body_left:
                stop = min(end, pos + self._body_left)
            else:
                stop = pos + self._slices.chunked_cut(data, pos, end)
            if in_head:
                self._head_bytes += stop - pos
            if self._body_left is None:
                self._slices.fed(data, pos, stop)
            self._body_seen = False
            try:
                self.parser.feed_data(data if pos == 0 and stop == end else view[pos:stop])
            except httptools.HttpParserUpgrade:
                if self._should_upgrade() and (self.cycle is None or self.cycle.response_complete):
                    self.handle_websocket_upgrade()
                    return
                # any other protocol (or a WebSocket pipelined behind a response still being
                # sent) is not spoken: the connection ends after the request before it, or
                # after this one, answered as plain HTTP (llhttp parses nothing more on it)
                self._ended = True
                if self.cycle is not None:
                    self.cycle.keep_alive = False
                return
            except httptools.HttpParserError:
                self._end(self._refusal or MALFORMED, answer=True)
                return
            if self._head_open and (
                self._head_bytes - self._url_bytes >= self.limits.max_header_bytes
            ):
                # the cap's worth was handed over and the head has not ended: it is longer
                self._end(head_too_large(self.limits), answer=True)
                return
            if not in_head and not self._head_open and self._body_left is None:
                # a chunked body: a run of bytes without body data is framing or trailers
                self._framing_run = 0 if self._body_seen else self._framing_run + stop - pos
                if self._framing_run > self.limits.max_header_bytes:
                    self._end(FRAMING_TOO_LARGE, answer=True)
                    return
            pos = stop

    # -- parser callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url_bytes = 0
        self._fields = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.limits.max_url_bytes:
            self._stop(url_too_long(self.limits))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > MAX_HEADER_FIELDS:
            self._stop(TOO_MANY_FIELDS)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._slices.body_begins()
        self._body_left = None
        self._framing_run = 0
        self._body_clock = self.loop.time()
        self._progress = 0
        length = None
        chunked = False
        for name, value in self.headers:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None and not chunked and length.isdigit():
            self._body_left = int(length)
        super().on_headers_complete()
        self._continue_owed = self.cycle is not None and self.cycle.waiting_for_100_continue

    def _reading_resumed(self, was_paused: bool) -> None:
        """The application asks for body bytes: the body clock starts again if the server had
        held the client back (reading paused, or a ``100 Continue`` owed until now)."""
        cycle = self.cycle
        if was_paused or (
            self._continue_owed and cycle is not None and not cycle.waiting_for_100_continue
        ):
            self._continue_owed = False
            self._body_clock = self.loop.time()
            self._progress = 0

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        if self._body_left is not None:
            self._body_left -= len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._head_open = True
        self._head_bytes = 0
        self._slices.head_begins()
        self._body_left = None
        self._head_since = self.loop.time()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._head_since = self.loop.time()
        if self._deferred is not None and not self.pipeline:
            self._close(self._deferred, answer=True)
            self._deferred = None
        super().on_response_complete()  # does nothing more on a closing transport
        self._release()

    def handle_websocket_upgrade(self) -> None:
        """Hand the connection to :class:`CountedWebSocketProtocol` (the handshake's head, as
        parsed, is fed to it again): this protocol's timer stops, and the connection's place in
        the listener's counts passes to the new protocol, which releases it when it closes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._ended = True
        key, self._client_key = self._client_key, None
        listener = self.listener

        def release() -> None:
            if key is not None:
                listener.release(key)

        self.connections.discard(self)
        head = [self.scope["method"].encode(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.scope["headers"]:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        protocol = CountedWebSocketProtocol(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        protocol.release = release
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        if self.flow.read_paused:
            self.transport.resume_reading()
        protocol.data_received(b"".join(head))

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._serving = cycle
        super()._start_asgi_task(cycle, app)

    def _release(self) -> None:
        """A response is complete and the request that waited for it started (uvicorn's
        ``on_response_complete``): hand the parser the input held back (its body, up to the
        next head, which waits in turn) and read again, unless a request waits again or the
        body buffer is full (the application's next ``receive()`` resumes reading then)."""
        if self._ended or self.transport.is_closing():
            return
        held, at = self._held, self._held_at
        self._held, self._held_at = b"", 0
        if at < len(held):
            self._feed(held, at)
        cycle = self.cycle
        if not (
            self._ended
            or self.pipeline
            or self.transport.is_closing()
            or (cycle is not None and len(cycle.body) > HIGH_WATER_LIMIT)
        ):
            self.flow.resume_reading()

    def _stop(self, refusal: Refusal) -> None:
        self._refusal = refusal
        raise _Stop(refusal.message)

    # -- timeouts -------------------------------------------------------------------------------

    def _arm(self, at: float) -> None:
        """Look at the connection at ``at`` (or earlier, if already due to look earlier)."""
        if self._lost:
            return
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._look)

    def _look(self) -> None:
        """The one timer of the connection: end it if a deadline passed, else look again at
        the next deadline (at the latest after :attr:`HttpLimits.poll_seconds`)."""
        self._timer = None
        if self._lost:
            return
        now = self.loop.time()
        if self.transport.is_closing():
            since = self._closing_since = self._closing_since or now
            if now >= since + CLOSE_GRACE_SECONDS:
                self.transport.abort()
            else:
                self._arm(since + CLOSE_GRACE_SECONDS)
            return
        limits = self.limits
        due = now + limits.poll_seconds
        if self._write_paused_since is not None:
            deadline = self._write_paused_since + limits.body_timeout
            if now >= deadline:
                log.info(
                    "client %s read nothing of its response for %.0f s: connection cut",
                    self._peer(),
                    limits.body_timeout,
                    extra={"api": self.listener.api},
                )
                metrics.HTTP_REFUSED.labels(self.listener.api, "send_timeout").inc()
                self._ended = True
                self.transport.abort()
                return
            due = min(due, deadline)
        cycle = self.cycle
        busy = cycle is not None and not cycle.response_complete
        if self._head_open:
            if not busy:
                deadline = self._head_since + limits.head_timeout
                if now >= deadline:
                    self._end(HEAD_TIMEOUT, answer=self._head_bytes > 0)
                    return
                due = min(due, deadline)
        elif not self.flow.read_paused and not (
            cycle is not None and cycle.waiting_for_100_continue
        ):
            deadline = self._body_clock + limits.body_timeout
            if now >= deadline:
                self._end(BODY_TIMEOUT, answer=True)
                return
            due = min(due, deadline)
        self._arm(due)

    # -- ending a connection --------------------------------------------------------------------

    def _end(self, refusal: Refusal, *, answer: bool) -> None:
        """Stop reading and close the connection with ``refusal``'s answer (when ``answer``).
        A refused head that follows a request still being served (pipelining) is answered
        after the responses before it; a refused body ends its request, which then sees a
        disconnect (and is answered only if it had not started its response)."""
        if self._ended:
            return
        self._ended = True
        metrics.HTTP_REFUSED.labels(self.listener.api, refusal.reason).inc()
        if refusal is not TOO_MANY_CONNECTIONS:  # those are logged by the listener, in bulk
            log.info(
                "%s: connection from %s closed",
                refusal.message,
                self._peer(),
                extra={"api": self.listener.api, "status": refusal.status},
            )
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._head_open:  # a head refused while earlier requests are served
                self.flow.pause_reading()
                self._deferred = refusal
                return
            answer = answer and not cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
        self._close(refusal, answer=answer)

    def _close(self, refusal: Refusal, *, answer: bool) -> None:
        if answer and not self.transport.is_closing():
            self.transport.write(
                refusal.response(self.listener.api, self.server_state.default_headers)
            )
        self.transport.close()
        self._closing_since = self.loop.time()
        self._arm(self._closing_since + CLOSE_GRACE_SECONDS)

    def _peer(self) -> str:
        return self.client[0] if self.client else "?"


def protocol_class(limits: HttpLimits, api: Api) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for one listener (``api``: its error shape and metrics label), with
    its own connection counts; pass it to ``uvicorn.Config(http=...)``."""
    shared = Listener(limits, api)

    class ListenerProtocol(LimitedHttpToolsProtocol):
        listener = shared

    ListenerProtocol.__name__ = ListenerProtocol.__qualname__ = f"LimitedHttpToolsProtocol[{api}]"
    return ListenerProtocol
