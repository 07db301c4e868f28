"""Files that appear only when complete: write to a temporary file, fsync, rename, fsync the dir.

Every output imageport writes (raw conversions, ZVHD/ZVHD2, bitmap files, objects, stored
images) goes through :func:`atomic_output` or at least :func:`fsync_dir`, so that a crash or a
failed write never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename, link or unlink inside directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """fsync a file another program wrote (qemu-img's output, say)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class AtomicOutput:
    """A temporary file beside ``dst`` (open as ``fd``); :meth:`commit` makes it ``dst``."""

    def __init__(self, dst: str | os.PathLike[str], suffix: str = ".part") -> None:
        self.dst = os.fspath(dst)
        self.directory = os.path.dirname(os.path.abspath(self.dst))
        self.fd, self.tmp = tempfile.mkstemp(
            prefix=".imageport-", suffix=suffix, dir=self.directory
        )
        # mkstemp makes 0600 files; an output gets the mode a plain open() would give it
        os.fchmod(self.fd, _umask_mode())

    def commit(self) -> None:
        """fsync, close, rename over ``dst`` and fsync the directory."""
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self.tmp, self.dst)
        fsync_dir(self.directory)

    def discard(self) -> None:
        """Close and remove the temporary file (nothing appears under ``dst``)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


Output = TypeVar("Output", bound=AtomicOutput)


@contextlib.contextmanager
def committed(out: Output) -> Iterator[Output]:
    """``with committed(out) as out: ...``: commit ``out`` when the block ends normally, discard
    it when it raises (for :class:`AtomicOutput` subclasses that write their own way)."""
    try:
        yield out
        out.commit()
    except BaseException:
        out.discard()
        raise


def atomic_output(
    dst: str | os.PathLike[str], suffix: str = ".part"
) -> contextlib.AbstractContextManager[AtomicOutput]:
    """``with atomic_output(dst) as out: os.write(out.fd, ...)``: ``dst`` appears complete when
    the block ends normally, and not at all when it raises."""
    return committed(AtomicOutput(dst, suffix))


@contextlib.contextmanager
def temp_path(directory: str | os.PathLike[str], suffix: str) -> Iterator[Path]:
    """A fresh, empty temporary path in ``directory`` for another program to write; removed on
    exit if it still exists (e.g. when it was not renamed into place)."""
    fd, path = tempfile.mkstemp(prefix=".imageport-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield Path(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
