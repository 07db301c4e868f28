"""Verify the vendor SDK's ``SDK-HMAC-SHA256`` request signature (IMS API).

Learned from ``huaweicloudsdkcore/signer/signer.py`` (Apache-2.0) and requests captured from
the vendor's Python SDK. The client signs every header it set itself::

    Authorization: SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=hex

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
                       SignedHeaders \\n PayloadHash
    StringToSign     = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n hex(sha256(CanonicalRequest))
    Signature        = hex(HMAC-SHA256(SK, StringToSign))          # raw SK, no key derivation

The canonical URI always ends in ``/``; the payload hash is that of the empty string for an empty
body, else the ``X-Sdk-Content-Sha256`` header (``UNSIGNED-PAYLOAD``) when sent, else sha256(body).

A declared payload hash is never taken on trust (the header need not be signed: the canonical
request carries its value, so whoever copies a signed request could otherwise add the original
body's hash and send another body):

* a hex ``X-Sdk-Content-Sha256`` must equal the sha256 of the body actually received, and is
  refused on a streamed body, whose hash is not known when the signature is checked;
* ``UNSIGNED-PAYLOAD`` is accepted only where the caller says the vendor accepts it
  (``unsigned_payload=True``: data uploads, and the JSON-patch updates the SDK sends with a
  non-JSON content type); everywhere else the body's own hash must be signed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import quote, unquote

from imageport.auth.errors import (
    CONTENT_SHA256_MISMATCH,
    INVALID_ACCESS_KEY,
    INVALID_REQUEST,
    MALFORMED,
    MISMATCH,
    SignatureError,
)
from imageport.auth.request import (
    DEFAULT_MAX_SKEW,
    EMPTY_SHA256,
    MAX_AUTHORIZATION,
    MAX_PATH,
    SignedRequest,
    canonical_headers,
    capped,
    check_skew,
    declares_body,
    is_sha256_hex,
    parse_basic_date,
    query_items,
    same,
    signed_header_names,
    split_auth_params,
    utf8,
)

ALGORITHM = "SDK-HMAC-SHA256"
_PREFIX = ALGORITHM + " "
_CONTENT_HASH_HEADER = "x-sdk-content-sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: Content types whose bodies the SDK always signs (it sends UNSIGNED-PAYLOAD for the others)
_SIGNED_BODY_TYPES = ("application/json", "application/bson")


def canonical_uri(raw_path: str) -> str:
    """Each ``/`` segment decoded then re-encoded (only ``~`` kept), always ending in ``/``."""
    capped(raw_path, MAX_PATH, "path")
    uri = "/".join(quote(seg, safe="~") for seg in unquote(raw_path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(raw_query: str) -> str:
    """Decoded ``(name, value)`` pairs sorted, re-encoded keeping only ``~``, joined by ``&``."""
    pairs = sorted((unquote(k), unquote(v or "")) for k, v in query_items(raw_query))
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)


def payload_hash(request: SignedRequest, *, unsigned_payload: bool = False) -> str:
    """The payload hash the client put in its canonical request, once the declared
    ``X-Sdk-Content-Sha256`` has been checked against the body (see the module docstring)."""
    declared = request.header(_CONTENT_HASH_HEADER)
    if declared is not None and declared != UNSIGNED_PAYLOAD and not is_sha256_hex(declared):
        raise SignatureError(
            MALFORMED,
            "X-Sdk-Content-Sha256 is neither UNSIGNED-PAYLOAD nor 64 lower-case hex digits",
        )
    body = request.body_sha256
    if not declares_body(request):
        return EMPTY_SHA256  # the SDK signs an empty body's hash whatever it declares
    if declared == UNSIGNED_PAYLOAD:
        content_type = (request.header("content-type") or "").strip().lower()
        if not unsigned_payload or content_type.startswith(_SIGNED_BODY_TYPES):
            # the SDK leaves only non-JSON bodies unsigned, and only some routes take them
            raise SignatureError(
                INVALID_REQUEST,
                "X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD is "
                "accepted only for data uploads and JSON-patch updates; sign "
                "the body's sha256",
            )
        return UNSIGNED_PAYLOAD
    if body is None:
        if declared is not None:
            raise SignatureError(
                INVALID_REQUEST,
                "a streamed body's sha256 cannot be checked "
                "before it is read; send X-Sdk-Content-Sha256: "
                "UNSIGNED-PAYLOAD",
            )
        raise SignatureError(INVALID_REQUEST, "the body hash is needed to verify this request")
    if declared is not None and not same(declared, body):
        raise SignatureError(
            CONTENT_SHA256_MISMATCH, "X-Sdk-Content-Sha256 is not the sha256 of the body received"
        )
    return body


def _parse_authorization(value: str) -> tuple[str, str, list[str], str]:
    """``(access_key, signed_headers_text, signed_header_names, signature)``."""
    capped(value, MAX_AUTHORIZATION, "Authorization")
    if not value.startswith(_PREFIX):
        raise SignatureError(MALFORMED, f"Authorization is not {ALGORITHM}")
    params = split_auth_params(value[len(_PREFIX) :])
    if set(params) != {"Access", "SignedHeaders", "Signature"}:
        raise SignatureError(MALFORMED, "need exactly Access, SignedHeaders and Signature")
    access, signed, signature = params["Access"], params["SignedHeaders"], params["Signature"]
    if not access or not is_sha256_hex(signature):
        raise SignatureError(MALFORMED, "empty Access or bad Signature")
    return access, signed, signed_header_names(signed), signature


def string_to_sign(
    request: SignedRequest,
    signed_text: str,
    names: list[str],
    date: str,
    *,
    unsigned_payload: bool = False,
) -> str:
    """The SDK's StringToSign for ``request`` with the given signed headers and X-Sdk-Date."""
    canonical = "\n".join(
        (
            request.method.upper(),
            canonical_uri(request.raw_path),
            canonical_query(request.raw_query),
            canonical_headers(request, names, str.strip),
            signed_text,
            payload_hash(request, unsigned_payload=unsigned_payload),
        )
    )
    digest = hashlib.sha256(utf8(canonical)).hexdigest()
    return f"{ALGORITHM}\n{date}\n{digest}"


