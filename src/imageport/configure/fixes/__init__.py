"""The fixes automatic configuration applies, one per rule (or pair of rules), in order.

Each :class:`Fix` names the rules it satisfies and plans its edits from the guest's facts
through :class:`~imageport.configure.edits.Edits`; it never writes. Order matters where two
fixes edit one file: the later one reads what the earlier one staged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imageport.configure.edits import Edits
from imageport.configure.fixes.drivers import plan_drivers
from imageport.guest.facts.inspect import GuestFacts

#: A fix's planner: reads ``guest`` (and the staged files through ``edits``), asks for changes.
Planner = Callable[[GuestFacts, Edits], None]


@dataclass(frozen=True, slots=True)
class Fix:
    """One unit of automatic configuration."""

    #: the rule IDs whose findings this fix clears (``--only`` selects by them)
    rules: tuple[str, ...]
    title: str
    plan: Planner


#: Every fix, in the order they run.
FIXES: tuple[Fix, ...] = (
    Fix(("IMG-DRIVERS",), "virtio and IDE drivers into the initrd", plan_drivers),
)
