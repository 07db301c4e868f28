"""Write an uncompressed "newc" cpio archive, and append one to an initrd as a new segment.

The format is the one :mod:`imageport.guest.boot.cpio` reads (cpio(5), the kernel's
``Documentation/driver-api/early-userspace/buffer-format.rst``): per member a 110-byte header
of ``070701`` and thirteen 8-digit hexadecimal fields, the NUL-terminated name, zero padding of
header+name to 4 bytes, the data, zero padding of the data to 4 bytes; a member named
``TRAILER!!!`` ends the archive.

How the kernel takes an appended archive (``init/initramfs.c``, ``unpack_to_rootfs``): it walks
the initrd segment by segment, skipping zero bytes between them; an uncompressed archive is
recognised only when its first ``0`` falls on an offset that is a multiple of 4 from the start
of the file (``!(this_header & 3)``; after a compressed segment the offset counts the
compressed bytes consumed), hence :func:`append_segment` pads the original to 4 bytes first.
Members of a later archive are written over the earlier ones (``do_name``): a path that
exists with another file type is removed first (``clean_path``, by ``lstat``: a directory entry
naming a path that the initrd holds as a symbolic link would replace the link, which is why
:func:`with_parents` leaves out every path the initrd already has), a regular file is opened
with ``O_TRUNC`` (unless it is a hard link, which needs ``nlink >= 2``: ours have 1), and an
existing directory is left as it is (``mkdir`` fails with ``EEXIST`` and is ignored). Each
archive's hard-link table is dropped at its trailer, so the inode numbers here need only be
unique inside this archive.

Paths are relative, normalised and checked (no ``..``, no empty or control-character
components); a directory must be listed before anything inside it that the archive itself
creates (the kernel does not create parents). Sizes are capped by the caller.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from imageport.guest.boot.cpio import NEWC_MAGIC, TRAILER

#: Longest member path accepted (PATH_MAX without the NUL), and component.
MAX_PATH_BYTES = 4095
MAX_NAME_BYTES = 255
#: Largest member (the field is 8 hex digits).
MAX_MEMBER_BYTES = 0xFFFFFFFF


class EntryKind(Enum):
    DIRECTORY = 0o040000
    REGULAR = 0o100000
    SYMLINK = 0o120000


@dataclass(frozen=True, slots=True)
class CpioEntry:
    """One member to write: its relative path, type, permission bits and contents (for a
    symbolic link, the target)."""

    path: str
    kind: EntryKind
    mode: int = 0o644
    data: bytes = b""


def member_path(path: str) -> str:
    """``path`` checked as a relative, normalised archive path; ValueError otherwise."""
    raw = path.encode("utf-8", "surrogateescape")
    if not path or path.startswith("/") or len(raw) > MAX_PATH_BYTES:
        raise ValueError(f"{path[:80]!r}: not a relative archive path of a sane length")
    for part in path.split("/"):
        if part in ("", ".", "..") or len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise ValueError(f"{path!r}: not a normalised archive path")
        if any(ord(c) < 0x20 or c == "\x7f" for c in part):
            raise ValueError(f"{path!r}: control characters in an archive path")
    return path


def _header(ino: int, mode: int, nlink: int, mtime: int, size: int, namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, namesize, 0)
    return NEWC_MAGIC + b"".join(f"{value:08X}".encode("ascii") for value in fields)


def _pad(n: int) -> bytes:
    return bytes(-n % 4)


def newc_archive(entries: Sequence[CpioEntry], *, mtime: int) -> bytes:
    """The archive of ``entries`` in their order, ended by ``TRAILER!!!``.

    Raises ValueError for a bad path, a path listed twice, a member whose parent directory
    the archive creates later, or a member too large for the format.
    """
    if not 0 <= mtime <= 0xFFFFFFFF:
        raise ValueError(f"mtime {mtime} does not fit a newc header")
    parts: list[bytes] = []
    seen: set[str] = set()
    made_at = {e.path: i for i, e in enumerate(entries) if e.kind is EntryKind.DIRECTORY}
    for ino, entry in enumerate(entries, start=1):
        path = member_path(entry.path)
        if path in seen:
            raise ValueError(f"{path!r} is listed twice")
        parent = path.rpartition("/")[0]
        if made_at.get(parent, -1) >= ino:
            raise ValueError(f"{path!r} comes before its directory {parent!r}")
        seen.add(path)
        data = entry.data if entry.kind is not EntryKind.DIRECTORY else b""
        if len(data) > MAX_MEMBER_BYTES:
            raise ValueError(f"{path!r} is too large for a newc archive")
        parts.append(_member(ino, entry.kind.value | (entry.mode & 0o7777), path, data, mtime))
    parts.append(_member(0, 0, TRAILER, b"", 0, nlink=1))
    return b"".join(parts)


def _member(ino: int, mode: int, name: str, data: bytes, mtime: int, nlink: int = 0) -> bytes:
    raw = name.encode("utf-8", "surrogateescape") + b"\0"
    links = nlink or (2 if mode & 0o170000 == EntryKind.DIRECTORY.value else 1)
    head = _header(ino, mode, links, mtime, len(data), len(raw)) + raw
    return head + _pad(len(head)) + data + _pad(len(data))


def with_parents(
    files: Mapping[str, bytes], existing: Collection[str], *, mode: int = 0o644
) -> list[CpioEntry]:
    """Entries for ``files`` (path -> contents) preceded by the directories on their way that
    are not in ``existing`` (paths the earlier archives already hold, as directories or as
    links to directories), parents first."""
    dirs: list[str] = []
    for path in sorted(files):
        parts = member_path(path).split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in existing and parent not in dirs:
                dirs.append(parent)
    return [
        *(CpioEntry(d, EntryKind.DIRECTORY, 0o755) for d in dirs),
        *(CpioEntry(p, EntryKind.REGULAR, mode, files[p]) for p in sorted(files)),
    ]


def append_segment(original: bytes, segment: bytes) -> bytes:
    """``original`` zero-padded to a multiple of 4 bytes, then ``segment``."""
    return original + _pad(len(original)) + segment