def verify(
    request: SignedRequest,
    secret_for: Callable[[str], str | None],
    now: datetime,
    *,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    unsigned_payload: bool = False,
) -> str:
    """Return the access key that signed ``request``; raise :class:`SignatureError` otherwise.

    ``unsigned_payload``: the route takes ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD``."""
    try:
        access, signed_text, names, signature = _parse_authorization(
            capped(request.header("authorization"), MAX_AUTHORIZATION, "Authorization")
        )
        if "x-sdk-date" not in names:
            raise SignatureError(MALFORMED, "X-Sdk-Date is not signed")
        date = capped(request.header("x-sdk-date"), 16, "X-Sdk-Date")
        signed_at = parse_basic_date(date, "X-Sdk-Date")
        secret = secret_for(access)
        if secret is None:
            raise SignatureError(INVALID_ACCESS_KEY, "unknown access key")
        check_skew(signed_at, now, max_skew)
        sts = string_to_sign(request, signed_text, names, date, unsigned_payload=unsigned_payload)
    except (ValueError, OverflowError) as exc:
        raise SignatureError(MALFORMED, "request cannot be canonicalised") from exc
    expected = hmac.new(utf8(secret), utf8(sts), hashlib.sha256).hexdigest()
    if not same(expected, signature):
        raise SignatureError(MISMATCH, "signature does not match")
    return access


def signature_of(request: SignedRequest) -> str:
    """The signature value of a request :func:`verify` accepted (the replay memory's key: the
    same signature however the Authorization header's spaces and parameters are arranged)."""
    return _parse_authorization(
        capped(request.header("authorization"), MAX_AUTHORIZATION, "Authorization")
    )[3]


def signed_at(request: SignedRequest) -> datetime:
    """When a request :func:`verify` accepted was signed (its ``X-Sdk-Date``)."""
    return parse_basic_date(capped(request.header("x-sdk-date"), 16, "X-Sdk-Date"), "X-Sdk-Date")
