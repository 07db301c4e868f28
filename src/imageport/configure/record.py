"""The record of automatic configuration: in the guest (a log file) and in the report.

Every change names its rule, the file, what was done and why, and for a text file the lines
removed and added; the notes say what was not done and why. The same record is written into
the guest as :data:`GUEST_LOG` (appended to one an earlier run left) and put in the image's
report as :func:`plan_document`.
"""

from __future__ import annotations

from typing import Any

from imageport.configure.edits import Change, Edits, Note
from imageport.errors import ImageportError

#: Where the guest keeps the record (the vendor's service keeps its own under /var/log too).
GUEST_LOG = "/var/log/imageport-configuration.log"
#: Largest earlier log kept and appended to; a bigger one is replaced.
MAX_LOG_BYTES = 1 << 20


def change_document(change: Change) -> dict[str, Any]:
    return {
        "rule": change.rule,
        "path": change.path,
        "action": change.kind.value,
        "why": change.why,
        "diff": list(change.diff),
        "before_sha256": change.before_sha256,
        "after_sha256": change.after_sha256,
    }


def note_document(note: Note) -> dict[str, str]:
    return {"rule": note.rule, "note": note.text}


def plan_document(
    changes: tuple[Change, ...], notes: tuple[Note, ...], *, applied: bool
) -> dict[str, Any]:
    """The configuration section of a report: ``applied`` false for a dry run's plan."""
    return {
        "applied": applied,
        "changes": [change_document(c) for c in changes],
        "notes": [note_document(n) for n in notes],
    }


def log_text(changes: tuple[Change, ...], notes: tuple[Note, ...], when: str) -> str:
    """The lines one run adds to :data:`GUEST_LOG`."""
    lines = [f"# imageport automatic configuration, {when}"]
    for change in changes:
        lines.append(f"{change.rule} {change.kind.value} {change.path}: {change.why}")
        lines += [f"    {line}" for line in change.diff]
    for note in notes:
        lines.append(f"{note.rule} not changed: {note.text}")
    return "\n".join(lines) + "\n"


def write_guest_log(edits: Edits, when: str) -> None:
    """Stage the record of everything ``edits`` holds into :data:`GUEST_LOG` (not itself a
    recorded change). Nothing when no change was planned."""
    if not edits.changes:
        return
    changes, notes = tuple(edits.changes), tuple(edits.notes)
    try:
        earlier = edits.read(GUEST_LOG, MAX_LOG_BYTES) or b""
        if earlier and not earlier.endswith(b"\n"):
            earlier += b"\n"
        edits.write(
            GUEST_LOG,
            earlier + log_text(changes, notes, when).encode("utf-8"),
            rule="record",
            why="the record of this configuration",
            mode=0o640,
            max_bytes=MAX_LOG_BYTES,
        )
    except ImageportError as exc:
        edits.note("record", f"{GUEST_LOG} was not written: {exc}")
        return
    del edits.changes[len(changes) :]
