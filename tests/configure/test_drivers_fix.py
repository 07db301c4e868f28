"""IMG-DRIVERS' fix: the missing virtio (and Xen) modules appended to the initrd as a cpio
segment, proved on the real Debian image whose initrd lost its virtio modules (unpacked after
with the real zstd and cpio, judged by the real modprobe) and on a RHEL 9 guest with a dracut
host-only initrd (rebuilt with the planned files, judged by the rule again)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.configure.cpio_writer import newc_archive, with_parents
from imageport.configure.edits import ChangeKind, OpKind
from imageport.configure.initrd_modules import GuestModules, keep_patterns, plan_addition
from imageport.configure.kmod_index import parse_modules_dep
from imageport.configure.plan import Plan, plan_configuration
from imageport.findings import Finding
from imageport.guest.boot.initrd import InitrdContents, read_initrd
from imageport.guest.boot.kernels import read_kernels
from imageport.rules.base import CheckOptions, ImageFacts
from imageport.rules.catalogue import RULES
from imageport.rules.engine import run_rules
from imageport.service.tools.check import inspect_source
from imageport.source import FileSource
from support import guest_images as gi
from support import kernel_fixtures as kt
from support import rhel_initrd as ri
from support.configure_trees import applied
from support.guest_fixtures import BASE_ROOT
from support.initrd_unpack import unpack_initrd
from support.kmod_dump import dump_index

RULE = "IMG-DRIVERS"
VIRTIO = ("virtio", "virtio_ring", "virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net")


def findings(path: Path) -> tuple[Finding, ...]:
    with FileSource(path) as src:
        found = inspect_source(src)
        facts = ImageFacts(found.container, found.allocated_bytes, CheckOptions(), found.guest)
        return run_rules(RULES, facts)


def drivers(path: Path) -> list[Finding]:
    return [f for f in findings(path) if f.rule_id == RULE]


def plan_for(path: Path) -> Plan:
    with kt.open_guest(path) as guest:
        return plan_configuration(guest, only={RULE})


def modprobe(root: Path, version: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("modprobe") or shutil.which("modprobe", path="/usr/sbin:/sbin")
    if tool is None:
        pytest.fail("modprobe (kmod) is not installed; the initrd is judged with it")
    return subprocess.run(
        [tool, "-d", str(root), "-S", version, *args], capture_output=True, text=True, check=False
    )


def insmods(out: str) -> list[str]:
    return [line.split("/")[-1].strip() for line in out.splitlines() if line.startswith("insmod")]


# --- the real Debian image ----------------------------------------------------------------


@pytest.fixture(scope="module")
def debian() -> Iterator[tuple[str, bytes, Plan]]:
    """The defects image's default kernel version, its initrd as it is, and the plan."""
    path = gi.guest_raw("gpt-bios-esp-ext4-defects")
    with kt.open_guest(path) as guest:
        kernel = guest.derive(read_kernels).default
        assert kernel is not None and kernel.initrd is not None
        original = guest.files.read_file(kernel.initrd.path, 256 << 20)
        yield kernel.version, original, plan_configuration(guest, only={RULE})


def test_debian_before_the_rule_reports_the_virtio_drivers_missing(
    debian: tuple[str, bytes, Plan],
) -> None:
    version, _, _ = debian
    (finding,) = drivers(gi.guest_raw("gpt-bios-esp-ext4-defects"))
    assert f"Kernel {version}" in finding.message
    assert "cannot load virtio, virtio_ring, virtio_pci, virtio_blk, virtio_scsi, virtio_net" in (
        finding.message
    )


