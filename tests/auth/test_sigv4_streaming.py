"""Chunk signatures of SigV4 streaming uploads, against AWS's own published example.

The example is the one in the AWS S3 API reference, "Signature Calculations for the
Authorization Header: Transferring Payload in Multiple Chunks", section "Example: PUT Object":
a 66,560-byte object of ``a`` sent as a 65,536-byte chunk, a 1,024-byte chunk and the empty
last chunk, with the documented seed and chunk signatures.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from imageport.auth import SignatureError, SignedRequest
from imageport.auth.request import EMPTY_SHA256
from imageport.auth.sigv4 import verify
from imageport.auth.sigv4_streaming import ChunkVerifier, chain_for, chunk_signature

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # noqa: S105 - AWS's published example key
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNKS = [
    (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]
SIGNED = (
    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
    "x-amz-decoded-content-length;x-amz-storage-class"
)
REQUEST = SignedRequest(
    "PUT",
    "/examplebucket/chunkObject.txt",
    "",
    {
        "Host": "s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
        f"aws4_request,SignedHeaders={SIGNED},Signature={SEED}",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560",
        "Content-Length": "66824",
    },
)
WHEN = datetime(2013, 5, 24, 0, 5, tzinfo=UTC)


def _secret(access_key: str) -> str | None:
    return SECRET if access_key == "AKIAIOSFODNN7EXAMPLE" else None


def _verifier() -> ChunkVerifier:
    assert verify(REQUEST, _secret, WHEN) == "AKIAIOSFODNN7EXAMPLE"
    return ChunkVerifier(chain_for(REQUEST, SECRET))


def test_the_published_chain_verifies() -> None:
    verifier = _verifier()
    for data, signature in CHUNKS:
        verifier.check(signature, hashlib.sha256(data).hexdigest(), last=not data)
    assert verifier.finished


@pytest.mark.parametrize("case", ["zero-signature", "other-data", "reordered", "after-end"])
def test_a_broken_chain_is_refused(case: str) -> None:
    verifier = _verifier()
    (first, first_sig), (second, second_sig), (_, last_sig) = CHUNKS
    with pytest.raises(SignatureError) as err:
        if case == "zero-signature":  # what the attack of issue 9 sent
            verifier.check("0" * 64, hashlib.sha256(first).hexdigest(), last=False)
        elif case == "other-data":
            verifier.check(first_sig, hashlib.sha256(b"b" * 65536).hexdigest(), last=False)
        elif case == "reordered":
            verifier.check(second_sig, hashlib.sha256(second).hexdigest(), last=False)
        else:
            for data, signature in CHUNKS:
                verifier.check(signature, hashlib.sha256(data).hexdigest(), last=not data)
            verifier.check(last_sig, EMPTY_SHA256, last=True)
    assert err.value.code == "SignatureDoesNotMatch"


def test_chunk_signature_extension() -> None:
    assert chunk_signature(f"chunk-signature={SEED}") == SEED
    for bad in ("", "chunk-signature=", "chunk-signature=XYZ", f"sig={SEED}"):
        with pytest.raises(SignatureError):
            chunk_signature(bad)
