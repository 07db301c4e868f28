"""``imageport optimize`` as a user runs it, on the real Debian image with the seeded defects
(layout (d) of docs/test-images.md), then the result booted.

One appliance launch (~15-40 s under TCG) and one boot to ``login:`` on a virtio disk (~40-80 s):
before, the rules fail (IMG-DRIVERS among them: the initrd has no virtio module, so this image
cannot find its disk); after, they pass and the guest starts; nothing but the planned files
changed, the input was not written, and the guest's log records each change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import guest_images as gi
from support.guest_walk import changed_paths, guest_tree
from support.kernel_fixtures import open_guest

IMAGEPORT = [sys.executable, "-m", "imageport.cli.main"]
FIXED = {
    "IMG-NET-RULES",
    "IMG-NET-DHCP",
    "IMG-HW-BINDING",
    "IMG-FSTAB-DATA-DISK",
    "IMG-CONSOLE",
    "IMG-CLOUD-INIT",
    "IMG-DRIVERS",
}
LOG = "/var/log/imageport-configuration.log"

pytestmark = pytest.mark.skipif(
    shutil.which("guestfish") is None or shutil.which("qemu-system-x86_64") is None,
    reason="guestfish (libguestfs-tools) and qemu-system-x86 are needed: scripts/install --test",
)


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMAGEPORT, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def rules(report: dict[str, Any], severity: str | None = None) -> set[str]:
    return {
        f["rule_id"] for f in report["findings"] if severity is None or f["severity"] == severity
    }


@pytest.fixture(scope="module")
def optimized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    source = gi.guest_raw("gpt-bios-esp-ext4-defects")
    mtime = os.stat(source).st_mtime_ns
    out = tmp_path_factory.mktemp("optimize") / "fixed.qcow2"
    proc = run("optimize", str(source), str(out), "--json")
    assert proc.returncode == 1, proc.stderr  # the seeded weak password is not ours to fix
    assert os.stat(source).st_mtime_ns == mtime, "the input was written"
    return source, out, json.loads(proc.stdout)


def test_the_rules_fail_before_and_pass_after(
    optimized: tuple[Path, Path, dict[str, Any]],
) -> None:
    _, _, doc = optimized
    assert "IMG-DRIVERS" in rules(doc["before"], "error")
    assert FIXED - {"IMG-HW-BINDING"} <= rules(doc["before"])
    assert not FIXED & rules(doc["after"])
    assert rules(doc["after"], "error") == {"IMG-PASSWORD-STRENGTH"}
    assert (
        doc["appliance"]["files_written"]
        == len({c["path"] for c in doc["configuration"]["changes"]}) + 1
    )


def test_the_record_names_every_change_in_the_report_and_in_the_guest(
    optimized: tuple[Path, Path, dict[str, Any]],
) -> None:
    _, out, doc = optimized
    changes = doc["configuration"]["changes"]
    assert doc["configuration"]["applied"] is True
    assert {c["rule"] for c in changes} == FIXED
    by_rule = {c["rule"]: c for c in changes}
    assert by_rule["IMG-NET-RULES"]["path"] == "/etc/udev/rules.d/70-persistent-net.rules"
    assert by_rule["IMG-NET-RULES"]["action"] == "removed"
    assert "+iface eth0 inet dhcp" in by_rule["IMG-NET-DHCP"]["diff"]
    assert by_rule["IMG-CLOUD-INIT"]["path"] == "/etc/cloud/cloud.cfg.d/99-imageport.cfg"
    with open_guest(out) as guest:
        log = guest.files.read_text(LOG) or ""
    for change in changes:
        assert f"{change['rule']} {change['action']} {change['path']}: {change['why']}" in log


def test_nothing_else_in_the_image_changed(optimized: tuple[Path, Path, dict[str, Any]]) -> None:
    source, out, doc = optimized
    planned = {c["path"] for c in doc["configuration"]["changes"]} | {LOG}
    assert changed_paths(guest_tree(source), guest_tree(out)) == planned


def test_the_result_boots_to_login_on_a_virtio_disk(
    optimized: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, out, _ = optimized
    proc = run("boot", str(out), "--bios", "--json", "--no-screenshot", timeout=900)
    doc = json.loads(proc.stdout)
    (bios,) = doc["boots"]
    assert proc.returncode == 0 and doc["passed"], bios
    assert "console=ttyS0,115200" in doc["kernel_command_line"]


def test_a_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    source = gi.guest_raw("gpt-bios-esp-ext4-defects")
    proc = run("optimize", str(source), "--dry-run", "--json")
    doc = json.loads(proc.stdout)
    assert doc["configuration"]["applied"] is False
    assert {c["rule"] for c in doc["configuration"]["changes"]} == FIXED
    assert doc["after"] is None and doc["appliance"] is None
    text = run("optimize", str(source), "--dry-run", "--only", "IMG-CONSOLE")
    assert "would make 1 change(s) in 1 file(s) (dry run: nothing was written)" in text.stdout
    assert "IMG-CONSOLE  edited  /boot/grub/grub.cfg" in text.stdout
    assert run("optimize", str(source), "--only", "IMG-NOPE", "--dry-run").returncode == 2
