"""IMG-NET-DHCP and IMG-HW-BINDING: the network configuration on DHCP, bound to no MAC.

What is wrong is what the rules report, read the same way
(:func:`imageport.guest.facts.network.read_network`): every interface other than loopback
with a static address (IMG-NET-DHCP) or a MAC address it matches or sets (IMG-HW-BINDING).
Each file holding one is fixed in its own syntax (:mod:`.network_edits`), and the result is
parsed again with the reader's parser: a rewrite that would not clear the findings is not
planned but noted.

The primary interface is the first NIC the platform gives a server, which the rules' advice
calls ``eth0``: the interface named ``eth0`` when one is configured, else the first one
configured for an address, in the order the reader reads the systems. Its configuration is
put on DHCP without fixed address or MAC. Another interface's configuration that the rules
report, in a file of its own that sets up a NIC (not a bond, bridge or VLAN), belongs to a
NIC of the old machine that new servers do not have, and the file is removed; one sharing a
file with others (``/etc/network/interfaces``, a netplan file) is put on DHCP in place. An
interface set up without an address of its own (a bond's port) only loses its MAC.

When no interface is configured at all and nothing else brings the network up (the rule's
second finding), the first NIC is configured for DHCP in the distribution's own system.

IMG-HW-BINDING also reports disks named by ``/dev/disk/by-id`` or ``by-path``: which volume
of the image such a name meant cannot be proven offline (the name is not in the image), so
those are noted, not changed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from imageport.configure.edits import Edits, NotEditableError
from imageport.configure.fixes.cmdline import append_arguments, edit_command_lines
from imageport.configure.fixes.network_edits import (
    Rewrite,
    ifcfg_to_dhcp,
    ifupdown_to_dhcp,
    keyfile_to_dhcp,
    netplan_to_dhcp,
    networkd_to_dhcp,
    wicked_to_dhcp,
)
from imageport.errors import ImageportError
from imageport.guest.boot.modes import read_boot
from imageport.guest.facts.cloudinit import read_cloud_init
from imageport.guest.facts.disk_names import read_disk_names
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.facts.network import NetworkFacts, read_network
from imageport.guest.facts.network_parsers import (
    DHCP,
    NETPLAN_GROUPS,
    STATIC,
    InterfaceConfig,
    parse_ifcfg,
    parse_ini,
    parse_interfaces,
    parse_netplan,
    parse_networkd,
    parse_nm_keyfile,
    parse_shell_vars,
    parse_wicked,
)
from imageport.guest.files.safeyaml import YamlRefused, load_yaml

DHCP_RULE = "IMG-NET-DHCP"
BINDING_RULE = "IMG-HW-BINDING"
#: The name the first NIC gets (the kernel's, and the rules' advice).
FIRST_NIC = "eth0"
#: udev's rules that rename NICs predictably (ens3, enp0s3) unless ``net.ifnames=0``.
PREDICTABLE_NAMES = (
    "/lib/udev/rules.d/80-net-setup-link.rules",
    "/usr/lib/udev/rules.d/80-net-setup-link.rules",
)


def primary_interface(net: NetworkFacts) -> str | None:
    """The name of the interface new servers' first NIC is configured as (see the module)."""
    configured = net.configured
    if any(c.name == FIRST_NIC for c in configured):
        return FIRST_NIC
    for cfg in configured:
        if cfg.method in (DHCP, STATIC):
            return cfg.name
    return configured[0].name if configured else None


def _reported(cfg: InterfaceConfig) -> bool:
    return not cfg.is_loopback and (cfg.method == STATIC or bool(cfg.mac_bindings))


def _parse(style: str, path: str, text: str) -> list[InterfaceConfig]:
    """The file's interfaces as the reader parses them (:class:`YamlRefused` for bad YAML)."""
    if style == "ifupdown":
        return parse_interfaces(path, text)[0]
    if style in ("ifcfg", "suse-ifcfg"):
        cfg = parse_ifcfg(path, text, suse=style == "suse-ifcfg")
    elif style == "nm":
        cfg = parse_nm_keyfile(path, text)
    elif style == "networkd":
        cfg = parse_networkd(path, text)
    elif style == "netplan":
        return parse_netplan(path, load_yaml(text))
    else:
        return parse_wicked(path, text)
    return [cfg] if cfg is not None else []


def _sets_up_a_nic(style: str, text: str, cfgs: Sequence[InterfaceConfig]) -> bool:
    """Whether the file configures only Ethernet NICs with an address (not a bond, bridge,
    VLAN or port), so removing it drops nothing but those NICs' setup."""
    if any(c.method not in (DHCP, STATIC) for c in cfgs):
        return False
    if style in ("ifcfg", "suse-ifcfg"):
        values = parse_shell_vars(text)
        kind = values.get("TYPE", (0, "", ""))[1].lower()
        virtual = ("MASTER", "BRIDGE", "BONDING_MASTER", "BONDING_OPTS", "VLAN", "ETHERDEVICE")
        return kind in ("", "ethernet") and not any(k in values for k in virtual)
    if style == "nm":
        types = [v for s, k, v, _, _ in parse_ini(text) if s == "connection" and k == "type"]
        return types[-1:] in (["ethernet"], ["802-3-ethernet"])
    if style == "netplan":
        return all(c.where.text.startswith("ethernets:") for c in cfgs)
    return style in ("networkd", "wicked")


