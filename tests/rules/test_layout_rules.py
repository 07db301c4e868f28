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


def test_nofail_without_noauto_is_still_an_error_and_says_why() -> None:
    report = check_image(gf.synthetic_guest(nofail=True))
    (finding,) = [f for f in report.findings if f.rule_id == "IMG-FSTAB-DATA-DISK"]
    assert finding.severity is Severity.ERROR and not report.passed
    line = gf.DATA_DISK_LINE.replace("defaults", "defaults,nofail")
    assert finding.evidence[0] == f"/etc/fstab:7: {line}"
    assert "nofail is not enough" in finding.evidence[1]
    assert "the wrong disk is mounted at that path" in finding.evidence[1]
    assert "noauto" in finding.advice


def test_a_line_without_nofail_does_not_mention_it() -> None:
    (finding,) = [
        f
        for f in check_image(gf.synthetic_guest(data_disk=True)).findings
        if f.rule_id == "IMG-FSTAB-DATA-DISK"
    ]
    assert finding.severity is Severity.ERROR
    assert not any("nofail" in e for e in finding.evidence)


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
