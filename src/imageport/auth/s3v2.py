"""Verify AWS signature version 2 (``AWS ak:sig``) and the OBS dialect (``OBS ak:sig``).

Learned from ``botocore/auth.py`` ``HmacV1Auth`` (Apache-2.0), esdk-obs-python's ``obs/auth.py``
and requests captured from both, and the S3 documentation ("Signing and Authenticating REST
Requests")::

    StringToSign = METHOD \\n Content-MD5 \\n Content-Type \\n DateLine \\n
                   CanonicalPrefixedHeaders CanonicalResource
    Signature    = base64(HMAC-SHA1(SK, StringToSign))

``AWS`` uses the ``x-amz-`` header prefix, ``OBS`` uses ``x-obs-``. The resource is the raw path
(prefixed by ``/bucket`` for virtual-host requests) plus the sorted sub-resources. Where the two
clients differ in an unambiguous way (``?uploads=`` signed as ``uploads=`` by botocore and as
``uploads`` by esdk-obs; the Date line kept or blanked when ``x-amz-date`` is present), every
form a real client could have signed is tried.

Presigned URLs (query-string authentication, ``s3cmd signurl`` and botocore's
``HmacV1QueryAuth``) carry ``AWSAccessKeyId``, ``Expires`` (epoch seconds) and ``Signature``
(base64, URL-encoded) in the query. Their StringToSign is the header form's with the
``Expires`` value in place of the Date line; the three parameters are not part of the resource.
botocore moves ``Content-Type``, ``Content-MD5`` and ``x-amz-*`` headers into the query, so a
header missing from the request is taken from a query parameter of the same name. After
``Expires`` the URL is refused (``AccessDenied`` "Request has expired"); an ``Expires`` years
ahead is accepted, as S3 accepts it for v2 (unlike SigV4's week): ``s3cmd signurl`` users ask
for long-lived links, and revoking the key ends them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from imageport.auth.errors import (
    ACCESS_DENIED,
    INVALID_ACCESS_KEY,
    MALFORMED,
    MISMATCH,
    SignatureError,
)
from imageport.auth.request import (
    DEFAULT_MAX_SKEW,
    MAX_AUTHORIZATION,
    MAX_HEADER_VALUE,
    MAX_PATH,
    SignedRequest,
    capped,
    check_skew,
    parse_http_date,
    query_items,
    same,
    utf8,
)

SCHEMES = {"AWS": "x-amz-", "OBS": "x-obs-"}
"""Authorization scheme → prefix of the headers (and query names) it signs."""

SUB_RESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "append",
        "cors",
        "defaultObjectAcl",
        "delete",
        "encryption",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metadata",
        "metrics",
        "modify",
        "name",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "position",
        "quota",
        "rename",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "storageinfo",
        "storagePolicy",
        "tagging",
        "torrent",
        "truncate",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)
"""Query names that are part of the signed resource (botocore's list plus OBS's additions)."""

QUERY_PARAMS = ("AWSAccessKeyId", "Expires", "Signature")
"""The auth parameters of a v2 presigned URL."""
QUERY_MARKERS = frozenset({"AWSAccessKeyId", "Signature"})
"""Query names that make a request a v2 presigned one."""
MAX_ACCESS_KEY = 128
"""Longest ``AWSAccessKeyId`` value looked up."""
_MAX_EXPIRES_DIGITS = 12  # epoch seconds: 10 digits until the year 2286
_QUERY_HEADERS = ("content-md5", "content-type")
_SIG_LEN = 28  # base64 of a 20-byte SHA-1 digest


def _parse_authorization(value: str) -> tuple[str, str, str]:
    """``(prefix, access_key, signature)`` from ``AWS ak:sig`` / ``OBS ak:sig``."""
    capped(value, MAX_AUTHORIZATION, "Authorization")
    scheme, _, cred = value.partition(" ")
    prefix = SCHEMES.get(scheme)
    access, colon, signature = cred.rpartition(":")
    if prefix is None or not colon or not access or len(signature) != _SIG_LEN:
        raise SignatureError(MALFORMED, "Authorization is not 'AWS|OBS ak:signature'")
    return prefix, access, signature


def canonical_resources(
    request: SignedRequest, virtual_bucket: str | None, prefix: str | None
) -> set[str]:
    """Every resource string a real client could have signed for this request: the path and
    the sub-resources, plus the query names starting with ``prefix`` when it is given.

    botocore signs a path-style bucket request as ``/bucket/`` (its ``auth_path``) while it
    sends ``/bucket``, so both are tried for a bare bucket path (they name the same bucket)."""
    path = capped(request.raw_path, MAX_PATH, "path")
    base = f"/{virtual_bucket}{path}" if virtual_bucket else path
    bases = {base, base + "/"} if base.count("/") == 1 and len(base) > 1 else {base}
    return {f"{one}{sub}" for one in bases for sub in _sub_resources(request, prefix)}


def _sub_resources(request: SignedRequest, prefix: str | None) -> set[str]:
    """``?sub-resources`` as botocore and esdk-obs write them ("" when there are none)."""
    # Names are decoded as the API decodes them: "upload%49d" is uploadId, and must be signed.
    picked = [
        (k, None if v is None else unquote(v))
        for k, v in ((unquote(name), value) for name, value in query_items(request.raw_query))
        if k in SUB_RESOURCES or (prefix is not None and k.startswith(prefix))
    ]
    if not picked:
        return {""}
    # botocore: keep "k=" when sent with "=", stable sort by name only.
    boto = sorted(picked, key=lambda kv: kv[0])
    boto_text = "&".join(k if v is None else f"{k}={v}" for k, v in boto)
    # esdk-obs: "k" when the value is empty, items sorted.
    obs_text = "&".join(sorted(k if not v else f"{k}={v}" for k, v in picked))
    return {f"?{boto_text}", f"?{obs_text}"}


def _prefixed_headers(request: SignedRequest, prefix: str) -> str:
    lines = []
    for name in sorted(n for n in request.headers if n.startswith(prefix)):
        value = capped(request.headers[name], MAX_HEADER_VALUE, name)
        lines.append(f"{name}:{value.strip()}\n")
    if len(lines) > 64:
        raise SignatureError(MALFORMED, "too many prefixed headers")
    return "".join(lines)


def _standard(request: SignedRequest, name: str) -> str:
    return capped(request.header(name) or "", MAX_HEADER_VALUE, name).strip()


def _variants(
    request: SignedRequest, prefix: str, date_lines: list[str], resources: set[str]
) -> list[str]:
    """The StringToSign for each date line and each resource."""
    head = (
        f"{request.method.upper()}\n{_standard(request, 'content-md5')}\n"
        f"{_standard(request, 'content-type')}\n"
    )
    custom = _prefixed_headers(request, prefix)
    return [
        f"{head}{line}\n{custom}{resource}" for line in date_lines for resource in sorted(resources)
    ]


def strings_to_sign(
    request: SignedRequest, prefix: str, virtual_bucket: str | None
) -> tuple[datetime, list[str]]:
    """The signing time and every StringToSign a real client could have produced."""
    own_date = request.header(prefix + "date")
    date = request.header("date")
    signed_at = parse_http_date(
        own_date if own_date is not None else capped(date, 64, "Date"), "Date"
    )
    date_lines = [""] if own_date is not None else []
    if date is not None:
        date_lines.append(date.strip())
    return signed_at, _variants(
        request, prefix, date_lines, canonical_resources(request, virtual_bucket, prefix)
    )


def _check_signature(secret: str, candidates: list[str], signature: str) -> None:
    """Raise a mismatch unless one candidate StringToSign signs to ``signature``."""
    key = utf8(secret)
    matched = False
    for sts in candidates:  # at most eight; all are compared, no early exit
        digest = hmac.new(key, utf8(sts), hashlib.sha1).digest()
        matched |= same(base64.b64encode(digest).decode("ascii"), signature)
    if not matched:
        raise SignatureError(MISMATCH, "signature does not match")


def verify(
    request: SignedRequest,
    secret_for: Callable[[str], str | None],
    now: datetime,
    *,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    virtual_bucket: str | None = None,
) -> str:
    """Return the access key that signed ``request``; raise :class:`SignatureError` otherwise.

    ``virtual_bucket`` is the bucket named by the Host header for virtual-host requests.
    """
    try:
        prefix, access, signature = _parse_authorization(
            capped(request.header("authorization"), MAX_AUTHORIZATION, "Authorization")
        )
        secret = secret_for(access)
        if secret is None:
            raise SignatureError(INVALID_ACCESS_KEY, "unknown access key")
        signed_at, candidates = strings_to_sign(request, prefix, virtual_bucket)
        check_skew(signed_at, now, max_skew)
    except (ValueError, OverflowError) as exc:
        raise SignatureError(MALFORMED, "request cannot be canonicalised") from exc
    _check_signature(secret, candidates, signature)
    return access


def _query_params(raw_query: str) -> dict[str, str]:
    """``AWSAccessKeyId``, ``Expires`` and ``Signature`` (decoded), each exactly once."""
    params: dict[str, str] = {}
    for raw_name, raw_value in query_items(raw_query):
        name = unquote(raw_name)
        if name in QUERY_PARAMS:
            if name in params:
                raise SignatureError(MALFORMED, f"{name} is given twice")
            params[name] = unquote(raw_value or "")
    if len(params) != len(QUERY_PARAMS):
        raise SignatureError(
            ACCESS_DENIED,
            "Query-string authentication requires the "
            "Signature, Expires and AWSAccessKeyId parameters",
        )
    return params


def _expires(text: str) -> int:
    if not (0 < len(text) <= _MAX_EXPIRES_DIGITS and text.isascii() and text.isdigit()):
        raise SignatureError(ACCESS_DENIED, "Invalid date (should be seconds since epoch)")
    return int(text)


def _with_query_headers(request: SignedRequest) -> SignedRequest:
    """``request`` with Content-MD5, Content-Type and ``x-amz-*`` query parameters added as
    headers where the request has no such header (botocore presigns them in the query)."""
    moved = {
        name: unquote(value or "")
        for name, value in ((unquote(k).lower(), v) for k, v in query_items(request.raw_query))
        if name in _QUERY_HEADERS or name.startswith("x-amz-")
    }
    if not moved:
        return request
    return replace(request, headers={**moved, **request.headers})


def verify_query(
    request: SignedRequest,
    secret_for: Callable[[str], str | None],
    now: datetime,
    *,
    virtual_bucket: str | None = None,
) -> str:
    """Return the access key that presigned ``request`` (v2 query form); raise
    :class:`SignatureError` otherwise (after ``Expires``: ``AccessDenied``)."""
    try:
        params = _query_params(request.raw_query)
        access = capped(params["AWSAccessKeyId"], MAX_ACCESS_KEY, "AWSAccessKeyId")
        expires_text = params["Expires"]
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        if now.timestamp() > _expires(expires_text):
            raise SignatureError(ACCESS_DENIED, "Request has expired")
        signature = params["Signature"]
        if len(signature) != _SIG_LEN:
            raise SignatureError(MISMATCH, "signature does not match")
        secret = secret_for(access)
        if secret is None:
            raise SignatureError(INVALID_ACCESS_KEY, "unknown access key")
        candidates = _variants(
            _with_query_headers(request),
            "x-amz-",
            [expires_text],
            canonical_resources(request, virtual_bucket, None),
        )
    except (ValueError, OverflowError) as exc:
        raise SignatureError(MALFORMED, "request cannot be canonicalised") from exc
    _check_signature(secret, candidates, signature)
    return access


def signature_of(request: SignedRequest) -> str:
    """The signature value of a request :func:`verify` accepted (the replay memory's key)."""
    return _parse_authorization(
        capped(request.header("authorization"), MAX_AUTHORIZATION, "Authorization")
    )[2]


def signed_at(request: SignedRequest) -> datetime:
    """When a request :func:`verify` accepted was signed (``x-amz-date``/``x-obs-date``, else
    Date)."""
    prefix = _parse_authorization(
        capped(request.header("authorization"), MAX_AUTHORIZATION, "Authorization")
    )[0]
    own_date = request.header(prefix + "date")
    return parse_http_date(
        own_date if own_date is not None else capped(request.header("date"), 64, "Date"), "Date"
    )
