"""The interface every filesystem reader implements, and path lookup written once over it.

A reader exposes inodes (an ``int`` handle; Btrfs folds the subvolume into it): their
:class:`Stat`, the entries of a directory, the bytes of a file, the target of a symlink. Path
resolution, symlink following and the caps that keep a hostile filesystem from looping are
written here once. Paths are resolved *inside the guest filesystem only*: an absolute symlink
target is taken relative to this filesystem's root, never to the host's.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterator
from dataclasses import dataclass

from imageport.errors import CorruptImageError, ImageportError, LimitExceededError

#: Symlinks followed while resolving one path (Linux uses 40).
MAX_SYMLINK_HOPS = 40
#: Path components in one lookup.
MAX_PATH_COMPONENTS = 256
#: Default cap on the bytes returned by :meth:`Filesystem.read_file`.
MAX_FILE_BYTES = 64 << 20
#: Entries returned by one directory listing.
MAX_DIR_ENTRIES = 1 << 20
#: Length of a symlink target.
MAX_SYMLINK_BYTES = 4096


class FileType(enum.Enum):
    REGULAR = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    CHARDEV = "chardev"
    BLOCKDEV = "blockdev"
    FIFO = "fifo"
    SOCKET = "socket"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Stat:
    """What a reader knows about an inode."""

    ino: int
    type: FileType
    size: int
    mode: int = 0  #: permission bits (``st_mode & 0o7777``)
    uid: int = 0
    gid: int = 0
    mtime: int = 0  #: seconds since the epoch


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One name in a directory (never ``.`` or ``..``)."""

    name: str  #: decoded with ``surrogateescape`` so that any byte name round-trips
    ino: int
    type: FileType | None = None  #: from the directory entry when the format records it


class NoSuchFileError(ImageportError):
    """A path does not exist in the guest filesystem (or a component is not a directory)."""


class UnreadableError(ImageportError):
    """A path names something that exists but cannot be read as asked. Not a
    :class:`NoSuchFileError`: a reader that treats "absent" as "nothing to check" must report
    this one instead (a rule that needs the file cannot pass without it)."""


class BrokenLinkError(UnreadableError):
    """A symbolic link on the path points at nothing (a *dangling* link): the name exists, its
    target does not. The system it belongs to fails to open it (ENOENT) too."""


class WrongTypeError(UnreadableError):
    """The path exists but is the wrong kind of entry: a directory (or device, FIFO...) where a
    regular file is read, or a file where a directory is listed."""


class TooLargeError(LimitExceededError):
    """A file is larger than the reader's cap for it (it exists and is a regular file)."""


def follow_link(todo: list[tuple[str, bool]], target: str) -> None:
    """Push the components of a symlink's ``target`` onto the lookup stack ``todo`` (last
    component first), each marked as coming from a link: a missing one means the link
    dangles (:class:`BrokenLinkError`), not that the path asked for is absent."""
    todo.extend((part, True) for part in reversed([p for p in target.split("/") if p and p != "."]))


