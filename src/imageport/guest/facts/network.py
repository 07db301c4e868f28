"""The guest's network configuration: which interfaces are set up, how, and bound to which MAC.

Reads every configuration system a distribution may use, as the files are on the disk (the
tools themselves are not run): ifupdown (``/etc/network/interfaces`` and what it ``source``s),
Red Hat ifcfg (``/etc/sysconfig/network-scripts``), SUSE ifcfg (``/etc/sysconfig/network``),
wicked XML (``/etc/wicked/ifconfig``), netplan (``/etc/netplan``), NetworkManager keyfiles
(``/etc/NetworkManager/system-connections``) and systemd-networkd (``/etc/systemd/network``).
The formats are parsed in :mod:`imageport.guest.facts.network_parsers`.

Includes are followed only inside the guest, only from ``source`` lines, with a depth and a
file-count cap. Unreadable or refused files are listed as problems, never raised.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass

from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.facts.network_parsers import (
    InterfaceConfig,
    parse_ifcfg,
    parse_interfaces,
    parse_netplan,
    parse_networkd,
    parse_nm_keyfile,
    parse_wicked,
)
from imageport.guest.facts.units import enabled_units
from imageport.guest.files.configfiles import list_dir, read_config
from imageport.guest.files.mounts import GuestFiles
from imageport.guest.files.safeyaml import YamlRefused, load_yaml
from imageport.guest.fs.base import FileType

#: Configuration files read in all.
MAX_FILES = 256
#: Nesting of ``source`` lines followed in interfaces files.
MAX_INCLUDE_DEPTH = 8
#: Bytes of YAML (netplan) parsed in all.
MAX_YAML_TOTAL = 2 << 20
#: Backup and editor files the network tools ignore.
_IGNORED = re.compile(
    r"(~|\.(bak|orig|old|rpmnew|rpmsave|rpmorig|dpkg-old|dpkg-dist|swp|"
    r"ucf-old|ucf-dist))$"
)
#: run-parts names, which ``source-directory`` reads.
_RUN_PARTS = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class NetworkFacts:
    """The interfaces the guest configures, and whether unconfigured NICs still get DHCP."""

    interfaces: tuple[InterfaceConfig, ...]
    #: the files read
    files: tuple[str, ...]
    #: NetworkManager is enabled and brings up unconfigured Ethernet NICs with DHCP
    #: (its default, unless ``no-auto-default=*``)
    nm_auto_dhcp: bool
    problems: tuple[str, ...]

    @property
    def configured(self) -> tuple[InterfaceConfig, ...]:
        """The interfaces other than loopback."""
        return tuple(i for i in self.interfaces if not i.is_loopback)


class _Reader:
    def __init__(self, files: GuestFiles) -> None:
        self.files = files
        self.problems: list[str] = []
        self.read: list[str] = []
        self.interfaces: list[InterfaceConfig] = []
        self.yaml_bytes = 0

    def text(self, path: str) -> str | None:
        if len(self.read) >= MAX_FILES:
            if not self.problems or not self.problems[-1].startswith("more than"):
                self.problems.append(f"more than {MAX_FILES} network files; the rest skipped")
            return None
        text = read_config(self.files, path, self.problems)
        if text is not None:
            self.read.append(path)
        return text

    def names(self, directory: str, prefix: str = "", suffix: str = "") -> list[str]:
        return [
            f"{directory}/{name}"
            for name, kind in list_dir(self.files, directory, self.problems)
            if name.startswith(prefix)
            and name.endswith(suffix)
            and len(name) > len(prefix)
            and not name.startswith(".")
            and not _IGNORED.search(name)
            and kind in (FileType.REGULAR, FileType.SYMLINK, None)
        ]

    # -- one method per configuration system ----------------------------------------------

    def interfaces_file(self, path: str, depth: int, seen: set[str]) -> None:
        if path in seen or depth > MAX_INCLUDE_DEPTH:
            return
        seen.add(path)
        text = self.text(path)
        if text is None:
            return
        configs, includes = parse_interfaces(path, text)
        self.interfaces.extend(configs)
        for inc in includes:
            pattern = (
                inc.pattern
                if inc.pattern.startswith("/")
                else posixpath.join("/etc/network", inc.pattern)
            )
            pattern = posixpath.normpath(pattern)
            if inc.directory:
                targets = [p for p in self.names(pattern) if _RUN_PARTS.match(p.rsplit("/", 1)[-1])]
            elif any(c in pattern for c in "*?["):
                directory, glob = posixpath.split(pattern)
                if any(c in directory for c in "*?["):
                    self.problems.append(f"{inc.where}: wildcards in directories are not followed")
                    continue
                targets = [
                    p
                    for p in self.names(directory)
                    if fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], glob)
                ]
            else:
                targets = [pattern]
            for target in targets:
                self.interfaces_file(target, depth + 1, seen)

    def ifcfg(self, directory: str, *, suse: bool) -> None:
        for path in self.names(directory, "ifcfg-"):
            text = self.text(path)
            if text is not None:
                cfg = parse_ifcfg(path, text, suse=suse)
                if cfg is not None:
                    self.interfaces.append(cfg)

    def wicked(self) -> None:
        for path in self.names("/etc/wicked/ifconfig", suffix=".xml"):
            text = self.text(path)
            if text is not None:
                self.interfaces.extend(parse_wicked(path, text))

    def netplan(self) -> None:
        for path in self.names("/etc/netplan", suffix=".yaml"):
            text = self.text(path)
            if text is None:
                continue
            self.yaml_bytes += len(text)
            if self.yaml_bytes > MAX_YAML_TOTAL:
                self.problems.append(
                    f"{path}: not parsed, more than {MAX_YAML_TOTAL} bytes of netplan YAML in all"
                )
                continue
            try:
                doc = load_yaml(text)
            except YamlRefused as exc:
                self.problems.append(f"{path}: {exc}")
                continue
            self.interfaces.extend(parse_netplan(path, doc))

    def keyfiles(self) -> None:
        for path in self.names("/etc/NetworkManager/system-connections"):
            text = self.text(path)
            if text is not None:
                cfg = parse_nm_keyfile(path, text)
                if cfg is not None:
                    self.interfaces.append(cfg)

    def networkd(self) -> None:
        for path in self.names("/etc/systemd/network", suffix=".network"):
            text = self.text(path)
            if text is not None:
                cfg = parse_networkd(path, text)
                if cfg is not None:
                    self.interfaces.append(cfg)


def _nm_auto_dhcp(guest: GuestFacts, problems: list[str]) -> bool:
    units = enabled_units(guest)
    if "NetworkManager.service" not in units:
        return False
    files = guest.files
    paths = ["/etc/NetworkManager/NetworkManager.conf"] + [
        p
        for p in (
            f"/etc/NetworkManager/conf.d/{n}"
            for n, _ in list_dir(files, "/etc/NetworkManager/conf.d", problems)
        )
        if p.endswith(".conf")
    ]
    for path in paths:
        text = read_config(files, path, problems) or ""
        section = ""
        for line in text.splitlines()[:10_000]:
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]").strip()
            elif section == "main" and line.replace(" ", "").startswith("no-auto-default="):
                if "*" in (v.strip() for v in line.partition("=")[2].split(",")):
                    return False
    return True


def read_network(guest: GuestFacts) -> NetworkFacts:
    """Read all network configuration of the guest. Never raises."""
    reader = _Reader(guest.files)
    reader.interfaces_file("/etc/network/interfaces", 0, set())
    reader.ifcfg("/etc/sysconfig/network-scripts", suse=False)
    reader.ifcfg("/etc/sysconfig/network", suse=True)
    reader.wicked()
    reader.netplan()
    reader.keyfiles()
    reader.networkd()
    nm_auto = _nm_auto_dhcp(guest, reader.problems)
    return NetworkFacts(
        tuple(reader.interfaces), tuple(reader.read), nm_auto, tuple(reader.problems)
    )
