"""IMG-DRIVERS, IMG-FULL-VIRT and IMG-NET-RULES on synthetic guest disks, through the same
inspection the check runs (the rules are run directly, so these tests do not depend on the
catalogue listing them)."""

from __future__ import annotations

from pathlib import Path

from imageport.findings import Finding, Severity
from imageport.rules.base import CheckOptions, ImageFacts, Rule
from imageport.rules.engine import run_rules
from imageport.rules.kernel import DriversRule, FullVirtRule, NetRulesRule, driver_fix
from imageport.service.tools.check import inspect_source
from imageport.source import FileSource
from support import guest_fixtures as gf
from support import kernel_fixtures as kt


def run(path: Path, rule: Rule) -> list[Finding]:
    with FileSource(path) as src:
        found = inspect_source(src)
        facts = ImageFacts(found.container, found.allocated_bytes, CheckOptions(), found.guest)
        return list(run_rules((rule,), facts))


def text(f: Finding) -> str:
    return " | ".join((f.message, *f.evidence, f.advice))


def test_a_guest_with_every_driver_passes_all_three() -> None:
    path = kt.good_guest()
    for rule in (DriversRule(), FullVirtRule(), NetRulesRule()):
        assert run(path, rule) == [], rule.id


def test_missing_virtio_is_an_error_with_the_dracut_fix() -> None:
    (f,) = run(kt.novirtio_guest(), DriversRule())
    assert f.severity is Severity.ERROR
    assert f.message.startswith(f"Kernel {kt.EL7} (default: the newest version")
    assert (
        "cannot load virtio, virtio_ring, virtio_pci, virtio_blk, virtio_scsi, virtio_net at boot"
        in f.message
        and "will not find its system disk" in f.message
    )
    assert f"initrd: /boot/initramfs-{kt.EL7}.img: 4 modules, 4 of them for {kt.EL7}" in f.evidence
    assert "virtio_net (module installed, not in the initrd)" in f.evidence[-1]
    assert "virtio_blk (not installed)" in f.evidence[-1]
    assert "/etc/dracut.conf.d/virtio.conf" in f.advice and "dracut -f --regenerate-all" in f.advice
    assert "xen" not in f.message  # the Xen front ends are in this initrd
    # the rescue kernel is not judged
    assert "rescue" not in text(f)


def test_builtin_virtio_passes_and_missing_xen_is_a_warning() -> None:
    (f,) = run(kt.builtin_guest(), DriversRule())
    assert f.severity is Severity.WARNING
    assert "cannot load xen_blkfront at boot" in f.message
    assert "Xen-based flavours" in f.message
    assert "virtio_blk (CONFIG_VIRTIO_BLK=y)" in text(f)
    assert "/etc/initramfs-tools/modules" in f.advice and "update-initramfs -u -k all" in f.advice


def test_no_initrd_and_no_config_is_an_error() -> None:
    (f,) = run(
        gf.build_guest(
            "kern-noinitrd", boot={f"initrd.img-{kt.DEB}": None, f"config-{kt.DEB}": None}
        ),
        DriversRule(),
    )
    assert f.severity is Severity.ERROR
    assert any(e.startswith("initrd: none found for 6.1.0-13-amd64") for e in f.evidence)
    assert any(e.startswith("built in: unknown") for e in f.evidence)


def test_an_older_kernel_without_virtio_is_a_warning() -> None:
    (f,) = run(kt.two_kernels_guest(), DriversRule())
    assert f.severity is Severity.WARNING
    assert f.message.startswith("Kernel 5.10.0-9-amd64 (not the default kernel) cannot load")
    assert (
        "initrd: /boot/initrd.img-5.10.0-9-amd64: 2 modules, 2 of them for 5.10.0-9-amd64"
        in f.evidence
    )


def test_centos5_gets_mkinitrd_advice() -> None:
    (f,) = run(kt.xen_guest(), DriversRule())
    assert f.severity is Severity.ERROR
    assert "no kernel config or modules.builtin shows them built in" in f.message
    assert "mkinitrd -f --with=virtio --with=virtio_ring" in f.advice


def test_everything_built_in_needs_no_initrd() -> None:
    everything = kt.config(*(s for s in kt.ALL_MODULE_SYMBOLS))
    path = gf.build_guest(
        "kern-allbuiltin", boot={f"initrd.img-{kt.DEB}": None, f"config-{kt.DEB}": everything}
    )
    assert run(path, DriversRule()) == []


def test_no_kernel_is_an_error() -> None:
    (f,) = run(kt.nokernel_guest(), DriversRule())
    assert f.severity is Severity.ERROR and "No Linux kernel" in f.message


