"""Request bodies: streamed to a staged file while hashing, or read whole when small.

Uploads are never held in memory. :func:`receive_to_file` streams the body through the shared
receiver (:mod:`imageport.api.body_file`), which writes it and computes its sha256 in one worker
thread and its md5 (the ETag) and any declared checksums in another, then fsyncs the file. The
sha256 is then compared with a hex ``x-amz-content-sha256`` (the signature covered that header,
not the bytes), and the file is removed on any failure, including a client that goes away
mid-body.

``aws-chunked`` bodies (``x-amz-content-sha256: STREAMING-...``, ``Content-Encoding:
aws-chunked``) are decoded on the fly: ``<hex size>[;chunk-signature=..]\\r\\n<data>\\r\\n`` ...
``0\\r\\n<trailers>\\r\\n``. For ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` every chunk's signature is
verified, in order, against the chain the authentication left in ``request.state.chunk_chain``
(:mod:`imageport.auth.sigv4_streaming`): the request's own signature covers no body byte, the
chain covers them all, and a body whose chain does not verify to its last, empty chunk is
refused (403 ``SignatureDoesNotMatch``). The decoded length must equal
``x-amz-decoded-content-length``.

A multipart part may be written in place (``offset``): into the upload's existing assembly file
at the part's slot, with pwritev and fdatasync, never beyond its declared length; a failed body
then leaves its bytes there, unreferenced, instead of removing the file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

from starlette.requests import Request

from imageport.api import body_file
from imageport.api.body_file import Buffer
from imageport.api.s3.checksum_headers import Hasher
from imageport.auth.errors import SignatureError
from imageport.auth.request import EMPTY_SHA256, is_sha256_hex
from imageport.auth.sigv4_streaming import SIGNED_CHUNKS, ChunkVerifier, chunk_signature
from imageport.service.buckets.checks import check_content_md5
from imageport.service.errors import RequestInvalid, ServiceError
from imageport.service.ports import StagedFile

MAX_CHUNK_LINE = 4096
"""Longest aws-chunked size or trailer line."""
MAX_TRAILERS = 16
_CHUNK_SIZE = re.compile(r"[0-9A-Fa-f]{1,16}")


def _missing_length() -> ServiceError:
    return ServiceError(
        "MissingContentLength", "you must provide the Content-Length header", status=411
    )


def _too_large(limit: int) -> RequestInvalid:
    return RequestInvalid("EntityTooLarge", f"the body is larger than {limit} bytes")


def _incomplete() -> RequestInvalid:
    return RequestInvalid(
        "IncompleteBody", "the body is shorter or longer than its declared length"
    )


def _length(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise RequestInvalid("InvalidArgument", "a length header is not a number")
    return int(value)


def is_aws_chunked(request: Request) -> bool:
    sha = request.headers.get("x-amz-content-sha256", "")
    encoding = request.headers.get("content-encoding", "").lower()
    return sha.startswith("STREAMING-") or "aws-chunked" in encoding


def declared_length(request: Request) -> int | None:
    """The body's (decoded) length as declared, None when unknown (HTTP chunked)."""
    if is_aws_chunked(request):
        decoded = _length(request.headers.get("x-amz-decoded-content-length"))
        if decoded is None:
            raise _missing_length()
        return decoded
    length = _length(request.headers.get("content-length"))
    if length is None and "chunked" not in request.headers.get("transfer-encoding", "").lower():
        raise _missing_length()
    return length


def body_left_unread(request: Request) -> bool:
    """True when the request announced a body that the views did not read to its end; the
    connection must then be closed (the client may or may not send the rest, e.g. after
    ``Expect: 100-continue`` was answered with an error)."""
    if getattr(request.state, "body_read", False):
        return False
    length = request.headers.get("content-length", "0").strip()
    return length not in ("", "0") or "transfer-encoding" in request.headers


def check_payload_sha256(request: Request, sha256_hex: str) -> None:
    """Compare the body's sha256 with a hex ``x-amz-content-sha256`` (markers pass)."""
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and is_sha256_hex(declared.lower()) and declared.lower() != sha256_hex:
        raise RequestInvalid(
            "XAmzContentSHA256Mismatch",
            "the provided x-amz-content-sha256 does not match what was computed",
        )


def _signature_refused(exc: SignatureError) -> ServiceError:
    return ServiceError(exc.code, exc.message, status=403)


