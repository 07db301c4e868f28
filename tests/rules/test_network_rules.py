"""IMG-NET-DHCP and IMG-HW-BINDING on synthetic guest disks, through the check's inspection."""

from __future__ import annotations

from pathlib import Path

from imageport.findings import Finding, Severity
from imageport.rules.base import CheckOptions, ImageFacts, Rule
from imageport.rules.engine import run_rules
from imageport.rules.hardware_binding import HardwareBindingRule
from imageport.rules.network import NetDhcpRule
from imageport.service.tools.check import inspect_source
from imageport.source import FileSource
from support import guest_fixtures as gf
from support import network_fixtures as nf


def run(path: Path, rule: Rule) -> list[Finding]:
    """``rule``'s findings for the image at ``path``, as the check computes them."""
    with FileSource(path) as src:
        found = inspect_source(src)
        facts = ImageFacts(found.container, found.allocated_bytes, CheckOptions(), found.guest)
        return list(run_rules((rule,), facts))


def text(f: Finding) -> str:
    return f.message + " | " + " | ".join(f.evidence) + " | " + f.advice


def test_dhcp_everywhere_passes_both_rules() -> None:
    assert run(nf.debian_good(), NetDhcpRule()) == []
    assert run(nf.debian_good(), HardwareBindingRule()) == []


def test_static_debian_and_netplan_are_reported_with_their_lines() -> None:
    found = run(nf.debian_static(), NetDhcpRule())
    assert [f.severity for f in found] == [Severity.WARNING] * 2
    ifupdown, netplan = (text(f) for f in found)
    assert "Interface eth0 has a static address" in ifupdown
    assert "/etc/network/interfaces:6: address 192.168.10.5/24" in ifupdown
    assert "iface eth0 inet dhcp" in ifupdown  # the fix for ifupdown
    assert "/etc/netplan/50-static.yaml:8: addresses: ['10.0.0.7/24']" in netplan
    assert "dhcp4: true" in netplan


def test_mac_bindings_in_debian_and_netplan() -> None:
    found = [text(f) for f in run(nf.debian_static(), HardwareBindingRule())]
    assert len(found) == 2
    assert "/etc/network/interfaces:8: hwaddress ether 52:54:00:12:34:56" in found[0]
    assert "Delete the `hwaddress` line." in found[0]
    assert "/etc/netplan/50-static.yaml:6: match: macaddress: 52:54:00:ab:cd:ef" in found[1]


def test_centos_ifcfg_keyfile_and_networkd() -> None:
    dhcp = [text(f) for f in run(nf.centos_static(), NetDhcpRule())]
    assert len(dhcp) == 3
    assert "ifcfg-eth0:5: IPADDR=192.168.10.5" in dhcp[0] and "BOOTPROTO=dhcp" in dhcp[0]
    assert "office.nmconnection:12: address1=10.1.2.3/16,10.1.0.1" in dhcp[1]
    assert "ipv4.method auto" in dhcp[1]
    assert "10-static.network:5: Address=172.16.0.9/12" in dhcp[2]
    macs = [text(f) for f in run(nf.centos_static(), HardwareBindingRule())]
    assert len(macs) == 3
    assert "ifcfg-eth0:7: HWADDR=52:54:00:12:34:56" in macs[0] and "Delete the HWADDR=" in macs[0]
    assert "office.nmconnection:8: mac-address=52:54:00:AA:BB:CC" in macs[1]
    assert "10-static.network:2: MACAddress=52:54:00:de:ad:01" in macs[2]


def test_suse_lladdr_and_wicked_static() -> None:
    (dhcp,) = run(nf.suse_disabled(), NetDhcpRule())
    assert "eth1.xml:5: <local>192.168.50.2/24</local>" in text(dhcp)
    (mac,) = run(nf.suse_disabled(), HardwareBindingRule())
    assert "ifcfg-eth0:3: LLADDR='52:54:00:00:00:01'" in text(mac) and "LLADDR=" in mac.advice


def test_no_network_configuration_is_a_warning_without_cloud_init() -> None:
    (f,) = run(gf.build_guest("base"), NetDhcpRule())
    assert f.severity is Severity.WARNING
    assert "No network interface is configured" in f.message
    assert "cloud-init is not installed" in f.message
    assert "iface eth0 inet dhcp" in f.advice  # the base guest is Debian
    assert run(gf.build_guest("base"), HardwareBindingRule()) == []


def test_no_network_configuration_passes_when_cloud_init_configures_it() -> None:
    assert run(nf.rpm_cloud_init_default(), NetDhcpRule()) == []


def test_no_network_configuration_passes_when_network_manager_does_dhcp() -> None:
    nm = {
        "etc/systemd/system/multi-user.target.wants/NetworkManager.service": gf.Symlink(
            "/usr/lib/systemd/system/NetworkManager.service"
        )
    }
    assert run(gf.build_guest("net-nm-auto", root=nm), NetDhcpRule()) == []
    off = gf.build_guest(
        "net-nm-noauto",
        root={**nm, "etc/NetworkManager/conf.d/10-no-auto.conf": "[main]\nno-auto-default = *\n"},
    )
    (f,) = run(off, NetDhcpRule())
    assert "No network interface is configured" in f.message


def test_rules_are_silent_without_a_guest() -> None:
    assert run(gf.empty_disk(), NetDhcpRule()) == []
    assert run(gf.empty_disk(), HardwareBindingRule()) == []
