"""Parsers for the guest's network configuration formats, on text (no file access here).

Each parser turns one file into :class:`InterfaceConfig` items: the interface, how it gets an
address (DHCP, a static address, none), and any MAC address it is bound to or sets, each with
the line to quote. Learned from the formats' manuals: interfaces(5) (ifupdown),
nm-settings-ifcfg-rh(5) and the initscripts ifcfg documentation (Red Hat), ifcfg(5) (SUSE),
wicked's ifconfig XML schema, netplan's YAML reference, nm-settings-keyfile(5) and
systemd.network(5). Unknown keys are ignored; nothing here raises on odd input.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from imageport.guest.files.configfiles import Quote, quote
from imageport.guest.files.safeyaml import YamlDoc

#: Lines of one configuration file examined.
MAX_LINES = 20_000
#: Interfaces taken from one file.
MAX_INTERFACES = 256
#: Addresses or MAC lines recorded per interface.
MAX_ITEMS = 32

DHCP = "dhcp"
STATIC = "static"
MANUAL = "manual"  #: up without an address of its own (a bond slave, a bridge port, disabled)
LOOPBACK = "loopback"

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    """One interface as one configuration file sets it up."""

    #: ``ifupdown``, ``ifcfg``, ``suse-ifcfg``, ``wicked``, ``netplan``, ``nm``, ``networkd``
    style: str
    name: str  #: the interface name (or the match / connection name when none is given)
    where: Quote  #: the line that declares it
    method: str  #: :data:`DHCP`, :data:`STATIC`, :data:`MANUAL` or :data:`LOOPBACK`
    addresses: tuple[Quote, ...] = ()  #: the lines setting fixed addresses
    mac_bindings: tuple[Quote, ...] = ()  #: the lines matching or setting a MAC address

    @property
    def is_loopback(self) -> bool:
        return self.method == LOOPBACK or self.name == "lo"


def is_mac(value: str) -> bool:
    """Whether ``value`` is a literal MAC address (not ``permanent``, ``random`` ...)."""
    return bool(_MAC.match(value.strip().strip("\"'")))


def _lines(text: str) -> Iterator[tuple[int, str]]:
    yield from enumerate(text.splitlines()[:MAX_LINES], 1)


def _method(dhcp: bool, addresses: list[Quote], default: str = MANUAL) -> str:
    if dhcp:
        return DHCP
    return STATIC if addresses else default


# -- ifupdown: /etc/network/interfaces -------------------------------------------------------

#: Keywords that start a new ifupdown stanza (and end the one before).
STANZAS = (
    "iface",
    "mapping",
    "auto",
    "source",
    "source-directory",
    "no-auto-down",
    "no-scripts",
    "rename",
)


@dataclass(frozen=True, slots=True)
class Include:
    """A ``source`` or ``source-directory`` line of an interfaces file."""

    directory: bool
    pattern: str
    where: Quote


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with ``\\`` continuations joined, comments and blanks dropped."""
    pending: list[str] = []
    start = 0
    for no, raw in _lines(text):
        if not pending:
            start = no
            if raw.lstrip().startswith("#"):
                continue
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        line = " ".join(pending).strip()
        pending = []
        if line:
            yield start, line


