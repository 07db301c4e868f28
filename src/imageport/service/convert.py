"""Write an image's virtual disk as a raw file, through imageport's own readers.

Holes stay holes: unallocated ranges and all-zero chunks are not written, so the output is
sparse. The output appears only when complete: it is written to a temporary file in the
target's directory, synced, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from imageport.disk.base import ExtentState
from imageport.errors import ImageportError
from imageport.service.check import CheckReport, check_image
from imageport.source import FileSource

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
    report = check_image(src_path)
    container = report.container
    if not container.readable or container.opener is None:
        raise ImageRefusedError(report)
    dst = os.fspath(dst_path)
    if os.path.exists(dst) and os.path.samefile(dst, src_path):
        raise ImageportError("the output file is the input file")
    directory = os.path.dirname(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(prefix=".imageport-", suffix=".part", dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with FileSource(src_path) as source:
            disk = container.opener(source)
            written = 0
            done = 0
            for extent in disk.allocation():
                if extent.state is ExtentState.DATA:
                    written += _copy_extent(disk.read, fd, extent.start, extent.length)
                done += extent.length
                if progress is not None:
                    progress(done, disk.virtual_size)
            os.ftruncate(fd, disk.virtual_size)
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, dst)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
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
