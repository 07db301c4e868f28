"""Verify AWS Signature Version 4 (``AWS4-HMAC-SHA256``) on S3 requests.

Learned from the AWS documentation ("Authenticating Requests (AWS Signature Version 4)"),
``botocore/auth.py`` (Apache-2.0) and requests captured from boto3, s3cmd, rclone and esdk-obs
(its ``v4`` mode)::

    Authorization: AWS4-HMAC-SHA256 Credential=AK/20261127/us-east-1/s3/aws4_request,
                   SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=hex

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
                       SignedHeaders \\n PayloadHash
    StringToSign     = "AWS4-HMAC-SHA256" \\n AmzDate \\n scope \\n hex(sha256(CanonicalRequest))
    key              = HMAC(HMAC(HMAC(HMAC("AWS4"+SK, date), region), service), "aws4_request")

S3 rules: the URI is encoded once and never normalised; parameters are separated by ``,`` with or
without a space; any region is accepted. esdk-obs sends no X-Amz-Date, so ``Date`` (RFC 1123) is
turned into the basic format. The payload hash comes from ``x-amz-content-sha256``: hex (checked
against the body when known), ``UNSIGNED-PAYLOAD`` or a ``STREAMING-*`` marker (per-chunk
signatures are not checked here). Presigned (query-string) URLs are verified by
:mod:`imageport.auth.sigv4_query` with the helpers below.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from imageport.auth.errors import (
    ACCESS_DENIED,
    CONTENT_SHA256_MISMATCH,
    INVALID_ACCESS_KEY,
    INVALID_ARGUMENT,
    INVALID_REQUEST,
    MALFORMED,
    MISMATCH,
    SignatureError,
)
from imageport.auth.request import (
    DEFAULT_MAX_SKEW,
    MAX_AUTHORIZATION,
    MAX_PATH,
    SignedRequest,
    canonical_headers,
    capped,
    check_skew,
    is_sha256_hex,
    parse_basic_date,
    parse_http_date,
    query_items,
    same,
    signed_header_names,
    split_auth_params,
    utf8,
)

ALGORITHM = "AWS4-HMAC-SHA256"
_PREFIX = ALGORITHM + " "
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
PAYLOAD_MARKERS = frozenset(
    {
        UNSIGNED_PAYLOAD,
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    }
)
_UNRESERVED = "-_.~"
_SIGNED_PREFIXES = ("x-amz-", "x-obs-")
_MAX_SCOPE_PART = 64


def canonical_uri(raw_path: str) -> str:
    """S3 style: decode once, encode once keeping ``/`` and unreserved characters."""
    capped(raw_path, MAX_PATH, "path")
    return quote(unquote(raw_path), safe="/" + _UNRESERVED) or "/"


def canonical_query(raw_query: str, *, omit: str | None = None) -> str:
    """Every ``k[=v]`` re-encoded (unreserved kept), sorted by encoded name then value; the
    parameter named ``omit`` (a presigned URL's ``X-Amz-Signature``) is left out."""
    pairs = sorted(
        (quote(unquote(k), safe=_UNRESERVED), quote(unquote(v or ""), safe=_UNRESERVED))
        for k, v in query_items(raw_query)
        if omit is None or unquote(k) != omit
    )
    return "&".join(f"{k}={v}" for k, v in pairs)


def _trim_all(value: str) -> str:
    """Strip, and collapse runs of whitespace to one space (botocore ``_header_value``)."""
    return " ".join(value.split())


class Credential:
    """The parsed ``Credential=AK/date/region/service/aws4_request`` scope (the value of the
    Authorization header's ``Credential`` or of a presigned URL's ``X-Amz-Credential``)."""

    __slots__ = ("access_key", "date", "region", "service")

    def __init__(self, text: str) -> None:
        parts = text.rsplit("/", 4)
        if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
            raise SignatureError(MALFORMED, "Credential is not AK/date/region/service/aws4_request")
        self.access_key, self.date, self.region, self.service = parts[:4]
        if len(self.date) != 8 or not (self.date.isascii() and self.date.isdigit()):
            raise SignatureError(MALFORMED, "Credential date is not YYYYMMDD")
        for part in (self.region, self.service):
            if not part or len(part) > _MAX_SCOPE_PART or not part.isprintable():
                raise SignatureError(MALFORMED, "bad region or service in Credential")

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def _parse_authorization(value: str) -> tuple[Credential, str, list[str], str]:
    capped(value, MAX_AUTHORIZATION, "Authorization")
    if not value.startswith(_PREFIX):
        raise SignatureError(MALFORMED, f"Authorization is not {ALGORITHM}")
    params = split_auth_params(value[len(_PREFIX) :])
    if set(params) != {"Credential", "SignedHeaders", "Signature"}:
        raise SignatureError(MALFORMED, "need exactly Credential, SignedHeaders and Signature")
    signature = params["Signature"]
    if not is_sha256_hex(signature):
        raise SignatureError(MALFORMED, "Signature is not 64 hex digits")
    signed = params["SignedHeaders"]
    return Credential(params["Credential"]), signed, signed_header_names(signed), signature


def amz_date(request: SignedRequest) -> tuple[str, datetime]:
    """The signing time as ``YYYYMMDDTHHMMSSZ``: X-Amz-Date, else Date (esdk-obs v4)."""
    value = request.header("x-amz-date")
    if value is not None:
        return value, parse_basic_date(capped(value, 16, "X-Amz-Date"), "X-Amz-Date")
    when = parse_http_date(capped(request.header("date"), 64, "Date"), "Date")
    return when.strftime("%Y%m%dT%H%M%SZ"), when.astimezone(UTC)


def payload_hash(request: SignedRequest) -> str:
    """The payload hash of the canonical request, checked against the body when it is known."""
    declared = request.header("x-amz-content-sha256")
    if declared is None:
        if request.body_sha256 is None:
            raise SignatureError(INVALID_REQUEST, "missing x-amz-content-sha256")
        return request.body_sha256
    if declared in PAYLOAD_MARKERS:
        return declared
    if not is_sha256_hex(declared):
        raise SignatureError(INVALID_ARGUMENT, "x-amz-content-sha256 is not hex or a marker")
    if request.body_sha256 is not None and not same(declared, request.body_sha256):
        raise SignatureError(CONTENT_SHA256_MISMATCH, "body does not match x-amz-content-sha256")
    return declared


def string_to_sign(
    request: SignedRequest,
    scope: str,
    signed_text: str,
    names: list[str],
    date: str,
    *,
    query: str | None = None,
    payload: str | None = None,
) -> str:
    """The SigV4 StringToSign for ``request``; ``query`` (canonical) and ``payload`` (hash)
    default to the header form's, a presigned URL passes its own."""
    canonical = "\n".join(
        (
            request.method.upper(),
            canonical_uri(request.raw_path),
            canonical_query(request.raw_query) if query is None else query,
            canonical_headers(request, names, _trim_all),
            signed_text,
            payload_hash(request) if payload is None else payload,
        )
    )
    digest = hashlib.sha256(utf8(canonical)).hexdigest()
    return f"{ALGORITHM}\n{date}\n{scope}\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 key derived from ``secret`` for ``date`` (YYYYMMDD), region and service; the
    client's signer uses it too."""
    key = utf8("AWS4" + secret)
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, utf8(part), hashlib.sha256).digest()
    return key


