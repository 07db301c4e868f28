"""Automatic configuration of a RHEL-family guest through the real appliance (one launch).

The guest is Rocky Linux 9 as a VMware export leaves it, composed from the topic fixtures:
ifcfg-eth0 static with HWADDR, an old NIC's ifcfg-eth1 and persistent-net rules
(``rhel_network``), fstab and ``root=`` naming ``/dev/sdaN``, BLS entries and GRUB defaults
without a serial console (``rhel_boot``), and a host-only dracut initrd without virtio or Xen
front ends, xz-compressed after an uncompressed early archive (``rhel_initrd``). Its kernel is
not real, so it is not booted: the Debian image's test boots.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imageport.adapters.guestfs.editor import GuestfishEditor
from imageport.configure.record import GUEST_LOG
from imageport.findings import Severity
from imageport.service.tools.optimize import Optimized, OptimizeOptions, optimize_image
from support import rhel_boot as rb
from support import rhel_initrd as ri
from support.guest_walk import changed_paths, guest_tree
from support.rhel_guest import rocky9

FIXED = {
    "IMG-NET-RULES",
    "IMG-NET-DHCP",
    "IMG-HW-BINDING",
    "IMG-FSTAB-UUID",
    "IMG-CONSOLE",
    "IMG-DRIVERS",
}

pytestmark = pytest.mark.skipif(
    shutil.which("guestfish") is None,
    reason="guestfish (libguestfs-tools) is needed: scripts/install --test",
)


def rules(report_findings: tuple[object, ...], severity: Severity | None = None) -> set[str]:
    return {
        f.rule_id  # type: ignore[attr-defined]
        for f in report_findings
        if severity is None or f.severity is severity  # type: ignore[attr-defined]
    }


@pytest.fixture(scope="module")
def optimized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Optimized]:
    source = rocky9()
    out = tmp_path_factory.mktemp("rocky") / "fixed.raw"
    result = optimize_image(source, out, "raw", OptimizeOptions(), editor=GuestfishEditor())
    return source, out, result


def test_each_rule_fails_before_and_passes_after(
    optimized: tuple[Path, Path, Optimized],
) -> None:
    _, _, result = optimized
    assert result.after is not None
    assert FIXED <= rules(result.before.findings)
    assert "IMG-DRIVERS" in rules(result.before.findings, Severity.ERROR)
    assert not FIXED & rules(result.after.findings)


def test_the_changes_are_rhel_s_own_files(optimized: tuple[Path, Path, Optimized]) -> None:
    _, out, result = optimized
    by_path: dict[str, set[str]] = {}
    for change in result.plan.changes:
        by_path.setdefault(change.path, set()).add(change.rule)
    assert by_path["/etc/sysconfig/network-scripts/ifcfg-eth0"] == {"IMG-NET-DHCP"}
    assert "/etc/sysconfig/network-scripts/ifcfg-eth1" in by_path
    assert by_path["/etc/fstab"] == {"IMG-FSTAB-UUID"}
    entry = f"/boot/loader/entries/{rb.MACHINE_ID}-{rb.KERNEL}.conf"
    assert {"IMG-FSTAB-UUID", "IMG-CONSOLE"} <= by_path[entry]
    assert by_path[f"/boot/initramfs-{ri.EL9}.img"] == {"IMG-DRIVERS"}
    assert "/etc/dracut.conf.d/90-imageport-drivers.conf" in by_path
    assert "IMG-CONSOLE" in by_path["/etc/default/grub"]
    # cloud-init is not installed: said, not installed offline
    assert any(n.rule == "IMG-CLOUD-INIT" for n in result.plan.notes)
    from support.kernel_fixtures import open_guest

    with open_guest(out) as guest:
        ifcfg = guest.files.read_text("/etc/sysconfig/network-scripts/ifcfg-eth0") or ""
        bls = guest.files.read_text(entry) or ""
    assert "BOOTPROTO=dhcp" in ifcfg and "\nHWADDR=" not in ifcfg
    assert "root=UUID=" in bls and "console=ttyS0,115200" in bls


def test_nothing_else_changed(optimized: tuple[Path, Path, Optimized]) -> None:
    source, out, result = optimized
    planned = {op.path for op in result.plan.operations}
    assert GUEST_LOG in planned
    before, after = guest_tree(source), guest_tree(out)
    changed = changed_paths(before, after)
    # this small guest had no /var/log: the parents of a created file are made, root's 0755
    made = changed - planned
    assert made == {"/var", "/var/log"}
    assert all(p not in before and after[p][:2] == ("dir", 0o755) for p in made)
    assert changed - made == planned
