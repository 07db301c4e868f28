"""The one exception request-signature verification raises: :class:`SignatureError`, a signed
request was refused (its place in the tree is drawn in :mod:`imageport.errors`).

``code`` is the S3-style error code the API layer turns into a response:

========================== ============================================================
``InvalidAccessKeyId``      the access key is not known to ``secret_for``
``AuthorizationHeaderMalformed`` Authorization (or a date header) cannot be parsed
``RequestTimeTooSkewed``    the signed date is more than ``max_skew`` away from now
``SignatureDoesNotMatch``   everything parsed, but the signature is wrong
``XAmzContentSHA256Mismatch`` the declared payload hash is not the body's sha256
``InvalidArgument``         the payload-hash header is neither hex nor a known marker
``InvalidRequest``          the payload hash is needed but neither sent nor known
``AuthorizationQueryParametersError`` a presigned URL's auth parameters are missing or bad
``AccessDenied``            a presigned URL has expired or is not valid yet
========================== ============================================================
"""

from __future__ import annotations

from imageport.errors import ImageportError

INVALID_ACCESS_KEY = "InvalidAccessKeyId"
MALFORMED = "AuthorizationHeaderMalformed"
TOO_SKEWED = "RequestTimeTooSkewed"
MISMATCH = "SignatureDoesNotMatch"
CONTENT_SHA256_MISMATCH = "XAmzContentSHA256Mismatch"
INVALID_ARGUMENT = "InvalidArgument"
INVALID_REQUEST = "InvalidRequest"
QUERY_MALFORMED = "AuthorizationQueryParametersError"
ACCESS_DENIED = "AccessDenied"


class SignatureError(ImageportError):
    """A signed request was refused; ``code`` names the reason (see the module docstring)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
