"""Run the fixes over a guest into one plan: the changes, the notes, the file operations.

A fix that fails (a file it needs cannot be read, a path is not editable) contributes nothing
of its own — the edits it had staged are dropped with it — and leaves a note saying why, so
one damaged file never stops the others' fixes nor half-applies its own.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from imageport.configure.edits import Change, Edits, FileOp, Note
from imageport.configure.fixes import FIXES, Fix
from imageport.configure.mounts import ApplianceMount, appliance_mounts
from imageport.configure.record import write_guest_log
from imageport.errors import ImageportError
from imageport.guest.facts.inspect import GuestFacts


@dataclass(frozen=True, slots=True)
class Plan:
    """What automatic configuration will change in one guest."""

    changes: tuple[Change, ...]
    notes: tuple[Note, ...]
    operations: tuple[FileOp, ...]
    #: the rules whose fixes ran
    rules: tuple[str, ...]
    #: where the appliance mounts the filesystems the plan was read from
    mounts: tuple[ApplianceMount, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.operations


def selected_fixes(only: Collection[str] | None, fixes: Sequence[Fix] = FIXES) -> tuple[Fix, ...]:
    """The fixes for the rules in ``only`` (all of them when None); KeyError names a rule no
    fix serves."""
    if only is None:
        return tuple(fixes)
    served = {rule for fix in fixes for rule in fix.rules}
    unknown = sorted(set(only) - served)
    if unknown:
        raise KeyError(", ".join(unknown))
    return tuple(fix for fix in fixes if set(fix.rules) & set(only))


def plan_configuration(
    guest: GuestFacts,
    only: Collection[str] | None = None,
    fixes: Sequence[Fix] = FIXES,
    *,
    when: str | None = None,
) -> Plan:
    """Plan every selected fix over ``guest`` (which must have a root filesystem). With
    ``when`` (a timestamp), the record of the changes is staged into the guest's log too."""
    edits = Edits(guest.files)
    chosen = selected_fixes(only, fixes)
    for fix in chosen:
        checkpoint = edits.checkpoint()
        try:
            fix.plan(guest, edits)
        except ImageportError as exc:
            edits.rollback(checkpoint)
            edits.note(fix.rules[0], f"not fixed: {exc}")
    if when is not None:
        write_guest_log(edits, when)
    return Plan(
        tuple(edits.changes),
        tuple(edits.notes),
        edits.operations(),
        tuple(rule for fix in chosen for rule in fix.rules),
        appliance_mounts(guest.layout),
    )
