"""Read-only byte sources: the only way imageport touches an image file.

A source is opened once by path (the path a *user* gave, never one named inside an image),
read with positioned reads, and counts the bytes it hands out so that benchmarks and tests can
show that probing reads headers and tables, not data.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from imageport.errors import SourceError, TruncatedImageError


@runtime_checkable
class ByteSource(Protocol):
    """A read-only, random-access sequence of bytes of known size."""

    @property
    def size(self) -> int:
        """Total number of bytes."""
        ...

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; fewer only at the end of the source."""
        ...

    def data_segments(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """The ``(lo, hi)`` ranges within ``[start, end)`` that may hold data, in order (a
        source that cannot tell holes from data names the whole range)."""
        ...


class FileSource:
    """A regular file or block device opened read-only (``O_RDONLY``), read with ``pread``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
        # O_NONBLOCK keeps open() of a FIFO from hanging; we refuse non-files right after.
        try:
            fd = os.open(self.path, flags | os.O_NONBLOCK)
        except OSError as exc:
            raise SourceError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                size = st.st_size
            elif stat.S_ISBLK(st.st_mode):
                size = os.lseek(fd, 0, os.SEEK_END)
            else:
                raise SourceError(f"{self.path} is not a regular file or block device")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._size = size
        self.bytes_read = 0
        self.read_calls = 0

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        if self._fd is None:
            raise SourceError(f"{self.path} is closed")
        if offset < 0 or length < 0:
            raise SourceError(f"negative read at {offset} length {length}")
        if offset >= self._size or length == 0:
            return b""
        length = min(length, self._size - offset)
        try:
            data = os.pread(self._fd, length, offset)
        except OSError as exc:
            raise SourceError(f"cannot read {self.path} at {offset}: {exc.strerror}") from exc
        self.bytes_read += len(data)
        self.read_calls += 1
        return data

    def data_segments(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """``(start, end)`` ranges within ``[start, end)`` that the file system stores as data
        (see :func:`data_segments`)."""
        if self._fd is None:
            raise SourceError(f"{self.path} is closed")
        return data_segments(self._fd, start, end)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BytesSource:
    """An in-memory source: the test and fuzzing seam."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self.bytes_read = 0
        self.read_calls = 0

    @property
    def size(self) -> int:
        return len(self._data)

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise SourceError(f"negative read at {offset} length {length}")
        data = self._data[offset : offset + length]
        self.bytes_read += len(data)
        self.read_calls += 1
        return data

    def data_segments(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """All of it is data (memory has no holes)."""
        end = min(end, len(self._data))
        if end > start:
            yield start, end


def read_exact(source: ByteSource, offset: int, length: int, what: str) -> bytes:
    """Exactly ``length`` bytes at ``offset``, or :class:`TruncatedImageError` naming ``what``."""
    if offset < 0 or length < 0 or offset + length > source.size:
        raise TruncatedImageError(
            f"{what} ({length} bytes at offset {offset}) lies beyond the end of the file "
            f"({source.size} bytes)"
        )
    data = source.read_at(offset, length)
    if len(data) != length:
        raise TruncatedImageError(f"short read of {what} at offset {offset}")
    return data


def data_segments(fd: int, start: int, end: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` ranges within ``[start, end)`` of the open file ``fd`` that the file
    system stores as data.

    Uses ``SEEK_DATA``/``SEEK_HOLE``; where they are not supported the whole range is data.
    Holes of a sparse file are reported without reading them.
    """
    pos = start
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
            hole = os.lseek(fd, data, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                return
            yield pos, end  # not supported here: treat as data
            return
        if data >= end:
            return
        yield data, min(hole, end)
        pos = hole
