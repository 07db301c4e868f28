"""The guest's files as the booted system sees them: its root filesystem plus fstab's mounts.

:func:`assemble` finds the root filesystem among the volumes (the one that holds an installed
system: ``/etc`` with ``fstab`` or ``os-release``), reads its ``/etc/fstab`` and opens the
filesystems it mounts (``/boot``, ``/usr``, ``/var`` ...) where they are. :class:`GuestFiles`
then reads paths across those mounts, following symlinks inside the guest only.

"Absent" and "unreadable" are kept apart: only a path with no entry at all is
:class:`~imageport.guest.fs.base.NoSuchFileError`; a symlink whose target is missing, a symlink
loop, a directory where a file is read and a file over the cap raise errors that readers must
report as problems (a rule that needs the file then says so), never treat as absent. A symlink
cannot escape the guest: absolute targets are taken from the guest's root, and ``..`` stops
there.
"""

from __future__ import annotations

from dataclasses import dataclass

from imageport.errors import ImageportError, LimitExceededError
from imageport.guest.files.fstab import FstabEntry, find_volume, parse_fstab
from imageport.guest.fs import btrfs
from imageport.guest.fs.base import (
    MAX_FILE_BYTES,
    MAX_PATH_COMPONENTS,
    MAX_SYMLINK_HOPS,
    BrokenLinkError,
    DirEntry,
    Filesystem,
    FileType,
    NoSuchFileError,
    Stat,
    TooLargeError,
    WrongTypeError,
    follow_link,
)
from imageport.guest.fs.detect import open_filesystem
from imageport.guest.volumes.discover import StorageLayout, Volume

#: Btrfs subvolumes tried for the root when the default subvolume holds no system.
_BTRFS_ROOT_SUBVOLUMES = ("@", "@rootfs", "root")
#: Mounts opened from one fstab.
MAX_MOUNTS = 64
#: Bytes of /etc/fstab read.
MAX_FSTAB_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Mount:
    """A filesystem mounted at ``mountpoint`` in the guest."""

    mountpoint: str
    volume: Volume
    fs: Filesystem
    #: The fstab line that mounts it; None for the root found by searching the volumes.
    entry: FstabEntry | None = None


@dataclass(frozen=True, slots=True)
class UnresolvedEntry:
    """An fstab line whose device is not in the image, or could not be opened."""

    entry: FstabEntry
    reason: str


@dataclass(frozen=True, slots=True)
class GuestLayout:
    """What was found: the root, the mounts, and fstab lines that point elsewhere."""

    storage: StorageLayout
    root: Mount | None
    mounts: tuple[Mount, ...]
    fstab: tuple[FstabEntry, ...]
    unresolved: tuple[UnresolvedEntry, ...]
    problems: tuple[str, ...]
    #: why /etc/fstab exists but could not be read (a dangling symbolic link, a loop, a
    #: directory, too large); None when it was read or is absent (IMG-FSTAB-DATA-DISK)
    fstab_error: str | None = None

    def files(self) -> GuestFiles:
        """The guest's files across its mounts (a cheap view; the filesystems cache)."""
        return GuestFiles(self.mounts)