def test_debian_plan_appends_to_the_initrd_and_lists_the_drivers_for_rebuilds(
    debian: tuple[str, bytes, Plan],
) -> None:
    version, original, plan = debian
    initrd = f"/boot/initrd.img-{version}"
    assert [(op.path, op.kind) for op in plan.operations] == [
        (initrd, OpKind.WRITE),
        ("/etc/initramfs-tools/modules", OpKind.WRITE),
    ]
    assert plan.notes == ()
    change = plan.changes[0]
    assert (change.rule, change.path, change.kind) == (RULE, initrd, ChangeKind.EDITED)
    assert change.why.startswith(
        "appended 8 kernel modules to the initrd so it loads virtio, virtio_ring, virtio_pci, "
        "virtio_blk, virtio_scsi, virtio_net at boot (with virtio_pci_legacy_dev, "
        "virtio_pci_modern_dev): a "
    )
    assert "after the original zstd archive, left unchanged" in change.why
    assert change.why.endswith("loaded at boot through /conf/modules")
    data = plan.operations[0].data
    assert data is not None
    # the original bytes stay as they were; the segment starts 4-byte aligned after them
    assert data[: len(original)] == original
    start = -len(original) % 4 + len(original)
    assert set(data[len(original) : start]) <= {0} and data[start : start + 6] == b"070701"
    assert len(data) - len(original) < 4 << 20
    listed = plan.changes[1]
    assert listed.path == "/etc/initramfs-tools/modules"
    assert listed.diff == tuple(f"+{d}" for d in VIRTIO)


