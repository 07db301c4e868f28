"""Text rewrites that put one interface on DHCP, in each network configuration format's own
syntax, changing as few lines as possible.

Each function takes a file's text and returns a :class:`Rewrite`: the new text and what was
done, one phrase per change, for the record. Offending lines are commented out with
:data:`MARK` (the original kept, so the change can be read and undone) or replaced; comments,
blank lines and every other setting stay as they were. The line-level decisions reuse the
readers' parsers (:mod:`imageport.guest.facts.network_parsers`), so a rewrite removes exactly
what the rules quote. Nothing here reads a file or raises on odd input: a construct that
cannot be rewritten line by line (YAML flow style, several wicked interfaces in one file)
gives :data:`None` and the caller notes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from imageport.guest.facts.network_parsers import (
    STANZAS,
    XML_MAC,
    is_mac,
    parse_ini,
    parse_shell_vars,
)
from imageport.guest.files.safeyaml import YamlDoc

#: What a commented-out line starts with (after its indentation).
MARK = "# imageport: "
#: The name pattern a networkd file matched only by MAC is given instead: the kernel's and
#: udev's names for Ethernet NICs.
NETWORKD_ETHERNET_NAMES = "en* eth*"


@dataclass
class Rewrite:
    """A file's new text and the changes made, as phrases for the record."""

    text: str
    done: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.done)


def _comment(raw: str) -> str:
    body = raw.lstrip()
    return raw[: len(raw) - len(body)] + MARK + body


def _eol(raw: str) -> str:
    return raw[len(raw.rstrip("\r\n")) :] or "\n"