class GuestFiles:
    """Read-only path access across the guest's mounts (the root first)."""

    def __init__(self, mounts: tuple[Mount, ...]) -> None:
        # longest mountpoint first, so that /boot/efi wins over /boot over /
        self._mounts = sorted(mounts, key=lambda m: len(_split(m.mountpoint)), reverse=True)

    def _mount_for(self, parts: list[str]) -> tuple[Mount, list[str]]:
        for mount in self._mounts:
            mp = _split(mount.mountpoint)
            if parts[: len(mp)] == mp:
                return mount, parts[len(mp) :]
        raise NoSuchFileError("/" + "/".join(parts) + ": no filesystem is mounted there")

    def locate(self, path: str, *, follow: bool = True) -> tuple[Filesystem, int, str]:
        """The filesystem, inode and resolved guest path of ``path``."""
        todo = [(part, False) for part in reversed(_split(path))]
        resolved: list[str] = []
        hops = 0
        while todo:
            if len(todo) + len(resolved) > MAX_PATH_COMPONENTS:
                raise LimitExceededError(f"{path}: too many path components")
            name, linked = todo.pop()
            if name == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = [*resolved, name]
            mount, rel = self._mount_for(candidate)
            try:
                ino = mount.fs.resolve("/" + "/".join(rel), follow=False)
            except NoSuchFileError as exc:
                if linked:  # the name came from a symlink's target: the link dangles
                    raise BrokenLinkError(
                        f"{path}: a symbolic link on the path points to "
                        f"/{'/'.join(candidate)}, which does not exist "
                        "(dangling link)"
                    ) from exc
                raise
            if mount.fs.stat_ino(ino).type is FileType.SYMLINK and (follow or todo):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise LimitExceededError(
                        f"{path}: too many levels of symbolic links (a symlink loop)"
                    )
                target = mount.fs.readlink_ino(ino)
                if target.startswith("/"):
                    resolved = []
                follow_link(todo, target)
                continue
            resolved = candidate
        mount, rel = self._mount_for(resolved)
        return (
            mount.fs,
            mount.fs.resolve("/" + "/".join(rel), follow=False),
            "/" + "/".join(resolved),
        )

    def exists(self, path: str) -> bool:
        """Whether ``path`` leads to something (a dangling symlink does not)."""
        try:
            self.locate(path)
        except (NoSuchFileError, BrokenLinkError):
            return False
        return True

    def stat(self, path: str) -> Stat:
        fs, ino, _ = self.locate(path)
        return fs.stat_ino(ino)

    def read_file(self, path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        fs, ino, _ = self.locate(path)
        st = fs.stat_ino(ino)
        if st.type is not FileType.REGULAR:
            raise WrongTypeError(f"{path}: not a regular file ({st.type.value})")
        if st.size > max_bytes:
            raise TooLargeError(f"{path} is {st.size} bytes, more than {max_bytes}")
        return fs.read_ino(ino, 0, st.size)

    def read_text(self, path: str, max_bytes: int = MAX_FILE_BYTES) -> str | None:
        """The file decoded as UTF-8 (invalid bytes replaced), or None when it does not exist.
        A path that exists but cannot be read raises: a dangling symlink
        (:class:`BrokenLinkError`), a directory or device (:class:`WrongTypeError`), a
        symlink loop or a file over ``max_bytes`` (:class:`LimitExceededError`)."""
        try:
            return self.read_file(path, max_bytes).decode("utf-8", "replace")
        except NoSuchFileError:
            return None

    def listdir(self, path: str) -> list[DirEntry]:
        fs, ino, _ = self.locate(path)
        kind = fs.stat_ino(ino).type
        if kind is not FileType.DIRECTORY:
            raise WrongTypeError(f"{path}: not a directory ({kind.value})")
        return list(fs.list_ino(ino))


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def _open(volume: Volume, options: tuple[str, ...] = ()) -> Filesystem | None:
    if volume.signature is None:
        return None
    if volume.kind == "btrfs":
        subvol: str | int | None = None
        for opt in options:
            if opt.startswith("subvol="):
                subvol = opt.removeprefix("subvol=")
            elif opt.startswith("subvolid=") and opt[9:].isdigit():
                subvol = int(opt[9:])
        return btrfs.open_fs(volume.device, subvol)
    return open_filesystem(volume.device, volume.signature)


def _looks_like_root(fs: Filesystem) -> int:
    """A score: how much ``fs`` looks like an installed Linux root (0 = not at all)."""
    score = 0
    for path, weight in (
        ("/etc/fstab", 3),
        ("/etc/os-release", 2),
        ("/usr/lib/os-release", 2),
        ("/etc/passwd", 2),
        ("/sbin/init", 1),
        ("/usr/bin", 1),
        ("/bin", 1),
    ):
        try:
            if fs.exists(path):
                score += weight
        except ImageportError:
            continue
    return score if score >= 3 else 0


def _root_candidates(volume: Volume) -> list[Filesystem]:
    first = _open(volume)
    if first is None:
        return []
    found = [first]
    if volume.kind == "btrfs":
        for name in _BTRFS_ROOT_SUBVOLUMES:
            try:
                found.append(btrfs.open_fs(volume.device, name))
            except ImageportError:
                continue
    return found


def find_root(storage: StorageLayout, problems: list[str]) -> Mount | None:
    """The volume (and Btrfs subvolume) that holds the installed system, if any."""
    best: tuple[int, Mount] | None = None
    for volume in storage.volumes:
        try:
            candidates = _root_candidates(volume)
        except ImageportError as exc:
            problems.append(f"{volume.name} ({volume.kind}): cannot be read: {exc}")
            continue
        for fs in candidates:
            score = _looks_like_root(fs)
            if score and (best is None or score > best[0]):
                best = (score, Mount("/", volume, fs))
    return best[1] if best else None


def assemble(storage: StorageLayout) -> GuestLayout:
    """Find the root, read its fstab, and open what fstab mounts. Never raises ImageportError."""
    problems = list(storage.problems)
    root = find_root(storage, problems)
    if root is None:
        return GuestLayout(storage, None, (), (), (), tuple(problems))
    fstab_error = None
    try:
        text = root.fs.read_file("/etc/fstab", MAX_FSTAB_BYTES).decode("utf-8", "replace")
    except NoSuchFileError:
        text = ""
    except ImageportError as exc:
        problems.append(f"/etc/fstab cannot be read: {exc}")
        fstab_error = str(exc)
        text = ""
    fstab = parse_fstab(text)
    mounts = [root]
    unresolved: list[UnresolvedEntry] = []
    for entry in fstab:
        if not entry.is_block_device or not entry.mountpoint.startswith("/"):
            continue
        volume = find_volume(entry.spec, storage.volumes)
        if volume is None:
            unresolved.append(UnresolvedEntry(entry, "the device is not in this image"))
            continue
        if entry.mountpoint == "/" or len(mounts) >= MAX_MOUNTS:
            if entry.mountpoint == "/" and volume is not root.volume:
                problems.append(
                    f"fstab line {entry.line_no} mounts {volume.name} as /, but the "
                    f"system was found on {root.volume.name}"
                )
            continue
        try:
            fs = _open(volume, entry.options)
        except ImageportError as exc:
            unresolved.append(UnresolvedEntry(entry, f"{volume.name} cannot be read: {exc}"))
            continue
        if fs is not None:
            mounts.append(Mount(entry.mountpoint, volume, fs, entry))
    return GuestLayout(
        storage, root, tuple(mounts), fstab, tuple(unresolved), tuple(problems), fstab_error
    )
