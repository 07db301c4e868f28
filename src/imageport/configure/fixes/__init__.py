"""The fixes automatic configuration applies, one per rule (or pair of rules), in order.

Each :class:`Fix` names the rules it satisfies and plans its edits from the guest's facts
through :class:`~imageport.configure.edits.Edits`; it never writes. Order matters where two
fixes edit one file: the later one reads what the earlier one staged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imageport.configure.edits import Edits
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


# The fixes' modules import Fix's collaborators only, never this package's names: they are
# imported here, after Fix, and listed in FIXES.
from imageport.configure.fixes import (  # noqa: E402
    cloud_init,
    console,
    fstab,
    hypervisor_tools,
)

#: Every fix, in the order they run.
FIXES: tuple[Fix, ...] = (
    Fix((fstab.DATA_DISK,), "Comment out data-disk mounts in fstab", fstab.plan_data_disk),
    Fix(
        (fstab.STABLE_NAMES,),
        "Name filesystems by UUID in fstab and root=",
        fstab.plan_stable_names,
    ),
    Fix((console.RULE,), "Send the kernel console to the serial port", console.plan_console),
    Fix((cloud_init.RULE,), "Point cloud-init at the platform", cloud_init.plan_cloud_init),
    Fix(
        (hypervisor_tools.RULE,),
        "Disable other hypervisors' guest tools",
        hypervisor_tools.plan_hypervisor_tools,
    ),
)
