"""IMG-HYPERVISOR-TOOLS: no guest tools made for another hypervisor (VMware, Hyper-V, Citrix
Xen) are left in the image."""

from __future__ import annotations

from collections.abc import Iterator

from imageport.findings import Finding, Severity
from imageport.guest.facts.hypervisor_tools import FoundTools, read_hypervisor_tools
from imageport.rules.base import ImageFacts, Rule

#: The command that removes packages, by distribution family.
_REMOVE = {
    "debian": "apt-get purge",
    "rhel": "yum remove",  # dnf takes the same (yum is dnf on RHEL 8 and later)
    "suse": "zypper remove",
}
#: What each kind of tools does to a server of the platform.
_HARM = {
    "vmware": "vmtoolsd looks for a VMware host at every boot, and its guest customization "
    "(and VMware's own installer, which also puts its own vmxnet/pvscsi drivers and initrd "
    "changes in place) writes network configuration bound to VMware's NICs",
    "hyperv": "the KVP daemon writes NIC configuration bound to the MAC addresses the Hyper-V "
    "host reports, and the daemons wait for Hyper-V's VMBus devices, which a server of the "
    "platform does not have",
    "xen": "the tools report to Citrix's management stack through xenstore and pin the "
    "guest to that host's devices; the platform's Xen-based flavours have their own PV "
    "drivers",
}


def removal_advice(tools: FoundTools, family: str) -> str:
    """How to uninstall ``tools`` on ``family`` (the package command, or VMware's uninstaller),
    and how to disable their services if they must stay."""
    kind = tools.kind
    tarball = "/usr/bin/vmware-uninstall-tools.pl" in tools.programs or (
        "/etc/vmware-tools/locations" in tools.programs
    )
    names = [name for name, _ in tools.packages]
    if not names and not tarball:
        default = kind.package_by_family.get(family)
        names = [default] if default else []
    parts = []
    if names:
        command = _REMOVE.get(family)
        packages = " ".join(names)
        parts.append(
            f"Uninstall {packages}: `{command} {packages}`."
            if command
            else f"Uninstall the package {packages} with the system's package manager."
        )
    if tarball:
        parts.append(
            "VMware Tools were installed by VMware's installer: run "
            "`/usr/bin/vmware-uninstall-tools.pl` (then rebuild the initrd)."
        )
    if not parts:
        parts.append(f"Uninstall {kind.name} with the system's package manager.")
    if tools.units:
        units = " ".join(unit for unit, _ in tools.units)
        parts.append(f"If they must stay, at least disable them: `systemctl disable {units}`.")
    return " ".join(parts)


class HypervisorToolsRule(Rule):
    """What it checks: the image carries no guest tools made for another hypervisor: VMware
    Tools (``open-vm-tools``, or VMware's own installer), the Hyper-V daemons
    (``hyperv-daemons``, ``hv_kvp_daemon``/``hypervkvpd``), and the Xen guest tools of Citrix
    Hypervisor/XenServer (``xe-guest-utilities``, XCP-ng's ``xen-guest-agent``). They are
    found from dpkg's status database (installed packages only, on Debian-family systems) and
    from their programs at fixed paths (``/usr/bin/vmtoolsd``, ``/etc/vmware-tools/locations``,
    ``/usr/sbin/hv_kvp_daemon``, ``/usr/sbin/hypervkvpd``, ``/usr/sbin/xe-daemon`` ...); the
    units that start them at boot are quoted. The RPM database is not read, so on RPM systems
    the programs are the evidence; a configuration directory left behind by an uninstall is
    not reported.

    Why it matters: the vendor's automatic configuration deletes VMware Tools' services and
    other PV drivers when it imports an image, because they belong to the old platform; fast
    import changes nothing in the image. Left in place they look for their hypervisor at every
    boot, and some bind the guest to the old machine's devices:
    VMware's guest customization and Hyper-V's KVP daemon write NIC configuration bound to
    MAC addresses, VMware's installer replaces drivers and rebuilds the initrd for VMware's
    devices.

    How to fix: uninstall them before exporting the image, naming the package: ``apt-get
    purge open-vm-tools`` (Debian, Ubuntu), ``yum remove open-vm-tools`` or ``dnf remove``
    (RHEL, CentOS, EulerOS, openEuler), ``zypper remove open-vm-tools`` (SUSE); the same for
    ``hyperv-daemons`` (SUSE: ``hyper-v``) and ``xe-guest-utilities``. VMware Tools from
    VMware's installer come off with ``/usr/bin/vmware-uninstall-tools.pl``. If they must
    stay, disable their services (``systemctl disable open-vm-tools.service``).

    Tools installed but switched off (no unit enabled at boot, their units masked, as
    automatic configuration leaves them) are reported for information only: they do not run.

    Example: a Debian image with ``Package: open-vm-tools`` installed in
    ``/var/lib/dpkg/status`` and ``/usr/bin/vmtoolsd`` reports "VMware Tools are installed",
    with the advice ``apt-get purge open-vm-tools``.
    """

    id = "IMG-HYPERVISOR-TOOLS"
    severity = Severity.WARNING
    title = "Guest tools for another hypervisor should be removed"
    advice = (
        "Uninstall the other hypervisor's guest tools (VMware Tools, Hyper-V daemons, Xen tools)."
    )
    title_zh = "应卸载其他虚拟化平台的客户机工具"
    advice_zh = "卸载其他虚拟化平台的客户机工具（VMware Tools、Hyper-V 守护进程、Xen 工具）。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.installed_guest
        if guest is None:
            return
        for tools in guest.derive(read_hypervisor_tools).found:
            kind = tools.kind
            if tools.switched_off:
                yield self.found(
                    f"{kind.name[0].upper()}{kind.name[1:]} are installed but switched off: "
                    "nothing starts them at boot and their units are masked, so they do not "
                    f"run on the platform; they are still made for {kind.hypervisor}.",
                    *tools.evidence,
                    severity=Severity.INFO,
                    advice=removal_advice(tools, guest.family),
                )
                continue
            yield self.found(
                f"{kind.name[0].upper()}{kind.name[1:]} are installed: they are made for "
                f"{kind.hypervisor}, not for the platform, and {_HARM[kind.key]}.",
                *tools.evidence,
                advice=removal_advice(tools, guest.family),
            )
