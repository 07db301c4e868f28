"""`imageport check` on real Debian 12 images (tests/support/guest_images.py): the report names the
OS, kernel, boot mode, layout and the seeded defects, in every accepted format."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from support import guest_images

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

KERNEL = re.compile(r"^6\.1\.0-\d+-amd64$")
EXPECTED: dict[str, dict[str, Any]] = {
    "gpt-bios-esp-ext4": {
        "boot_modes": ["bios", "uefi"],
        "root": "part3",
        "table": "gpt",
        "mounts": [("/", "part3", "ext4"), ("/boot/efi", "part2", "vfat")],
    },
    "mbr-boot-lvm-xfs": {
        "boot_modes": ["bios"],
        "root": "vg0/root",
        "table": "mbr",
        "mounts": [("/", "vg0/root", "xfs"), ("/boot", "part1", "ext4")],
    },
    "gpt-esp-btrfs": {
        "boot_modes": ["uefi"],
        "root": "part2",
        "table": "gpt",
        "mounts": [("/", "part2", "btrfs"), ("/boot/efi", "part1", "vfat")],
    },
}


def check(path: object, *args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "imageport.cli.main", "check", "--json", *args, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def rules(doc: dict[str, Any], severity: str) -> set[str]:
    return {f["rule_id"] for f in doc["findings"] if f["severity"] == severity}


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_the_report_names_os_kernel_boot_mode_and_layout(layout: str) -> None:
    _, doc = check(guest_images.guest_image(layout))
    guest, want = doc["guest"], EXPECTED[layout]
    assert guest["os"]["pretty_name"] == "Debian GNU/Linux 12 (bookworm)"
    assert guest["architecture"].startswith("x86_64")
    (kernel,) = guest["kernels"]
    assert KERNEL.match(kernel["version"]) and kernel["default"]
    assert kernel["initrd"] == f"/boot/initrd.img-{kernel['version']}"
    assert kernel["initrd_modules"] > 100
    assert guest["boot_modes"] == want["boot_modes"]
    assert guest["partition_table"] == want["table"] and guest["root"] == want["root"]
    assert [(m["mountpoint"], m["volume"], m["fstype"]) for m in guest["mounts"]] == want["mounts"]
    assert doc["bytes_read"] < 64 << 20


def test_good_images_pass_and_differ_only_where_their_layout_does() -> None:
    code, doc = check(guest_images.guest_image("gpt-bios-esp-ext4"))
    assert code == 0 and rules(doc, "error") == set() and rules(doc, "warning") == set()
    code, doc = check(guest_images.guest_image("mbr-boot-lvm-xfs"))
    assert code == 0 and rules(doc, "warning") == {"IMG-LVM-INJECTION"}
    code, doc = check(guest_images.guest_image("gpt-esp-btrfs"))
    assert code == 1 and rules(doc, "error") == {"IMG-BOOT-MODE"}  # UEFI only, on purpose
    code, doc = check(guest_images.guest_image("gpt-esp-btrfs"), "--uefi")
    assert code == 0


def test_every_seeded_defect_is_reported() -> None:
    code, doc = check(guest_images.guest_image("gpt-bios-esp-ext4-defects"))
    assert code == 1
    assert rules(doc, "error") == {"IMG-FSTAB-DATA-DISK", "IMG-PASSWORD-STRENGTH", "IMG-DRIVERS"}
    assert rules(doc, "warning") == {
        "IMG-CONSOLE",
        "IMG-NET-RULES",
        "IMG-NET-DHCP",
        "IMG-HW-BINDING",
    }
    text = json.dumps(doc["findings"])
    for evidence in (
        "/data",
        "70-persistent-net.rules",
        "192.168.10.23",
        "52:54:00:12:34:56",
        "virtio_blk",
        "/boot/grub/grub.cfg",
    ):
        assert evidence in text, evidence


@pytest.mark.parametrize("fmt", sorted(set(guest_images.FORMATS) - {"raw"}))
def test_every_format_gives_the_same_guest_report(fmt: str) -> None:
    _, raw = check(guest_images.guest_image("gpt-bios-esp-ext4-defects"))
    _, other = check(guest_images.guest_image("gpt-bios-esp-ext4-defects", fmt))
    assert other["guest"] == raw["guest"]

    # info notes may say how far the time-boxed password audit got, so compare the rest
    def judged(doc: dict[str, Any]) -> list[tuple[str, str]]:
        return [(f["rule_id"], f["message"]) for f in doc["findings"] if f["severity"] != "info"]

    assert judged(other) == judged(raw)
