"""The ``fail_reason`` of a job that failed the image check: every failing rule, with its first
evidence line and its fix, in a few bounded lines.

``fail_reason`` is what the vendor's SDK reads (``ShowJob``, and ``__fail_reason`` on the killed
image through ``ShowImage``), so it is the summary a user sees first; the image's check report
keeps every finding in full. One entry per error finding, in report order::

    IMG-FSTAB-DATA-DISK: /etc/fstab line 7 mounts /data at boot from /dev/vdb1, which is ...
      evidence: /etc/fstab:7: /dev/vdb1 /data ext4 defaults 0 2
      fix: Remove the line from /etc/fstab or add `noauto,nofail` to its options.
    IMG-BOOT-MODE: The image boots only with UEFI; the platform boots it with BIOS unless ...
      evidence: BIOS: sector 0: no boot code (+1 more in the check report)
      fix: Install the BIOS boot loader next to the UEFI one: ...

The first line of an entry starts with the rule ID and a colon (no other line does); a note the
job adds about a rule (e.g. the bitmap file a quick import looked for) is a ``note:`` line of
that rule's first entry.

Every string in a report may come from the image (a line of its fstab, a file name), so each is
cleaned (control characters and line breaks become spaces) and capped: the rule ID at
:data:`MAX_RULE_ID_CHARS`, each message, evidence, fix and note at :data:`MAX_PART_CHARS`, and
the whole reason at :data:`MAX_REASON_CHARS`. When the entries do not all fit, the last line says
how many were left out and names their rule IDs (the report has them in full).

Every other reason a job fails with (a worker that crashed, whose last line of stderr is
quoted; an unexpected error's message) is made safe the same way when it is stored
(:func:`stored_reason`, applied by :func:`imageport.service.jobs.state.fail_in`): control
characters become spaces line by line and the whole is capped at :data:`MAX_REASON_CHARS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from imageport.service.ports import FailedRule

#: The most characters a ``fail_reason`` built from findings has (the database column is
#: unbounded text; this keeps the SDK's field, the image's property and every job listing small).
MAX_REASON_CHARS = 4000
#: The most characters of one message, evidence line, fix or note.
MAX_PART_CHARS = 400
#: The most characters of one rule ID (the catalogue's are about 20).
MAX_RULE_ID_CHARS = 40
#: The most characters of the rule IDs named in the "left out" line.
MAX_LEFT_OUT_IDS_CHARS = 600

_ELLIPSIS = "…"


def failure_reason(failed: Sequence[FailedRule], notes: Mapping[str, str] | None = None) -> str:
    """The ``fail_reason`` for the error findings ``failed`` (report order), at most
    :data:`MAX_REASON_CHARS` long; ``notes`` adds a line to the first entry of a rule ID."""
    notes = notes or {}
    entries: list[str] = []
    used = 0
    noted: set[str] = set()
    for rule in failed:
        note = None
        if rule.rule_id in notes and rule.rule_id not in noted:
            noted.add(rule.rule_id)
            note = notes[rule.rule_id]
        entry = _entry(rule, note)
        cost = len(entry) + (1 if entries else 0)
        if used + cost > MAX_REASON_CHARS:
            break
        entries.append(entry)
        used += cost
    if len(entries) == len(failed):
        return "\n".join(entries)
    # make room for the line that names what was left out
    while entries:
        tail = _left_out(failed[len(entries) :])
        if used + 1 + len(tail) <= MAX_REASON_CHARS:
            break
        used -= len(entries.pop()) + (1 if entries else 0)
    return "\n".join([*entries, _left_out(failed[len(entries) :])])[:MAX_REASON_CHARS]


def stored_reason(reason: str) -> str:
    """``reason`` as a job or image keeps it: its lines (ours: a built reason's indented
    ``evidence:`` lines stay as they are) without control characters, each one a space, and
    at most :data:`MAX_REASON_CHARS` in all, an ellipsis ending a reason that was cut."""
    window = reason[: MAX_REASON_CHARS + 1]
    lines = ("".join(ch if ch.isprintable() else " " for ch in line) for line in window.split("\n"))
    text = "\n".join(line.rstrip() for line in lines)
    if len(reason) <= MAX_REASON_CHARS:
        return text
    return text[: MAX_REASON_CHARS - 1] + _ELLIPSIS


def _entry(rule: FailedRule, note: str | None) -> str:
    lines = [f"{_clean(rule.rule_id, MAX_RULE_ID_CHARS)}: {_clean(rule.message, MAX_PART_CHARS)}"]
    if rule.evidence is not None:
        more = f" (+{rule.more_evidence} more in the check report)" if rule.more_evidence else ""
        lines.append(f"  evidence: {_clean(rule.evidence, MAX_PART_CHARS)}{more}")
    if rule.advice:
        lines.append(f"  fix: {_clean(rule.advice, MAX_PART_CHARS)}")
    if note:
        lines.append(f"  note: {_clean(note, MAX_PART_CHARS)}")
    return "\n".join(lines)


def _left_out(rest: Sequence[FailedRule]) -> str:
    """The last line when ``rest`` did not fit: how many, and their distinct rule IDs."""
    ids = ", ".join(dict.fromkeys(_clean(r.rule_id, MAX_RULE_ID_CHARS) for r in rest))
    return (
        f"(+{len(rest)} more failing finding(s) left out to keep this short, the check report "
        f"has them all: {_clean(ids, MAX_LEFT_OUT_IDS_CHARS)})"
    )


def _clean(text: str, limit: int) -> str:
    """``text`` on one line (control characters and runs of spaces become one space), cut to
    ``limit`` characters with an ellipsis."""
    window = text[: limit * 4]  # enough for any text whose spaces collapse to fit
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in window).split())
    if len(flat) <= limit and len(window) == len(text):
        return flat
    return flat[: limit - 1] + _ELLIPSIS
