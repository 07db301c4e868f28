"""IMG-NET-DHCP: network interfaces get their address by DHCP.

(IMG-HW-BINDING, MAC addresses in the same configuration files, is in
:mod:`imageport.rules.hardware_binding`.)
"""

from __future__ import annotations

from collections.abc import Iterator

from imageport.findings import Finding, Severity
from imageport.guest.facts.cloudinit import read_cloud_init
from imageport.guest.facts.network import read_network
from imageport.guest.facts.network_parsers import DHCP, STATIC, InterfaceConfig
from imageport.rules.base import ImageFacts, Rule

#: How to switch one interface to DHCP, by configuration style.
_TO_DHCP = {
    "ifupdown": "Write the stanza as `iface {name} inet dhcp` and delete its address, netmask "
    "and gateway lines.",
    "ifcfg": "Set BOOTPROTO=dhcp in the file and delete IPADDR, PREFIX/NETMASK and GATEWAY.",
    "suse-ifcfg": "Set BOOTPROTO='dhcp' in the file and delete IPADDR and NETMASK "
    "(or use `yast lan`).",
    "wicked": "Replace the <ipv4:static> element with <ipv4:dhcp><enabled>true</enabled>"
    "</ipv4:dhcp> (or move the interface to an ifcfg file with BOOTPROTO='dhcp').",
    "netplan": "Set `dhcp4: true` for {name}, delete its `addresses`, `gateway4`/`routes` "
    "and run `netplan generate`.",
    "nm": "Run `nmcli connection modify <connection> ipv4.method auto ipv4.addresses '' "
    "ipv4.gateway ''` (or set method=auto in [ipv4] and delete the address lines).",
    "networkd": "Set DHCP=yes in [Network] and delete the Address= lines.",
}
#: How to add a DHCP configuration for the first NIC, by distribution family.
_NEW_DHCP = {
    "debian": "Add `auto eth0` and `iface eth0 inet dhcp` to /etc/network/interfaces (on "
    "Ubuntu 18.04 and later: a netplan file, e.g. /etc/netplan/01-dhcp.yaml with "
    "`network: {version: 2, ethernets: {eth0: {dhcp4: true}}}`).",
    "rhel": "Create /etc/sysconfig/network-scripts/ifcfg-eth0 with DEVICE=eth0, BOOTPROTO=dhcp "
    "and ONBOOT=yes (or, with NetworkManager: `nmcli connection add type ethernet "
    "ifname eth0 ipv4.method auto`).",
    "suse": "Create /etc/sysconfig/network/ifcfg-eth0 with BOOTPROTO='dhcp' and "
    "STARTMODE='auto' (or use `yast lan`).",
    "other": "Configure the first NIC (eth0) for DHCP in the system's network configuration, "
    "or let cloud-init configure it (do not disable its network configuration).",
}


class NetDhcpRule(Rule):
    """What it checks: every network interface configured in the image gets its address by
    DHCP. All configuration systems are read: ``/etc/network/interfaces`` (and files it
    sources), ifcfg files (``/etc/sysconfig/network-scripts``, ``/etc/sysconfig/network``),
    wicked XML, netplan, NetworkManager keyfiles and systemd-networkd ``.network`` files. A
    static address is reported with its line. An image with no interface configured for an
    address is reported too, unless cloud-init will configure the network (installed,
    enabled, its network configuration not disabled) or NetworkManager brings up
    unconfigured NICs with DHCP (its default).

    Why it matters: the platform gives each server its address by DHCP. A static address
    copied from the old machine is wrong in the new network: the server starts but cannot be
    reached, and the console is the only way in.

    How to fix: switch each interface to DHCP in its configuration file (e.g.
    ``iface eth0 inet dhcp``, ``BOOTPROTO=dhcp``, netplan ``dhcp4: true``, NetworkManager
    ``ipv4.method auto``, networkd ``DHCP=yes``) and remove the fixed address, netmask and
    gateway.

    Example: ``/etc/sysconfig/network-scripts/ifcfg-eth0:4: IPADDR=192.168.10.5`` with
    ``BOOTPROTO=static`` is reported.
    """

    id = "IMG-NET-DHCP"
    severity = Severity.WARNING
    title = "Network interfaces should get their address by DHCP"
    advice = "Configure every network interface for DHCP and remove fixed addresses."
    title_zh = "网卡应通过 DHCP 获取地址"
    advice_zh = "将所有网卡配置为 DHCP，并删除固定地址。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.installed_guest
        if guest is None:
            return
        net = guest.derive(read_network)
        configured = net.configured
        for cfg in configured:
            if cfg.method == STATIC:
                yield self._static(cfg)
        if any(c.method in (DHCP, STATIC) for c in configured):
            return
        ci = guest.derive(read_cloud_init)
        if ci.active and not ci.network_config_disabled:
            return
        if net.nm_auto_dhcp:
            return
        why = (
            "cloud-init's network configuration is disabled"
            if ci.active
            else "cloud-init is not installed and enabled"
        )
        yield self.found(
            "No network interface is configured to get an address, and nothing else will "
            f"configure one ({why}; NetworkManager is not enabled to bring up NICs by "
            "default): servers may start without network.",
            "files read: " + (", ".join(net.files) or "none"),
            *(f"{c.where} ({c.name}: {c.method})" for c in configured),
            *net.problems,
            advice=_NEW_DHCP.get(guest.family, _NEW_DHCP["other"]),
        )

    def _static(self, cfg: InterfaceConfig) -> Finding:
        advice = _TO_DHCP.get(cfg.style, self.advice).replace("{name}", cfg.name)
        addresses = cfg.addresses or (cfg.where,)
        return self.found(
            f"Interface {cfg.name} has a static address ({cfg.where.path}); servers from "
            "this image would use the old machine's address instead of the one the platform "
            "assigns.",
            *(str(q) for q in addresses),
            *((f"declared at {cfg.where}",) if cfg.where not in addresses else ()),
            advice=advice,
        )
