"""The configuration record as a user reads it in a terminal: each change with its rule, the
file, why, and the lines removed and added; then what was not changed and why.

Everything quoted from the guest passes through :func:`terminal_safe` (an image's file can hold
terminal escapes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imageport.reports.terminal import terminal_safe


def render_configuration(doc: Mapping[str, Any], *, dry_run: bool) -> str:
    """The ``configuration`` section of a report (:func:`imageport.configure.record.
    plan_document`) as text."""
    changes = list(doc.get("changes") or [])
    notes = list(doc.get("notes") or [])
    files = {c.get("path") for c in changes}
    verb = "would make" if dry_run else "made"
    lines = [
        f"automatic configuration {verb} {len(changes)} change(s) in {len(files)} file(s)"
        + (" (dry run: nothing was written)" if dry_run else "")
    ]
    for change in changes:
        lines.append(
            f"  {change.get('rule')}  {change.get('action')}  "
            f"{terminal_safe(str(change.get('path')))}"
        )
        lines.append(f"      {terminal_safe(str(change.get('why')))}")
        lines += [f"        {terminal_safe(str(line))}" for line in change.get("diff") or []]
    if notes:
        lines.append("not changed:")
        lines += [f"  {note.get('rule')}  {terminal_safe(str(note.get('note')))}" for note in notes]
    return "\n".join(lines) + "\n"
