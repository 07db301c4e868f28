"""One server's metadata documents: the OpenStack tree (``openstack/latest/meta_data.json``,
``.../user_data``, ``.../network_data.json`` ...) that its metadata service answers and its
config drive holds.

The service decides the documents (:attr:`~imageport.service.ports.MachineSpec.metadata`); this
module checks their paths (plain relative names, no ``.`` or ``..``, no path that is both a file
and a folder) and caps their number and size before anything is written, keeps them in the
server's folder so a restarted service answers the same documents, and answers a path the
way Nova's metadata service does: a document's bytes, or the names directly below a folder
one per line (``/openstack`` lists the versions), or nothing.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from imageport.service.ports import MachineError

#: Documents one server may have, and bytes one document may hold (the vendor caps user data
#: at 32 KiB; a network_data.json is a few hundred bytes).
MAX_DOCUMENTS = 64
MAX_DOCUMENT_BYTES = 1 << 20
MAX_PATH_CHARS = 255
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


class MetadataTree:
    """The documents of one server, by path (``("openstack", "latest", "user_data")``)."""

    def __init__(self, documents: Mapping[str, bytes]) -> None:
        if len(documents) > MAX_DOCUMENTS:
            raise MachineError(f"{len(documents)} metadata documents (at most {MAX_DOCUMENTS})")
        self._files: dict[tuple[str, ...], bytes] = {}
        for path, content in documents.items():
            parts = _parts(path)
            if len(content) > MAX_DOCUMENT_BYTES:
                raise MachineError(
                    f"metadata document {path} has {len(content)} bytes "
                    f"(at most {MAX_DOCUMENT_BYTES})"
                )
            self._files[parts] = bytes(content)
        folders = {parts[:n] for parts in self._files for n in range(len(parts))}
        clash = sorted("/".join(parts) for parts in self._files if parts in folders)
        if clash:
            raise MachineError(f"metadata path {clash[0]} is both a document and a folder")
        self._folders = folders

    @property
    def documents(self) -> dict[str, bytes]:
        return {"/".join(parts): content for parts, content in self._files.items()}

    def answer(self, url_path: str) -> bytes | None:
        """What a ``GET`` of ``url_path`` returns: the document, the listing of a folder
        (names one per line, as Nova answers ``/openstack`` and ``/openstack/latest/``), or
        None (404). The query string is ignored; ``.``/``..`` never match."""
        parts = tuple(p for p in url_path.split("?", 1)[0].split("#", 1)[0].split("/") if p)
        if parts in self._files:
            return self._files[parts]
        if parts in self._folders:
            below = sorted({p[len(parts)] for p in self._files if p[: len(parts)] == parts})
            return "\n".join(below).encode()
        return None

    def write(self, folder: Path) -> None:
        """Write every document under ``folder`` (made 0700; files 0600), replacing what a
        previous write left there."""
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(mode=0o700)
        for parts, content in self._files.items():
            path = folder.joinpath(*parts)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)

    @classmethod
    def read(cls, folder: Path) -> MetadataTree:
        """The documents :meth:`write` left under ``folder`` (the same caps apply)."""
        documents: dict[str, bytes] = {}
        for root, _dirs, files in os.walk(folder):
            for name in files:
                path = Path(root, name)
                if len(documents) >= MAX_DOCUMENTS or path.is_symlink():
                    raise MachineError(f"unexpected metadata files in {folder}")
                if path.stat().st_size > MAX_DOCUMENT_BYTES:
                    raise MachineError(f"metadata document {path} is too large")
                documents[path.relative_to(folder).as_posix()] = path.read_bytes()
        return cls(documents)


def _parts(path: str) -> tuple[str, ...]:
    parts = tuple(path.split("/"))
    if len(path) > MAX_PATH_CHARS or not all(_PART.fullmatch(p) for p in parts):
        raise MachineError(f"metadata path {path[:80]!r} is not a plain relative path")
    return parts