def _netplan_devices(text: str, cfgs: Sequence[InterfaceConfig]) -> list[tuple[str, str]]:
    """The ``(group, key)`` of each reported netplan device, found by the line the reader
    quoted for it."""
    doc = load_yaml(text)
    network = doc.data.get("network") if isinstance(doc.data, dict) else None
    lines = {c.where.line for c in cfgs}
    found: list[tuple[str, str]] = []
    for group in NETPLAN_GROUPS:
        devices = network.get(group) if isinstance(network, dict) else None
        if isinstance(devices, dict):
            found.extend(
                (group, str(key))
                for key in devices
                if doc.line("network", group, str(key)) in lines
            )
    return found


def _rewrite(style: str, text: str, cfgs: Sequence[InterfaceConfig]) -> Rewrite | None:
    static = any(c.method == STATIC for c in cfgs)
    if style == "ifupdown":
        return ifupdown_to_dhcp(text, [c.name for c in cfgs])
    if style in ("ifcfg", "suse-ifcfg"):
        return ifcfg_to_dhcp(text, suse=style == "suse-ifcfg", dhcp=static)
    if style == "nm":
        return keyfile_to_dhcp(text)
    if style == "networkd":
        return networkd_to_dhcp(text, dhcp=static)
    if style == "netplan":
        return netplan_to_dhcp(text, load_yaml(text), _netplan_devices(text, cfgs), dhcp=static)
    return wicked_to_dhcp(text)


def _what(cfgs: Sequence[InterfaceConfig]) -> str:
    parts = []
    for cfg in cfgs:
        found = ["a static address"] if cfg.method == STATIC else []
        if cfg.mac_bindings:
            found.append("the old MAC address " + ", ".join(q.text for q in cfg.mac_bindings))
        parts.append(f"{cfg.name} ({' and '.join(found)})")
    return ", ".join(parts)


def _fix_file(
    edits: Edits, path: str, cfgs: Sequence[InterfaceConfig], net: NetworkFacts, primary: str
) -> None:
    rule = DHCP_RULE if any(c.method == STATIC for c in cfgs) else BINDING_RULE
    style = cfgs[0].style
    text = edits.read_text(path)
    if text is None:
        edits.note(rule, f"{path}: not changed: it is no longer a readable file")
        return
    in_file = [c for c in net.interfaces if c.where.path == path]
    old_nic = all(c.name != primary and _reported(c) for c in in_file)
    if old_nic and style != "ifupdown" and _sets_up_a_nic(style, text, in_file):
        edits.remove(
            path,
            rule=rule,
            why=f"removed {path}, the configuration of {_what(cfgs)}, a NIC of the old "
            f"machine that new servers do not have (their first NIC is {primary})",
        )
        return
    try:
        rewrite = _rewrite(style, text, cfgs)
        after = _parse(style, path, rewrite.text) if rewrite is not None else []
    except YamlRefused as exc:
        edits.note(rule, f"{path}: not changed: {exc}")
        return
    if rewrite is None:
        edits.note(
            rule,
            f"{path}: not changed: {_what(cfgs)} is written in a form that is not edited line "
            "by line (YAML flow style, several wicked interfaces in one file); edit it by hand",
        )
        return
    if any(_reported(c) for c in after):
        edits.note(
            rule,
            f"{path}: not changed: the edit would not have cleared {_what(cfgs)} "
            "(line continuations or repeated keys); edit it by hand",
        )
        return
    edits.write(
        path,
        rewrite.text,
        rule=rule,
        why=f"{path}: {_what(cfgs)} "
        + (
            "set to get its address by DHCP, bound to no MAC: "
            if rule == DHCP_RULE
            else "no longer bound to the old MAC: "
        )
        + "; ".join(rewrite.done),
    )


def _nothing_configured(guest: GuestFacts, net: NetworkFacts) -> bool:
    """IMG-NET-DHCP's second finding: no interface gets an address and neither cloud-init
    nor NetworkManager will configure one."""
    if any(c.method in (DHCP, STATIC) for c in net.configured):
        return False
    ci = guest.derive(read_cloud_init)
    return not (ci.active and not ci.network_config_disabled) and not net.nm_auto_dhcp


def _exists(guest: GuestFacts, path: str) -> bool:
    try:
        return guest.files.exists(path)
    except ImageportError:
        return False


