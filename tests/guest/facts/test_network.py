"""Network configuration: the format parsers on text, and read_network/units on guest disks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imageport.disk.raw import RawDisk
from imageport.guest.facts.inspect import GuestFacts, inspect_guest
from imageport.guest.facts.network import read_network
from imageport.guest.facts.network_parsers import (
    DHCP,
    LOOPBACK,
    MANUAL,
    STATIC,
    is_mac,
    parse_ifcfg,
    parse_interfaces,
    parse_netplan,
    parse_networkd,
    parse_nm_keyfile,
    parse_shell_vars,
    parse_wicked,
)
from imageport.guest.facts.units import enabled_units, read_units
from imageport.guest.files.safeyaml import YamlRefused, load_yaml
from imageport.source import FileSource
from support import guest_fixtures as gf
from support import network_fixtures as nf
from support.guest_fixtures import Symlink


@contextmanager
def guest(path: Path) -> Iterator[GuestFacts]:
    with FileSource(path) as src:
        yield inspect_guest(RawDisk(src))


# -- parsers ---------------------------------------------------------------------------------


def test_interfaces_static_stanza_quotes_address_and_hwaddress() -> None:
    configs, includes = parse_interfaces("/etc/network/interfaces", nf.DEB_STATIC_INTERFACES)
    assert includes == []
    lo, eth0 = configs
    assert (lo.name, lo.method) == ("lo", LOOPBACK)
    assert (eth0.name, eth0.method) == ("eth0", STATIC)
    assert [str(q) for q in eth0.addresses] == [
        "/etc/network/interfaces:6: address 192.168.10.5/24"
    ]
    assert [str(q) for q in eth0.mac_bindings] == [
        "/etc/network/interfaces:8: hwaddress ether 52:54:00:12:34:56"
    ]
    assert str(eth0.where) == "/etc/network/interfaces:5: iface eth0 inet static"


def test_interfaces_dhcp_includes_continuations_and_methods() -> None:
    text = (
        "source-directory interfaces.d\nsource /etc/net/*.cfg\n"
        "iface eth0 inet \\\n  dhcp\n# iface eth9 inet static\n"
        "iface eth1 inet6 auto\niface br0 inet manual\n  bridge_ports eth2\n"
        "iface eth3 inet static\n"
    )
    configs, includes = parse_interfaces("/x", text)
    assert [(i.directory, i.pattern) for i in includes] == [
        (True, "interfaces.d"),
        (False, "/etc/net/*.cfg"),
    ]
    assert [(c.name, c.method) for c in configs] == [
        ("eth0", DHCP),
        ("eth1", DHCP),
        ("br0", MANUAL),
        ("eth3", STATIC),
    ]
    # a static stanza without an address line quotes the stanza itself
    assert str(configs[-1].addresses[0]) == "/x:9: iface eth3 inet static"


def test_ifcfg_red_hat_and_suse() -> None:
    cfg = parse_ifcfg("/etc/sysconfig/network-scripts/ifcfg-eth0", nf.IFCFG_STATIC)
    assert cfg is not None and (cfg.name, cfg.method, cfg.style) == ("eth0", STATIC, "ifcfg")
    assert [str(q) for q in cfg.addresses] == [
        "/etc/sysconfig/network-scripts/ifcfg-eth0:5: IPADDR=192.168.10.5"
    ]
    assert [q.text for q in cfg.mac_bindings] == ["HWADDR=52:54:00:12:34:56"]
    suse = parse_ifcfg("/etc/sysconfig/network/ifcfg-eth0", nf.SUSE_IFCFG, suse=True)
    assert suse is not None and suse.method == DHCP and suse.addresses == ()
    assert [q.text for q in suse.mac_bindings] == ["LLADDR='52:54:00:00:00:01'"]
    lo = parse_ifcfg("/etc/sysconfig/network-scripts/ifcfg-lo", nf.IFCFG_LO)
    assert lo is not None and lo.is_loopback
    slave = parse_ifcfg("/n/ifcfg-eth2", "DEVICE=eth2\nMASTER=bond0\nSLAVE=yes\nBOOTPROTO=none\n")
    assert slave is not None and slave.method == MANUAL
    assert parse_ifcfg("/n/ifcfg-x", "# nothing\n") is None


def test_shell_vars_survive_bad_quoting() -> None:
    values = parse_shell_vars('A=\'unterminated\nB="x" # c\n=1\nexport C=3\n')
    assert values["A"][1] == "unterminated"
    assert values["B"][1] == "x" and values["C"][1] == "3"


def test_nm_keyfile_manual_auto_and_slave() -> None:
    path = "/etc/NetworkManager/system-connections/office.nmconnection"
    cfg = parse_nm_keyfile(path, nf.NM_MANUAL)
    assert cfg is not None and (cfg.name, cfg.method) == ("eth1", STATIC)
    assert [str(q) for q in cfg.addresses] == [f"{path}:12: address1=10.1.2.3/16,10.1.0.1"]
    assert [str(q) for q in cfg.mac_bindings] == [f"{path}:8: mac-address=52:54:00:AA:BB:CC"]
    auto = parse_nm_keyfile(
        "/k", "[connection]\nid=Wired\ntype=ethernet\n[ethernet]\ncloned-mac-address=stable\n"
    )
    assert auto is not None and auto.method == DHCP and auto.mac_bindings == ()
    port = parse_nm_keyfile("/k", "[connection]\nid=p\ntype=ethernet\ncontroller=bond0\n")
    assert port is not None and port.method == MANUAL
    assert parse_nm_keyfile("/k", "not an ini file") is None


def test_networkd_static_and_dhcp() -> None:
    cfg = parse_networkd("/etc/systemd/network/10-static.network", nf.NETWORKD_STATIC)
    assert cfg is not None and cfg.method == STATIC
    assert [q.text for q in cfg.addresses] == ["Address=172.16.0.9/12"]
    assert [q.line for q in cfg.mac_bindings] == [2]
    dhcp = parse_networkd("/n", "[Match]\nName=en*\n[Network]\nDHCP=ipv4\n")
    assert dhcp is not None and (dhcp.name, dhcp.method) == ("en*", DHCP)


def test_netplan_static_with_match_macaddress() -> None:
    doc = load_yaml(nf.NETPLAN_STATIC)
    (cfg,) = parse_netplan("/etc/netplan/50-static.yaml", doc)
    assert (cfg.name, cfg.method) == ("ens3", STATIC)
    assert [str(q) for q in cfg.addresses] == [
        "/etc/netplan/50-static.yaml:8: addresses: ['10.0.0.7/24']"
    ]
    assert [str(q) for q in cfg.mac_bindings] == [
        "/etc/netplan/50-static.yaml:6: match: macaddress: 52:54:00:ab:cd:ef"
    ]
    (dhcp,) = parse_netplan("/n", load_yaml(nf.NETPLAN_DHCP))
    assert dhcp.method == DHCP
    assert parse_netplan("/n", load_yaml("network: [1, 2]\n")) == []
    assert parse_netplan("/n", load_yaml("")) == []


def test_wicked_static_and_dhcp() -> None:
    (cfg,) = parse_wicked("/etc/wicked/ifconfig/eth1.xml", nf.WICKED_XML)
    assert (cfg.name, cfg.method) == ("eth1", STATIC)
    assert [str(q) for q in cfg.addresses] == [
        "/etc/wicked/ifconfig/eth1.xml:5: <local>192.168.50.2/24</local>"
    ]
    text = (
        "<interface><name>eth0</name><ipv4:dhcp><enabled>true</enabled></ipv4:dhcp>"
        "<ethernet><address>52:54:00:00:00:09</address></ethernet></interface>"
    )
    (dhcp,) = parse_wicked("/w", text)
    assert dhcp.method == DHCP and len(dhcp.mac_bindings) == 1
    assert parse_wicked("/w", "<interface><name>x</name>" * 10_000) == []  # unclosed: nothing


def test_is_mac() -> None:
    assert is_mac("52:54:00:12:34:56") and is_mac("'5254.00'") is False
    assert is_mac("525400123456") and not is_mac("permanent") and not is_mac("")


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [1, *x]\n",  # an alias cycle
        "a: &a [x,x,x,x,x,x,x,x,x]\n"
        + "".join(  # billion laughs
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
            for i in range(9)
        ),
        "a: [" * 2000,  # too deep / unterminated
        "a: !!python/object:os.system ls\n",  # not a safe tag
        "{[1]: 2}\n",  # unhashable key
        "a: b: c\n",  # a syntax error
        "x" * ((1 << 20) + 1),  # too big
    ],
)
def test_load_yaml_refuses_unsafe_or_broken_documents(text: str) -> None:
    with pytest.raises(YamlRefused):
        load_yaml(text)


def test_load_yaml_allows_small_aliases_like_cloud_init_logging() -> None:
    doc = load_yaml("_log:\n - &base |\n   [loggers]\nlog_cfgs:\n - [ *base, *base ]\n")
    assert doc.data["log_cfgs"] == [["[loggers]\n", "[loggers]\n"]]


def test_load_yaml_records_key_lines() -> None:
    doc = load_yaml("a:\n  b:\n    c: 1\nd: 2\n")
    assert doc.data == {"a": {"b": {"c": 1}}, "d": 2}
    assert (doc.line("a"), doc.line("a", "b", "c"), doc.line("d"), doc.line("zz")) == (1, 3, 4, 0)


# -- readers on guest disks ------------------------------------------------------------------


def test_read_network_follows_source_lines_and_skips_backups() -> None:
    with guest(nf.debian_good()) as g:
        net = read_network(g)
        assert [(c.name, c.method, c.where.path) for c in net.interfaces] == [
            ("lo", LOOPBACK, "/etc/network/interfaces"),
            ("eth0", DHCP, "/etc/network/interfaces.d/eth0"),
        ]
        assert net.problems == () and not net.nm_auto_dhcp


def test_read_network_on_centos_reads_ifcfg_keyfiles_and_networkd() -> None:
    with guest(nf.centos_static()) as g:
        net = read_network(g)
        assert [(c.style, c.name, c.method) for c in net.configured] == [
            ("ifcfg", "eth0", STATIC),
            ("nm", "eth1", STATIC),
            ("networkd", "10-static.network", STATIC),
        ]
        assert "/etc/sysconfig/network-scripts/ifcfg-eth0.bak" not in net.files
        assert all(c.mac_bindings for c in net.configured)


def test_read_network_on_suse_reads_ifcfg_and_wicked() -> None:
    with guest(nf.suse_disabled()) as g:
        net = read_network(g)
        assert [(c.style, c.name, c.method) for c in net.configured] == [
            ("suse-ifcfg", "eth0", DHCP),
            ("wicked", "eth1", STATIC),
        ]


def test_units_from_wants_links_and_masks() -> None:
    with guest(nf.suse_disabled()) as g:
        units = read_units(g)
        assert "cloud-config.service" in units.masked
        assert enabled_units(g) == frozenset({"cloud-init-local.service", "cloud-final.service"})
        assert (
            units.links["cloud-final.service"]
            == "/etc/systemd/system/multi-user.target.wants/cloud-final.service"
        )


def test_units_from_sysv_rc_links() -> None:
    path = gf.build_guest(
        "units-sysv",
        root={
            "etc/rc3.d/S55sshd": Symlink("../init.d/sshd"),
            "etc/rc3.d/K10cloud-final": Symlink("../init.d/cloud-final"),
            "etc/rc0.d/S01halt": Symlink("../init.d/halt"),
        },
    )
    with guest(path) as g:
        assert enabled_units(g) == frozenset({"sshd.service"})


_FRAGMENTS = [
    "iface ",
    "eth0 ",
    "inet ",
    "static",
    "dhcp",
    "\n",
    "address 1.2.3.4",
    "source ",
    "=",
    "[",
    "]",
    "Match",
    "Network",
    "DHCP=yes",
    "Address=",
    "IPADDR=",
    "'",
    '"',
    "\\",
    "#",
    "<interface>",
    "</interface>",
    "<name>",
    "</name>",
    "<ipv4:static>",
    "<local>",
    "</local>",
    "network:",
    "  ",
    "ethernets:",
    "- ",
    "{",
    "}",
    ":",
    "HWADDR=52:54:00:12:34:56",
    "mac-address=",
    "method=manual",
    "\x00",
    "\u00e9",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60))
def test_parsers_never_raise_on_odd_text(parts: list[str]) -> None:
    text = "".join(parts)
    parse_interfaces("/p", text)
    parse_ifcfg("/p/ifcfg-x", text)
    parse_ifcfg("/p/ifcfg-x", text, suse=True)
    parse_nm_keyfile("/p", text)
    parse_networkd("/p", text)
    parse_wicked("/p", text)
    try:
        doc = load_yaml(text)
    except YamlRefused:
        return
    parse_netplan("/p", doc)
