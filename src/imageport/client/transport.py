"""One signed HTTP exchange with retries, shared by the image and bucket API clients.

:class:`Transport` owns an ``httpx.Client`` (one connection pool, reused across requests and
threads) and sends requests that a ``sign`` callback turns into headers just before each
attempt, so a retry is signed anew (a fresh date, so never a replay). Idempotent requests
(GET, HEAD, PUT, DELETE) are retried after broken connections, timeouts and 5xx replies, up to
``attempts`` times with a growing pause; POST is sent once, and a refused connection is not
retried (nobody is listening). Every failure becomes one
:class:`~imageport.client.errors.ClientError`; decoding the server's error body is left to the
API client through ``error_of``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imageport.client.errors import ClientError

if TYPE_CHECKING:
    import httpx

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
MAX_ERROR_BODY = 64 * 1024
"""Most bytes of an error reply read to find the server's code and message."""
MAX_REPLY_BODY = 16 * 1024 * 1024
"""Most bytes of a normal (JSON or XML) reply accepted."""

Signer = Callable[[str, str, dict[str, str]], dict[str, str]]
"""``(method, url, headers) -> headers to send`` (the body is bound by the caller)."""
ErrorOf = Callable[[int, bytes, str], ClientError]
"""``(status, body, request_id) -> ClientError`` decoding a server's error body."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect, and to wait for each read or write of a reply or body."""

    connect: float = 10.0
    read: float = 300.0
    write: float = 300.0


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful reply, its body read in full (bounded by :data:`MAX_REPLY_BODY`)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def request_id(self) -> str:
        return self.headers.get("x-request-id", "")


class Transport:
    """Signed requests to one base URL; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        error_of: ErrorOf,
        *,
        timeouts: Timeouts | None = None,
        pool: int = 8,
        attempts: int = 3,
        pause: float = 1.0,
    ) -> None:
        import httpx

        t = timeouts or Timeouts()
        self.base_url = base_url.rstrip("/")
        self._error_of = error_of
        self._attempts = max(1, attempts)
        self._pause = pause
        self._client = httpx.Client(
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.read),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            headers={"User-Agent": "imageport-client"},
            follow_redirects=False,
            trust_env=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(
        self,
        method: str,
        path_and_query: str,
        sign: Signer,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | Callable[[], Iterable[bytes]] = b"",
        ok: Iterable[int] = (200, 201, 202, 204),
    ) -> Reply:
        """Send ``method path_and_query`` (already percent-encoded) and return the reply.

        ``body`` is bytes, or a factory of byte chunks (called again for each attempt) whose
        total length must be given as Content-Length in ``headers``. A status not in ``ok``
        raises the server's error as :class:`ClientError`.
        """
        import httpx

        url = self.base_url + path_and_query
        wanted = frozenset(ok)
        attempts = self._attempts if method.upper() in IDEMPOTENT else 1
        for attempt in range(1, attempts + 1):
            sent = sign(method, url, dict(headers or {}))
            content = body if isinstance(body, bytes) else body()
            try:
                with self._client.stream(method, url, headers=sent, content=content) as response:
                    limit = MAX_REPLY_BODY if response.status_code in wanted else MAX_ERROR_BODY
                    data = _read_capped(response, limit)
            except httpx.TimeoutException as exc:
                failure = ClientError(f"{method} {url}: timed out ({type(exc).__name__})")
            except httpx.ConnectError as exc:  # nobody listens: retrying will not help
                raise ClientError(f"{method} {url}: cannot connect: {exc}") from exc
            except httpx.TransportError as exc:
                failure = ClientError(f"{method} {url}: cannot connect or send: {exc}")
            else:
                reply = Reply(response.status_code, response.headers, data)
                if response.status_code in wanted:
                    return reply
                failure = self._error_of(response.status_code, data, reply.request_id)
                if response.status_code < 500:
                    raise failure
            if attempt == attempts:
                raise failure
            time.sleep(self._pause * attempt)
        raise AssertionError("unreachable")  # pragma: no cover


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > limit:
            raise ClientError(
                f"reply from {response.request.url} is larger than {limit} bytes",
                status=response.status_code,
            )
        chunks.append(chunk)
    return b"".join(chunks)
