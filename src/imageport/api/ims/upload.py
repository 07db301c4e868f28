"""Stream an image data request body into a new file, never holding it in memory.

python-glanceclient sends ``PUT /v2/images/{id}/file`` and ``/stage`` with ``Transfer-Encoding:
chunked`` and no length; openstacksdk sends a ``Content-Length``. The body's pieces are gathered
into batches of :data:`BATCH` bytes and written by a worker thread while the event loop receives
the next batch; the byte count is checked against the cap as the pieces arrive (so an endless
chunked body is cut off at the cap), and against a declared ``Content-Length`` at the end. The
file is fsynced before it is handed on, and removed on any failure, including a client that
goes away mid-body (Starlette raises ``ClientDisconnect``) or a cancelled request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request

from imageport.limits import MiB
from imageport.service.errors import RequestInvalid, ServiceError

BATCH = 4 * MiB
"""Bytes gathered before a write (one thread hop per batch, not per network read)."""


def _write_all(fd: int, pieces: list[bytes]) -> None:
    for piece in pieces:
        view = memoryview(piece)
        while view:
            written = os.write(fd, view)
            view = view[written:]


async def receive_to_file(
    request: Request,
    path: Path,
    *,
    limit: int,
    expected: int | None,
    too_large: Callable[[], ServiceError],
) -> int:
    """Write the body of ``request`` to the new file ``path`` (fsynced, mode 0600); its size.
    At most ``limit`` bytes (``too_large()`` is raised beyond); ``expected``: the declared
    Content-Length, which the body must match."""
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    pending: asyncio.Future[None] | None = None

    async def write(pieces: list[bytes]) -> None:
        nonlocal pending
        pending = loop.run_in_executor(None, _write_all, fd, pieces)
        await asyncio.shield(pending)  # cancelling the request must not orphan the write

    size = 0
    try:
        batch: list[bytes] = []
        batched = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large()
            if chunk:
                batch.append(chunk)
                batched += len(chunk)
            if batched >= BATCH:
                await write(batch)
                batch, batched = [], 0
        request.state.body_read = True
        if batch:
            await write(batch)
        if expected is not None and size != expected:
            raise RequestInvalid(
                "IMG.0001",
                f"the body is {size} bytes, not the {expected} its Content-Length declared",
            )
        pending = loop.run_in_executor(None, os.fsync, fd)
        await asyncio.shield(pending)
    except BaseException:
        path.unlink(missing_ok=True)
        if pending is not None and not pending.done():
            # a cancelled request: the thread may still be writing; close the file after it
            pending.add_done_callback(lambda _: _close(fd))
        else:
            _close(fd)
        raise
    _close(fd)
    return size


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
