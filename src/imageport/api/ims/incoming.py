"""What every image API request goes through before its view: body, signature, project.

:func:`endpoint` turns a plain view ``(services, call) -> Response`` into a Starlette endpoint
that

1. reads the body, at most :data:`MAX_BODY` bytes (413 ``IMG.0001`` beyond);
2. authenticates the request (``SDK-HMAC-SHA256`` or an ``X-Auth-Token``) over the raw path
   and query exactly as they came on the request line and the sha256 of the body (a declared
   ``X-Sdk-Content-Sha256`` must match it; ``UNSIGNED-PAYLOAD`` only where the route says so);
3. refuses an ``X-Project-Id`` header naming another project than the key's (403
   ``ProjectMismatch``);
4. runs the view in a worker thread (the service layer is synchronous) and renders any
   :class:`~imageport.service.errors.ServiceError` as the vendor's error body.

A signed write uses up its signature (:mod:`~imageport.service.access.authn`); when the view fails
on the server's side (5xx) the signature is released, so that the client's retry is accepted.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from imageport.api.ims.errors import service_error
from imageport.auth import SignedRequest
from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.access.authn import Authenticated, Principal, authenticate_request, release
from imageport.service.context import Services
from imageport.service.errors import Forbidden, RequestInvalid, ServiceError
from imageport.service.images.validation import MAX_JSON_BYTES, parse_json_body

MAX_BODY = MAX_JSON_BYTES
"""Largest request body read (every image API body is a small JSON document)."""
SCHEMES = frozenset({"sdk-hmac", "token"})


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated request, as a view sees it."""

    principal: Principal
    body: bytes
    path_params: Mapping[str, str]
    query: Sequence[tuple[str, str]]
    raw_query: str
    content_type: str
    #: the authentication itself (its replay key is released if the request fails on our side)
    authenticated: Authenticated | None = None
    #: the request's headers, names in lower case (repeated ones joined with ",")
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: the service's root URL as this request reached it (scheme and ``Host``), ending in ``/``
    base_url: str = ""

    @property
    def project_id(self) -> str:
        return self.principal.project_id

    def json(self, *, required: bool = True) -> object:
        """The body parsed as JSON (IMG.0007 empty, IMG.0001 malformed)."""
        return parse_json_body(self.body, required=required)


View = Callable[[Services, Call], Response]


async def read_body(
    request: Request, limit: int = MAX_BODY, code: str = codes.BAD_REQUEST
) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413 ``code``) before reading them
    all: a Content-Length over it is refused at once, a longer stream as soon as it is."""

    def too_large() -> RequestInvalid:
        return RequestInvalid(code, f"the request body is larger than {limit} bytes", status=413)

    if (whole_number(request.headers.get("content-length", "")) or 0) > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def signed_request(request: Request, body: bytes) -> SignedRequest:
    """The facts the signature covers: raw path and query, headers decoded as UTF-8."""
    raw_path = request.scope.get("raw_path")
    path = (
        raw_path.decode("latin-1") if isinstance(raw_path, bytes) else quote(request.scope["path"])
    )
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("utf-8", "replace")
        # repeated headers are joined with "," as the clients' signers do
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return SignedRequest(
        method=request.method,
        raw_path=path,
        raw_query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body_sha256=hashlib.sha256(body).hexdigest(),
    )


def authenticate_call(
    services: Services,
    request: Request,
    body: bytes,
    *,
    signed: SignedRequest | None = None,
    unsigned_payload: bool = False,
) -> Call:
    """Authenticate ``request`` and check its ``X-Project-Id``; the view's call record.
    ``unsigned_payload``: the route takes ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD``."""
    signed = signed or signed_request(request, body)
    authenticated = authenticate_request(
        services, signed, schemes=SCHEMES, unsigned_payload=unsigned_payload
    )
    principal = authenticated.principal
    request.state.project_id = principal.project_id
    request.state.access_key = principal.access_key
    claimed = signed.header("x-project-id")
    if claimed is not None and claimed != principal.project_id:
        raise Forbidden(
            "ProjectMismatch", "X-Project-Id names another project than the one of the credentials"
        )
    return Call(
        principal=principal,
        body=body,
        path_params=dict(request.path_params),
        query=request.query_params.multi_items(),
        raw_query=signed.raw_query,
        content_type=request.headers.get("content-type", ""),
        authenticated=authenticated,
        headers=signed.headers,
        base_url=str(request.base_url),
    )


def release_call(services: Services, call: Call | None) -> None:
    """Release the signature ``call`` used up: its request failed on the server's side."""
    if call is not None and call.authenticated is not None:
        release(services, call.authenticated)


def server_side(error: BaseException) -> bool:
    """Whether ``error`` ends a request without it being the client's fault (5xx or a bug)."""
    return not isinstance(error, ServiceError) or error.status >= 500


def authenticate_headers(services: Services, request: Request) -> Call:
    """Authenticate a request whose body is image data, before reading it: an
    ``X-Auth-Token``, or an ``SDK-HMAC-SHA256`` signature over ``X-Sdk-Content-Sha256:
    UNSIGNED-PAYLOAD`` (what the vendor SDK sends for non-JSON bodies); a signature over the
    body's hash cannot be checked before the body is read and is refused."""
    signed = dataclasses.replace(signed_request(request, b""), body_sha256=None)
    return authenticate_call(services, request, b"", signed=signed, unsigned_payload=True)


def endpoint(
    services: Services, view: View, *, unsigned_payload: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint running ``view`` after the steps in the module docstring;
    ``unsigned_payload``: the route takes ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` (the
    vendor SDK sends it for a non-JSON content type: the JSON-patch updates)."""

    def run(request: Request, body: bytes) -> Response:
        call = authenticate_call(services, request, body, unsigned_payload=unsigned_payload)
        try:
            response = view(services, call)
        except BaseException as error:
            if server_side(error):
                release_call(services, call)
            raise
        if response.status_code >= 500:
            release_call(services, call)
        return response

    async def handle(request: Request) -> Response:
        try:
            body = await read_body(request)
            return await run_in_threadpool(run, request, body)
        except ServiceError as error:
            return service_error(error, request)
        except ClientDisconnect:  # gone before its body ended: nothing was done, nobody reads
            return service_error(
                RequestInvalid(
                    codes.BAD_REQUEST, "the client went away before the request body ended"
                ),
                request,
            )

    handle.__name__ = view.__name__
    handle.__doc__ = view.__doc__
    return handle
