"""What an S3 request asks for (bucket, key, sub-resources, dialect) and who sends it.

The path is read from the raw request line (``/bucket`` or ``/bucket/`` is the bucket,
``/bucket/some/key`` an object), the query with blank values kept (``?uploads`` and
``?uploads=`` are the same). With the ``s3_domain`` setting, a request whose Host is
``<bucket>.<s3_domain>`` is virtual-host style: the Host names the bucket and the whole path is
the key (esdk-obs speaks its OBS dialect only this way); every other Host is path-style.

Authentication happens before any body byte is read, so a refused ``Expect: 100-continue``
upload is answered without the body being sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from imageport.auth import SignedRequest
from imageport.auth.request import EMPTY_SHA256, MAX_PATH, MAX_QUERY
from imageport.service.access.authn import Authenticated, Principal, authenticate_request
from imageport.service.buckets.checks import validate_bucket_name
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid, ServiceError, Unauthenticated

SCHEMES = frozenset({"sigv4", "s3v2", "sigv4-query", "s3v2-query"})
"""Header signatures and presigned URLs (query-string signatures), SigV4 and v2."""
MAX_QUERY_FIELDS = 64
MAX_HOST = 255
"""Longest Host header read for virtual-host addressing (a DNS name is at most 253 bytes)."""

_AUTH_STATUS = {
    "AuthorizationHeaderMalformed": 400,
    "XAmzContentSHA256Mismatch": 400,
    "InvalidArgument": 400,
    "InvalidRequest": 400,
    "AuthorizationQueryParametersError": 400,
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
    #: the bucket named by the Host header (virtual-host style), None for path-style
    virtual_bucket: str | None = None

    def has(self, name: str) -> bool:
        return name in self.query

    @property
    def resource(self) -> str:
        """The path-style resource (``/bucket/key``) whichever way the bucket was named."""
        if self.virtual_bucket is None:
            return self.raw_path
        return f"/{self.virtual_bucket}{self.raw_path}"


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    return bytes(raw).split(b"?", 1)[0].decode("utf-8", "replace")


def virtual_bucket(host: str, domain: str | None) -> str | None:
    """The bucket ``host`` names when it is ``<bucket>.<domain>`` (port and case ignored);
    None without a domain, for the domain itself and for every other host. A Host longer than
    :data:`MAX_HOST` or an invalid bucket label under the domain is refused."""
    if domain is None:
        return None
    if len(host) > MAX_HOST:
        raise RequestInvalid("InvalidArgument", "the Host header is too long")
    name = host.partition(":")[0].lower().removesuffix(".")  # "[::1]:80" never matches
    suffix = f".{domain}"
    if not name.endswith(suffix):
        return None
    bucket = name.removesuffix(suffix)
    validate_bucket_name(bucket)
    return bucket


def _query(raw_query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError as exc:
        raise RequestInvalid("InvalidURI", "too many query parameters") from exc
    query: dict[str, str] = {}
    for name, value in pairs:
        query.setdefault(name, value)
    return query


def parse_call(request: Request, s3_domain: str | None = None) -> S3Call:
    """Split the request into bucket, key and query (the bucket from the Host header when it
    is ``<bucket>.<s3_domain>``); refuse oversized ones."""
    raw_path = _raw_path(request)
    raw_query = bytes(request.scope.get("query_string", b"")).decode("utf-8", "replace")
    if len(raw_path) > MAX_PATH or len(raw_query) > MAX_QUERY:
        raise RequestInvalid("InvalidURI", "the request path or query is too long")
    query = _query(raw_query)
    headers = request.headers
    try:
        path = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    except UnicodeDecodeError as exc:  # "%ff": not UTF-8 (an unauthenticated 500 before)
        raise RequestInvalid("InvalidURI", "the request path is not UTF-8 once decoded") from exc
    host_bucket = virtual_bucket(headers.get("host", ""), s3_domain)
    if host_bucket is None:
        bucket, _, key = path.lstrip("/").partition("/")
    else:
        bucket, key = host_bucket, path.removeprefix("/")
    obs = headers.get("authorization", "").startswith("OBS ") or any(
        name.startswith("x-obs-") for name in headers
    )
    return S3Call(
        request.method,
        bucket,
        key,
        query,
        "obs" if obs else "amz",
        raw_path,
        raw_query,
        host_bucket,
    )


def signed_request(request: Request, call: S3Call) -> SignedRequest:
    """The signature facts; bodiless requests get the empty body's sha256."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("utf-8", "replace")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    bodiless = (
        headers.get("content-length", "0").strip() == "0" and "transfer-encoding" not in headers
    )
    return SignedRequest(
        method=call.method,
        raw_path=call.raw_path,
        raw_query=call.raw_query,
        headers=headers,
        body_sha256=EMPTY_SHA256 if bodiless else None,
    )


def _s3_error(exc: Unauthenticated) -> ServiceError:
    return ServiceError(exc.code, exc.message, status=_AUTH_STATUS.get(exc.code, 403))


async def authenticate_call(services: Services, request: Request, call: S3Call) -> Authenticated:
    """The authenticated caller, or a ServiceError in S3's terms (403 ``AccessDenied``,
    ``SignatureDoesNotMatch``, ``InvalidAccessKeyId``, ``RequestTimeTooSkewed`` ...).
    Presigned URLs are accepted too (an expired one is 403 ``AccessDenied``). A chunk-signed
    upload's chain is left in ``request.state.chunk_chain`` for the body reader, which must
    verify it (:mod:`imageport.api.s3.body`)."""
    signed = signed_request(request, call)
    try:
        authenticated = await run_in_threadpool(
            authenticate_request,
            services,
            signed,
            schemes=SCHEMES,
            virtual_bucket=call.virtual_bucket,
        )
    except Unauthenticated as exc:
        raise _s3_error(exc) from exc
    request.state.chunk_chain = authenticated.chunk_chain
    return authenticated


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
