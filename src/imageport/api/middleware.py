"""Request context for both APIs: a request id, one structured log line, and the HTTP metrics.

:class:`RequestContext` is plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``): it
wraps ``send`` to add a header and note the status, and never touches ``receive``, so request
bodies stream through unbuffered and uvicorn still answers ``Expect: 100-continue`` only when
the application starts reading the body.

For every HTTP request it:

* picks the request id: the client's ``X-Request-Id`` when it is 1-64 characters of
  ``[A-Za-z0-9-]`` (so a caller can follow its own id through our logs), else a new 32-hex id;
  stores it in ``scope["state"]["request_id"]`` (``request.state.request_id`` in Starlette, which
  the error renderers put in error bodies) and sends it back as ``X-Request-Id`` on every
  response, errors included;
* counts the request in ``imageport_http_requests_total{api,method,status}`` and its latency in
  ``imageport_http_request_duration_seconds{api}``;
* logs one JSON line (logger ``imageport.access``): request_id, api, method, path, the query
  with credentials masked, status, duration_ms, and ``project``/``access_key`` when the
  application authenticated the caller and recorded them as ``request.state.project_id`` /
  ``request.state.access_key``.

An exception that escapes the application before it started a response becomes a 500 with the
request id (in the API's error shape), logged with its traceback; the client never sees a
traceback.

A WebSocket (the image API's consoles) gets the same: a request id (sent back on the ``101``
or on the handshake's refusal), one log line when it ends, with ``status`` 101 when it was
accepted (else the refusal's: 403 when the application closed it unaccepted), ``duration_ms``
the whole session and ``websocket: true``, and the request metrics under method ``GET``. Its
query is logged masked like any other (the console ``token`` is a credential).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imageport import logs, metrics
from imageport.service import codes
from imageport.service.clock import new_id

log = logging.getLogger("imageport.access")

HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"^[A-Za-z0-9-]{1,64}$")
#: Methods counted under their own name; anything else is counted as "OTHER" (a client must not
#: be able to create metric series at will).
_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})
_MAX_LOGGED_PATH = 512
_MAX_LOGGED_QUERY = 512
#: Query parameters whose values are credentials (presigned URLs, tokens): logged as "***".
_SECRET_PARAM = re.compile(
    r"signature|credential|security-token|secret|password|accesskeyid"
    r"|^token$|auth-token",
    re.IGNORECASE,
)


def request_id_from(scope: Scope) -> str:
    """The client's X-Request-Id if it is sane (1-64 of ``[A-Za-z0-9-]``), else a new id."""
    for name, value in scope.get("headers", ()):
        if name == HEADER and _SANE_ID.match(value):
            return str(value.decode("ascii"))
    return new_id()


def masked_query(raw: bytes) -> str:
    """The query string for logs: credential values replaced by ``***``, capped in length."""
    if not raw:
        return ""
    text = raw[: _MAX_LOGGED_QUERY * 2].decode("latin-1")
    pairs = parse_qsl(text, keep_blank_values=True)
    shown = "&".join(
        quote(k, safe="-_.~")
        + ("=" + ("***" if _SECRET_PARAM.search(k) else quote(v, safe="-_.~/")) if v else "")
        for k, v in pairs
    )
    return shown[:_MAX_LOGGED_QUERY]


def _error_body(api: str, request_id: str) -> tuple[bytes, bytes]:
    """A 500 body in the API's error shape (content type, body)."""
    message = "the server failed to handle the request; report the request id to its operator"
    if api == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
            f"<Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
        )
        return b"application/xml", body.encode()
    doc = {
        "error": {"code": codes.BAD_REQUEST, "message": message},
        "error_code": codes.BAD_REQUEST,
        "error_msg": message,
        "request_id": request_id,
    }
    return b"application/json", json.dumps(doc).encode()


class RequestContext:
    """ASGI middleware giving each HTTP request of one API (``api``: "ims" or "s3") its id,
    metrics and log line; other scope types (lifespan) pass through untouched."""

    def __init__(self, app: ASGIApp, api: str) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        request_id = request_id_from(scope)
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        header = (HEADER, request_id.encode("ascii"))
        status = 0
        recorded = False
        failure: BaseException | None = None

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(scope, state, request_id, status, started_at, failure)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                headers.append(header)
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # counted and logged before the last byte leaves: once a client has its whole
                # answer, the metrics already show the request
                record()
            await send(message)

        try:
            with logs.bound(request_id=request_id):
                await self.app(scope, receive, send_with_id)
        except Exception as exc:  # any failure of the app becomes a logged 500
            failure = exc
            if status == 0:
                content_type, body = _error_body(self.api, request_id)
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", content_type),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_id({"type": "http.response.body", "body": body})
            elif recorded:
                log.error(
                    "unhandled error in the application (answered %s)",
                    status,
                    exc_info=exc,
                    extra={"request_id": request_id, "api": self.api},
                )
        finally:
            record()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket's handshake and session (see the module docstring); an exception that
        escapes the application is logged here, and uvicorn refuses the handshake (500) or
        drops the connection."""
        started_at = time.perf_counter()
        request_id = request_id_from(scope)
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        header = (HEADER, request_id.encode("ascii"))
        status = 0
        failure: BaseException | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("websocket.accept", "websocket.http.response.start"):
                status = 101 if kind == "websocket.accept" else int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, header]}
            elif kind == "websocket.close" and status == 0:
                status = 403  # closed before it was accepted: uvicorn answers 403
            await send(message)

        try:
            with logs.bound(request_id=request_id):
                await self.app(scope, receive, send_with_id)
        except Exception as exc:  # noqa: BLE001 - logged by _record; uvicorn then refuses or drops
            failure = exc
            status = status or 500
        finally:
            self._record(scope, state, request_id, status, started_at, failure)

    def _record(
        self,
        scope: Scope,
        state: MutableMapping[str, Any],
        request_id: str,
        status: int,
        started_at: float,
        failure: BaseException | None,
    ) -> None:
        seconds = time.perf_counter() - started_at
        websocket = scope["type"] == "websocket"
        method = "GET" if websocket else str(scope.get("method", ""))
        # 499: the client went away before any response was started (nginx's convention)
        shown = status or 499
        metrics.REQUESTS.labels(
            self.api, method if method in _METHODS else "OTHER", str(shown)
        ).inc()
        metrics.REQUEST_SECONDS.labels(self.api).observe(seconds)
        fields: dict[str, object] = {
            "request_id": request_id,
            "api": self.api,
            "method": method[:16],
            "path": str(scope.get("path", ""))[:_MAX_LOGGED_PATH],
            "status": shown,
            "duration_ms": round(seconds * 1000, 1),
        }
        query = masked_query(scope.get("query_string", b""))
        if query:
            fields["query"] = query
        if websocket:
            fields["websocket"] = True
        for key, field in (("project_id", "project"), ("access_key", "access_key")):
            if state.get(key):
                fields[field] = str(state[key])
        # a 503 is the service asking a client to come back (SlowDown, a replayed signature, a
        # connection cap): worth seeing, not an error to be paged for
        level = logging.WARNING if shown == 503 else logging.ERROR if shown >= 500 else logging.INFO
        if failure is not None:
            level = logging.ERROR
        log.log(
            level, "%s %s %s", method[:16], fields["path"], shown, extra=fields, exc_info=failure
        )
