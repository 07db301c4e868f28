"""IMG-SYSTEM-DISK and IMG-FSTAB-DATA-DISK on real (synthetic) guest disks, through the check."""

from __future__ import annotations

from pathlib import Path

from imageport.findings import Severity
from imageport.service.tools.check import check_image
from support import builders
from support import guest_fixtures as gf


def rule_findings(path: Path, rule_id: str) -> list[str]:
    return [
        f.message + " | " + " | ".join(f.evidence)
        for f in check_image(path).findings
        if f.rule_id == rule_id
    ]


def test_a_system_disk_passes_both_rules_in_every_format(tmp_path: Path) -> None:
    raw = gf.synthetic_guest()
    assert check_image(raw).passed
    for fmt in ("qcow2", "vmdk", "vhdx"):
        img = tmp_path / f"guest.{fmt}"
        builders.qemu_img("convert", "-f", "raw", "-O", fmt, str(raw), str(img))
        report = check_image(img)
        assert report.passed, report.findings
        assert report.guest is not None and report.guest.os is not None
        assert report.guest.os.pretty_name == "Debian GNU/Linux 12 (bookworm)"


def test_an_empty_disk_fails_img_system_disk() -> None:
    (msg,) = rule_findings(gf.empty_disk(), "IMG-SYSTEM-DISK")
    assert "No installed Linux root filesystem" in msg and "part1: unknown" in msg


def test_an_auto_mounted_data_disk_fails_and_quotes_the_line() -> None:
    (msg,) = rule_findings(gf.synthetic_guest(data_disk=True), "IMG-FSTAB-DATA-DISK")
    assert f"/etc/fstab:7: {gf.DATA_DISK_LINE}" in msg
    # the noauto line for a USB disk in the same fstab is not reported
    assert "/mnt/usb" not in msg


def test_nofail_makes_it_a_warning() -> None:
    report = check_image(gf.synthetic_guest(nofail=True))
    assert [f.severity for f in report.findings if f.rule_id == "IMG-FSTAB-DATA-DISK"] == [
        Severity.WARNING
    ]
    assert report.passed


def device_names_guest() -> Path:
    """The cloud-ready guest with its root mounted, and booted, by device name (/dev/sda3), and
    a noauto line for /dev/sdb1."""
    fstab = (
        gf.GOOD_FSTAB.replace(f"UUID={gf.ROOT_UUID} /", "/dev/sda3 /")
        + "/dev/sdb1 /mnt/old ext4 noauto 0 0\n"
    )
    grub = gf.READY_GRUB_CFG.replace(f"root=UUID={gf.ROOT_UUID}", "root=/dev/sda3")
    return gf.build_guest(
        "devnames", root=gf.CLOUD_READY, boot={"grub/grub.cfg": grub}, fstab=fstab
    )


def test_device_names_in_fstab_and_root_are_reported() -> None:
    found = rule_findings(device_names_guest(), "IMG-FSTAB-UUID")
    assert len(found) == 2
    assert "/etc/fstab:2: /dev/sda3 / ext4 errors=remount-ro 0 1" in found[0]
    assert "root=/dev/sda3" in found[1] and "/boot/grub/grub.cfg:4:" in found[1]
    # the noauto line is not mounted at boot, and the ready guest uses UUIDs throughout
    assert rule_findings(gf.synthetic_guest(), "IMG-FSTAB-UUID") == []
