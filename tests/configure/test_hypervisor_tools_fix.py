"""IMG-HYPERVISOR-TOOLS fix: another hypervisor's tools disabled reversibly (units masked, their
enablement and SysV start links removed), the packages left installed and said so."""

from __future__ import annotations

from imageport.configure.edits import ChangeKind
from imageport.findings import Severity
from imageport.guest.facts.units import read_units
from imageport.rules.hypervisor_tools import HypervisorToolsRule
from support import guest_fixtures as gf
from support.configure_trees import applied
from support.fix_runs import findings, plan
from support.guest_images import guest_image
from support.kernel_fixtures import CENTOS7_RELEASE, open_guest

RULE = HypervisorToolsRule.id
ELF = b"\x7fELF" + bytes(60)
DPKG_STATUS = "Package: open-vm-tools\nStatus: install ok installed\nVersion: 2:12.2.0-1+deb12u2\n"
WANTS = "etc/systemd/system/multi-user.target.wants"
VMWARE_DEBIAN: gf.Tree = {
    **gf.CLOUD_READY,
    "usr/lib/systemd/systemd": ELF,
    "var/lib/dpkg/status": DPKG_STATUS,
    "usr/bin/vmtoolsd": ELF,
    f"{WANTS}/open-vm-tools.service": gf.Symlink("/lib/systemd/system/open-vm-tools.service"),
    f"{WANTS}/vgauth.service": gf.Symlink("/lib/systemd/system/vgauth.service"),
    "etc/rc2.d/S01open-vm-tools": gf.Symlink("../init.d/open-vm-tools"),
    "etc/rc2.d/S01ssh": gf.Symlink("../init.d/ssh"),
}
BOOT = {"grub/grub.cfg": gf.READY_GRUB_CFG}


def test_vmware_tools_are_masked_and_unlinked_and_stay_installed() -> None:
    before = gf.build_guest("fix-hv-vmware", root=VMWARE_DEBIAN, boot=BOOT)
    (finding,) = findings(before, HypervisorToolsRule())
    assert f"enabled at boot: /{WANTS}/open-vm-tools.service" in finding.evidence
    result = plan(before, {RULE})
    assert [(c.path, c.kind) for c in result.changes] == [
        (f"/{WANTS}/open-vm-tools.service", ChangeKind.REMOVED),
        ("/etc/rc2.d/S01open-vm-tools", ChangeKind.REMOVED),
        ("/etc/systemd/system/open-vm-tools.service", ChangeKind.MASKED),
        (f"/{WANTS}/vgauth.service", ChangeKind.REMOVED),
        ("/etc/systemd/system/vgauth.service", ChangeKind.MASKED),
    ]
    (note,) = result.notes
    assert "VMware Tools stay installed" in note.text
    assert "apt-get purge open-vm-tools" in note.text
    root, boot = applied(result.operations, VMWARE_DEBIAN, BOOT)
    after = gf.build_guest("fix-hv-vmware-after", root=root, boot=boot)
    (left,) = findings(after, HypervisorToolsRule())  # the package is still there ...
    assert not any(e.startswith("enabled at boot") for e in left.evidence)  # ... but idle
    assert left.severity is Severity.INFO and "switched off" in left.message
    with open_guest(after) as guest:
        units = guest.derive(read_units)
        assert {"open-vm-tools.service", "vgauth.service"} <= units.masked
        assert units.is_enabled("ssh.service")  # other services untouched


def test_hyperv_daemons_on_centos_and_an_admins_unit_file_is_not_replaced() -> None:
    root: gf.Tree = {
        **gf.CLOUD_READY,
        "usr/lib/os-release": CENTOS7_RELEASE,
        "usr/lib/systemd/systemd": ELF,
        "usr/sbin/hypervkvpd": ELF,
        f"{WANTS}/hypervkvpd.service": gf.Symlink("/usr/lib/systemd/system/hypervkvpd.service"),
        "usr/sbin/xe-daemon": ELF,
        "etc/systemd/system/xe-linux-distribution.service": "[Service]\nExecStart=/x\n",
        f"{WANTS}/xe-linux-distribution.service": gf.Symlink(
            "/etc/systemd/system/xe-linux-distribution.service"
        ),
    }
    result = plan(gf.build_guest("fix-hv-centos", root=root, boot=BOOT), {RULE})
    assert [(c.path, c.kind) for c in result.changes] == [
        (f"/{WANTS}/hypervkvpd.service", ChangeKind.REMOVED),
        ("/etc/systemd/system/hypervkvpd.service", ChangeKind.MASKED),
        (f"/{WANTS}/xe-linux-distribution.service", ChangeKind.REMOVED),
    ]
    notes = [n.text for n in result.notes]
    assert any("yum remove hyperv-daemons" in n for n in notes)
    assert any("xe-linux-distribution.service is a unit file of its own" in n for n in notes)


def test_the_debian_defects_image_has_no_such_tools_and_is_left_alone() -> None:
    result = plan(guest_image("gpt-bios-esp-ext4-defects"), {RULE})
    assert result.changes == () and result.notes == ()
