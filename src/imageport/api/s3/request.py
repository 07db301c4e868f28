"""What an S3 request asks for (bucket, key, sub-resources, dialect) and who sends it.

The path is read from the raw request line (``/bucket`` or ``/bucket/`` is the bucket,
``/bucket/some/key`` an object), the query with blank values kept (``?uploads`` and
``?uploads=`` are the same). Authentication happens before any body byte is read, so a refused
``Expect: 100-continue`` upload is answered without the body being sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from imageport.auth import SignedRequest
from imageport.auth.request import EMPTY_SHA256, MAX_PATH, MAX_QUERY
from imageport.service.authn import Principal, authenticate
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid, ServiceError, Unauthenticated

SCHEMES = frozenset({"sigv4", "s3v2"})
MAX_QUERY_FIELDS = 64

_AUTH_STATUS = {
    "AuthorizationHeaderMalformed": 400,
    "XAmzContentSHA256Mismatch": 400,
    "InvalidArgument": 400,
    "InvalidRequest": 400,
}
"""S3 status of each authentication failure code; the others are 403."""


@dataclass(frozen=True, slots=True)
class S3Call:
    """One parsed bucket-API request."""

    method: str
    bucket: str
    key: str
    query: dict[str, str]
    #: ``amz`` or ``obs``: how storage classes and metadata headers are spelled back
    dialect: str
    raw_path: str
    raw_query: str

    def has(self, name: str) -> bool:
        return name in self.query

    @property
    def resource(self) -> str:
        return self.raw_path


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    return bytes(raw).split(b"?", 1)[0].decode("utf-8", "replace")


def parse_call(request: Request) -> S3Call:
    """Split the request line into bucket, key and query; refuse oversized ones."""
    raw_path = _raw_path(request)
    raw_query = bytes(request.scope.get("query_string", b"")).decode("utf-8", "replace")
    if len(raw_path) > MAX_PATH or len(raw_query) > MAX_QUERY:
        raise RequestInvalid("InvalidURI", "the request path or query is too long")
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError as exc:
        raise RequestInvalid("InvalidURI", "too many query parameters") from exc
    query: dict[str, str] = {}
    for name, value in pairs:
        query.setdefault(name, value)
    path = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    bucket, _, key = path.lstrip("/").partition("/")
    headers = request.headers
    auth = headers.get("authorization", "")
    obs = auth.startswith("OBS ") or any(name.startswith("x-obs-") for name in headers)
    return S3Call(request.method, bucket, key, query, "obs" if obs else "amz", raw_path,
                  raw_query)


def signed_request(request: Request, call: S3Call) -> SignedRequest:
    """The signature facts; bodiless requests get the empty body's sha256."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("utf-8", "replace")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    bodiless = (headers.get("content-length", "0").strip() == "0"
                and "transfer-encoding" not in headers)
    return SignedRequest(method=call.method, raw_path=call.raw_path, raw_query=call.raw_query,
                         headers=headers, body_sha256=EMPTY_SHA256 if bodiless else None)


def _s3_error(exc: Unauthenticated) -> ServiceError:
    return ServiceError(exc.code, exc.message, status=_AUTH_STATUS.get(exc.code, 403))


async def authenticate_call(services: Services, request: Request, call: S3Call) -> Principal:
    """The caller, or a ServiceError in S3's terms (403 ``AccessDenied``,
    ``SignatureDoesNotMatch``, ``InvalidAccessKeyId``, ``RequestTimeTooSkewed`` ...)."""
    if "X-Amz-Signature" in call.query or "Signature" in call.query:
        raise ServiceError("AccessDenied", "presigned URLs are not supported", status=403)
    signed = signed_request(request, call)
    try:
        return await run_in_threadpool(authenticate, services, signed, schemes=SCHEMES)
    except Unauthenticated as exc:
        raise _s3_error(exc) from exc


@dataclass(frozen=True, slots=True)
class Ctx:
    """Everything a view needs: the services, the authenticated caller and the request."""

    services: Services
    principal: Principal
    request: Request
    call: S3Call

    @property
    def project_id(self) -> str:
        return self.principal.project_id
