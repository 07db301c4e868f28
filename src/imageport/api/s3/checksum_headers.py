"""``x-amz-checksum-crc32``, ``-sha1``, ``-sha256``, ``-sha512`` and ``-md5``: whole-body
checksums a client declares on PutObject and UploadPart (botocore 1.36 and later sends
``x-amz-checksum-crc32`` on every upload by default, and on DeleteObjects), as headers or, in
an aws-chunked body, as trailers (boto3 over https), verified against the bytes received before
the object or part is committed or the request acted on.

S3 answers a mismatch with 400 ``BadDigest`` and a value that is not base64 of the right length
with 400 ``InvalidRequest``; so do we. The body reader computes the declared kinds while it
receives the body (:func:`body_hashers`), so nothing is read back (an upload that declares no
checksum pays nothing). The other kinds S3 knows (CRC32C,
CRC64NVME, the XXHASH family) are not verified and therefore refused
(:mod:`imageport.api.s3.request_features`); a checksum value on a request without a body (a
copy, CreateMultipartUpload, GET...) is refused too, since there is nothing to verify it
against, and so is one on CompleteMultipartUpload, where S3 reads it as the checksum of the
assembled object, which is not computed here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from imageport.service.errors import RequestInvalid

HEADER_PREFIX = "x-amz-checksum-"
ALGORITHMS = ("crc32", "sha1", "sha256", "sha512", "md5")
"""Checksums verified here (header ``x-amz-checksum-<name>``)."""


class Hasher(Protocol):
    """hashlib's update/digest interface (what the body reader feeds)."""

    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc32:
    """zlib's CRC-32 behind hashlib's update/digest interface (big-endian, as S3 encodes)."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


_DIGEST_SIZES = {"crc32": 4, "sha1": 20, "sha256": 32, "sha512": 64, "md5": 16}
_FACTORIES: dict[str, Callable[[], Hasher]] = {
    "crc32": _Crc32,
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": lambda: hashlib.md5(usedforsecurity=False),
}


@dataclass(frozen=True, slots=True)
class DeclaredChecksum:
    """One ``x-amz-checksum-<algorithm>`` header, decoded."""

    algorithm: str
    digest: bytes

    @property
    def header(self) -> str:
        return HEADER_PREFIX + self.algorithm


def declared_checksums(headers: Mapping[str, str]) -> list[DeclaredChecksum]:
    """The verified-kind checksum headers of a request (400 ``InvalidRequest`` for a value
    that is not base64 of that algorithm's digest)."""
    found = []
    for algorithm in ALGORITHMS:
        value = headers.get(HEADER_PREFIX + algorithm)
        if value is None:
            continue
        try:
            digest = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != _DIGEST_SIZES[algorithm]:
            raise RequestInvalid(
                "InvalidRequest", f"value for {HEADER_PREFIX}{algorithm} header is invalid"
            )
        found.append(DeclaredChecksum(algorithm, digest))
    return found


def trailer_checksums(request: Request) -> list[DeclaredChecksum]:
    """The checksums an aws-chunked body sent as trailers (boto3 over https sends
    ``x-amz-checksum-crc32`` that way), once the body has been read
    (:func:`imageport.api.s3.body.keep_trailers`)."""
    trailers: Mapping[str, str] = getattr(request.state, "trailers", {})
    return declared_checksums(trailers)


def body_hashers(headers: Mapping[str, str]) -> dict[str, Hasher]:
    """A hasher for each checksum kind the request declares in a header or announces as an
    aws-chunked trailer (``x-amz-trailer``), for the body reader to feed as the bytes arrive:
    the body is hashed once, while it is received, not read back afterwards."""
    kinds = {d.algorithm for d in declared_checksums(headers)}
    for name in headers.get("x-amz-trailer", "").split(","):
        kind = name.strip().lower().removeprefix(HEADER_PREFIX)
        if kind in _FACTORIES:
            kinds.add(kind)
    return {kind: _FACTORIES[kind]() for kind in sorted(kinds)}


def verify_digests(declared: list[DeclaredChecksum], hashers: Mapping[str, Hasher]) -> None:
    """Compare each declared checksum with its hasher's digest of the body received; 400
    ``BadDigest`` naming the first that differs."""
    for item in declared:
        if hashers[item.algorithm].digest() != item.digest:
            raise RequestInvalid(
                "BadDigest",
                f"the {item.algorithm.upper()} you specified "
                f"({item.header}) did not match the calculated checksum",
            )


def verify_bytes(
    headers: Mapping[str, str], body: bytes, trailers: list[DeclaredChecksum] | None = None
) -> None:
    """Check the checksums ``headers`` declare (and ``trailers``, those of an aws-chunked
    body) against a small body read whole (CreateBucket, DeleteObjects,
    CompleteMultipartUpload)."""
    declared = [*declared_checksums(headers), *(trailers or [])]
    hashers = {d.algorithm: _FACTORIES[d.algorithm]() for d in declared}
    for hasher in hashers.values():
        hasher.update(body)
    verify_digests(declared, hashers)


__all__ = [
    "ALGORITHMS",
    "HEADER_PREFIX",
    "DeclaredChecksum",
    "Hasher",
    "body_hashers",
    "declared_checksums",
    "trailer_checksums",
    "verify_bytes",
    "verify_digests",
]
