"""Shared helpers for the signature tests: turn real client requests into SignedRequests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import urlsplit

from botocore.awsrequest import AWSRequest

from imageport.auth.request import SignedRequest

AK, SK = "AK_TEST", "SK_TEST"


def secret_for(access_key: str) -> str | None:
    return SK if access_key == AK else None


def wrong_secret(access_key: str) -> str | None:
    return "SK_WRONG" if access_key == AK else None


def now() -> datetime:
    return datetime.now(UTC)


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def from_aws(request: AWSRequest, *, body_known: bool = True) -> SignedRequest:
    """The SignedRequest an HTTP server would see for a botocore-signed request."""
    prepared = request.prepare()
    split = urlsplit(prepared.url)
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    # names lower-cased and repeated headers joined with ",", as the service's HTTP layer does
    headers: dict[str, str] = {}
    for name, raw in prepared.headers.items():
        key, value = name.lower(), raw.decode() if isinstance(raw, bytes) else raw
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    headers.setdefault("host", split.netloc)  # added by the HTTP client, as botocore signed it
    return SignedRequest(
        method=prepared.method,
        raw_path=split.path,
        raw_query=split.query,
        headers=headers,
        body_sha256=sha(body) if body_known else None,
    )
