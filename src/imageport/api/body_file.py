"""Stream a request body into a file, never holding it in memory.

The one receiver behind every upload: the Glance data routes (:mod:`imageport.api.ims.glance_views`)
and the S3 object and part uploads (:mod:`imageport.api.s3.body`), which add their own framing,
digests and checks as parameters.

The pieces the server receives are gathered (without copying them) into batches of
:data:`BATCH` bytes. Each batch is written by a worker thread while the event loop receives the
next one; digests the caller wants are fed in that thread before the write (``hashers``) or in a
second thread (``side_hashers``, so two digests cost no more wall time than one). Each thread
takes the batches in order, so every digest sees the bytes in order.

The byte count is checked against the cap and the declared length as the pieces arrive (an
endless chunked body is cut off at the cap, a long one at its declared length), and against the
declared length again at the end. The file is created with ``O_EXCL | O_NOFOLLOW`` and mode
0600, fsynced before it is handed on, and removed on any failure, including a client that goes
away mid-body (Starlette raises ``ClientDisconnect``) or a cancelled request.

With ``offset`` the file exists already (a multipart upload's assembly file): it is opened
without truncating (still ``O_NOFOLLOW``), the bytes go from ``offset`` on (pwritev) and are
fdatasynced; a failed body then leaves its bytes there, unreferenced, instead of removing the
file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from starlette.requests import Request

from imageport.limits import MiB

BATCH = 4 * MiB
"""Bytes gathered before they are handed to the worker threads (one hop per batch)."""
_IOV_MAX = 1024

Buffer = bytes | memoryview


class Digest(Protocol):
    """What a body's bytes are fed to: hashlib's ``update`` (md5, sha256, a CRC ...)."""

    def update(self, data: bytes | memoryview, /) -> None: ...


class Decoder(Protocol):
    """A content encoding undone as the body arrives (S3's aws-chunked)."""

    @property
    def finished(self) -> bool:
        """True once the encoding's last frame has arrived."""
        ...

    def feed(self, data: bytes, out: list[Buffer]) -> None:
        """Append the payload pieces contained in ``data`` to ``out``."""
        ...


class _Sink:
    """The target file, its worker threads and the byte count written so far."""

    def __init__(
        self,
        path: Path,
        *,
        offset: int | None,
        hashers: Sequence[Digest],
        side_hashers: Sequence[Digest],
    ) -> None:
        flags = os.O_WRONLY | os.O_NOFOLLOW
        if offset is None:
            self.fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        else:
            self.fd = os.open(path, flags)
        self._offset = offset
        self._hashers = list(hashers)
        self._side_hashers = list(side_hashers)
        self.size = 0
        self._data_thread = ThreadPoolExecutor(1, thread_name_prefix="imageport-write")
        self._side_thread = (
            ThreadPoolExecutor(1, thread_name_prefix="imageport-hash") if side_hashers else None
        )
        self._pending: list[Future[None]] = []

    def _hash_side(self, pieces: list[Buffer]) -> None:
        for piece in pieces:
            for hasher in self._side_hashers:
                hasher.update(piece)

    def _hash_and_write(self, pieces: list[Buffer]) -> None:
        for piece in pieces:
            for hasher in self._hashers:
                hasher.update(piece)
        views = [memoryview(piece).cast("B") for piece in pieces]
        while views:
            if self._offset is None:
                written = os.writev(self.fd, views[:_IOV_MAX])
            else:
                written = os.pwritev(self.fd, views[:_IOV_MAX], self._offset + self.size)
            self.size += written
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]

    async def _drain(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            await asyncio.wrap_future(future)

    async def push(self, pieces: list[Buffer]) -> None:
        """Hand a batch to the worker threads once the previous batch is done."""
        await self._drain()
        self._pending = [self._data_thread.submit(self._hash_and_write, pieces)]
        if self._side_thread is not None:
            self._pending.append(self._side_thread.submit(self._hash_side, pieces))

    async def finish(self) -> None:
        """Wait for all batches, then fsync (fdatasync in place) and close the file."""
        await self._drain()
        sync = os.fsync if self._offset is None else os.fdatasync
        await asyncio.wrap_future(self._data_thread.submit(sync, self.fd))
        self.close()

    def close(self) -> None:
        """Close the file and stop the threads (waiting for queued work first)."""
        if self._side_thread is not None:
            self._side_thread.shutdown(wait=True)
        self._data_thread.shutdown(wait=True)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def receive_to_file(
    request: Request,
    path: Path,
    *,
    limit: int,
    expected: int | None,
    too_large: Callable[[], Exception],
    wrong_length: Callable[[int], Exception],
    decoder: Decoder | None = None,
    offset: int | None = None,
    hashers: Sequence[Digest] = (),
    side_hashers: Sequence[Digest] = (),
    check: Callable[[], None] | None = None,
) -> int:
    """Write the body of ``request`` to the new file ``path`` (fsynced, mode 0600); its size.

    At most ``limit`` bytes (``too_large()`` is raised beyond, or before a byte is read when
    ``expected`` is larger); ``expected``: the declared length, which the body must match
    (``wrong_length(size)`` otherwise, or when ``decoder`` did not see the encoding's end).
    ``decoder`` undoes a content encoding on the fly; ``offset`` writes into the existing file
    ``path`` from there on (see the module docstring); ``hashers`` and ``side_hashers`` are fed
    the (decoded) bytes. ``check`` runs once the whole body is in the file; whatever it raises
    fails the upload like any other error."""
    if expected is not None and expected > limit:
        raise too_large()
    sink = _Sink(path, offset=offset, hashers=hashers, side_hashers=side_hashers)
    batch: list[Buffer] = []
    batched = received = 0
    try:
        async for chunk in request.stream():
            if decoder is None:
                pieces: list[Buffer] = [chunk]
            else:
                pieces = []
                decoder.feed(chunk, pieces)
            for piece in pieces:
                size = len(piece)
                received += size
                if expected is not None and received > expected:
                    raise wrong_length(received)
                if received > limit:
                    raise too_large()
                if size:
                    batch.append(piece)
                    batched += size
            if batched >= BATCH:
                await sink.push(batch)
                batch, batched = [], 0
        request.state.body_read = True
        if batch:
            await sink.push(batch)
        await sink.finish()
        if decoder is not None and not decoder.finished:
            raise wrong_length(sink.size)
        if expected is not None and sink.size != expected:
            raise wrong_length(sink.size)
        if check is not None:
            check()
    except BaseException:
        # a cancelled request: the threads may still be writing; close the file after them
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, sink.close))
        if offset is None:
            path.unlink(missing_ok=True)
        raise
    return sink.size
