"""Bounded reads of the guest's configuration files, and the quote a finding shows.

Configuration readers (network, cloud-init, systemd units) read many small text files from
directories an image controls. These helpers cap each file's size and each directory's
listing, and turn a file that cannot be read into a *problem* string for the facts, so one
damaged file never hides the others or crashes the check.
"""

from __future__ import annotations

from dataclasses import dataclass

from imageport.errors import ImageportError
from imageport.guest.files.mounts import GuestFiles
from imageport.guest.fs.base import FileType, NoSuchFileError

#: Largest configuration file read.
MAX_CONFIG_BYTES = 1 << 20
#: Names taken from one configuration directory (in sorted order).
MAX_DIR_FILES = 1000
#: Length of a quoted line in evidence.
MAX_QUOTE_CHARS = 200


@dataclass(frozen=True, slots=True)
class Quote:
    """A line of a guest file, as a finding quotes it: ``path:line: text``."""

    path: str
    line: int  #: 1-based; 0 when the file as a whole is meant
    text: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.text}" if self.text else where


def quote(path: str, line: int, text: str) -> Quote:
    """A :class:`Quote` with ``text`` stripped and shortened for display."""
    text = text.strip()
    if len(text) > MAX_QUOTE_CHARS:
        text = text[: MAX_QUOTE_CHARS - 3] + "..."
    return Quote(path, line, text)


def read_config(
    files: GuestFiles, path: str, problems: list[str], max_bytes: int = MAX_CONFIG_BYTES
) -> str | None:
    """``path`` decoded as UTF-8 (bad bytes replaced); None when absent or unreadable.

    A file that exists but cannot be read (too big, damaged) adds a line to ``problems``.
    """
    try:
        return files.read_file(path, max_bytes).decode("utf-8", "replace")
    except NoSuchFileError:
        return None
    except ImageportError as exc:
        problems.append(f"{path}: cannot be read: {exc}")
        return None


def exists(files: GuestFiles, path: str) -> bool:
    """Whether ``path`` exists in the guest (a damaged path counts as absent)."""
    try:
        return files.exists(path)
    except ImageportError:
        return False


def is_file(files: GuestFiles, path: str) -> bool:
    """Whether ``path`` leads to a regular file (a program or a marker file; a directory, a
    dangling link or a loop does not count)."""
    try:
        return files.stat(path).type is FileType.REGULAR
    except ImageportError:
        return False


def list_dir(
    files: GuestFiles, path: str, problems: list[str], limit: int = MAX_DIR_FILES
) -> list[tuple[str, FileType | None]]:
    """The sorted names (and entry types, when recorded) in directory ``path``, at most
    ``limit`` of them; empty when it does not exist."""
    try:
        entries = files.listdir(path)
    except NoSuchFileError:
        return []
    except ImageportError as exc:
        problems.append(f"{path}: cannot be listed: {exc}")
        return []
    found = sorted(
        ((e.name, e.type) for e in entries if "/" not in e.name), key=lambda item: item[0]
    )
    if len(found) > limit:
        problems.append(f"{path}: {len(found)} entries, only the first {limit} were read")
    return found[:limit]