class AwsChunkedDecoder:
    """Incremental decoder of the aws-chunked content encoding; with a ``verifier`` it checks
    each chunk's ``chunk-signature`` as soon as the chunk's data has arrived."""

    def __init__(self, verifier: ChunkVerifier | None = None) -> None:
        self._line = bytearray()
        self._state = "size"  # size | data | crlf | trailer | end
        self._remaining = 0
        self._verifier = verifier
        self._signature = ""
        self._chunk_hash = hashlib.sha256()
        self.trailers: dict[str, str] = {}

    @property
    def finished(self) -> bool:
        return self._state == "end" and (self._verifier is None or self._verifier.finished)

    def feed(self, data: bytes, out: list[Buffer]) -> None:
        """Append the payload pieces contained in ``data`` to ``out`` (views, not copies)."""
        pos, end = 0, len(data)
        view = memoryview(data)
        while pos < end:
            if self._state == "data":
                take = min(self._remaining, end - pos)
                piece = view[pos : pos + take]
                out.append(piece)
                if self._verifier is not None:
                    self._chunk_hash.update(piece)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._chunk_done(self._chunk_hash.hexdigest(), last=False)
                    self._state = "crlf"
                continue
            if self._state == "end":
                raise RequestInvalid("IncompleteBody", "bytes after the last aws-chunked chunk")
            newline = data.find(b"\n", pos)
            stop = end if newline < 0 else newline + 1
            self._line += view[pos:stop]
            pos = stop
            if len(self._line) > MAX_CHUNK_LINE:
                raise RequestInvalid("IncompleteBody", "an aws-chunked line is too long")
            if newline >= 0:
                line = bytes(self._line)
                self._line.clear()
                self._line_done(line)

    def _chunk_done(self, data_sha256: str, *, last: bool) -> None:
        if self._verifier is None:
            return
        try:
            self._verifier.check(self._signature, data_sha256, last=last)
        except SignatureError as exc:
            raise _signature_refused(exc) from exc

    def _line_done(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            raise RequestInvalid("IncompleteBody", "aws-chunked lines must end with CRLF")
        text = line[:-2].decode("latin-1")
        if self._state == "crlf":
            if text:
                raise RequestInvalid("IncompleteBody", "an aws-chunked chunk is too long")
            self._state = "size"
        elif self._state == "size":
            size_text, _, extension = text.partition(";")
            if not _CHUNK_SIZE.fullmatch(size_text):
                # hex digits only: int(x, 16) takes a sign ("-6" walked the decoder backwards
                # for ever), "0x" and "_" as well
                raise RequestInvalid("IncompleteBody", "bad aws-chunked chunk size")
            size = int(size_text, 16)
            if self._verifier is not None:
                try:
                    self._signature = chunk_signature(extension)
                except SignatureError as exc:
                    raise _signature_refused(exc) from exc
                self._chunk_hash = hashlib.sha256()
            self._remaining = size
            if size:
                self._state = "data"
            else:
                self._chunk_done(EMPTY_SHA256, last=True)
                self._state = "trailer"
        elif not text:
            self._state = "end"
        else:
            name, _, value = text.partition(":")
            name = name.strip().lower()
            if len(self.trailers) >= MAX_TRAILERS or name in self.trailers:
                raise RequestInvalid(
                    "IncompleteBody", "too many aws-chunked trailers, or one sent twice"
                )
            self.trailers[name] = value.strip()


def keep_trailers(request: Request, decoder: AwsChunkedDecoder | None) -> None:
    """After a whole aws-chunked body: every trailer its ``x-amz-trailer`` header announced
    must have come (400 ``IncompleteBody``); they are left in ``request.state.trailers`` for the
    views, which verify the checksums among them
    (:func:`imageport.api.s3.checksum_headers.trailer_checksums`)."""
    if decoder is None:
        return
    announced = {
        name.strip().lower()
        for name in request.headers.get("x-amz-trailer", "").split(",")
        if name.strip()
    }
    missing = sorted(announced - decoder.trailers.keys())
    if missing:
        raise RequestInvalid(
            "IncompleteBody",
            f"the trailer {missing[0][:64]} announced in x-amz-trailer did not come",
        )
    unannounced = sorted(decoder.trailers.keys() - announced)
    if unannounced:  # only announced ones were vetted (request_features) and can be verified
        raise RequestInvalid(
            "InvalidRequest",
            f"the trailer {unannounced[0][:64]} was not announced in x-amz-trailer",
        )
    request.state.trailers = dict(decoder.trailers)


def chunked_decoder(request: Request) -> AwsChunkedDecoder | None:
    """The decoder of ``request``'s aws-chunked body (None for a plain body), verifying the
    chunk signatures of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` upload; fails closed when the
    authentication left no chain for such a body."""
    if not is_aws_chunked(request):
        return None
    if request.headers.get("x-amz-content-sha256") != SIGNED_CHUNKS:
        return AwsChunkedDecoder()
    chain = getattr(request.state, "chunk_chain", None)
    if chain is None:
        raise ServiceError(
            "AccessDenied", "the chunk signatures of this upload cannot be verified", status=403
        )
    return AwsChunkedDecoder(ChunkVerifier(chain))


def payload_hash_declared(request: Request) -> bool:
    """True when the client signed the body's sha256 (hex ``x-amz-content-sha256``), which
    must then be verified."""
    return is_sha256_hex(request.headers.get("x-amz-content-sha256", "").lower())


async def receive_to_file(
    request: Request,
    path: Path,
    *,
    limit: int,
    sha256: bool = True,
    offset: int | None = None,
    hashers: Mapping[str, Hasher] | None = None,
) -> StagedFile:
    """Stream the body of ``request`` into a new file at ``path`` (fsynced) and return it with
    its size and digests. The file is removed if anything fails.

    With ``offset`` (a part written in place, see :class:`~imageport.service.ports.PartTarget`)
    ``path`` exists and the body goes there from ``offset`` on, at most ``limit`` bytes; a
    failure leaves the bytes written so far (no record points at them) and the file.

    ``sha256=False`` skips the sha256 (``sha256_hex`` is then empty) unless the client declared
    one that must be checked: a multipart part's own sha256 is not kept (the whole object's is,
    computed when the parts are joined), so a part sent with ``UNSIGNED-PAYLOAD`` and
    ``Content-MD5`` costs one hash per byte instead of two. ``hashers`` are fed the body's
    bytes too, in the md5 thread (the checksums a client declares:
    :func:`~imageport.api.s3.checksum_headers.body_hashers`)."""
    expected = declared_length(request)
    if expected is not None and expected > limit:
        raise _too_large(limit)  # before the decoder can refuse the chunk signatures
    decoder = chunked_decoder(request)
    md5 = hashlib.md5()  # noqa: S324 - the S3 ETag
    sha = hashlib.sha256() if sha256 or payload_hash_declared(request) else None

    def check() -> None:
        keep_trailers(request, decoder)
        check_payload_sha256(request, "" if sha is None else sha.hexdigest())

    size = await body_file.receive_to_file(
        request,
        path,
        limit=limit,
        expected=expected,
        too_large=lambda: _too_large(limit),
        wrong_length=lambda _size: _incomplete(),
        decoder=decoder,
        offset=offset,
        hashers=() if sha is None else (sha,),
        side_hashers=(md5, *(hashers or {}).values()),
        check=check,
    )
    return StagedFile(path, size, md5.hexdigest(), "" if sha is None else sha.hexdigest(), offset)


async def read_small(request: Request, limit: int) -> bytes:
    """The whole body of a small request, at most ``limit`` bytes (decoded when aws-chunked,
    its chunk signatures verified), checked against a hex ``x-amz-content-sha256`` and a
    ``Content-MD5``."""
    length = _length(request.headers.get("content-length"))
    if length is not None and length > limit and not is_aws_chunked(request):
        raise RequestInvalid(
            "MaxMessageLengthExceeded", f"the request body is larger than {limit} bytes"
        )
    decoder = chunked_decoder(request)
    parts: list[Buffer] = []
    size = 0
    async for chunk in request.stream():
        pieces: list[Buffer] = [chunk]
        if decoder is not None:
            pieces = []
            decoder.feed(chunk, pieces)
        for piece in pieces:
            size += len(piece)
            if size > limit:
                raise RequestInvalid(
                    "MaxMessageLengthExceeded", f"the request body is larger than {limit} bytes"
                )
            parts.append(bytes(piece))
    request.state.body_read = True
    if decoder is not None and not decoder.finished:
        raise _incomplete()
    declared = declared_length(request) if decoder is not None else None
    if declared is not None and size != declared:
        raise _incomplete()
    keep_trailers(request, decoder)
    body = b"".join(parts)
    check_payload_sha256(request, hashlib.sha256(body).hexdigest())
    check_content_md5(request.headers.get("content-md5"), hashlib.md5(body).hexdigest())  # noqa: S324 - Content-MD5
    return body
