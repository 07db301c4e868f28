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
from imageport.configure.fixes.network_dhcp import BINDING_RULE, DHCP_RULE, plan_network_dhcp
from imageport.configure.fixes.network_rules import RULE as NET_RULES
from imageport.configure.fixes.network_rules import plan_net_rules
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
    Fix((NET_RULES,), "Remove udev persistent-net rules", plan_net_rules),
    Fix(
        (DHCP_RULE, BINDING_RULE),
        "Network interfaces on DHCP, bound to no MAC address",
        plan_network_dhcp,
    ),
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
    Fix(("IMG-DRIVERS",), "virtio and IDE drivers into the initrd", plan_drivers),
)