def check_unsigned_headers(request: SignedRequest, names: Collection[str]) -> None:
    """Refuse ``x-amz-*`` / ``x-obs-*`` headers the signer did not sign, as S3 does: whoever
    holds a presigned URL, or sees a signed request go by, must not add ``x-amz-copy-source``
    (a copy of another object) or metadata. ``x-amz-content-sha256`` is exempt: its value is
    the payload hash the signature covers."""
    unsigned = sorted(
        name
        for name in request.headers
        if name.startswith(_SIGNED_PREFIXES)
        and name != "x-amz-content-sha256"
        and name not in names
    )
    if unsigned:
        raise SignatureError(
            ACCESS_DENIED,
            "There were headers present in the request which "
            "were not signed: " + ", ".join(n[:64] for n in unsigned[:8]),
        )


def verify(
    request: SignedRequest,
    secret_for: Callable[[str], str | None],
    now: datetime,
    *,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    service: str = "s3",
) -> str:
    """Return the access key that signed ``request``; raise :class:`SignatureError` otherwise."""
    try:
        cred, signed_text, names, signature = _parse_authorization(
            capped(request.header("authorization"), MAX_AUTHORIZATION, "Authorization")
        )
        if cred.service != service:
            raise SignatureError(MALFORMED, f"Credential service is not {service}")
        date, signed_at = amz_date(request)
        if date[:8] != cred.date:
            raise SignatureError(MALFORMED, "Credential date differs from the request date")
        check_unsigned_headers(request, names)
        secret = secret_for(cred.access_key)
        if secret is None:
            raise SignatureError(INVALID_ACCESS_KEY, "unknown access key")
        check_skew(signed_at, now, max_skew)
        sts = string_to_sign(request, cred.scope, signed_text, names, date)
        key = signing_key(secret, cred.date, cred.region, cred.service)
        expected = hmac.new(key, utf8(sts), hashlib.sha256).hexdigest()
    except (ValueError, OverflowError) as exc:
        raise SignatureError(MALFORMED, "request cannot be canonicalised") from exc
    if not same(expected, signature):
        raise SignatureError(MISMATCH, "signature does not match")
    return cred.access_key


def authorization_parts(request: SignedRequest) -> tuple[Credential, str, list[str], str]:
    """``(credential, signed_headers_text, signed_header_names, signature)`` of the request's
    Authorization header."""
    return _parse_authorization(
        capped(request.header("authorization"), MAX_AUTHORIZATION, "Authorization")
    )


def signature_of(request: SignedRequest) -> str:
    """The signature value of a request :func:`verify` accepted (the replay memory's key)."""
    return authorization_parts(request)[3]


def signed_at(request: SignedRequest) -> datetime:
    """When a request :func:`verify` accepted was signed (X-Amz-Date, else Date)."""
    return amz_date(request)[1]