class Filesystem(abc.ABC):
    """A read-only filesystem on a block device."""

    #: ``ext2``, ``ext3``, ``ext4``, ``xfs``, ``btrfs``, ``vfat`` ...
    fs_type: str = "unknown"
    uuid: str | None = None
    label: str | None = None

    # -- what a reader implements ----------------------------------------------------------

    @property
    @abc.abstractmethod
    def root_ino(self) -> int:
        """The root directory's inode handle."""

    @abc.abstractmethod
    def stat_ino(self, ino: int) -> Stat:
        """The :class:`Stat` of ``ino``."""

    @abc.abstractmethod
    def list_ino(self, ino: int) -> Iterator[DirEntry]:
        """Entries of directory ``ino`` (without ``.`` and ``..``), at most MAX_DIR_ENTRIES."""

    @abc.abstractmethod
    def read_ino(self, ino: int, offset: int, length: int) -> bytes:
        """Bytes of regular file ``ino`` (holes read as zeros), clipped at its size."""

    @abc.abstractmethod
    def readlink_ino(self, ino: int) -> str:
        """Target of symlink ``ino``."""

    def lookup_child(self, dir_ino: int, name: str) -> int | None:
        """The inode of ``name`` in directory ``dir_ino``; readers may override with an index."""
        for entry in self.list_ino(dir_ino):
            if entry.name == name:
                return entry.ino
        return None

    # -- paths (generic) -------------------------------------------------------------------

    def resolve(self, path: str, *, follow: bool = True) -> int:
        """The inode at ``path`` (absolute, inside this filesystem), following symlinks.

        With ``follow=False`` a final symlink is returned itself. Raises :class:`NoSuchFileError`.
        """
        parts = [p for p in path.split("/") if p and p != "."]
        hops = 0
        stack: list[int] = [self.root_ino]
        todo = [(part, False) for part in reversed(parts)]
        while todo:
            if len(todo) > MAX_PATH_COMPONENTS:
                raise LimitExceededError(f"path {path!r} has too many components")
            name, linked = todo.pop()
            if name == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            current = stack[-1]
            if self.stat_ino(current).type is not FileType.DIRECTORY:
                if linked:
                    raise BrokenLinkError(
                        f"{path}: a symbolic link on the path leads through "
                        "a file that is not a directory"
                    )
                raise NoSuchFileError(f"{path}: a component is not a directory")
            child = self.lookup_child(current, name)
            if child is None:
                if linked:
                    raise BrokenLinkError(
                        f"{path}: a symbolic link on the path points to a "
                        "missing file (dangling link)"
                    )
                raise NoSuchFileError(f"{path}: not found")
            st = self.stat_ino(child)
            if st.type is FileType.SYMLINK and (follow or todo):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise LimitExceededError(
                        f"{path}: too many levels of symbolic links (a symlink loop)"
                    )
                target = self.readlink_ino(child)
                if target.startswith("/"):
                    stack = [self.root_ino]
                follow_link(todo, target)
                continue
            stack.append(child)
        return stack[-1]

    def stat(self, path: str, *, follow: bool = True) -> Stat:
        return self.stat_ino(self.resolve(path, follow=follow))

    def exists(self, path: str) -> bool:
        """Whether ``path`` leads to something (a dangling symlink does not, as for
        ``os.path.exists``)."""
        try:
            self.resolve(path)
        except (NoSuchFileError, BrokenLinkError):
            return False
        return True

    def listdir(self, path: str) -> list[DirEntry]:
        ino = self.resolve(path)
        kind = self.stat_ino(ino).type
        if kind is not FileType.DIRECTORY:
            raise WrongTypeError(f"{path}: not a directory ({kind.value})")
        return list(self.list_ino(ino))

    def read_file(self, path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        """The contents of the regular file at ``path``; LimitExceededError above ``max_bytes``."""
        ino = self.resolve(path)
        st = self.stat_ino(ino)
        if st.type is not FileType.REGULAR:
            raise WrongTypeError(f"{path}: not a regular file ({st.type.value})")
        if st.size > max_bytes:
            raise TooLargeError(f"{path} is {st.size} bytes, more than {max_bytes}")
        data = self.read_ino(ino, 0, st.size)
        if len(data) != st.size:
            raise CorruptImageError(f"{path}: read {len(data)} of {st.size} bytes")
        return data

    def readlink(self, path: str) -> str:
        ino = self.resolve(path, follow=False)
        if self.stat_ino(ino).type is not FileType.SYMLINK:
            raise NoSuchFileError(f"{path}: not a symlink")
        return self.readlink_ino(ino)


def decode_name(raw: bytes) -> str:
    """A directory entry name from the image, as ``str`` (any bytes round-trip)."""
    return raw.decode("utf-8", "surrogateescape")
