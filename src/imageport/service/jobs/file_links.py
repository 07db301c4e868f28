"""Placing an immutable file under a second name (a hard link, or a hole-keeping copy), and
hashing a file that is about to be stored.

Stored image files and bucket objects are never modified in place (a replaced object is a new
file; an image's file is written once, under a temporary name, then renamed), so a second name
for the same inode is as good as a copy and costs nothing, whatever the size. Quick import links
an object's file into ``images/``; the in-region copy links one image's file to the new image's.
Where the filesystem cannot link (``EXDEV`` across filesystems, no links, too many links),
:func:`copy_file` copies only the extents that hold data, so a sparse RAW stays sparse.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from imageport.service import codes
from imageport.service.jobs import state
from imageport.service.jobs.errors import JobCancelledError, JobFailedError
from imageport.source import data_segments

log = logging.getLogger(__name__)

#: errno values of a hard link the filesystem cannot make (another filesystem, no links,
#: too many links): the file is copied instead.
CANNOT_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP})
COPY_STEP = 256 << 20
"""Bytes one ``copy_file_range`` call moves at most (progress and cancel between steps)."""
USER_CHUNK = 8 << 20
"""Bytes read at a time when the kernel cannot copy."""
HASH_CHUNK = 8 << 20
"""Bytes read at a time by :func:`hash_file`."""


def copy_file(
    source: Path, target: Path, progress: Callable[[int], None], cancelled: Callable[[], bool]
) -> None:
    """Copy ``source`` to a new ``target``, keeping its holes (only the extents that hold data
    are copied, so a 1 TiB sparse RAW costs its allocated bytes), with ``copy_file_range`` (a
    reflink or an in-kernel copy where the filesystem offers one), in steps that report
    progress (bytes of the source passed) and honour cancel."""
    with open(source, "rb") as src, open(target, "xb") as dst:
        size = os.fstat(src.fileno()).st_size
        for start, end in data_segments(src.fileno(), 0, size):
            done = start
            while done < end:
                if cancelled():
                    raise JobCancelledError
                try:
                    n = os.copy_file_range(
                        src.fileno(), dst.fileno(), min(COPY_STEP, end - done), done, done
                    )
                except OSError:
                    n = 0
                if n <= 0:  # not supported here: copy in user space
                    chunk = os.pread(src.fileno(), min(USER_CHUNK, end - done), done)
                    if not chunk:
                        raise JobFailedError(
                            codes.SOURCE_FILE_UNUSABLE, "the file shrank while copied"
                        )
                    n = os.pwrite(dst.fileno(), chunk, done)
                done += n
                progress(done)
        dst.truncate(size)
        os.fsync(dst.fileno())
        progress(size)


def link_or_copy(
    source: Path, target: Path, progress: Callable[[int], None], cancelled: Callable[[], bool]
) -> bool:
    """Give ``source`` the new name ``target``: a hard link (True), or, where the filesystem
    cannot make one, a hole-keeping :func:`copy_file` (False). ``target`` must not exist; a
    missing ``source`` raises :class:`FileNotFoundError`."""
    try:
        os.link(source, target)
        return True
    except OSError as exc:
        if exc.errno not in CANNOT_LINK:
            raise
        log.info("cannot hard-link %s to %s (%s): copying it", source, target, exc.strerror)
    copy_file(source, target, progress, cancelled)
    return False


def hash_file(path: Path, progress: state.Progress, *algorithms: str) -> tuple[list[str], int]:
    """The hex digests of ``path`` in ``algorithms`` (hashlib names; one pass) and its size,
    reporting progress and honouring cancel; the file is fsynced, as it is about to be
    stored."""
    digests = [hashlib.new(name, usedforsecurity=False) for name in algorithms]
    done = 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while chunk := f.read(HASH_CHUNK):
            for digest in digests:
                digest.update(chunk)
            done += len(chunk)
            progress.update(done / max(1, size), done, size)
            if progress.cancelled():
                raise JobCancelledError
        os.fsync(f.fileno())
    return [digest.hexdigest() for digest in digests], done
