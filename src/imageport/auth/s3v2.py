"""Verify AWS signature version 2 (``AWS ak:sig``) and the OBS dialect (``OBS ak:sig``).

Learned from ``botocore/auth.py`` ``HmacV1Auth`` (Apache-2.0), esdk-obs-python's ``obs/auth.py`` as
summarised in ``shared/spec/clients.md`` section 2, and the S3 REST authentication docs::

    StringToSign = METHOD \\n Content-MD5 \\n Content-Type \\n DateLine \\n
                   CanonicalPrefixedHeaders CanonicalResource
    Signature    = base64(HMAC-SHA1(SK, StringToSign))

``AWS`` uses the ``x-amz-`` header prefix, ``OBS`` uses ``x-obs-``. The resource is the raw path
(prefixed by ``/bucket`` for virtual-host requests) plus the sorted sub-resources. Where the two
clients differ in an unambiguous way (``?uploads=`` signed as ``uploads=`` by botocore and as
``uploads`` by esdk-obs; the Date line kept or blanked when ``x-amz-date`` is present), every
form a real client could have signed is tried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import unquote

from imageport.auth.errors import INVALID_ACCESS_KEY, MALFORMED, MISMATCH, SignatureError
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

SUB_RESOURCES = frozenset({
    "accelerate", "acl", "analytics", "append", "cors", "defaultObjectAcl", "delete",
    "encryption", "inventory", "lifecycle", "location", "logging", "metadata", "metrics",
    "modify", "name", "notification", "object-lock", "partNumber", "policy", "position",
    "quota", "rename", "replication", "requestPayment", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "response-content-language",
    "response-content-type", "response-expires", "restore", "select", "select-type",
    "storageClass", "storageinfo", "storagePolicy", "tagging", "torrent", "truncate",
    "uploadId", "uploads", "versionId", "versioning", "versions", "website",
})
"""Query names that are part of the signed resource (botocore's list plus OBS's additions)."""

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


def canonical_resources(request: SignedRequest, virtual_bucket: str | None) -> set[str]:
    """Every resource string a real client could have signed for this request."""
    path = capped(request.raw_path, MAX_PATH, "path")
    base = f"/{virtual_bucket}{path}" if virtual_bucket else path
    prefix = SCHEMES.get(capped(request.header("authorization"), MAX_AUTHORIZATION,
                                "Authorization").partition(" ")[0], "x-amz-")
    picked = [
        (k, None if v is None else unquote(v))
        for k, v in query_items(request.raw_query)
        if k in SUB_RESOURCES or k.startswith(prefix)
    ]
    if not picked:
        return {base}
    # botocore: keep "k=" when sent with "=", stable sort by name only.
    boto = sorted(picked, key=lambda kv: kv[0])
    boto_text = "&".join(k if v is None else f"{k}={v}" for k, v in boto)
    # esdk-obs: "k" when the value is empty, items sorted.
    obs_text = "&".join(sorted(k if not v else f"{k}={v}" for k, v in picked))
    return {f"{base}?{boto_text}", f"{base}?{obs_text}"}


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


def strings_to_sign(
    request: SignedRequest, prefix: str, virtual_bucket: str | None
) -> tuple[datetime, list[str]]:
    """The signing time and every StringToSign a real client could have produced."""
    own_date = request.header(prefix + "date")
    date = request.header("date")
    signed_at = parse_http_date(own_date if own_date is not None else capped(date, 64, "Date"),
                                "Date")
    date_lines = [""] if own_date is not None else []
    if date is not None:
        date_lines.append(date.strip())
    head = f"{request.method.upper()}\n{_standard(request, 'content-md5')}\n" \
           f"{_standard(request, 'content-type')}\n"
    custom = _prefixed_headers(request, prefix)
    return signed_at, [
        f"{head}{line}\n{custom}{resource}"
        for line in date_lines
        for resource in sorted(canonical_resources(request, virtual_bucket))
    ]


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
            capped(request.header("authorization"), MAX_AUTHORIZATION, "Authorization"))
        secret = secret_for(access)
        if secret is None:
            raise SignatureError(INVALID_ACCESS_KEY, "unknown access key")
        signed_at, candidates = strings_to_sign(request, prefix, virtual_bucket)
        check_skew(signed_at, now, max_skew)
    except (ValueError, OverflowError) as exc:
        raise SignatureError(MALFORMED, "request cannot be canonicalised") from exc
    key = utf8(secret)
    matched = False
    for sts in candidates:  # at most four; all are compared, no early exit
        digest = hmac.new(key, utf8(sts), hashlib.sha1).digest()
        matched |= same(base64.b64encode(digest).decode("ascii"), signature)
    if not matched:
        raise SignatureError(MISMATCH, "signature does not match")
    return access