def parse_interfaces(path: str, text: str) -> tuple[list[InterfaceConfig], list[Include]]:
    """The ``iface`` stanzas of an ifupdown interfaces file, and its include lines."""
    configs: list[InterfaceConfig] = []
    includes: list[Include] = []
    current: tuple[str, Quote, str] | None = None
    addresses: list[Quote] = []
    macs: list[Quote] = []

    def close() -> None:
        if current is not None and len(configs) < MAX_INTERFACES:
            name, where, method = current
            configs.append(
                InterfaceConfig("ifupdown", name, where, method, tuple(addresses), tuple(macs))
            )

    for no, line in _logical_lines(text):
        words = line.split()
        key = words[0]
        if key.startswith("allow-") or key in STANZAS:
            close()
            current = None
            addresses, macs = [], []
        if key == "iface" and len(words) >= 4:
            family, method = words[2], words[3]
            if method == "loopback":
                kind = LOOPBACK
            elif method in ("dhcp", "bootp") or (family == "inet6" and method == "auto"):
                kind = DHCP
            elif method == "static":
                kind = STATIC
            else:
                kind = MANUAL
            current = (words[1], quote(path, no, line), kind)
        elif key in ("source", "source-directory") and len(words) >= 2:
            includes.append(Include(key == "source-directory", words[1], quote(path, no, line)))
        elif current is not None and key == "address" and len(addresses) < MAX_ITEMS:
            addresses.append(quote(path, no, line))
        elif current is not None and key == "hwaddress" and len(macs) < MAX_ITEMS:
            if any(is_mac(w) for w in words[1:]):
                macs.append(quote(path, no, line))
    close()
    result = []
    for cfg in configs:
        if cfg.method == STATIC and not cfg.addresses:
            cfg = InterfaceConfig(
                cfg.style, cfg.name, cfg.where, cfg.method, (cfg.where,), cfg.mac_bindings
            )
        result.append(cfg)
    return result, includes


# -- ifcfg: Red Hat network-scripts and SUSE sysconfig ---------------------------------------


def parse_shell_vars(text: str) -> dict[str, tuple[int, str, str]]:
    """``KEY=value`` assignments of a shell-style file: key -> (line, value, raw line)."""
    found: dict[str, tuple[int, str, str]] = {}
    for no, raw in _lines(text):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.removeprefix("export ").strip()
        if not sep or not key.replace("_", "a").isalnum():
            continue
        try:
            parts = shlex.split(value, comments=True)
        except ValueError:
            parts = [value.strip().strip("\"'")]
        found[key] = (no, " ".join(parts), line)
    return found


_ADDRESS_KEY = re.compile(r"^(IPADDR(_?\w{1,32})?|IPV6ADDR(_SECONDARIES)?)$")


def parse_ifcfg(path: str, text: str, *, suse: bool = False) -> InterfaceConfig | None:
    """An ``ifcfg-<name>`` file; None for files that configure nothing (empty)."""
    values = parse_shell_vars(text)
    if not values:
        return None
    name = path.rsplit("/", 1)[-1].removeprefix("ifcfg-")
    if not suse and values.get("DEVICE", (0, "", ""))[1]:
        name = values["DEVICE"][1]
    first = min(no for no, _, _ in values.values())
    where = (
        quote(path, values["BOOTPROTO"][0], values["BOOTPROTO"][2])
        if "BOOTPROTO" in values
        else quote(path, first, "")
    )
    proto = values.get("BOOTPROTO", (0, "", ""))[1].lower()
    dhcp = proto.startswith("dhcp") or proto == "bootp"
    addresses = [
        quote(path, no, raw)
        for key, (no, value, raw) in values.items()
        if _ADDRESS_KEY.match(key) and value
    ][:MAX_ITEMS]
    mac_keys = ("LLADDR",) if suse else ("HWADDR", "MACADDR")
    macs = [
        quote(path, values[k][0], values[k][2])
        for k in mac_keys
        if k in values and is_mac(values[k][1])
    ]
    method = LOOPBACK if name == "lo" else _method(dhcp, addresses)
    return InterfaceConfig(
        "suse-ifcfg" if suse else "ifcfg",
        name,
        where,
        method,
        tuple(addresses) if method == STATIC else (),
        tuple(macs),
    )


# -- INI-style: NetworkManager keyfiles and systemd-networkd ---------------------------------


def parse_ini(text: str) -> list[tuple[str, str, str, int, str]]:
    """``(section, key, value, line, raw)`` for each assignment, in order (sections repeat)."""
    items: list[tuple[str, str, str, int, str]] = []
    section = ""
    for no, raw in _lines(text):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            items.append((section, key.strip(), value.strip(), no, line))
    return items


