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
        if end > start:
            yield Run(start, end - start, RunKind.DATA, self._offset + start)
