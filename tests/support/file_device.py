"""A read-only file as a guest block device, for the volume and filesystem tests."""

from __future__ import annotations

import os
from pathlib import Path


class FileDevice:
    """A read-only file as a block device (positioned reads, nothing cached)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, max(0, min(length, self._size - offset)), offset)

    def close(self) -> None:
        os.close(self._fd)
