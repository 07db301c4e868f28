"""The document the configuration planner prints, and its reading by the job's side.

:mod:`imageport.worker.plan_config` (a limited worker process: it reads the untrusted guest)
plans automatic configuration and prints one JSON document; the bytes a write operation puts
into the guest (a configuration file, or an initrd of many MiB) do not go through the pipe:
each is written as ``op-<index>`` into a scratch directory the job chose, and the document
gives its size and SHA-256. The image worker adapter reads it back with
:func:`plan_from_document` into a :class:`~imageport.configure.plan.Plan`; the document and
the files are still untrusted: counts, sizes, paths and kinds are checked, and every file must
hold exactly the bytes the document claims.

Plan document (``imageport.configplan/1``)::

    {"schema": "imageport.configplan/1", "rules": [str],
     "changes": [{"rule", "path", "action", "why", "diff": [str],
                  "before_sha256", "after_sha256"}],
     "notes": [{"rule", "note"}],
     "mounts": [{"device", "mountpoint", "options"}],
     "operations": [{"path", "kind": "write|remove|symlink", "expect", "mode", "target",
                     "size", "sha256"}]}

``size`` and ``sha256`` are those of ``op-<index>`` for a write, null otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from imageport.configure.edits import (
    MAX_CHANGES,
    MAX_DIFF_LINES,
    Change,
    ChangeKind,
    FileOp,
    Note,
    NotEditableError,
    OpKind,
    guest_path,
    sha256,
)
from imageport.configure.mounts import ApplianceMount
from imageport.configure.plan import Plan
from imageport.configure.record import change_document, note_document
from imageport.service.ports import WorkerError

SCHEMA = "imageport.configplan/1"
#: Most bytes all of one plan's written files may hold together (an initrd with the drivers
#: appended is the largest; the editor uploads each within its command timeout).
MAX_PLAN_DATA_BYTES = 256 << 20
#: Most operations one plan may hold (one per file; a change per file at most).
MAX_OPERATIONS = MAX_CHANGES + 1
#: Longest text field kept from the document (a why, a note, a diff line).
MAX_TEXT = 4096
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A partition of the one disk the appliance sees, or a logical volume ``/dev/<vg>/<lv>``.
_DEVICE = re.compile(r"/dev/sda[0-9]{0,3}|/dev/[A-Za-z0-9+_.-]{1,127}/[A-Za-z0-9+_.-]{1,127}")
_SUBVOL = re.compile(r"subvol(id)?=[A-Za-z0-9@/_.+-]{1,255}")
#: Most filesystems one plan mounts.
MAX_MOUNTS = 64


def data_file(folder: Path, index: int) -> Path:
    """Where the bytes of the plan's operation ``index`` are written."""
    return folder / f"op-{index}"


def plan_to_document(plan: Plan, folder: Path) -> dict[str, Any]:
    """The document for ``plan``, writing each write operation's bytes into ``folder``
    (worker side). Raises :class:`ValueError` when the plan writes more than
    :data:`MAX_PLAN_DATA_BYTES`."""
    total = sum(len(op.data or b"") for op in plan.operations)
    if total > MAX_PLAN_DATA_BYTES:
        raise ValueError(
            f"the plan writes {total} bytes into the guest, more than {MAX_PLAN_DATA_BYTES}"
        )
    operations = []
    for index, op in enumerate(plan.operations):
        if op.data is not None:
            data_file(folder, index).write_bytes(op.data)
        operations.append(
            {
                "path": op.path,
                "kind": op.kind.value,
                "expect": op.expect,
                "mode": op.mode,
                "target": op.target,
                "size": None if op.data is None else len(op.data),
                "sha256": None if op.data is None else sha256(op.data),
            }
        )
    return {
        "schema": SCHEMA,
        "rules": list(plan.rules),
        "changes": [change_document(c) for c in plan.changes],
        "notes": [note_document(n) for n in plan.notes],
        "mounts": [
            {"device": m.device, "mountpoint": m.mountpoint, "options": m.options}
            for m in plan.mounts
        ],
        "operations": operations,
    }


def _bad(what: str) -> WorkerError:
    return WorkerError(f"the configuration planner answered an invalid document ({what})")


def _field(doc: dict[str, Any], name: str, kind: type, *, optional: bool = False) -> Any:
    value = doc.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(name)
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise _bad(f"{name} too long")
    return value