def _split(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"
    return lines


# -- ifupdown ---------------------------------------------------------------------------------

#: Stanza options that fix an address (interfaces(5), the inet/inet6 static methods).
_IFUPDOWN_STATIC = ("address", "netmask", "gateway", "broadcast", "network", "pointopoint")
_IFACE_STATIC = re.compile(r"^(\s*iface\s+(\S+)\s+(inet6?)\s+)static\b")


def ifupdown_to_dhcp(text: str, names: Sequence[str]) -> Rewrite:
    """The ``iface`` stanzas of ``names`` on DHCP (``inet dhcp``; ``inet6 auto``) without
    their fixed address options or ``hwaddress``; other stanzas untouched."""
    out: list[str] = []
    done: list[str] = []
    inside = False  # in a stanza of one of ``names``
    commenting = False  # the previous line was commented and continues (``\``)
    for raw in _split(text):
        body = raw.strip()
        if commenting:
            out.append(_comment(raw))
            commenting = body.endswith("\\")
            continue
        if not body or body.startswith("#"):
            out.append(raw)
            continue
        key, *words = body.split()
        if key.startswith("allow-") or key in STANZAS:
            inside = key == "iface" and bool(words) and words[0] in names
        m = _IFACE_STATIC.match(raw)
        if inside and m:
            method = "dhcp" if m.group(3) == "inet" else "auto"
            out.append(m.group(1) + method + raw[m.end() :])
            done.append(f"`{body}` became `{m.group(1).strip()} {method}`")
            continue
        drop = key in _IFUPDOWN_STATIC or (key == "hwaddress" and any(map(is_mac, words)))
        if inside and drop:
            out.append(_comment(raw))
            done.append(f"commented out `{body}`")
            commenting = body.endswith("\\")
            continue
        out.append(raw)
    return Rewrite("".join(out), done)


# -- ifcfg (Red Hat network-scripts, SUSE sysconfig) ------------------------------------------

_RH_DROP = re.compile(
    r"^(IPADDR\w*|NETMASK\w*|PREFIX\w*|GATEWAY\w*|IPV6ADDR(_SECONDARIES)?|IPV6_DEFAULTGW)$"
)
_SUSE_DROP = re.compile(r"^(IPADDR\w*|NETMASK\w*|PREFIXLEN\w*|REMOTE_IPADDR\w*)$")


def _shell_key(body: str) -> str:
    return body.partition("=")[0].removeprefix("export ").strip()


def ifcfg_to_dhcp(text: str, *, suse: bool, dhcp: bool = True) -> Rewrite:
    """``BOOTPROTO`` set to DHCP (added when missing; only the MAC is touched when not
    ``dhcp``), the fixed addresses and the MAC (``HWADDR``/``MACADDR``; SUSE ``LLADDR``)
    commented out."""
    values = parse_shell_vars(text)
    proto = values.get("BOOTPROTO", (0, "", ""))[1].lower()
    set_proto = dhcp and not (proto.startswith("dhcp") or proto == "bootp")
    wanted = "BOOTPROTO='dhcp'" if suse else "BOOTPROTO=dhcp"
    drop = _SUSE_DROP if suse else _RH_DROP
    macs = ("LLADDR",) if suse else ("HWADDR", "MACADDR")
    out: list[str] = []
    done: list[str] = []
    for no, raw in enumerate(_split(text), 1):
        body = raw.strip()
        key = "" if body.startswith("#") else _shell_key(body)
        value = values[key][1] if key in values and values[key][0] == no else None
        if key == "BOOTPROTO" and set_proto:
            out.append(wanted + _eol(raw))
            done.append(f"`{body}` became `{wanted}`")
        elif (key in macs and value is not None and is_mac(value)) or (
            dhcp and drop.match(key) and (value is None or value)
        ):
            out.append(_comment(raw))
            done.append(f"commented out `{body}`")
        else:
            out.append(raw)
    if dhcp and "BOOTPROTO" not in values:
        out.append(wanted + "\n")
        done.append(f"added `{wanted}`")
    return Rewrite("".join(out), done)


# -- INI-style files: NetworkManager keyfiles and systemd-networkd ----------------------------


def _ini_lines(text: str) -> Iterator[tuple[str, str, str, str, str]]:
    """``(raw, body, section, key, value)`` per line, as :func:`parse_ini` reads them; ``key``
    is empty for a line that is not an assignment (a section header, a comment, a blank)."""
    section = ""
    for raw in _split(text):
        body = raw.strip()
        if body.startswith("[") and body.endswith("]"):
            section = body[1:-1].strip()
        key, sep, value = body.partition("=")
        if not sep or body[:1] in "#;" or body.startswith("["):
            yield raw, body, section, "", ""
        else:
            yield raw, body, section, key.strip(), value.strip()


# -- NetworkManager keyfiles ------------------------------------------------------------------

_NM_ETHERNET = ("ethernet", "802-3-ethernet", "wifi", "802-11-wireless")
_NM_ADDRESS = re.compile(r"address(es)?\d*")


def keyfile_to_dhcp(text: str) -> Rewrite:
    """``method=manual`` made ``auto`` (its addresses and gateway commented out) and the MAC
    keys (``mac-address``, ``cloned-mac-address``) commented out."""
    manual = {s for s, k, v, _, _ in parse_ini(text) if k == "method" and v == "manual"}
    out: list[str] = []
    done: list[str] = []
    for raw, body, section, key, value in _ini_lines(text):
        if not key:
            out.append(raw)
        elif section in manual and key == "method":
            indent = raw[: len(raw) - len(raw.lstrip())]
            out.append(f"{indent}method=auto{_eol(raw)}")
            done.append(f"[{section}] `{body}` became `method=auto`")
        elif (section in manual and (_NM_ADDRESS.fullmatch(key) or key == "gateway")) or (
            section in _NM_ETHERNET
            and key in ("mac-address", "cloned-mac-address")
            and is_mac(value)
        ):
            out.append(_comment(raw))
            done.append(f"[{section}] commented out `{body}`")
        else:
            out.append(raw)
    return Rewrite("".join(out), done)


# -- systemd-networkd -------------------------------------------------------------------------

_NETWORKD_TRUE = ("yes", "true", "on", "1", "ipv4", "ipv6", "both")


def networkd_to_dhcp(text: str, *, dhcp: bool = True) -> Rewrite:
    """``DHCP=yes`` in [Network] (added when missing), ``Address=``/``Gateway=`` and the MAC
    matches and settings commented out; a [Match] left empty matches Ethernet names
    (:data:`NETWORKD_ETHERNET_NAMES`) rather than every link. Not ``dhcp``: only the MAC."""
    items = parse_ini(text)
    match_keys = {k for s, k, v, _, _ in items if s == "Match" and v}
    mac_matches = {
        k
        for s, k, v, _, _ in items
        if s == "Match"
        and k in ("MACAddress", "PermanentMACAddress")
        and any(map(is_mac, v.split()))
    }
    dhcp_on = any(
        s == "Network" and k == "DHCP" and v.lower() in _NETWORKD_TRUE for s, k, v, _, _ in items
    )
    has_dhcp_key = not dhcp or any(s == "Network" and k == "DHCP" for s, k, _, _, _ in items)
    dhcp_on = dhcp_on or not dhcp
    name_needed = bool(mac_matches) and not (match_keys - mac_matches)
    out: list[str] = []
    done: list[str] = []
    for raw, body, section, key, value in _ini_lines(text):
        if body.startswith("[") and body.endswith("]"):
            out.append(raw)
            if section == "Match" and name_needed:
                out.append(f"Name={NETWORKD_ETHERNET_NAMES}\n")
                done.append(f"[Match] added `Name={NETWORKD_ETHERNET_NAMES}`")
                name_needed = False
            if section == "Network" and not has_dhcp_key:
                out.append("DHCP=yes\n")
                done.append("[Network] added `DHCP=yes`")
                has_dhcp_key = dhcp_on = True
            continue
        if not key:
            out.append(raw)
        elif section == "Network" and key == "DHCP" and not dhcp_on:
            out.append("DHCP=yes" + _eol(raw))
            done.append(f"[Network] `{body}` became `DHCP=yes`")
        elif (
            (dhcp and section in ("Network", "Address") and key == "Address")
            or (dhcp and section == "Network" and key == "Gateway")
            or (
                section in ("Match", "Link")
                and key in ("MACAddress", "PermanentMACAddress")
                and any(map(is_mac, value.split()))
            )
        ):
            out.append(_comment(raw))
            done.append(f"[{section}] commented out `{body}`")
        else:
            out.append(raw)
    if not has_dhcp_key:
        out.append("\n[Network]\nDHCP=yes\n")
        done.append("added [Network] with `DHCP=yes`")
    return Rewrite("".join(out), done)


# -- netplan ----------------------------------------------------------------------------------

_DEFAULT_ROUTES = ("default", "0.0.0.0/0", "::/0")


def _indent(raw: str) -> int:
    return len(raw) - len(raw.lstrip(" "))


def _is_blank(raw: str) -> bool:
    body = raw.strip()
    return not body or body.startswith("#")


def _block_end(lines: list[str], start: int) -> int:
    """The index after the block of the mapping key at ``lines[start]`` (its deeper lines)."""
    own = _indent(lines[start])
    end = start + 1
    while end < len(lines) and (_is_blank(lines[end]) or _indent(lines[end]) > own):
        end += 1
    while end > start + 1 and _is_blank(lines[end - 1]):
        end -= 1
    return end


def _children(lines: list[str], start: int, end: int) -> dict[str, int] | None:
    """The child keys of the key at ``lines[start]`` (block ``start..end``) and their line
    indexes; None when the value is not a block mapping (flow style, a scalar)."""
    indents = [_indent(raw) for raw in lines[start + 1 : end] if not _is_blank(raw)]
    if not indents or lines[start].split("#", 1)[0].rstrip().endswith(("}", "]")):
        return None
    child = min(indents)
    found: dict[str, int] = {}
    for i in range(start + 1, end):
        raw = lines[i]
        if _is_blank(raw) or _indent(raw) != child:
            continue
        key, sep, _ = raw.strip().partition(":")
        if sep and not key.startswith("-"):
            found[key.strip().strip("\"'")] = i
    return found


def netplan_to_dhcp(
    text: str, doc: YamlDoc, devices: Sequence[tuple[str, str]], *, dhcp: bool = True
) -> Rewrite | None:
    """Each ``(group, key)`` device on ``dhcp4: true``, without ``addresses``,
    ``gateway4``/``gateway6``, default ``routes``, its own ``macaddress`` or a
    ``match: macaddress`` (a ``match`` left empty goes, with the ``set-name`` that needs it).
    None when a device is not written in block style. Not ``dhcp``: only the MACs."""
    lines = _split(text)
    drop: set[int] = set()
    inserts: dict[int, str] = {}
    replace: dict[int, str] = {}
    done: list[str] = []
    network = doc.data.get("network") if isinstance(doc.data, dict) else None
    for group, key in devices:
        dev = network.get(group, {}).get(key) if isinstance(network, dict) else None
        line = doc.line("network", group, key)
        if not isinstance(dev, dict) or not 0 < line <= len(lines):
            return None
        start = line - 1
        end = _block_end(lines, start)
        kids = _children(lines, start, end)
        if kids is None:
            return None

        def comment_block(
            child: str, kids: dict[str, int] = kids, end: int = end, key: str = key
        ) -> None:
            first = kids[child]
            drop.update(range(first, min(_block_end(lines, first), end)))
            done.append(f"{key}: commented out `{child}`")

        for child in ("addresses", "gateway4", "gateway6"):
            if dhcp and child in kids:
                comment_block(child)
        routes = dev.get("routes")
        if dhcp and "routes" in kids and isinstance(routes, list):
            if all(isinstance(r, dict) and str(r.get("to")) in _DEFAULT_ROUTES for r in routes):
                comment_block("routes")
        if "macaddress" in kids and is_mac(str(dev.get("macaddress", ""))):
            comment_block("macaddress")
        match = dev.get("match")
        if "match" in kids and isinstance(match, dict) and is_mac(str(match.get("macaddress"))):
            if set(match) - {"macaddress"}:
                sub = _children(lines, kids["match"], _block_end(lines, kids["match"]))
                if sub is None or "macaddress" not in sub:
                    return None
                drop.add(sub["macaddress"])
                done.append(f"{key}: commented out `match: macaddress`")
            else:
                comment_block("match")
                if "set-name" in kids:
                    comment_block("set-name")
        if not dhcp:
            pass
        elif "dhcp4" in kids:
            if dev.get("dhcp4") is not True:
                i = kids["dhcp4"]
                replace[i] = " " * _indent(lines[i]) + "dhcp4: true" + _eol(lines[i])
                done.append(f"{key}: `{lines[i].strip()}` became `dhcp4: true`")
        else:
            indent = _indent(lines[min(kids.values())]) if kids else _indent(lines[start]) + 2
            inserts[start] = " " * indent + "dhcp4: true\n"
            done.append(f"{key}: added `dhcp4: true`")
    out: list[str] = []
    for i, raw in enumerate(lines):
        out.append(replace.get(i) or (_comment(raw) if i in drop and not _is_blank(raw) else raw))
        if i in inserts:
            out.append(inserts[i])
    return Rewrite("".join(out), done)


# -- wicked XML -------------------------------------------------------------------------------

_WICKED_STATIC = re.compile(r"<(ipv[46]):static>.*?</\1:static>", re.DOTALL)


def wicked_to_dhcp(text: str) -> Rewrite | None:
    """The one ``<interface>`` of a wicked ifconfig file on DHCP: each static element replaced
    by ``<ipvN:dhcp><enabled>true</enabled></ipvN:dhcp>``, the MAC elements removed. The
    originals are not kept in XML comments (wicked's readers, and ours, would see the MAC in
    them); the change record holds them. None when the file holds more than one interface."""
    if text.count("<interface") - text.count("<interfaces") > 1:
        return None
    done: list[str] = []

    def to_dhcp(m: re.Match[str]) -> str:
        done.append(f"replaced <{m.group(1)}:static> with <{m.group(1)}:dhcp>")
        return f"<{m.group(1)}:dhcp><enabled>true</enabled></{m.group(1)}:dhcp>"

    def unmac(m: re.Match[str]) -> str:
        done.append(f"removed `{m.group(0)}`")
        return ""

    new = XML_MAC.sub(unmac, _WICKED_STATIC.sub(to_dhcp, text))
    return Rewrite(new, done)