def parse_nm_keyfile(path: str, text: str) -> InterfaceConfig | None:
    """A NetworkManager connection keyfile; None when it is not one."""
    items = parse_ini(text)
    get = {(s, k): (v, no, raw) for s, k, v, no, raw in reversed(items)}
    if ("connection", "id") not in get and ("connection", "type") not in get:
        return None
    ctype = get.get(("connection", "type"), ("", 0, ""))[0]
    name = (
        get.get(("connection", "interface-name"), ("", 0, ""))[0]
        or get.get(("connection", "id"), ("", 0, ""))[0]
        or path.rsplit("/", 1)[-1]
    )
    anchor = get.get(("connection", "id")) or get.get(("connection", "type"))
    where = quote(path, anchor[1], anchor[2]) if anchor else quote(path, 0, "")
    methods = {
        fam: get.get((fam, "method"), ("auto" if fam == "ipv4" else "", 0, ""))[0]
        for fam in ("ipv4", "ipv6")
    }
    addresses = [
        quote(path, no, raw)
        for s, k, v, no, raw in items
        if s in ("ipv4", "ipv6") and re.fullmatch(r"address(es)?\d*", k) and v
    ]
    macs = [
        quote(path, no, raw)
        for s, k, v, no, raw in items
        if s in ("ethernet", "802-3-ethernet", "wifi", "802-11-wireless")
        and k in ("mac-address", "cloned-mac-address")
        and is_mac(v)
    ]
    slave = any(k in ("master", "controller") and v for s, k, v, _, _ in items if s == "connection")
    if ctype == "loopback":
        method = LOOPBACK
    elif slave:
        method = MANUAL
    elif "manual" in methods.values():
        method = STATIC
    elif methods["ipv4"] == "auto" or methods["ipv6"] in ("auto", "dhcp"):
        method = DHCP
    else:
        method = MANUAL
    return InterfaceConfig(
        "nm",
        name,
        where,
        method,
        tuple(addresses[:MAX_ITEMS]) if method == STATIC else (),
        tuple(macs[:MAX_ITEMS]),
    )


_TRUE = ("yes", "true", "on", "1", "ipv4", "ipv6", "both")


def parse_networkd(path: str, text: str) -> InterfaceConfig | None:
    """A systemd-networkd ``.network`` file; None when it has no [Match] or [Network]."""
    items = parse_ini(text)
    if not any(s in ("Match", "Network") for s, _, _, _, _ in items):
        return None
    names = [v for s, k, v, _, _ in items if s == "Match" and k == "Name" and v]
    match_lines = [(no, raw) for s, _, _, no, raw in items if s == "Match"]
    where = quote(path, *match_lines[0]) if match_lines else quote(path, 0, "")
    dhcp = any(s == "Network" and k == "DHCP" and v.lower() in _TRUE for s, k, v, _, _ in items)
    addresses = [
        quote(path, no, raw)
        for s, k, v, no, raw in items
        if k == "Address" and s in ("Network", "Address") and v
    ]
    macs = [
        quote(path, no, raw)
        for s, k, v, no, raw in items
        if k in ("MACAddress", "PermanentMACAddress")
        and s in ("Match", "Link")
        and any(is_mac(w) for w in v.split())
    ]
    name = " ".join(names) or path.rsplit("/", 1)[-1]
    method = LOOPBACK if names == ["lo"] else _method(dhcp, addresses)
    return InterfaceConfig(
        "networkd",
        name,
        where,
        method,
        tuple(addresses[:MAX_ITEMS]) if method == STATIC else (),
        tuple(macs[:MAX_ITEMS]),
    )


# -- netplan ---------------------------------------------------------------------------------

NETPLAN_GROUPS = (
    "ethernets",
    "bonds",
    "bridges",
    "vlans",
    "wifis",
    "tunnels",
    "vrfs",
    "modems",
    "dummy-devices",
    "virtual-ethernets",
)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "on"))


