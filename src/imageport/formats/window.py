"""A byte source that holds only the head and the tail of a file: the header window.

Registration judges a file from its header before any job runs
(:mod:`imageport.service.images.header_checks`): it reads the first and the last bytes of the
object, and a worker probes them through a :class:`HeaderWindow`, which has the file's true
size but answers only from those bytes. A probe that needs anything else (a table far into the
file) stops with :class:`OutsideHeader`, and the header alone gives no verdict. The verdicts it
does give are the ones the job's probe reaches on the whole file: the bytes read are the same.
"""

from __future__ import annotations

from collections.abc import Iterator

from imageport.errors import SourceError


class OutsideHeader(SourceError):
    """The probe asked for bytes beyond the header window: no verdict from the header alone.
    (A :class:`SourceError`, so that the probe passes it on instead of calling the file
    damaged.)"""


class HeaderWindow:
    """A read-only :class:`~imageport.source.ByteSource` of ``size`` bytes holding only
    ``head`` (at offset 0) and ``tail`` (at ``size - len(tail)``); any other read raises
    :class:`OutsideHeader`."""

    def __init__(self, size: int, head: bytes, tail: bytes) -> None:
        if len(head) + len(tail) > size:
            raise SourceError("the header window holds more bytes than the file")
        self._size = size
        self._head = head
        self._tail_start = size - len(tail)
        self._tail = tail
        self.bytes_read = 0

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise SourceError(f"negative read at {offset} length {length}")
        end = min(offset + length, self._size)
        if offset >= end:
            return b""
        if end <= len(self._head):
            data = self._head[offset:end]
        elif offset >= self._tail_start:
            data = self._tail[offset - self._tail_start : end - self._tail_start]
        else:
            raise OutsideHeader(f"{end - offset} bytes at offset {offset} lie past the header")
        self.bytes_read += len(data)
        return data

    def data_segments(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """Unknown past the header: the whole range may hold data."""
        end = min(end, self._size)
        if end > start:
            yield start, end
