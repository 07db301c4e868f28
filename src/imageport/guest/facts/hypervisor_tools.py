"""Guest tools made for another hypervisor: VMware Tools, the Hyper-V daemons, Citrix's Xen
guest tools.

A tool counts as installed when its package is installed by dpkg's status database
(``Status: install ok installed``; a package removed but not purged, ``deinstall ok
config-files``, does not count) or one of its programs is a regular file at the place its
packages put it. The RPM database (Berkeley DB or SQLite) is not read, so on RPM systems the
programs are the evidence, as for cloud-init. The units that start it at boot
(:mod:`imageport.guest.facts.units`) are listed too, for the evidence and the fix; a unit alone
(a link left behind) does not count, nor does a configuration directory such as
``/etc/vmware-tools`` left after an uninstall. Only these fixed paths are read.

Package names and paths, per tool: open-vm-tools (Debian, RHEL, SUSE: ``/usr/bin/vmtoolsd``,
units ``open-vm-tools.service`` on Debian, ``vmtoolsd.service`` on RHEL and SUSE) and VMware's
own installer (``vmware-install.pl``: ``/etc/vmware-tools/locations`` is its database,
``/usr/bin/vmware-uninstall-tools.pl`` its uninstaller, ``/etc/init.d/vmware-tools`` its
service); the Hyper-V daemons (Debian's ``hyperv-daemons``: ``/usr/sbin/hv_kvp_daemon``,
``hv-kvp-daemon.service``; RHEL's ``hyperv-daemons``: ``/usr/sbin/hypervkvpd``,
``hypervkvpd.service``; SUSE's ``hyper-v``; Ubuntu's ``linux-cloud-tools-common``); the Xen
guest tools of Citrix Hypervisor/XenServer (``xe-guest-utilities``: ``/usr/sbin/xe-daemon``,
``xe-linux-distribution.service``) and XCP-ng's ``xen-guest-agent``.
"""

from __future__ import annotations

from dataclasses import dataclass

from imageport.guest.facts.cloudinit import MAX_DPKG_STATUS_BYTES, parse_dpkg_stanza
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.facts.units import read_units
from imageport.guest.files.configfiles import is_file, read_config

DPKG_STATUS = "/var/lib/dpkg/status"


@dataclass(frozen=True, slots=True)
class ToolKind:
    """One hypervisor's guest tools: how to find them and what to remove."""

    key: str  #: ``vmware``, ``hyperv`` or ``xen``
    name: str  #: as a message names them
    hypervisor: str
    packages: tuple[str, ...]  #: package names, as dpkg knows them
    programs: tuple[str, ...]  #: files whose presence shows them installed
    units: tuple[str, ...]  #: units (and SysV services) that start them
    #: the package to remove, by distribution family, when only programs show them
    package_by_family: dict[str, str]


