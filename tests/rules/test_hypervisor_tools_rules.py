"""IMG-HYPERVISOR-TOOLS on synthetic guest disks, through the check's inspection."""

from __future__ import annotations

from pathlib import Path

from imageport.findings import Finding, Severity
from imageport.rules.base import CheckOptions, ImageFacts
from imageport.rules.engine import run_rules
from imageport.rules.hypervisor_tools import HypervisorToolsRule
from imageport.service.tools.check import inspect_source
from imageport.source import FileSource
from support import guest_fixtures as gf
from support.kernel_fixtures import CENTOS7_RELEASE

ELF = b"\x7fELF" + bytes(60)


def dpkg_status(*stanzas: tuple[str, str, str]) -> str:
    """A dpkg status database with ``(package, status, version)`` stanzas."""
    return "\n".join(
        f"Package: {name}\nStatus: {status}\nPriority: optional\nArchitecture: amd64\n"
        f"Version: {version}\nDescription: {name}\n"
        for name, status, version in stanzas
    )


def vmware_debian_guest() -> Path:
    """The cloud-ready Debian guest exported from VMware with open-vm-tools installed and
    enabled (and a package removed but not purged, which does not count)."""
    return gf.build_guest(
        "hvtools-vmware",
        root={
            **gf.CLOUD_READY,
            "var/lib/dpkg/status": dpkg_status(
                ("base-files", "install ok installed", "12.4+deb12u5"),
                ("open-vm-tools", "install ok installed", "2:12.2.0-1+deb12u2"),
                ("hyperv-daemons", "deinstall ok config-files", "6.1.90-1"),
            ),
            "usr/bin/vmtoolsd": ELF,
            "etc/vmware-tools/tools.conf": "[logging]\n",
            "etc/systemd/system/multi-user.target.wants/open-vm-tools.service": gf.Symlink(
                "/lib/systemd/system/open-vm-tools.service"
            ),
        },
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
    )


def centos_hyperv_xen_guest() -> Path:
    """CentOS 7 (no dpkg) with the Hyper-V daemons enabled, Citrix's xe-daemon, and VMware
    Tools from VMware's installer."""
    return gf.build_guest(
        "hvtools-centos",
        root={
            **gf.CLOUD_READY,
            "usr/lib/os-release": CENTOS7_RELEASE,
            "usr/sbin/hypervkvpd": ELF,
            "usr/sbin/hypervvssd": ELF,
            "etc/systemd/system/multi-user.target.wants/hypervkvpd.service": gf.Symlink(
                "/usr/lib/systemd/system/hypervkvpd.service"
            ),
            "usr/sbin/xe-daemon": ELF,
            "etc/vmware-tools/locations": "answer BINDIR /usr/bin\n",
            "usr/bin/vmware-uninstall-tools.pl": "#!/usr/bin/perl\n",
        },
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
    )


def leftover_guest() -> Path:
    """open-vm-tools removed but not purged: its configuration directory is left, no program."""
    return gf.build_guest(
        "hvtools-leftover",
        root={
            **gf.CLOUD_READY,
            "var/lib/dpkg/status": dpkg_status(
                ("open-vm-tools", "deinstall ok config-files", "2:12.2.0-1+deb12u2")
            ),
            "etc/vmware-tools/tools.conf": "[logging]\n",
        },
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
    )


def run(path: Path) -> list[Finding]:
    with FileSource(path) as src:
        found = inspect_source(src)
        facts = ImageFacts(found.container, found.allocated_bytes, CheckOptions(), found.guest)
        return list(run_rules((HypervisorToolsRule(),), facts))


def test_open_vm_tools_on_debian_is_a_warning_naming_the_package() -> None:
    (f,) = run(vmware_debian_guest())
    assert f.severity is Severity.WARNING
    assert f.message.startswith("VMware Tools are installed: they are made for VMware")
    assert f.evidence == (
        "/var/lib/dpkg/status: Package: open-vm-tools, Status: install ok installed, "
        "Version: 2:12.2.0-1+deb12u2",
        "/usr/bin/vmtoolsd (the file exists)",
        "enabled at boot: /etc/systemd/system/multi-user.target.wants/open-vm-tools.service",
    )
    assert f.advice == (
        "Uninstall open-vm-tools: `apt-get purge open-vm-tools`. If they must stay, at least "
        "disable them: `systemctl disable open-vm-tools.service`."
    )


def test_programs_show_the_tools_on_an_rpm_system() -> None:
    vmware, hyperv, xen = run(centos_hyperv_xen_guest())
    assert vmware.evidence == (
        "/etc/vmware-tools/locations (the file exists)",
        "/usr/bin/vmware-uninstall-tools.pl (the file exists)",
    )
    assert vmware.advice == (
        "VMware Tools were installed by VMware's installer: run "
        "`/usr/bin/vmware-uninstall-tools.pl` (then rebuild the initrd)."
    )
    assert hyperv.message.startswith("The Hyper-V daemons are installed")
    assert hyperv.evidence == (
        "/usr/sbin/hypervkvpd (the file exists)",
        "/usr/sbin/hypervvssd (the file exists)",
        "enabled at boot: /etc/systemd/system/multi-user.target.wants/hypervkvpd.service",
    )
    assert hyperv.advice.startswith("Uninstall hyperv-daemons: `yum remove hyperv-daemons`.")
    assert "`systemctl disable hypervkvpd.service`" in hyperv.advice
    assert xen.message.startswith(
        "The Xen guest tools of Citrix Hypervisor/XenServer are installed"
    )
    assert xen.advice == "Uninstall xe-guest-utilities: `yum remove xe-guest-utilities`."


def test_a_clean_guest_and_leftover_configuration_are_silent() -> None:
    assert run(gf.synthetic_guest()) == []
    assert run(leftover_guest()) == []
