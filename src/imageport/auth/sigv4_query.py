"""Verify SigV4 presigned URLs (query-string authentication, ``X-Amz-Signature=...``).

Learned from the AWS page "Authenticating Requests: Using Query Parameters (AWS Signature
Version 4)" and from reading ``botocore/auth.py`` ``SigV4QueryAuth`` / ``S3SigV4QueryAuth``
(Apache-2.0), which ``generate_presigned_url`` and ``aws s3 presign`` use::

    /bucket/key?X-Amz-Algorithm=AWS4-HMAC-SHA256
               &X-Amz-Credential=AK%2F20261127%2Fus-east-1%2Fs3%2Faws4_request
               &X-Amz-Date=20261127T101500Z&X-Amz-Expires=3600
               &X-Amz-SignedHeaders=host&X-Amz-Signature=hex

The canonical request is the header form's (:mod:`imageport.auth.sigv4`, whose helpers are
reused) except that the canonical query holds every parameter but ``X-Amz-Signature``, and the
payload hash is ``UNSIGNED-PAYLOAD`` unless the request carries ``x-amz-content-sha256`` (then it
is handled as in header auth). A URL is valid from ``X-Amz-Date`` minus the allowed clock skew
until ``X-Amz-Date + X-Amz-Expires`` (1 to 604800 seconds, S3's week). ``X-Amz-Security-Token``
is refused: this service issues no temporary credentials, so a URL carrying one was signed with
a key it cannot know. An ``x-amz-*`` or ``x-obs-*`` header the URL did not sign is refused
(``AccessDenied``, as S3 answers), so whoever holds the URL cannot add ``x-amz-copy-source``.

:func:`presign` is the mirror of :func:`verify`: it makes such a URL with the verifier's own
canonical forms (the web console presigns the part uploads a browser sends), optionally signing
headers beside ``host`` (an ``x-amz-checksum-sha256`` binds the URL to one body).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote, urlsplit

from imageport.auth.errors import (
    ACCESS_DENIED,
    INVALID_ACCESS_KEY,
    INVALID_ARGUMENT,
    MALFORMED,
    MISMATCH,
    QUERY_MALFORMED,
    SignatureError,
)
from imageport.auth.request import (
    DEFAULT_MAX_SKEW,
    MAX_AUTHORIZATION,
    SignedRequest,
    capped,
    is_sha256_hex,
    parse_basic_date,
    query_items,
    same,
    signed_header_names,
    utf8,
)
from imageport.auth.sigv4 import (
    ALGORITHM,
    UNSIGNED_PAYLOAD,
    Credential,
    canonical_query,
    check_unsigned_headers,
    payload_hash,
    signing_key,
    string_to_sign,
)

SIGNATURE = "X-Amz-Signature"
SESSION_PARAM = "X-Amz-Security-Token"
"""The temporary-credential parameter, refused: no temporary credentials are issued here."""
MARKERS = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", SIGNATURE})
"""Query names that make a request a SigV4 presigned one."""
_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    SIGNATURE,
)
MAX_EXPIRES = 604_800
"""Longest validity of a presigned URL in seconds (S3's limit: seven days)."""
MAX_CREDENTIAL = 512
"""Longest ``X-Amz-Credential`` value parsed."""


@dataclass(frozen=True, slots=True)
class QueryAuth:
    """The authentication parameters of a SigV4 presigned URL, parsed and capped."""

    credential: Credential
    date: str
    signed_at: datetime
    expires: timedelta
    signed_text: str
    names: tuple[str, ...]
    signature: str
    #: canonical query: every parameter of the URL but X-Amz-Signature
    query: str


def _auth_params(raw_query: str) -> dict[str, str]:
    """The ``X-Amz-*`` auth parameters (decoded); a duplicate or a missing one is refused."""
    wanted = {*_REQUIRED, SESSION_PARAM}
    params: dict[str, str] = {}
    for raw_name, raw_value in query_items(raw_query):
        name = unquote(raw_name)
        if name not in wanted:
            continue
        if name in params:
            raise SignatureError(QUERY_MALFORMED, f"{name} is given twice")
        params[name] = unquote(raw_value or "")
    if SESSION_PARAM in params:
        raise SignatureError(
            INVALID_ARGUMENT,
            f"{SESSION_PARAM} is not supported: this service issues no temporary credentials",
        )
    missing = [name for name in _REQUIRED if name not in params]
    if missing:
        raise SignatureError(QUERY_MALFORMED, "presigned URL lacks " + ", ".join(missing))
    return params


def _expires(text: str) -> timedelta:
    """``X-Amz-Expires`` as a duration of 1 to :data:`MAX_EXPIRES` seconds."""
    if not (0 < len(text) <= 7 and text.isascii() and text.isdigit()):
        raise SignatureError(QUERY_MALFORMED, "X-Amz-Expires should be a positive number")
    seconds = int(text)
    if not 0 < seconds <= MAX_EXPIRES:
        raise SignatureError(
            QUERY_MALFORMED, f"X-Amz-Expires must be between 1 and {MAX_EXPIRES} seconds (a week)"
        )
    return timedelta(seconds=seconds)


def _parse(raw_query: str) -> QueryAuth:
    params = _auth_params(raw_query)
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise SignatureError(QUERY_MALFORMED, f"X-Amz-Algorithm only supports {ALGORITHM}")
    credential = Credential(capped(params["X-Amz-Credential"], MAX_CREDENTIAL, "X-Amz-Credential"))
    date = capped(params["X-Amz-Date"], 16, "X-Amz-Date")
    signed_at = parse_basic_date(date, "X-Amz-Date")
    if date[:8] != credential.date:
        raise SignatureError(QUERY_MALFORMED, "X-Amz-Credential date differs from X-Amz-Date")
    signed_text = capped(params["X-Amz-SignedHeaders"], MAX_AUTHORIZATION, "X-Amz-SignedHeaders")
    names = signed_header_names(signed_text)
    if "host" not in names:
        raise SignatureError(QUERY_MALFORMED, "X-Amz-SignedHeaders must include host")
    signature = params[SIGNATURE]
    if not is_sha256_hex(signature):
        raise SignatureError(QUERY_MALFORMED, "X-Amz-Signature is not 64 hex digits")
    return QueryAuth(
        credential,
        date,
        signed_at,
        _expires(params["X-Amz-Expires"]),
        signed_text,
        tuple(names),
        signature,
        canonical_query(raw_query, omit=SIGNATURE),
    )


def parse_query_auth(raw_query: str) -> QueryAuth:
    """The parsed auth parameters of ``raw_query``; every parse failure is
    ``AuthorizationQueryParametersError`` (a Security-Token, ``InvalidArgument``)."""
    try:
        return _parse(raw_query)
    except SignatureError as exc:
        if exc.code == MALFORMED:
            raise SignatureError(QUERY_MALFORMED, exc.message) from exc
        raise


def check_window(auth: QueryAuth, now: datetime, max_skew: timedelta) -> None:
    """Refuse a URL used before ``X-Amz-Date - max_skew`` or after ``X-Amz-Date + Expires``."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if now < auth.signed_at - max_skew:
        raise SignatureError(ACCESS_DENIED, "Request is not valid yet")
    if now > auth.signed_at + auth.expires:
        raise SignatureError(ACCESS_DENIED, "Request has expired")


def _payload(request: SignedRequest) -> str:
    """UNSIGNED-PAYLOAD, as botocore presigns, unless the request declares its own hash."""
    if request.header("x-amz-content-sha256") is None:
        return UNSIGNED_PAYLOAD
    return payload_hash(request)


def verify(
    request: SignedRequest,
    secret_for: Callable[[str], str | None],
    now: datetime,
    *,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    service: str = "s3",
) -> str:
    """Return the access key that presigned ``request``; raise :class:`SignatureError`
    otherwise (an expired URL is ``AccessDenied`` "Request has expired", as S3 says)."""
    try:
        auth = parse_query_auth(request.raw_query)
        cred = auth.credential
        if cred.service != service:
            raise SignatureError(QUERY_MALFORMED, f"X-Amz-Credential service is not {service}")
        check_window(auth, now, max_skew)
        check_unsigned_headers(request, auth.names)
        secret = secret_for(cred.access_key)
        if secret is None:
            raise SignatureError(INVALID_ACCESS_KEY, "unknown access key")
        sts = string_to_sign(
            request,
            cred.scope,
            auth.signed_text,
            list(auth.names),
            auth.date,
            query=auth.query,
            payload=_payload(request),
        )
        key = signing_key(secret, cred.date, cred.region, cred.service)
        expected = hmac.new(key, utf8(sts), hashlib.sha256).hexdigest()
    except (ValueError, OverflowError) as exc:
        raise SignatureError(QUERY_MALFORMED, "request cannot be canonicalised") from exc
    if not same(expected, auth.signature):
        raise SignatureError(MISMATCH, "signature does not match")
    return cred.access_key


def presign(
    method: str,
    url: str,
    access_key: str,
    secret: str,
    *,
    region: str,
    now: datetime,
    expires: int,
    headers: Mapping[str, str] | None = None,
) -> str:
    """``url`` (absolute, its path and query already percent-encoded) presigned with SigV4 for
    ``method`` by ``access_key``, valid ``expires`` seconds from ``now``. ``headers``: headers
    the request must carry with exactly these values (``host`` is always signed, taken from
    ``url``); the payload is ``UNSIGNED-PAYLOAD``, as botocore presigns."""
    if not 0 < expires <= MAX_EXPIRES:
        raise ValueError(f"expires must be 1-{MAX_EXPIRES} seconds")
    parts = urlsplit(url)
    signed = {name.lower(): value for name, value in (headers or {}).items()}
    signed["host"] = parts.netloc
    names = sorted(signed)
    signed_text = ";".join(names)
    when = now if now.tzinfo else now.replace(tzinfo=UTC)
    date = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{date[:8]}/{region}/s3/aws4_request"
    params = (
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{scope}"),
        ("X-Amz-Date", date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", signed_text),
    )
    auth_query = "&".join(f"{name}={quote(value, safe='-_.~')}" for name, value in params)
    raw_query = f"{parts.query}&{auth_query}" if parts.query else auth_query
    request = SignedRequest(method.upper(), parts.path or "/", raw_query, signed)
    sts = string_to_sign(
        request,
        scope,
        signed_text,
        names,
        date,
        query=canonical_query(raw_query),
        payload=UNSIGNED_PAYLOAD,
    )
    key = signing_key(secret, date[:8], region, "s3")
    signature = hmac.new(key, utf8(sts), hashlib.sha256).hexdigest()
    return f"{parts.scheme}://{parts.netloc}{request.raw_path}?{raw_query}&{SIGNATURE}={signature}"