def test_an_unreadable_initrd_is_quoted() -> None:
    path = gf.build_guest(
        "kern-badinitrd", boot={f"initrd.img-{kt.DEB}": b"garbage" * 100, f"config-{kt.DEB}": None}
    )
    (f,) = run(path, DriversRule())
    assert f.severity is Severity.ERROR
    assert any(
        e.startswith(f"initrd: /boot/initrd.img-{kt.DEB} cannot be read: not an initrd")
        for e in f.evidence
    )


def test_a_missing_ide_driver_is_a_warning_naming_the_initrd_and_the_fix() -> None:
    (f,) = run(kt.ide_guest("missing"), DriversRule())
    assert f.severity is Severity.WARNING
    assert f.message.startswith(f"Kernel {kt.DEB} (default: the newest version")
    assert "cannot load ata_piix at boot: it is neither built in nor in its initrd" in f.message
    assert "Xen-based flavours will not boot (they start from an emulated IDE disk)" in f.message
    assert f"kernel: /boot/vmlinuz-{kt.DEB}" in f.evidence
    assert f"initrd: /boot/initrd.img-{kt.DEB}: 10 modules, 10 of them for {kt.DEB}" in f.evidence
    assert (
        f.evidence[-1] == "missing: ata_piix (the IDE driver, module installed, not in the initrd)"
    )
    assert f.advice == (
        "Add the modules to /etc/initramfs-tools/modules (`printf '%s\\n' ata_piix >> "
        "/etc/initramfs-tools/modules`), then run `update-initramfs -u -k all`."
    )


def test_the_ide_driver_in_the_initrd_or_built_in_passes() -> None:
    assert run(kt.ide_guest("initrd"), DriversRule()) == []
    assert run(kt.ide_guest("builtin"), DriversRule()) == []


def test_a_missing_ide_driver_joins_the_missing_virtio_drivers() -> None:
    (f,) = run(kt.xen_guest(), DriversRule())
    assert f.message.endswith(
        "cannot load virtio, virtio_ring, virtio_pci, virtio_blk, virtio_scsi, virtio_net, "
        "xen_blkfront, xen_netfront, ata_piix at boot: they are not in its initrd, and no kernel "
        "config or modules.builtin shows them built in, so the server will not find its system "
        "disk."
    )
    assert "ata_piix (the IDE driver, not installed)" in f.evidence[-1]
    assert "--with=ata_piix" in f.advice


def test_full_virt_rejects_i386_old_and_xen_kernels() -> None:
    found = run(kt.xen_guest(), FullVirtRule())
    assert all(f.severity is Severity.ERROR for f in found)
    msgs = [f.message for f in found]
    assert len(found) == 3, msgs
    assert "built for i386 (32-bit)" in msgs[0]
    assert "/usr/bin/sh: ELF 32-bit little-endian, e_machine 3 (i386)" in found[0].evidence
    assert "older than 2.6.24" in msgs[1]
    assert "is a Xen paravirtual kernel" in msgs[2] and "el5xen" in msgs[2]
    assert "Make the standard kernel 2.6.18-400.el5 the GRUB default" in found[2].advice
    assert "saved_entry=CentOS (2.6.18-398.el5xen)" in found[2].evidence[0]


def test_full_virt_accepts_aarch64() -> None:
    assert run(kt.builtin_guest(), FullVirtRule()) == []


def test_net_rules_on_disk_and_in_the_initrd() -> None:
    found = run(kt.novirtio_guest(), NetRulesRule())
    assert [f.severity for f in found] == [Severity.WARNING, Severity.WARNING]
    disk, initrd = found
    assert disk.evidence == (f"/etc/udev/rules.d/70-persistent-net.rules:4: {kt.MAC_RULE}",)
    assert disk.message.startswith("/etc/udev/rules.d/70-persistent-net.rules exists")
    assert initrd.message.startswith(
        f"The initrd /boot/initramfs-{kt.EL7}.img contains etc/udev/rules.d/70-persistent-net"
    )
    assert "dracut -f --regenerate-all" in initrd.advice
    assert "75-persistent-net-generator" not in initrd.advice  # CentOS 7, not 6


def test_empty_generator_and_comment_only_rules_are_fine() -> None:
    assert run(kt.builtin_guest(), NetRulesRule()) == []


def test_fix_text_per_family() -> None:
    assert "INITRD_MODULES" in driver_fix("suse", ["virtio_blk"])
    assert "update-initramfs" in driver_fix("debian", ["virtio_blk"])
    assert 'add_drivers+=" virtio_blk virtio_scsi "' in driver_fix(
        "rhel", ["virtio_blk", "virtio_scsi"]
    )
    assert "dracut" in driver_fix("arch", ["virtio_blk"])


def test_rules_are_silent_without_a_system() -> None:
    for rule in (DriversRule(), FullVirtRule(), NetRulesRule()):
        assert run(gf.empty_disk(), rule) == []
