"""Planned edits of a guest's files: what each fix wants changed, staged before anything is written.

A fix reads the guest through an :class:`Edits` and asks for changes (write a file, remove one,
mask one with a link to ``/dev/null``); nothing touches the image while planning. Each request
becomes a :class:`Change` for the record (file, rule, what it was and what it became) and
updates the staged state, so a later fix editing the same file (fstab by two rules, GRUB's
configuration by two) reads what the earlier one left. :meth:`Edits.operations` then gives the
final operation per file, each carrying what the file held when it was read (its SHA-256, or
that it was absent), so the editor refuses to write over a file that is not what was planned
from.

Paths are guest paths and are only ever used inside the guest (by the appliance that edits
it), never opened on the host. They are checked here all the same: absolute, normalised, no
``.``/``..``, no control characters, bounded, and never under ``/dev`` (libguestfs opens such a
path in the appliance's own ``/dev``, not the guest's: an upload to ``/dev/sda`` would write
over the raw disk). A path whose last component is a symbolic link
or not a regular file is not edited (a fix may remove or mask such a link); the directories
on the way are resolved inside the guest, so an edit lands on the file the guest itself
would read.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from dataclasses import dataclass, field
from enum import Enum

from imageport.errors import ImageportError
from imageport.guest.files.mounts import GuestFiles
from imageport.guest.fs.base import FileType, NoSuchFileError

#: Largest file a fix reads to edit (configuration files; an initrd has its own cap).
MAX_EDIT_BYTES = 1 << 20
#: Longest guest path accepted, and longest component.
MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255
#: Most diff lines kept per change in the record (the rest are counted).
MAX_DIFF_LINES = 40
#: Most changes one plan may hold (a guard against a fix looping over a hostile directory).
MAX_CHANGES = 500


class NotEditableError(ImageportError):
    """A path a fix wanted to edit is not a regular file it may change (a link, a directory,
    a damaged file) or is not a sane guest path."""


class ChangeKind(Enum):
    CREATED = "created"
    EDITED = "edited"
    REMOVED = "removed"
    MASKED = "masked"  # replaced by (or created as) a symbolic link to /dev/null


@dataclass(frozen=True, slots=True)
class Change:
    """One change for the record: which rule it satisfies, the file, what was done and why,
    and the lines removed (``-``) and added (``+``) for a text file."""

    rule: str
    path: str
    kind: ChangeKind
    why: str
    diff: tuple[str, ...] = ()
    before_sha256: str | None = None
    after_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """Something a fix could not (or chose not to) do, and why."""

    rule: str
    text: str


class OpKind(Enum):
    WRITE = "write"
    REMOVE = "remove"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class FileOp:
    """The final operation on one guest file.

    ``expect`` is the SHA-256 (hex) of the regular file read while planning, ``"absent"``
    when there was none, or ``"link"`` for a symbolic link the plan replaces or removes.
    """

    path: str
    kind: OpKind
    expect: str
    data: bytes | None = None
    #: permission bits for a file the plan creates (an edited file keeps its own)
    mode: int | None = None
    target: str | None = None


def guest_path(path: str) -> str:
    """``path`` checked as an absolute, normalised guest path; raises :class:`NotEditableError`."""
    if not path.startswith("/") or len(path.encode("utf-8", "replace")) > MAX_PATH_BYTES:
        raise NotEditableError(f"{path[:80]!r}: not an absolute guest path of a sane length")
    parts = path.split("/")[1:]
    for part in parts:
        if part in ("", ".", "..") or len(part.encode("utf-8", "replace")) > MAX_NAME_BYTES:
            raise NotEditableError(f"{path!r}: not a normalised guest path")
        if any(ord(c) < 0x20 or c == "\x7f" for c in part):
            raise NotEditableError(f"{path!r}: control characters in a guest path")
    if parts[0] == "dev":
        # libguestfs' daemon opens a path under /dev in the appliance, outside the guest's root
        raise NotEditableError(f"{path!r}: under /dev, which the editing appliance does not edit")
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class _Staged:
    """What one guest file holds now (``data``; None when absent or removed) and how the guest
    held it when first read (``expect``)."""

    expect: str
    data: bytes | None
    mode: int | None = None
    target: str | None = None
    touched: bool = False


def _text_diff(before: bytes | None, after: bytes | None) -> tuple[str, ...]:
    old = (before or b"").decode("utf-8", "replace").splitlines()
    new = (after or b"").decode("utf-8", "replace").splitlines()
    lines = [
        line
        for line in difflib.unified_diff(old, new, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    if len(lines) > MAX_DIFF_LINES:
        more = len(lines) - MAX_DIFF_LINES
        lines = [*lines[:MAX_DIFF_LINES], f"… {more} more changed lines"]
    return tuple(lines)


def _is_text(data: bytes | None) -> bool:
    return data is None or (b"\0" not in data[:8192])


@dataclass(frozen=True, slots=True)
class Checkpoint:
    staged: dict[str, _Staged]
    changes: int
    notes: int


@dataclass
class Edits:
    """The staged edits of one guest, and the record of every change asked for."""

    files: GuestFiles
    changes: list[Change] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    _staged: dict[str, _Staged] = field(default_factory=dict)

    # -- reading ---------------------------------------------------------------------------

    def _resolve(self, path: str) -> tuple[str, FileType | None]:
        """The guest path with its directories resolved inside the guest, and the type of the
        last component (None when absent)."""
        guest_path(path)
        try:
            fs, ino, resolved = self.files.locate(path, follow=False)
        except NoSuchFileError:
            parent, _, name = path.rpartition("/")
            if not parent:
                return path, None
            try:
                _, _, resolved_parent = self.files.locate(parent, follow=True)
            except NoSuchFileError:
                return path, None
            return guest_path(resolved_parent.rstrip("/") + "/" + name), None
        return guest_path(resolved), fs.stat_ino(ino).type

    def _state(self, path: str, max_bytes: int = MAX_EDIT_BYTES) -> tuple[str, _Staged]:
        resolved, kind = self._resolve(path)
        staged = self._staged.get(resolved)
        if staged is not None:
            return resolved, staged
        if kind is None:
            staged = _Staged("absent", None)
        elif kind is FileType.SYMLINK:
            staged = _Staged("link", None)
        elif kind is FileType.REGULAR:
            data = self.files.read_file(resolved, max_bytes)
            staged = _Staged(sha256(data), data)
        else:
            raise NotEditableError(f"{path}: not a regular file ({kind.value})")
        self._staged[resolved] = staged
        return resolved, staged

    def read(self, path: str, max_bytes: int = MAX_EDIT_BYTES) -> bytes | None:
        """The file's staged bytes; None when absent, removed or a symbolic link."""
        return self._state(path, max_bytes)[1].data

    def read_text(self, path: str, max_bytes: int = MAX_EDIT_BYTES) -> str | None:
        data = self.read(path, max_bytes)
        return None if data is None else data.decode("utf-8", "replace")

    def is_link(self, path: str) -> bool:
        """Whether ``path`` is (still) a symbolic link in the guest."""
        staged = self._state(path)[1]
        return staged.data is None and (staged.target is not None or staged.expect == "link")

    # -- asking for changes ------------------------------------------------------------------

    def _record(self, change: Change) -> None:
        if len(self.changes) >= MAX_CHANGES:
            raise NotEditableError(f"more than {MAX_CHANGES} changes planned; refusing the plan")
        self.changes.append(change)

    def write(
        self,
        path: str,
        data: bytes | str,
        *,
        rule: str,
        why: str,
        mode: int = 0o644,
        max_bytes: int = MAX_EDIT_BYTES,
    ) -> None:
        """Make ``path`` hold ``data`` (created with ``mode`` when absent). A write that
        changes nothing is not recorded."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        resolved, staged = self._state(path, max_bytes)
        if staged.expect == "link" and staged.target is None:
            raise NotEditableError(f"{path}: a symbolic link in the guest; not edited")
        if staged.data == raw:
            return
        before = staged.data
        kind = ChangeKind.EDITED if before is not None else ChangeKind.CREATED
        diff = _text_diff(before, raw) if _is_text(before) and _is_text(raw) else ()
        self._record(
            Change(
                rule,
                resolved,
                kind,
                why,
                diff,
                None if before is None else sha256(before),
                sha256(raw),
            )
        )
        staged.data, staged.target, staged.touched = raw, None, True
        if before is None:
            staged.mode = mode

    def remove(self, path: str, *, rule: str, why: str) -> None:
        """Remove the file (or symbolic link) at ``path``; nothing when it is absent."""
        resolved, staged = self._state(path)
        if staged.data is None and staged.expect != "link" and staged.target is None:
            return
        if (
            staged.expect == "link"
            and staged.data is None
            and staged.target is None
            and staged.touched
        ):
            return  # already removed
        self._replace(resolved, staged, ChangeKind.REMOVED, rule, why, None)

    def mask(self, path: str, *, rule: str, why: str) -> None:
        """Make ``path`` a symbolic link to ``/dev/null`` (how systemd units and udev rules are
        switched off, reversibly)."""
        resolved, staged = self._state(path)
        if staged.target != "/dev/null":
            self._replace(resolved, staged, ChangeKind.MASKED, rule, why, "/dev/null")

    def _replace(
        self,
        resolved: str,
        staged: _Staged,
        kind: ChangeKind,
        rule: str,
        why: str,
        target: str | None,
    ) -> None:
        """Record and stage the file's content gone (removed, or a link to ``target``)."""
        before = staged.data
        diff = _text_diff(before, None) if _is_text(before) else ()
        if target is not None:
            diff = (*diff, f"+-> {target}")
        before_sha = None if before is None else sha256(before)
        self._record(Change(rule, resolved, kind, why, diff, before_sha))
        staged.data, staged.target, staged.touched = None, target, True

    def note(self, rule: str, text: str) -> None:
        """Record what a fix could not do (for the report), without changing anything."""
        if len(self.notes) < MAX_CHANGES:
            self.notes.append(Note(rule, text))

    # -- undoing a failed fix ---------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """The staged state now, for :meth:`rollback`."""
        staged = {path: dataclasses.replace(state) for path, state in self._staged.items()}
        return Checkpoint(staged, len(self.changes), len(self.notes))

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Forget everything staged, recorded and noted since ``checkpoint``."""
        self._staged = dict(checkpoint.staged)
        del self.changes[checkpoint.changes :]
        del self.notes[checkpoint.notes :]

    # -- the result --------------------------------------------------------------------------

    def operations(self) -> tuple[FileOp, ...]:
        """The final operation per touched file, in the order the files were first touched."""
        ops: list[FileOp] = []
        for path, staged in self._staged.items():
            if not staged.touched:
                continue
            if staged.target is not None:
                ops.append(FileOp(path, OpKind.SYMLINK, staged.expect, target=staged.target))
            elif staged.data is None:
                if staged.expect != "absent":
                    ops.append(FileOp(path, OpKind.REMOVE, staged.expect))
            else:
                if staged.expect not in ("absent", "link") and sha256(staged.data) == staged.expect:
                    continue  # edited back to what it was
                ops.append(FileOp(path, OpKind.WRITE, staged.expect, staged.data, staged.mode))
        return tuple(ops)
