"""Every path in a guest, read with imageport's own readers: type, permission bits and the
SHA-256 of each regular file, for proving that an edit changed nothing but what it says."""

from __future__ import annotations

import hashlib
from pathlib import Path

from imageport.guest.files.mounts import GuestFiles
from imageport.guest.fs.base import FileType
from support.kernel_fixtures import open_guest

Entry = tuple[str, int, str]


def _walk(files: GuestFiles, path: str, out: dict[str, Entry]) -> None:
    for entry in files.listdir(path):
        if entry.name in (".", ".."):
            continue
        child = path.rstrip("/") + "/" + entry.name
        fs, ino, _ = files.locate(child, follow=False)
        st = fs.stat_ino(ino)
        if st.type is FileType.DIRECTORY:
            out[child] = ("dir", st.mode, "")
            _walk(files, child, out)
        elif st.type is FileType.REGULAR:
            digest = hashlib.sha256(fs.read_ino(ino, 0, st.size)).hexdigest()
            out[child] = ("file", st.mode, digest)
        elif st.type is FileType.SYMLINK:
            out[child] = ("link", st.mode, fs.readlink_ino(ino))
        else:
            out[child] = (st.type.value, st.mode, "")


def guest_tree(image: Path) -> dict[str, Entry]:
    """path -> (type, mode, content digest or link target) across the guest's mounts."""
    out: dict[str, Entry] = {}
    with open_guest(image) as guest:
        _walk(guest.files, "/", out)
    return out


def changed_paths(before: dict[str, Entry], after: dict[str, Entry]) -> set[str]:
    """Paths added, removed or different."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