def _netplan_addresses(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    found = []
    for item in value[:MAX_ITEMS]:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found.extend(str(k) for k in list(item)[:1])
    return found


def parse_netplan(path: str, doc: YamlDoc) -> list[InterfaceConfig]:
    """The devices of a netplan file (files are not merged: each is reported as written)."""
    network = doc.data.get("network") if isinstance(doc.data, dict) else None
    if not isinstance(network, dict):
        return []
    configs: list[InterfaceConfig] = []
    for group in NETPLAN_GROUPS:
        devices = network.get(group)
        if not isinstance(devices, dict):
            continue
        for key, dev in list(devices.items())[:MAX_INTERFACES]:
            if not isinstance(dev, dict) or len(configs) >= MAX_INTERFACES:
                continue
            base = ("network", group, str(key))
            raw_match = dev.get("match")
            match: dict[Any, Any] = raw_match if isinstance(raw_match, dict) else {}
            name = str(dev.get("set-name") or match.get("name") or key)
            where = quote(path, doc.line(*base), f"{group}: {key}:")
            dhcp = _truthy(dev.get("dhcp4")) or _truthy(dev.get("dhcp6"))
            addrs = _netplan_addresses(dev.get("addresses"))
            addresses = (
                [quote(path, doc.line(*base, "addresses"), f"addresses: {addrs}")] if addrs else []
            )
            macs = []
            mac = match.get("macaddress")
            if isinstance(mac, str) and is_mac(mac):
                macs.append(
                    quote(path, doc.line(*base, "match", "macaddress"), f"match: macaddress: {mac}")
                )
            own = dev.get("macaddress")
            if isinstance(own, str) and is_mac(own):
                macs.append(quote(path, doc.line(*base, "macaddress"), f"macaddress: {own}"))
            method = LOOPBACK if name == "lo" else _method(dhcp, addresses)
            configs.append(
                InterfaceConfig(
                    "netplan",
                    name,
                    where,
                    method,
                    tuple(addresses) if method == STATIC else (),
                    tuple(macs),
                )
            )
    return configs


# -- wicked XML ------------------------------------------------------------------------------

_XML_NAME = re.compile(r"<name\b[^>]{0,200}>\s{0,100}([^<\s]{1,64})\s{0,100}</name>")
_XML_LOCAL = re.compile(r"<local>\s{0,100}([^<\s]{1,100})\s{0,100}</local>")
_XML_ENABLED_FALSE = re.compile(r"<enabled>\s{0,100}false\s{0,100}</enabled>")
XML_MAC = re.compile(r"<(permanent-address|address)>\s{0,100}([0-9A-Fa-f:]{17})\s{0,100}</\1>")


def _xml_blocks(text: str, tag: str) -> Iterator[tuple[int, str]]:
    """``(offset, body)`` of each ``<tag ...>...</tag>`` (not nested), found without
    backtracking regexes."""
    pos = 0
    count = 0
    while count < MAX_INTERFACES:
        start = text.find(f"<{tag}", pos)
        if start < 0:
            return
        end = text.find(f"</{tag}>", start)
        if end < 0:
            return
        count += 1
        yield start, text[start:end]
        pos = end + len(tag) + 3


def parse_wicked(path: str, text: str) -> list[InterfaceConfig]:
    """The ``<interface>`` elements of a wicked ifconfig XML file."""

    def line_at(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    configs: list[InterfaceConfig] = []
    for start, body in _xml_blocks(text, "interface"):
        if body[len("<interface") :][:1] not in (">", " ", "\n", "\t", "\r"):
            continue
        m = _XML_NAME.search(body)
        name = m.group(1) if m else "?"
        where = quote(
            path, line_at(start + (m.start() if m else 0)), m.group(0) if m else "<interface>"
        )
        dhcp = False
        for fam in ("ipv4:dhcp", "ipv6:dhcp", "ipv6:auto"):
            for _, block in _xml_blocks(body, fam):
                if not _XML_ENABLED_FALSE.search(block):
                    dhcp = True
        addresses: list[Quote] = []
        for fam in ("ipv4:static", "ipv6:static"):
            for off, block in _xml_blocks(body, fam):
                for a in _XML_LOCAL.finditer(block):
                    if len(addresses) < MAX_ITEMS:
                        addresses.append(quote(path, line_at(start + off + a.start()), a.group(0)))
        macs = [
            quote(path, line_at(start + x.start()), x.group(0)) for x in XML_MAC.finditer(body)
        ][:MAX_ITEMS]
        method = LOOPBACK if name == "lo" else _method(dhcp, addresses)
        configs.append(
            InterfaceConfig(
                "wicked",
                name,
                where,
                method,
                tuple(addresses) if method == STATIC else (),
                tuple(macs),
            )
        )
    return configs
