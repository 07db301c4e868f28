"""Verify the chunk signatures of a SigV4 streaming upload (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``).

Learned from the AWS S3 API reference, "Signature Calculations for the Authorization Header:
Transferring Payload in Multiple Chunks (Chunked Upload)". The request's own signature (the
*seed*) is computed with the literal ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` as its payload hash,
so it covers no body byte; each ``aws-chunked`` chunk then carries a signature that chains to
the one before it::

    <hex size>;chunk-signature=<64 hex>\\r\\n<data>\\r\\n ... 0;chunk-signature=<64 hex>\\r\\n\\r\\n

    StringToSign = "AWS4-HMAC-SHA256-PAYLOAD" \\n AmzDate \\n scope \\n previous-signature \\n
                   hex(sha256("")) \\n hex(sha256(chunk data))
    signature    = hex(HMAC-SHA256(signing key, StringToSign))

The first chunk's previous signature is the seed, the last chunk is empty. Verifying the whole
chain proves every body byte, in order, and that nothing follows; a missing, wrong or
out-of-order signature is refused. Variants whose chain this module does not verify (the
signed-trailer and ECDSA ones) are listed in :data:`REFUSED_MODES`, refused by the API layer
with ``NotImplemented`` rather than accepted without a check.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from imageport.auth.errors import MALFORMED, MISMATCH, SignatureError
from imageport.auth.request import EMPTY_SHA256, SignedRequest, is_sha256_hex, same, utf8
from imageport.auth.sigv4 import amz_date, authorization_parts, signing_key

SIGNED_CHUNKS = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
"""The ``x-amz-content-sha256`` value of a chunk-signed upload."""
REFUSED_MODES = frozenset(
    {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    }
)
"""Streaming modes whose signatures are not verified here: refused, never accepted unchecked."""
_CHUNK_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
_SIGNATURE_PARAM = "chunk-signature="


@dataclass(frozen=True, slots=True)
class ChunkChain:
    """What the chunk signatures of one request chain from: its signing key, date, scope and
    seed signature (the request's own)."""

    key: bytes
    amz_date: str
    scope: str
    seed: str


def chain_for(request: SignedRequest, secret: str) -> ChunkChain:
    """The chain of a chunk-signed ``request`` that :func:`imageport.auth.sigv4.verify` has
    accepted with ``secret``."""
    cred, _, _, signature = authorization_parts(request)
    date, _ = amz_date(request)
    return ChunkChain(
        signing_key(secret, cred.date, cred.region, cred.service), date, cred.scope, signature
    )


def chunk_signature(extension: str) -> str:
    """The ``chunk-signature`` of a chunk-size line's extension (the text after ``;``)."""
    text = extension.strip()
    if not text.startswith(_SIGNATURE_PARAM):
        raise SignatureError(MALFORMED, "an aws-chunked chunk has no chunk-signature")
    signature = text[len(_SIGNATURE_PARAM) :]
    if not is_sha256_hex(signature):
        raise SignatureError(MALFORMED, "a chunk-signature is not 64 hex digits")
    return signature


class ChunkVerifier:
    """Checks each chunk's signature in order; :attr:`finished` once the last (empty) chunk's
    signature has been checked."""

    def __init__(self, chain: ChunkChain) -> None:
        self._chain = chain
        self._previous = chain.seed
        self.finished = False

    def expected(self, data_sha256: str) -> str:
        """The signature the next chunk must carry when its data's sha256 is ``data_sha256``."""
        sts = "\n".join(
            (
                _CHUNK_ALGORITHM,
                self._chain.amz_date,
                self._chain.scope,
                self._previous,
                EMPTY_SHA256,
                data_sha256,
            )
        )
        return hmac.new(self._chain.key, utf8(sts), hashlib.sha256).hexdigest()

    def check(self, signature: str, data_sha256: str, *, last: bool) -> None:
        """Accept the next chunk (signature ``signature``, data hash ``data_sha256``; ``last``:
        the empty chunk that ends the body) or raise ``SignatureDoesNotMatch``."""
        if self.finished:
            raise SignatureError(MISMATCH, "a chunk follows the last signed chunk")
        if not same(self.expected(data_sha256), signature):
            raise SignatureError(MISMATCH, "a chunk-signature does not match the chunk")
        self._previous = signature
        self.finished = last
