"""A raw file is its own virtual disk."""

from __future__ import annotations

from collections.abc import Iterator

from imageport.disk.base import Run, RunKind, VirtualDisk
from imageport.source import ByteSource


class RawDisk(VirtualDisk):
    """Every guest byte is the file byte at the same offset."""

    format_name = "raw"

    def __init__(self, source: ByteSource, offset: int = 0, size: int | None = None) -> None:
        super().__init__(source, source.size - offset if size is None else size)
        self._offset = offset

    def runs(self, start: int, end: int) -> Iterator[Run]:
        """Data where the file system stores data, holes where a sparse file has holes."""
        pos = start
        for lo, hi in self.source.data_segments(self._offset + start, self._offset + end):
            lo, hi = lo - self._offset, hi - self._offset
            if lo > pos:
                yield Run(pos, lo - pos, RunKind.HOLE)
            yield Run(lo, hi - lo, RunKind.DATA, self._offset + lo)
            pos = hi
        if pos < end:
            yield Run(pos, end - pos, RunKind.HOLE)
