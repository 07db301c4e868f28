"""Cross-origin uploads from the web console: CORS on the bucket API, for one origin only.

The console's upload page (served by the image API's listener, another origin) sends each part
of a multipart upload straight to the bucket API with a presigned URL. A browser sends such a
``PUT`` only after a preflight ``OPTIONS`` the bucket API allowed for the page's origin, and lets
the page read the answer (the part's status, its error document) only when that answer carries
``Access-Control-Allow-Origin``.

Which origin (:class:`ConsoleOrigin`):

* with the setting ``console_origin`` (the console as browsers reach it, e.g.
  ``https://console.example.com`` behind a proxy): that origin, exactly;
* otherwise: an ``http`` or ``https`` origin whose host name is the host name of the ``Host``
  the request was sent to and whose port is the image API's, where ``imageport serve``
  serves the console: the console's own pages on the same host.

Nothing else: no wildcard, no ``null``, and never credentials (no
``Access-Control-Allow-Credentials``: part URLs carry their own signature; the bucket API
reads no cookie).

What is allowed: the preflight answers 200 only for a ``PUT`` of an upload part (an object URL
with ``partNumber`` and ``uploadId``) whose only requested headers are ``content-type`` and
``x-amz-checksum-sha256``; anything else gets 403 ``AccessForbidden`` (S3's answer to a CORS
request its rules do not allow) and no ``Access-Control-*`` header. A ``PUT``'s answer from
the console's origin gets ``Access-Control-Allow-Origin`` and ``Access-Control-Expose-Headers:
ETag``. A preflight carries no credentials (browsers send none with it): it is answered from
its request line and headers alone and says nothing about any bucket or object.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from imageport.api.s3.responses import base_headers, error_response
from imageport.service.errors import ServiceError

ALLOWED_METHOD = "PUT"
ALLOWED_HEADERS = frozenset({"content-type", "x-amz-checksum-sha256"})
"""Headers a console page's part upload may send beyond the ones browsers always may."""
EXPOSED_HEADERS = "ETag, x-amz-request-id, X-Request-Id"
MAX_AGE_SECONDS = 600
"""How long a browser may keep a preflight's answer."""
MAX_ORIGIN = 300
"""Longest ``Origin`` value parsed (a DNS name is at most 253 bytes)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REFUSED = (
    "CORSResponse: This CORS request is not allowed. This is usually because the evaluation of "
    "Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers "
    "are not allowed by the resource's CORS rules."
)


@dataclass(frozen=True, slots=True)
class Origin:
    """A parsed web origin: scheme, lower-case host name, port (the scheme's default when
    none is written)."""

    scheme: str
    host: str
    port: int


def parse_origin(text: str) -> Origin | None:
    """``scheme://host[:port]`` (http or https, nothing after the authority, no user), else
    None."""
    if not text or len(text) > MAX_ORIGIN or not text.isascii() or not text.isprintable():
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        return None
    return Origin(parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme])


def host_name(host: str) -> str:
    """The host name of a ``Host`` header value (port and IPv6 brackets removed, lower case)."""
    host = host.strip().lower()[:MAX_ORIGIN]
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0].removesuffix(".")


@dataclass(frozen=True, slots=True)
class ConsoleOrigin:
    """The one origin whose pages may upload parts to the bucket API (see the module
    docstring): ``origin`` when set, else the request's host name on ``console_port``."""

    #: the image API's port, where the console is served; None: unknown (no CORS at all)
    console_port: int | None = None
    #: the setting ``console_origin``, when set
    origin: str | None = None

    def allows(self, origin: str | None, host: str) -> bool:
        """Whether a page of ``origin`` may send parts to the bucket API reached as ``host``."""
        seen = parse_origin(origin or "")
        if seen is None:
            return False
        if self.origin is not None:
            return seen == parse_origin(self.origin)
        if self.console_port is None:
            return False
        return seen.host == host_name(host) and seen.port == self.console_port


def _is_part_upload(request: Request) -> bool:
    """An object URL (``/bucket/key``) with ``partNumber`` and ``uploadId``."""
    bucket, _, key = request.url.path.lstrip("/").partition("/")
    query = request.query_params
    return bool(bucket and key) and "partNumber" in query and "uploadId" in query


def _requested_headers(request: Request) -> set[str] | None:
    """The names of ``Access-Control-Request-Headers``, None when there are too many."""
    text = request.headers.get("access-control-request-headers", "")
    if len(text) > 1024:
        return None
    return {name.strip().lower() for name in text.split(",") if name.strip()}


def preflight(request: Request, policy: ConsoleOrigin) -> Response:
    """The answer to an ``OPTIONS`` (see the module docstring)."""
    origin = request.headers.get("origin")
    asked = _requested_headers(request)
    if (
        origin is not None
        and policy.allows(origin, request.headers.get("host", ""))
        and request.headers.get("access-control-request-method") == ALLOWED_METHOD
        and asked is not None
        and asked <= ALLOWED_HEADERS
        and _is_part_upload(request)
    ):
        headers = {
            **base_headers(request),
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ALLOWED_METHOD,
            "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
            "Vary": "Origin",
        }
        if asked:
            headers["Access-Control-Allow-Headers"] = ", ".join(sorted(asked))
        return Response(b"", status_code=200, headers=headers)
    refused = error_response(
        request, ServiceError("AccessForbidden", _REFUSED, status=403), request.url.path[:1024]
    )
    refused.headers["Vary"] = "Origin"
    return refused


def allow_reading(request: Request, response: Response, policy: ConsoleOrigin) -> None:
    """Let the console's page read the answer to its part ``PUT`` (only that origin, only a
    ``PUT``)."""
    origin = request.headers.get("origin")
    if request.method != ALLOWED_METHOD or origin is None:
        return
    if policy.allows(origin, request.headers.get("host", "")):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.headers["Vary"] = "Origin"