def test_debian_after_the_real_tools_unpack_the_modules_and_modprobe_resolves_them(
    debian: tuple[str, bytes, Plan], tmp_path: Path
) -> None:
    version, _, plan = debian
    data = plan.operations[0].data
    assert data is not None
    assert unpack_initrd(data, tmp_path) == ["zstd", "none"]
    home = tmp_path / "usr" / "lib" / "modules" / version
    for path in (
        "kernel/drivers/block/virtio_blk.ko",
        "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
        "kernel/drivers/net/virtio_net.ko",
    ):
        assert (home / path).read_bytes()[:4] == b"\x7fELF", path
    blk = modprobe(tmp_path, version, "--show-depends", "virtio_blk")
    assert blk.returncode == 0, blk.stderr
    assert insmods(blk.stdout)[-1] == "virtio_blk.ko" and "virtio.ko" in insmods(blk.stdout)
    net = modprobe(tmp_path, version, "--show-depends", "virtio_net")
    assert insmods(net.stdout)[-3:] == ["failover.ko", "net_failover.ko", "virtio_net.ko"]
    # what udev asks for: the virtio disk, the virtio PCI function
    for alias, module in (
        ("virtio:d00000002v00001AF4", "virtio_blk"),
        ("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "virtio_pci"),
    ):
        got = modprobe(tmp_path, version, "--resolve-alias", alias)
        assert got.stdout.split() == [module], (alias, got.stderr)
    # the modules the initrd had still resolve (the index was extended, not replaced)
    ext4 = modprobe(tmp_path, version, "--show-depends", "ext4")
    assert insmods(ext4.stdout)[-1] == "ext4.ko"
    modinfo = shutil.which("modinfo") or shutil.which("modinfo", path="/usr/sbin:/sbin")
    assert modinfo is not None
    info = subprocess.run(
        [modinfo, "-b", str(tmp_path), "-k", version, "-F", "description", "virtio_blk"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert info.stdout.strip() == "Virtio block driver"
    assert (tmp_path / "conf" / "modules").read_text().split() == list(VIRTIO)


def test_debian_after_our_reader_finds_every_driver_the_rule_missed(
    debian: tuple[str, bytes, Plan],
) -> None:
    version, _, plan = debian
    data = plan.operations[0].data
    assert data is not None
    contents = read_initrd(data)
    assert not contents.problems
    assert set(VIRTIO) <= contents.modules_by_version[version]
    assert [s.compression for s in contents.segments] == ["zstd", "none"]


# --- RHEL 9, dracut host-only ---------------------------------------------------------------


@pytest.fixture(scope="module")
def rhel() -> tuple[Path, Plan]:
    path = ri.rhel9_guest()
    return path, plan_for(path)


def test_rhel_before_the_rule_reports_virtio_and_xen_missing(rhel: tuple[Path, Plan]) -> None:
    (finding,) = drivers(rhel[0])
    assert f"Kernel {ri.EL9}" in finding.message
    assert "virtio_net, xen_blkfront, xen_netfront at boot" in finding.message


def test_rhel_plan_appends_the_modules_with_a_dracut_load_list_and_configures_dracut(
    rhel: tuple[Path, Plan], tmp_path: Path
) -> None:
    _, plan = rhel
    initrd = f"/boot/initramfs-{ri.EL9}.img"
    conf = "/etc/dracut.conf.d/90-imageport-drivers.conf"
    assert [(op.path, op.kind) for op in plan.operations] == [
        (initrd, OpKind.WRITE),
        (conf, OpKind.WRITE),
    ]
    why = plan.changes[0].why
    assert "appended 12 kernel modules" in why and "(with virtio_pci_legacy_dev" in why
    assert "after the original uncompressed and xz archives, left unchanged" in why
    assert plan.changes[1].kind is ChangeKind.CREATED
    assert (
        '+add_drivers+=" virtio virtio_ring virtio_pci virtio_blk virtio_scsi virtio_net '
        in (plan.changes[1].diff[1])
    )
    data = plan.operations[0].data
    assert data is not None
    assert unpack_initrd(data, tmp_path) == ["none", "xz", "none"]
    load = "virtio,virtio_ring,virtio_pci,virtio_blk,virtio_scsi,virtio_net"
    assert (tmp_path / "etc/cmdline.d/90-imageport-drivers.conf").read_text() == (
        f"rd.driver.pre={load}\n"
    )  # the Xen front ends are left to udev
    assert (tmp_path / "etc/modules-load.d/imageport-drivers.conf").read_text().split() == (
        load.split(",")
    )
    home = tmp_path / "usr/lib/modules" / ri.EL9
    assert (home / "kernel/drivers/block/virtio_blk.ko.xz").read_bytes().startswith(ri.XZ_MODULE)
    # modprobe reads the indexes that replaced the initrd's own (-d needs lib/modules: a link)
    blk = modprobe(tmp_path, ri.EL9, "--show-depends", "virtio_blk")
    assert insmods(blk.stdout) == ["virtio.ko.xz", "virtio_ring.ko.xz", "virtio_blk.ko.xz"]
    for alias, module in (("xen:vbd", "xen_blkfront"), ("fs-xfs", "xfs")):
        got = modprobe(tmp_path, ri.EL9, "--resolve-alias", alias)
        assert got.stdout.split() == [module], got.stderr
    sym = modprobe(tmp_path, ri.EL9, "--resolve-alias", "symbol:virtqueue_add_sgs")
    assert sym.stdout.split() == ["virtio_ring"]


def test_rhel_after_the_rule_passes_and_no_other_finding_changed(rhel: tuple[Path, Plan]) -> None:
    path, plan = rhel
    root, boot = applied(plan.operations, {**BASE_ROOT, **ri.RHEL9_ROOT}, ri.rhel9_boot())
    after = ri.rhel9_guest(root, boot, name="rhel9-drivers-fixed")
    before_all = [f for f in findings(path) if f.rule_id != RULE]
    after_all = findings(after)
    assert [f for f in after_all if f.rule_id == RULE] == []
    assert [f for f in after_all if f.rule_id != RULE] == before_all
    # a second plan on the fixed guest has nothing left to do
    assert plan_for(after).operations == ()


# --- what the fix does not do, and says so --------------------------------------------------


def test_modules_not_installed_are_noted_and_nothing_is_written() -> None:
    """CentOS 7 made on VMware with no modules.dep on the root: nothing can be added."""
    plan = plan_for(kt.novirtio_guest())
    assert plan.operations == ()
    (note,) = plan.notes
    assert note.rule == RULE and f"no /lib/modules/{kt.EL7}/modules.dep" in note.text


def test_an_initrd_ending_in_lz4_is_not_extended() -> None:
    boot = ri.rhel9_boot(("lz4", "-l", "-9", "-c"))
    plan = plan_for(ri.rhel9_guest(boot=boot, name="rhel9-lz4"))
    assert plan.operations == ()
    (note,) = plan.notes
    assert "ends with a lz4 segment" in note.text and "rebuild the initrd" in note.text


def test_a_driver_with_no_module_is_noted_and_the_others_are_added() -> None:
    root = {
        **ri.RHEL9_ROOT,
        f"usr/lib/modules/{ri.EL9}/modules.dep": "".join(
            line + "\n"
            for line in str(ri.RHEL9_ROOT[f"usr/lib/modules/{ri.EL9}/modules.dep"]).splitlines()
            if "xen-" not in line
        ),
    }
    plan = plan_for(ri.rhel9_guest(root=root, name="rhel9-noxen"))
    assert plan.operations[0].path == f"/boot/initramfs-{ri.EL9}.img"
    (note,) = plan.notes
    assert "xen_blkfront, xen_netfront not added: no module under /lib/modules/" in note.text
    assert "appended 10 kernel modules" in plan.changes[0].why


def _initrd(files: dict[str, bytes], version: str = "6.1.0-1") -> InitrdContents:
    archive = newc_archive(with_parents(files, existing=()), mtime=0)
    return read_initrd(archive, keep=keep_patterns(version))


GUEST = GuestModules(
    tuple(
        parse_modules_dep(
            "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko\n"
            "kernel/drivers/virtio/virtio.ko:\n"
        )
    ),
    (("virtio:d00000002v*", "virtio_blk"),),
    (),
    lambda path: b"\x7fELF " + path.encode(),
)


def test_an_initrd_without_modprobe_or_with_an_index_but_no_text_is_refused() -> None:
    with pytest.raises(ValueError, match="no modprobe"):
        plan_addition(_initrd({"init": b"#!/bin/sh\n"}), "6.1.0-1", ["virtio_blk"], GUEST)
    only_bin = _initrd(
        {"sbin/modprobe": b"kmod", "lib/modules/6.1.0-1/modules.dep.bin": b"\xb0\x07\xf4\x57"}
    )
    with pytest.raises(ValueError, match=r"modules\.dep\.bin without modules\.dep"):
        plan_addition(only_bin, "6.1.0-1", ["virtio_blk"], GUEST)
    with pytest.raises(ValueError, match="not a plain version"):
        keep_patterns("../../etc")


def test_an_initrd_with_no_index_gets_one_and_no_load_list_from_an_unknown_generator() -> None:
    addition = plan_addition(_initrd({"sbin/modprobe": b"kmod"}), "6.1.0-1", ["virtio_blk"], GUEST)
    assert addition.modules == ("virtio_blk", "virtio")
    assert sorted(addition.files) == [
        f"lib/modules/6.1.0-1/{name}"
        for name in (
            "kernel/drivers/block/virtio_blk.ko",
            "kernel/drivers/virtio/virtio.ko",
            "modules.alias",
            "modules.alias.bin",
            "modules.dep",
            "modules.dep.bin",
        )
    ]
    assert addition.load_files == () and "neither initramfs-tools nor dracut" in addition.notes[0]
    assert dump_index(addition.files["lib/modules/6.1.0-1/modules.dep.bin"])["virtio_blk"] == [
        (0, "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko")
    ]


def test_the_ide_driver_is_added_with_libata_when_the_kernel_has_it_as_a_module() -> None:
    """A kernel with ``CONFIG_ATA_PIIX=m`` (Debian's way) whose initrd lacks ata_piix: it is
    added with libata, loaded at boot, and the rule's IDE finding goes too."""
    home = f"usr/lib/modules/{ri.EL9}"
    root = {
        **ri.RHEL9_ROOT,
        f"{home}/modules.dep": str(ri.RHEL9_ROOT[f"{home}/modules.dep"])
        + "kernel/drivers/ata/libata.ko.xz:\n"
        + "kernel/drivers/ata/ata_piix.ko.xz: kernel/drivers/ata/libata.ko.xz\n",
        f"{home}/modules.alias": str(ri.RHEL9_ROOT[f"{home}/modules.alias"])
        + "alias pci:v00008086d00007010sv*sd*bc*sc*i* ata_piix\n",
        f"{home}/kernel/drivers/ata/libata.ko.xz": ri.XZ_MODULE,
        f"{home}/kernel/drivers/ata/ata_piix.ko.xz": ri.XZ_MODULE,
    }
    boot = {
        **ri.rhel9_boot(),
        f"config-{ri.EL9}": kt.config(module=(*kt.ALL_MODULE_SYMBOLS, "ATA_PIIX"), ide=False),
    }
    path = ri.rhel9_guest(root, boot, name="rhel9-ide")
    (before,) = drivers(path)
    assert "xen_netfront, ata_piix at boot" in before.message
    plan = plan_for(path)
    why = plan.changes[0].why
    assert "appended 14 kernel modules" in why and "xen_netfront, ata_piix at boot" in why
    assert "libata" in why.split("(with ", 1)[1]
    assert "ata_piix" in plan.changes[1].diff[1]  # dracut keeps it in rebuilds
    fixed_root, fixed_boot = applied(plan.operations, {**BASE_ROOT, **root}, boot)
    assert drivers(ri.rhel9_guest(fixed_root, fixed_boot, name="rhel9-ide-fixed")) == []