def _configure_first_nic(guest: GuestFacts, edits: Edits) -> None:
    why = (
        f"no interface was configured and nothing else brings the network up: {FIRST_NIC} "
        "(the first NIC) now gets its address by DHCP"
    )
    family = guest.family
    if family == "debian" and edits.read_text("/etc/network/interfaces") is not None:
        text = edits.read_text("/etc/network/interfaces") or ""
        stanza = (
            f"\n# the first NIC on DHCP\nallow-hotplug {FIRST_NIC}\niface {FIRST_NIC} inet dhcp\n"
        )
        new = text.rstrip("\n") + "\n" + stanza if text.strip() else stanza.lstrip("\n")
        edits.write("/etc/network/interfaces", new, rule=DHCP_RULE, why=why)
    elif family == "debian" and _exists(guest, "/etc/netplan"):
        edits.write(
            "/etc/netplan/90-imageport-dhcp.yaml",
            "network:\n  version: 2\n  ethernets:\n    first-nic:\n      match:\n"
            '        name: "e*"\n      dhcp4: true\n',
            rule=DHCP_RULE,
            why=why.replace(f"{FIRST_NIC} (the first NIC)", "the Ethernet NICs (e*)"),
            mode=0o600,
        )
    elif family == "rhel" and _exists(guest, "/etc/sysconfig/network-scripts"):
        edits.write(
            f"/etc/sysconfig/network-scripts/ifcfg-{FIRST_NIC}",
            f"DEVICE={FIRST_NIC}\nTYPE=Ethernet\nBOOTPROTO=dhcp\nONBOOT=yes\n",
            rule=DHCP_RULE,
            why=why,
        )
    elif family == "suse" and _exists(guest, "/etc/sysconfig/network"):
        edits.write(
            f"/etc/sysconfig/network/ifcfg-{FIRST_NIC}",
            "BOOTPROTO='dhcp'\nSTARTMODE='auto'\n",
            rule=DHCP_RULE,
            why=why,
        )
    else:
        edits.note(
            DHCP_RULE,
            "no interface is configured and the guest has no network configuration system "
            "this fix writes for (ifupdown, netplan, ifcfg); configure the first NIC for DHCP "
            "or enable cloud-init's network configuration",
        )


def _note_disk_names(guest: GuestFacts, edits: Edits) -> None:
    for use in guest.derive(read_disk_names).uses:
        edits.note(
            BINDING_RULE,
            f"not changed: {use.where} names a disk by {use.kind} ({use.name}); that name is "
            "not in the image, so which of its volumes it meant cannot be proven offline. "
            "Name it by UUID= as blkid shows it on the old machine.",
        )


def _keep_kernel_names(guest: GuestFacts, edits: Edits, primary: str) -> None:
    """When the configuration names the NIC ``ethN`` but udev would name it otherwise (the old
    machine's persistent-net rules, now removed, kept the name), add ``net.ifnames=0`` to the
    kernel command lines, so a new server's first NIC is ``eth0`` and the edited
    configuration applies; a command line that cannot be edited is noted."""
    if not re.fullmatch(r"eth\d+", primary):
        return
    if not any(_exists(guest, p) for p in PREDICTABLE_NAMES):
        return
    default = guest.derive(read_boot).default
    if default is None or "net.ifnames=0" in default.args:
        return

    def kernel_names(args: str) -> str:
        return args if "net.ifnames=0" in args.split() else append_arguments(args, "net.ifnames=0")

    edited = edit_command_lines(
        guest,
        edits,
        kernel_names,
        rule=BINDING_RULE,
        what=f"added net.ifnames=0 (the first NIC keeps the kernel's name {FIRST_NIC}, which "
        "the network configuration uses) to",
    )
    if not edited:
        edits.note(
            DHCP_RULE,
            f"the network configuration names the first NIC {primary}, but this guest's udev "
            "names NICs predictably (ens3, enp0s3) and its kernel command line has no "
            f"net.ifnames=0 ({default.where}), which could not be added; add it to "
            f"GRUB_CMDLINE_LINUX or {primary}'s configuration will not apply on a new server",
        )


def plan_network_dhcp(guest: GuestFacts, edits: Edits) -> None:
    """Put the reported interfaces on DHCP without MAC bindings (see the module)."""
    changes = len(edits.changes)
    net = guest.derive(read_network)
    primary = primary_interface(net) or FIRST_NIC
    by_path: dict[str, list[InterfaceConfig]] = {}
    for cfg in net.interfaces:
        if _reported(cfg):
            by_path.setdefault(cfg.where.path, []).append(cfg)
    for path, cfgs in by_path.items():
        try:
            _fix_file(edits, path, cfgs, net, primary)
        except NotEditableError as exc:
            rule = DHCP_RULE if any(c.method == STATIC for c in cfgs) else BINDING_RULE
            edits.note(rule, f"{path}: not changed: {exc}")
    if _nothing_configured(guest, net):
        _configure_first_nic(guest, edits)
    if len(edits.changes) > changes:
        _keep_kernel_names(guest, edits, primary)
    _note_disk_names(guest, edits)
