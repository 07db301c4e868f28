"""Parts written in place: one assembly file per multipart upload, and who may write where.

Clients upload every part but the last with one size (boto3, s3cmd, rclone, the OBS SDK and
``imageport upload`` all do). That size, the upload's *stride*, is known once part 1 declares a
length of at least :data:`MIN_PART_SIZE`, or two other parts declare the same such length (two
parts cannot both be the last one); a part that arrives before, like the last part of a parallel
upload arriving first, goes to a file of its own. From then on part N whose declared length fits
in the stride is written straight into ``uploads/<upload_id>/assembly`` at ``(N-1) * stride``.
When the parts a client completes with are exactly 1..K, all but the last one stride long, the
assembly becomes the object: the few parts kept in files of their own are copied into their
slots, then the file is truncated, hashed once and linked into ``objects/`` instead of copying
every byte again.

Safety rules, kept by :class:`Slots` (in this process) and the ``parts.offset`` column:

* one writer per ``(upload, N)`` slot at a time; a second concurrent upload of part N goes to a
  file of its own;
* bytes of a committed in-place part are never overwritten: while part N is committed in
  place, a new upload of part N goes to a file of its own (and once that one is committed, the
  slot is free again);
* completing in place needs no writer in flight on the upload, and no writer starts while it
  runs;
* a body that fails or is short leaves bytes in the assembly that no row points at.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from imageport.limits import MiB
from imageport.service.errors import RequestInvalid

MIN_PART_SIZE = 5 * MiB
"""Smallest part allowed, except the last one (S3's rule); also the smallest stride."""
ASSEMBLY = "assembly"
"""File name of an upload's assembly file (part blobs are 32 hex digits: no clash)."""
MAX_ASSEMBLY_BYTES = 5 * 1024 * 1024 * MiB
"""Largest assembly file (S3's largest object); parts that would end beyond go to own files."""
MAX_PROPOSALS = 64
"""Part lengths remembered per upload while its stride is unknown."""
COPY_CHUNK = 8 * MiB
"""Bytes moved per system call while joining or hashing parts."""


class Slots:
    """In-process reservations: which ``(upload, part number)`` slots have a writer in flight,
    and which uploads are being completed in place. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writing: set[tuple[str, int]] = set()
        self._completing: set[str] = set()
        self._proposed: dict[str, dict[int, int]] = {}

    def propose(self, upload_id: str, number: int, length: int) -> bool:
        """Note that part ``number`` declared ``length``; True if another part declared the
        same length before (then it is the stride). Remembers a few lengths per upload."""
        with self._lock:
            seen = self._proposed.setdefault(upload_id, {})
            if any(n != number and size == length for n, size in seen.items()):
                return True
            if len(seen) < MAX_PROPOSALS:
                seen[number] = length
            return False

    def forget(self, upload_id: str) -> None:
        """Drop what was noted about an upload (its stride is fixed, or it is gone)."""
        with self._lock:
            self._proposed.pop(upload_id, None)

    def claim(self, upload_id: str, number: int) -> bool:
        """Reserve slot ``number`` of ``upload_id``; False if taken or the upload completes."""
        with self._lock:
            if upload_id in self._completing or (upload_id, number) in self._writing:
                return False
            self._writing.add((upload_id, number))
            return True

    def held(self, upload_id: str, number: int) -> bool:
        with self._lock:
            return (upload_id, number) in self._writing

    def release(self, upload_id: str, number: int) -> None:
        with self._lock:
            self._writing.discard((upload_id, number))

    def start_complete(self, upload_id: str) -> bool:
        """Mark ``upload_id`` as completing in place; False if any of its slots is being
        written (the caller then copies the parts instead)."""
        with self._lock:
            if upload_id in self._completing or any(u == upload_id for u, _n in self._writing):
                return False
            self._completing.add(upload_id)
            return True

    def end_complete(self, upload_id: str) -> None:
        with self._lock:
            self._completing.discard(upload_id)


def assembly_misfits(rows: list[Any], all_rows: list[Any], stride: int | None) -> list[Any] | None:
    """When the chosen part ``rows`` can become the assembly, the rows kept in files of their
    own that must first be copied into their slots; None when they cannot: numbers not
    1..K, a part but the last not exactly ``stride`` long, the last longer, or a part committed
    in place beyond K (truncating the assembly would cut it)."""
    if not stride or not rows:
        return None
    last = len(rows)
    misfits = []
    for index, row in enumerate(rows, start=1):
        if row.number != index or row.size > stride or (index < last and row.size != stride):
            return None
        if row.offset is None:
            misfits.append(row)
        elif row.offset != (index - 1) * stride:
            return None
    if any(r.offset is not None and r.number > last for r in all_rows):
        return None
    return misfits


def copy_range(src: int, start: int, dst: int, size: int) -> None:
    """Append ``size`` bytes of ``src`` from offset ``start`` to ``dst``, in the kernel when
    possible (``copy_file_range`` clones blocks on reflink filesystems), else via a buffer."""
    done = 0
    if hasattr(os, "copy_file_range"):
        try:
            while done < size:
                moved = os.copy_file_range(
                    src, dst, min(COPY_CHUNK * 8, size - done), offset_src=start + done
                )
                if moved == 0:
                    break
                done += moved
        except OSError:
            pass  # EXDEV, ENOSYS, EINVAL ...: finish with plain reads and writes
    while done < size:
        data = os.pread(src, min(COPY_CHUNK, size - done), start + done)
        if not data:
            break
        written = 0
        while written < len(data):
            written += os.write(dst, data[written:])
        done += len(data)
    if done != size:
        raise RequestInvalid("InvalidPart", "a stored part is shorter than recorded")


def hash_range(fd: int, start: int, size: int, digest: Any) -> None:
    """Feed ``size`` bytes of ``fd`` from offset ``start`` to ``digest``."""
    done = 0
    while done < size:
        data = os.pread(fd, min(COPY_CHUNK, size - done), start + done)
        if not data:
            raise RequestInvalid("InvalidPart", "a stored part is shorter than recorded")
        digest.update(data)
        done += len(data)


__all__ = [
    "ASSEMBLY",
    "MAX_ASSEMBLY_BYTES",
    "MIN_PART_SIZE",
    "Slots",
    "assembly_misfits",
    "copy_range",
    "hash_range",
]