VMWARE = ToolKind(
    "vmware",
    "VMware Tools",
    "VMware",
    ("open-vm-tools", "open-vm-tools-desktop", "open-vm-tools-sdmp"),
    (
        "/usr/bin/vmtoolsd",
        "/usr/sbin/vmtoolsd",
        "/etc/vmware-tools/locations",
        "/usr/bin/vmware-uninstall-tools.pl",
        "/etc/init.d/vmware-tools",
    ),
    ("open-vm-tools.service", "vmtoolsd.service", "vgauth.service", "vmware-tools.service"),
    {"debian": "open-vm-tools", "rhel": "open-vm-tools", "suse": "open-vm-tools"},
)
HYPERV = ToolKind(
    "hyperv",
    "the Hyper-V daemons",
    "Hyper-V",
    ("hyperv-daemons", "linux-cloud-tools-common", "hyper-v"),
    (
        "/usr/sbin/hv_kvp_daemon",
        "/usr/sbin/hv_vss_daemon",
        "/usr/sbin/hv_fcopy_daemon",
        "/usr/sbin/hypervkvpd",
        "/usr/sbin/hypervvssd",
        "/usr/sbin/hypervfcopyd",
    ),
    (
        "hv-kvp-daemon.service",
        "hv-vss-daemon.service",
        "hv-fcopy-daemon.service",
        "hypervkvpd.service",
        "hypervvssd.service",
        "hypervfcopyd.service",
        "hv_kvp_daemon.service",
        "hv_vss_daemon.service",
        "hv_fcopy_daemon.service",
    ),
    {"debian": "hyperv-daemons", "rhel": "hyperv-daemons", "suse": "hyper-v"},
)
XEN = ToolKind(
    "xen",
    "the Xen guest tools of Citrix Hypervisor/XenServer",
    "Citrix Hypervisor/XenServer",
    ("xe-guest-utilities", "xen-guest-agent"),
    (
        "/usr/sbin/xe-daemon",
        "/usr/sbin/xe-linux-distribution",
        "/etc/init.d/xe-linux-distribution",
        "/usr/sbin/xen-guest-agent",
    ),
    ("xe-linux-distribution.service", "xe-daemon.service", "xen-guest-agent.service"),
    {"debian": "xe-guest-utilities", "rhel": "xe-guest-utilities", "suse": "xe-guest-utilities"},
)
KINDS = (VMWARE, HYPERV, XEN)


@dataclass(frozen=True, slots=True)
class FoundTools:
    """One hypervisor's tools found in the guest, with what shows them."""

    kind: ToolKind
    #: dpkg packages installed: (name, version)
    packages: tuple[tuple[str, str], ...]
    programs: tuple[str, ...]  #: program paths that exist
    #: units started at boot: (unit, the link that enables it)
    units: tuple[tuple[str, str], ...]
    #: units masked (linked to /dev/null in /etc/systemd/system): switched off on purpose
    masked: tuple[str, ...] = ()

    @property
    def switched_off(self) -> bool:
        """Installed, but nothing starts them at boot and their units are masked."""
        return not self.units and bool(self.masked)

    @property
    def evidence(self) -> tuple[str, ...]:
        return (
            *(
                f"{DPKG_STATUS}: Package: {name}, Status: install ok installed, Version: {ver}"
                for name, ver in self.packages
            ),
            *(f"{path} (the file exists)" for path in self.programs),
            *(f"enabled at boot: {link}" for _, link in self.units),
            *(f"masked: /etc/systemd/system/{unit} -> /dev/null" for unit in self.masked),
        )


@dataclass(frozen=True, slots=True)
class HypervisorToolFacts:
    found: tuple[FoundTools, ...]
    #: whether dpkg's status database was read (a Debian-family system)
    dpkg_read: bool
    problems: tuple[str, ...]


def read_hypervisor_tools(guest: GuestFacts) -> HypervisorToolFacts:
    """The other hypervisors' tools installed in the guest (a :meth:`derive` reader)."""
    if guest.layout.root is None:
        return HypervisorToolFacts((), False, ())
    files = guest.files
    problems: list[str] = []
    status = read_config(files, DPKG_STATUS, problems, MAX_DPKG_STATUS_BYTES)
    units = guest.derive(read_units)
    found: list[FoundTools] = []
    for kind in KINDS:
        packages = []
        for name in kind.packages:
            stanza = parse_dpkg_stanza(status, name) if status else None
            if stanza is not None and stanza[0] == "install ok installed":
                packages.append((name, stanza[1]))
        programs = tuple(p for p in kind.programs if is_file(files, p))
        if not packages and not programs:
            continue
        enabled = tuple((u, units.links[u]) for u in kind.units if units.is_enabled(u))
        masked = tuple(u for u in kind.units if u in units.masked)
        found.append(FoundTools(kind, tuple(packages), programs, enabled, masked))
    return HypervisorToolFacts(tuple(found), status is not None, tuple(problems))
