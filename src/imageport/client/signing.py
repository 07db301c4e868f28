"""Request signers for the client: SDK-HMAC-SHA256 (image API) and SigV4 (bucket API).

A signer is the mirror of a verifier in :mod:`imageport.auth`: it builds a
:class:`~imageport.auth.request.SignedRequest` from what the client is about to send and asks
the verifier's own ``string_to_sign`` for the canonical form, so the two can never disagree on
canonicalisation. What a signer adds is the choice of headers and the key.

SDK-HMAC-SHA256 signs ``content-type;host;x-project-id;x-sdk-date`` (plus
``x-sdk-content-sha256`` when the body is not JSON), exactly as ``huaweicloudsdkcore`` does for
the same headers. SigV4 signs every header the caller passes except those botocore's
``S3SigV4Auth`` leaves out (``user-agent``, ``expect``, hop-by-hop headers), plus ``host``,
``x-amz-date`` and ``x-amz-content-sha256``.

Payload hash choice for the bucket API: small bodies (XML, empty) are signed with their real
sha256. Part and object bodies are signed as ``UNSIGNED-PAYLOAD`` and carry a signed
``Content-MD5`` instead: the server verifies the MD5 against the body, the returned ETag is that
MD5, and resuming compares ETags with local MD5s, so one hash pass over each byte covers both
integrity and resume (a signed sha256 would need a second pass over every part).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from imageport.auth import sdk_hmac, sigv4
from imageport.auth.request import EMPTY_SHA256, SignedRequest, utf8

UNSIGNED_PAYLOAD = sigv4.UNSIGNED_PAYLOAD
DEFAULT_REGION = "us-east-1"
_BASIC = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair and (for the image API) the project it belongs to."""

    access_key: str
    secret_key: str
    project_id: str = ""

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(access_key={self.access_key!r}, project_id={self.project_id!r})"


def _now(now: datetime | None) -> datetime:
    when = now or datetime.now(UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _split(url: str) -> tuple[str, str, str]:
    """``(host[:port], raw_path, raw_query)`` of an absolute, already percent-encoded URL."""
    parts = urlsplit(url)
    return parts.netloc, parts.path or "/", parts.query


def sdk_hmac_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    *,
    now: datetime | None = None,
) -> dict[str, str]:
    """``headers`` plus Host, X-Project-Id, X-Sdk-Date (and X-Sdk-Content-Sha256 for a non-JSON
    body) and the ``SDK-HMAC-SHA256`` Authorization for sending ``body`` to ``url``.

    ``url`` must be exactly what goes on the request line (its query already encoded).
    """
    host, raw_path, raw_query = _split(url)
    out = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    out["Host"] = host
    if credentials.project_id:
        out["X-Project-Id"] = credentials.project_id
    date = _now(now).strftime(_BASIC)
    out["X-Sdk-Date"] = date
    ctype = next((v for k, v in out.items() if k.lower() == "content-type"), None)
    unsigned = bool(ctype) and not str(ctype).startswith(("application/json", "application/bson"))
    if unsigned:
        out["X-Sdk-Content-Sha256"] = UNSIGNED_PAYLOAD
    names = sorted(k.lower() for k in out if "_" not in k)
    signed_text = ";".join(names)
    request = SignedRequest(
        method.upper(), raw_path, raw_query, out, hashlib.sha256(body).hexdigest()
    )
    sts = sdk_hmac.string_to_sign(request, signed_text, names, date, unsigned_payload=unsigned)
    signature = hmac.new(utf8(credentials.secret_key), utf8(sts), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"{sdk_hmac.ALGORITHM} Access={credentials.access_key}, "
        f"SignedHeaders={signed_text}, Signature={signature}"
    )
    return out


def content_md5(data: bytes | bytearray | memoryview) -> tuple[str, str]:
    """``(hex, base64)`` MD5 of ``data``: the ETag to expect and the Content-MD5 to send."""
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return digest.hex(), base64.b64encode(digest).decode("ascii")


_SIGV4_UNSIGNED = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
"""Headers botocore never signs (hop-by-hop, or changed by proxies)."""


def _sigv4_signed(name: str) -> bool:
    return name not in _SIGV4_UNSIGNED


def sigv4_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    credentials: Credentials,
    *,
    payload_sha256: str,
    region: str = DEFAULT_REGION,
    now: datetime | None = None,
) -> dict[str, str]:
    """``headers`` plus Host, X-Amz-Date, X-Amz-Content-Sha256 and the ``AWS4-HMAC-SHA256``
    Authorization.

    ``payload_sha256`` is the hex sha256 of the body (:data:`EMPTY_SHA256` when empty) or
    :data:`UNSIGNED_PAYLOAD` for a streamed part (send a Content-MD5 with it).
    """
    host, raw_path, raw_query = _split(url)
    out = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    out["Host"] = host
    when = _now(now)
    date = when.strftime(_BASIC)
    out["X-Amz-Date"] = date
    out["X-Amz-Content-Sha256"] = payload_sha256
    names = sorted({k.lower() for k in out if _sigv4_signed(k.lower())})
    signed_text = ";".join(names)
    scope = f"{date[:8]}/{region}/s3/aws4_request"
    request = SignedRequest(method.upper(), raw_path, raw_query, out)
    sts = sigv4.string_to_sign(request, scope, signed_text, names, date)
    key = sigv4.signing_key(credentials.secret_key, date[:8], region, "s3")
    signature = hmac.new(key, utf8(sts), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"{sigv4.ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_text}, Signature={signature}"
    )
    return out


__all__ = [
    "DEFAULT_REGION",
    "EMPTY_SHA256",
    "UNSIGNED_PAYLOAD",
    "Credentials",
    "content_md5",
    "sdk_hmac_headers",
    "sigv4_headers",
]