def _items(doc: dict[str, Any], name: str, most: int) -> list[Any]:
    items: list[Any] = _field(doc, name, list)
    if len(items) > most:
        raise _bad(f"more than {most} {name}")
    return items


def _object(item: object, what: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _bad(what)
    return item


def _path(value: object) -> str:
    if not isinstance(value, str):
        raise _bad("path")
    try:
        return guest_path(value)
    except NotEditableError as exc:
        raise _bad(f"path: {exc}") from exc


def _digest(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise _bad(what)
    return value


def _change(item: object) -> Change:
    doc = _object(item, "change")
    diff = _items(doc, "diff", MAX_DIFF_LINES + 1)
    try:
        kind = ChangeKind(_field(doc, "action", str))
    except ValueError as exc:
        raise _bad("action") from exc
    return Change(
        rule=_field(doc, "rule", str),
        path=_path(doc.get("path")),
        kind=kind,
        why=_field(doc, "why", str),
        diff=tuple(_field({"line": line}, "line", str) for line in diff),
        before_sha256=_digest(doc.get("before_sha256"), "before_sha256"),
        after_sha256=_digest(doc.get("after_sha256"), "after_sha256"),
    )


def _note(item: object) -> Note:
    doc = _object(item, "note")
    return Note(_field(doc, "rule", str), _field(doc, "note", str))


def _mount(item: object) -> ApplianceMount:
    """A mount as :func:`~imageport.configure.mounts.appliance_mounts` names them: a partition
    of the one disk, or a logical volume; a guest path; at most a ``subvol=`` option."""
    doc = _object(item, "mount")
    device = _field(doc, "device", str)
    if not _DEVICE.fullmatch(device):
        raise _bad("mount device")
    point = _field(doc, "mountpoint", str)
    options = _field(doc, "options", str)
    if options and not _SUBVOL.fullmatch(options):
        raise _bad("mount options")
    return ApplianceMount(device, "/" if point == "/" else _path(point), options)


def _operation(item: object, index: int, folder: Path, budget: list[int]) -> FileOp:
    doc = _object(item, "operation")
    try:
        kind = OpKind(_field(doc, "kind", str))
    except ValueError as exc:
        raise _bad("kind") from exc
    expect = _field(doc, "expect", str)
    if expect not in ("absent", "link") and not _SHA256.fullmatch(expect):
        raise _bad("expect")
    mode = _field(doc, "mode", int, optional=True)
    if mode is not None and not 0 <= mode <= 0o7777:
        raise _bad("mode")
    target = _field(doc, "target", str, optional=True)
    if (kind is OpKind.SYMLINK) != (target is not None):
        raise _bad("target")
    data = None
    if kind is OpKind.WRITE:
        size = _field(doc, "size", int)
        digest = _digest(doc.get("sha256"), "sha256")
        if size < 0 or size > budget[0] or digest is None:
            raise _bad(f"operation {index} writes more than the plan may")
        path = data_file(folder, index)
        try:
            with path.open("rb") as f:
                data = f.read(size + 1)
        except OSError as exc:
            raise _bad(f"operation {index}'s data: {exc.strerror}") from exc
        if len(data) != size or sha256(data) != digest:
            raise _bad(f"operation {index}'s data is not what the document says")
        budget[0] -= size
    return FileOp(_path(doc.get("path")), kind, expect, data, mode, target)


def plan_from_document(raw: object, folder: Path) -> Plan:
    """Validate a planner's document (and the data files in ``folder``) into a :class:`Plan`
    (job side)."""
    doc = _object(raw, "not an object")
    if doc.get("schema") != SCHEMA:
        raise _bad("schema")
    rules = tuple(_field({"rule": r}, "rule", str) for r in _items(doc, "rules", 64))
    changes = tuple(_change(c) for c in _items(doc, "changes", MAX_CHANGES))
    notes = tuple(_note(n) for n in _items(doc, "notes", MAX_CHANGES))
    budget = [MAX_PLAN_DATA_BYTES]
    operations = tuple(
        _operation(op, index, folder, budget)
        for index, op in enumerate(_items(doc, "operations", MAX_OPERATIONS))
    )
    mounts = tuple(_mount(m) for m in _items(doc, "mounts", MAX_MOUNTS))
    return Plan(changes, notes, operations, rules, mounts)
