"""Write an image's virtual disk as a raw file, through imageport's own readers.

Holes stay holes: unallocated ranges and all-zero chunks are not written, so the output is
sparse. The output appears only when complete: it is written to a temporary file in the
target's directory, synced, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imageport.disk.base import ExtentState, VirtualDisk
from imageport.durable import atomic_output
from imageport.errors import ImageportError, UnsafeImageError
from imageport.formats import registry
from imageport.formats.base import Container
from imageport.source import FileSource

if TYPE_CHECKING:
    from imageport.service.tools.check import CheckReport

CHUNK = 4 << 20
_ZEROS = bytes(CHUNK)

#: Called with (bytes done, bytes total) as the conversion proceeds.
Progress = Callable[[int, int], None]


class ImageRefusedError(ImageportError):
    """The image failed the checks that make it safe to read; ``report`` says why."""

    def __init__(self, report: CheckReport) -> None:
        failed = {f.rule_id for f in report.findings if f.severity.value == "error"}
        rules = ", ".join(sorted(failed))
        super().__init__(f"{report.path} cannot be converted: it fails {rules}")
        self.report = report


@contextlib.contextmanager
def open_checked(src_path: str | os.PathLike[str]) -> Iterator[tuple[Container, VirtualDisk]]:
    """Probe ``src_path`` and open its virtual disk, its tables audited (no data shared
    between guest ranges, no absurd compression: :mod:`imageport.disk.audit`); refuse what is
    not safe to read with the full check report (the check pipeline is loaded only then:
    converting stays quick to start)."""
    with FileSource(src_path) as source:
        container = registry.probe(source)
        disk = None
        if container.readable and container.opener is not None:
            disk = container.opener(source)
            try:
                disk.audit()
            except UnsafeImageError:
                disk = None
        if disk is None:
            from imageport.service.tools.check import check_image

            raise ImageRefusedError(check_image(src_path))
        yield container, disk


@dataclass(frozen=True, slots=True)
class ConvertResult:
    virtual_size: int
    bytes_written: int


def convert_to_raw(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    progress: Progress | None = None,
) -> ConvertResult:
    """Convert ``src_path`` to a sparse raw file at ``dst_path``."""
    dst = os.fspath(dst_path)
    if os.path.exists(dst) and os.path.samefile(dst, src_path):
        raise ImageportError("the output file is the input file")
    with open_checked(src_path) as (_container, disk), atomic_output(dst) as out:
        written = 0
        done = 0
        for extent in disk.allocation():
            if extent.state is ExtentState.DATA:
                written += _copy_extent(disk.read, out.fd, extent.start, extent.length)
            done += extent.length
            if progress is not None:
                progress(done, disk.virtual_size)
        os.ftruncate(out.fd, disk.virtual_size)
    return ConvertResult(virtual_size=disk.virtual_size, bytes_written=written)


def _copy_extent(read: Callable[[int, int], bytes], fd: int, start: int, length: int) -> int:
    written = 0
    pos = start
    end = start + length
    while pos < end:
        n = min(CHUNK - pos % CHUNK, end - pos)  # chunk-aligned, so zero runs line up
        data = read(pos, n)
        if data != _ZEROS[: len(data)]:
            os.pwrite(fd, data, pos)
            written += len(data)
        pos += n
    return written
