"""Find which blocks of a RAW file hold non-zero bytes, reading only what the file stores.

Two things make the cost follow the allocated bytes rather than the image size:

* holes are skipped without reading them, by asking the file system where data is
  (``SEEK_DATA``/``SEEK_HOLE``, through :meth:`imageport.source.FileSource.data_segments`);
* data is read into one reused buffer (``os.preadv``, no new ``bytes`` per read, so no page
  faults on fresh memory) and compared against a cached all-zero buffer with
  ``zeros.startswith(view)``, which is a ``memcmp`` (measured here at ~40 GB/s, against
  ~1 GB/s for ``memoryview == memoryview``, ~2.5 GB/s for ``bytearray.count(0)`` and
  ~0.25 GB/s for ``not any(buf)``).

A block stops being read at its first non-zero piece (64 KiB, then 256 KiB pieces), so a block
of real data usually costs one small read, and only all-zero (or nearly all-zero) blocks are
read to the end. Learned from coreutils ``cp --sparse`` and qemu-img's
``is_allocated_sectors`` / ``buffer_is_zero`` (described, not copied).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from imageport.errors import SourceError
from imageport.source import FileSource

__all__ = [
    "Progress",
    "ScanSource",
    "ZeroScanner",
    "zeros",
]

#: Bytes read first from each block: real data is usually found within it.
FIRST_PIECE = 64 * 1024
#: Largest single read (the reused buffer's size). Small enough to stay in the CPU's L2
#: cache, so the comparison reads what the copy just wrote: on the bench's fully allocated
#: image 256 KiB took 0.20 s of CPU for 2 GiB, 4 MiB took 0.31 s (and read past the first
#: non-zero byte of half-zero blocks).
BUFFER_BYTES = 256 * 1024

#: Called with (position in the image, image size) as the scan proceeds.
Progress = Callable[[int, int], None]


@functools.cache
def zeros(length: int) -> bytes:
    """A cached all-zero buffer (``bytes(n)`` is calloc'd: its pages are the shared zero page)."""
    return bytes(length)


class ScanSource(FileSource):
    """A read-only :class:`FileSource` that can also read into a caller's buffer."""

    def readinto_at(self, offset: int, view: memoryview) -> int:
        """Fill ``view`` from ``offset``; return the bytes read (fewer only at end of file)."""
        fd = self._fd
        if fd is None:
            raise SourceError(f"{self.path} is closed")
        done = 0
        total = len(view)
        while done < total:
            try:
                n = os.preadv(fd, [view[done:]], offset + done)
            except OSError as exc:
                raise SourceError(
                    f"cannot read {self.path} at {offset + done}: {exc.strerror}"
                ) from exc
            if n == 0:
                break
            done += n
        self.bytes_read += done
        self.read_calls += 1
        return done

    def __enter__(self) -> ScanSource:
        return self


class ZeroScanner:
    """Answers "does this byte range hold a non-zero byte?" for one open RAW file."""

    def __init__(self, source: ScanSource, buffer_bytes: int = BUFFER_BYTES) -> None:
        self.source = source
        self._buffer = memoryview(bytearray(buffer_bytes))
        self._zeros = zeros(buffer_bytes)

    def range_has_data(self, start: int, end: int) -> bool:
        """True when ``[start, end)`` holds a non-zero byte; reads up to its first one."""
        pos = start
        piece = FIRST_PIECE
        buf = self._buffer
        while pos < end:
            n = min(piece, end - pos, len(buf))
            view = buf[:n]
            got = self.source.readinto_at(pos, view)
            if got != n:
                raise SourceError(
                    f"{self.source.path} ended at {pos + got} while reading up to {end}; "
                    "was it changed while being read?"
                )
            if not self._zeros.startswith(view):
                return True
            pos += n
            piece = len(buf)
        return False

    def block_has_data(self, start: int, end: int) -> bool:
        """Like :meth:`range_has_data`, skipping the holes of ``[start, end)`` unread."""
        return any(
            self.range_has_data(seg_start, seg_end)
            for seg_start, seg_end in self.source.data_segments(start, end)
        )

    def scan(self, block_size: int, progress: Progress | None = None) -> bytearray:
        """The bitmap of the whole file: bit ``n`` of byte ``n // 8`` set when block n has data.

        Visits only the data segments the file system reports; within a segment, a block
        already found to hold data is skipped to its end.
        """
        size = self.source.size
        count = -(-size // block_size)
        bits = bytearray(-(-count // 8))
        for seg_start, seg_end in self.source.data_segments(0, size):
            pos = seg_start
            while pos < seg_end:
                block = pos // block_size
                block_end = min((block + 1) * block_size, size)
                end = min(seg_end, block_end)
                if bits[block >> 3] >> (block & 7) & 1 or self.range_has_data(pos, end):
                    bits[block >> 3] |= 1 << (block & 7)
                    pos = block_end
                else:
                    pos = end
                if progress is not None:
                    progress(min(pos, size), size)
        if progress is not None:
            progress(size, size)
        return bits
