"""Request-signature verification for the IMS API (SDK-HMAC-SHA256) and the S3 API (SigV4, v2).

Each scheme module exposes ``verify(request, secret_for, now, *, max_skew) -> access_key`` and
raises only :class:`SignatureError`. :func:`detect_scheme` tells the API layer which one to call.
Learned from the client captures in ``shared/spec/clients.md`` sections 1-3.
"""

from __future__ import annotations

from collections.abc import Mapping

from imageport.auth.errors import SignatureError
from imageport.auth.request import SignedRequest, header_of

__all__ = ["SignatureError", "SignedRequest", "detect_scheme"]

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
