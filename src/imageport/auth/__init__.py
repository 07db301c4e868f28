"""Request-signature verification for the IMS API (SDK-HMAC-SHA256) and the S3 API (SigV4, v2).

Each scheme module exposes ``verify(request, secret_for, now, *, max_skew) -> access_key`` and
raises only :class:`SignatureError`. :func:`detect_scheme` (Authorization header) and
:func:`detect_query_scheme` (presigned URLs: ``sigv4_query.verify``, ``s3v2.verify_query``) tell
the API layer which one to call. Learned from the requests the unmodified clients send (the
vendor's Python SDK, esdk-obs-python, boto3, s3cmd, rclone), captured on a loopback server, and
from their signers' source; the tests in ``tests/auth`` sign with the clients' own code.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from imageport.auth.errors import INVALID_ARGUMENT, SignatureError
from imageport.auth.request import SignedRequest, header_of, query_items
from imageport.auth.s3v2 import QUERY_MARKERS as _V2_MARKERS
from imageport.auth.sigv4_query import MARKERS as _V4_MARKERS

__all__ = ["SignatureError", "SignedRequest", "detect_query_scheme", "detect_scheme"]

_SCHEMES = (
    ("SDK-HMAC-SHA256 ", "sdk-hmac"),
    ("AWS4-HMAC-SHA256 ", "sigv4"),
    ("AWS ", "s3v2"),
    ("OBS ", "s3v2"),
)


def detect_scheme(headers: Mapping[str, str]) -> str | None:
    """``"sdk-hmac"``, ``"sigv4"`` or ``"s3v2"`` from the Authorization header, else None."""
    value = header_of(headers, "authorization")
    if value is None:
        return None
    for prefix, scheme in _SCHEMES:
        if value.startswith(prefix):
            return scheme
    return None


def detect_query_scheme(raw_query: str) -> str | None:
    """``"sigv4-query"`` or ``"s3v2-query"`` when ``raw_query`` carries a presigned URL's auth
    parameters, else None; both kinds at once are ``InvalidArgument``."""
    names = {unquote(name) for name, _ in query_items(raw_query)}
    v4 = not names.isdisjoint(_V4_MARKERS)
    v2 = not names.isdisjoint(_V2_MARKERS)
    if v4 and v2:
        raise SignatureError(INVALID_ARGUMENT, "Only one auth mechanism allowed")
    if v4:
        return "sigv4-query"
    return "s3v2-query" if v2 else None
