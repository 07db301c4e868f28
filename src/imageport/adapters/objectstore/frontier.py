"""The hash frontier: the whole-object sha256 of an upload's assembly, computed as parts arrive.

Completing an upload in place must hash the object once. Most of that can happen earlier: as
soon as parts 1..h are committed, full stride long, their bytes are final (a part's own file
never changes, and :mod:`.assembly` never overwrites a committed in-place part), so a running
sha256 over that prefix can be fed while the client still sends later parts. Each committing thread
advances the frontier as far as the committed parts allow, after its own commit (the hashing
runs in the request's worker thread, beside other parts being received); completing then
hashes only what lies beyond the frontier.

The frontier is a cache, in memory only: after a restart it starts again from part 1, at
worst at completion. It is discarded whenever a part it covers is committed again as another
row (the client re-sent it), and completion uses it only if each chosen part 1..h is the very
row it hashed (same ETag, time, file and offset).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from imageport.adapters.objectstore.assembly import hash_range
from imageport.service.errors import RequestInvalid
from imageport.service.tables import parts, uploads

Identity = tuple[str, str, str, int | None]


def identity(row: Any) -> Identity:
    """What tells one committed row of a part from another: ETag, time, file, offset."""
    return (row.etag, row.created_at, row.blob, row.offset)


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    digest: Any = field(default_factory=hashlib.sha256)
    #: :func:`identity` of the parts 1..h hashed so far
    hashed: list[Identity] = field(default_factory=list)
    closed: bool = False

    def reset(self) -> None:
        self.digest = hashlib.sha256()
        self.hashed = []


class HashFrontier:
    """Running sha256 of each live upload's in-place prefix (see the module docstring)."""

    def __init__(self, engine: Engine, uploads_dir: Path) -> None:
        self._db = engine
        self._uploads = uploads_dir
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def _state(self, upload_id: str) -> _State:
        with self._lock:
            return self._states.setdefault(upload_id, _State())

    def committed(self, upload_id: str, number: int, row: Identity) -> None:
        """Part ``number`` was just committed as ``row``: drop the frontier if it covered
        another row of that part, then advance it as far as the committed parts allow.
        (Another thread may have hashed this very row already, after its commit.)"""
        state = self._state(upload_id)
        with state.lock:
            if number <= len(state.hashed) and state.hashed[number - 1] != row:
                state.reset()
        while state.lock.acquire(blocking=False):
            try:
                advanced = self._advance_one(upload_id, state)
            finally:
                state.lock.release()
            if not advanced:
                # a part committed while we held the lock was left to us: look once more
                if not state.lock.locked() and self._next_ready(upload_id, state) is not None:
                    continue
                return

    def _next_ready(self, upload_id: str, state: _State) -> Any:
        """The row of part h+1 if it is committed full stride long; else None."""
        number = len(state.hashed) + 1
        with self._db.connect() as conn:
            stride = conn.execute(
                select(uploads.c.stride).where(uploads.c.id == upload_id)
            ).scalar_one_or_none()
            if not stride:
                return None
            row = conn.execute(
                select(parts).where((parts.c.upload_id == upload_id) & (parts.c.number == number))
            ).first()
        if row is None or row.size != stride or row.offset not in (None, (number - 1) * stride):
            return None
        return row

    def _advance_one(self, upload_id: str, state: _State) -> bool:
        """Hash part h+1 (holding ``state.lock``) if it is ready; True if it was."""
        if state.closed:
            return False
        row = self._next_ready(upload_id, state)
        if row is None:
            return False
        try:
            fd = os.open(self._uploads / upload_id / row.blob, os.O_RDONLY)
        except FileNotFoundError:
            return False  # replaced, aborted or completed meanwhile
        try:
            hash_range(fd, row.offset or 0, row.size, state.digest)
        except (OSError, RequestInvalid):
            state.reset()  # a partial update spoils the digest
            return False
        finally:
            os.close(fd)
        state.hashed.append(identity(row))
        return True

    def take(self, upload_id: str, chosen: list[Any]) -> tuple[Any, int]:
        """For completing ``upload_id`` from the ``chosen`` rows (parts 1..K): a sha256 object
        fed with the object's first bytes, and how many. The frontier is gone afterwards."""
        with self._lock:
            state = self._states.pop(upload_id, None)
        if state is None:
            return hashlib.sha256(), 0
        with state.lock:
            state.closed = True
            count = len(state.hashed)
            if count > len(chosen) or any(
                identity(chosen[i]) != state.hashed[i] for i in range(count)
            ):
                return hashlib.sha256(), 0
            return state.digest, sum(chosen[i].size for i in range(count))

    def forget(self, upload_id: str) -> None:
        """Drop the frontier of an upload that is completed or aborted."""
        with self._lock:
            state = self._states.pop(upload_id, None)
        if state is not None:
            with state.lock:
                state.closed = True


__all__ = ["HashFrontier", "identity"]
