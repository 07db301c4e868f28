"""The catalogue: every rule, listed explicitly (no discovery by string import)."""

from __future__ import annotations

from imageport.rules.accounts import LoginRule, PasswordStrengthRule, RootPasswordRule
from imageport.rules.architecture import ArchitectureRule
from imageport.rules.base import DiskKind, Rule
from imageport.rules.boot import BootModeRule, BootSameDiskRule, ConsoleRule
from imageport.rules.cloudinit import CloudInitRule
from imageport.rules.container import (
    DiskSizeRule,
    EncryptionRule,
    FormatRule,
    SafeRule,
    SizeRule,
)
from imageport.rules.fastimport import FastRawRule, FastZvhd2Rule
from imageport.rules.hardware_binding import HardwareBindingRule
from imageport.rules.hypervisor_tools import HypervisorToolsRule
from imageport.rules.kernel import DriversRule, FullVirtRule, NetRulesRule
from imageport.rules.layout import FstabDataDiskRule, StableNamesRule, SystemDiskRule
from imageport.rules.network import NetDhcpRule
from imageport.rules.storage import DiskEncryptionRule, LvmInjectionRule, OemRule

RULES: tuple[Rule, ...] = (
    FormatRule(),
    SafeRule(),
    EncryptionRule(),
    SizeRule(),
    DiskSizeRule(),
    SystemDiskRule(),
    # before the guest rules, so that a fast-import job fails with IMG-FAST-* as its code
    FastRawRule(),
    FastZvhd2Rule(),
    FstabDataDiskRule(),
    StableNamesRule(),
    BootModeRule(),
    BootSameDiskRule(),
    ConsoleRule(),
    LoginRule(),
    RootPasswordRule(),
    PasswordStrengthRule(),
    DriversRule(),
    FullVirtRule(),
    ArchitectureRule(),
    NetRulesRule(),
    CloudInitRule(),
    NetDhcpRule(),
    HardwareBindingRule(),
    HypervisorToolsRule(),
    LvmInjectionRule(),
    DiskEncryptionRule(),
    OemRule(),
)


#: The rules of the vendor's checklist for the configuration an image needs before servers are
#: made from it ("How do I configure an ECS or an image file before I use it to create an
#: image?"): no udev persistent-net rules, DHCP, virtio drivers in the initrd, filesystems named
#: by UUID in GRUB and fstab, no data-disk mounts in fstab, cloud-init with the OpenStack
#: datasource. An image is *initialized* (``__is_config_init`` "true" on an image made from a
#: server) when its check reports no error and no warning of any of them; an uninitialized
#: image is the one that still has to be fixed in a server.
INITIALIZATION_RULES: frozenset[str] = frozenset(
    {
        NetRulesRule.id,
        NetDhcpRule.id,
        DriversRule.id,
        StableNamesRule.id,
        FstabDataDiskRule.id,
        CloudInitRule.id,
    }
)

#: The initialization rules whose errors an image registered uninitialized (``--uninitialized``,
#: the Glance path) is allowed, as warnings: they are what its user fixes in a server made from
#: it, before making an image from that server. Not IMG-DRIVERS: a server whose initrd cannot
#: load its disk's driver does not start, so it cannot be fixed in one.
TOLERATED_WHEN_UNINITIALIZED: frozenset[str] = INITIALIZATION_RULES - {DriversRule.id}


def rule_by_id(rule_id: str) -> Rule:
    """The rule with ``rule_id``; KeyError when there is none."""
    for rule in RULES:
        if rule.id == rule_id:
            return rule
    raise KeyError(rule_id)


def rules_for(kind: DiskKind) -> tuple[Rule, ...]:
    """The rules that judge an image of ``kind``, in catalogue order: every rule for a system
    disk; for a data disk and an ISO only the rules about the file (format, safety,
    encryption, sizes, and for a data disk the fast-import bitmap), never the guest rules."""
    return tuple(rule for rule in RULES if kind in rule.kinds)
