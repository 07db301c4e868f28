"""``imageport boot`` as users run it: a real process, real QEMU machines, exit codes.

Real boots in the default run: a disk with no boot code under SeaBIOS and under OVMF (a few
seconds each: the firmware finds no bootable device), two small disks whose GRUB fails (no
``grub.cfg``: its command line; no prefix: rescue mode; seconds each, ``boot_disks.py``) and
the Debian test image under BIOS to its login prompt (1-3 minutes under TCG, depending on the
machine's load). With ``IMAGEPORT_BOOT_TESTS=1`` also: that image under UEFI, the UEFI-only
image forced under BIOS, the image whose kernel has no serial console (the screenshot is the
evidence), copies of the Debian image with a wrong ``root=`` (the initramfs gives up and drops
to its shell), with no initrd (the kernel panics), with an fstab that waits for a missing disk,
and with cloud-init running without a datasource (it finishes).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import boot_disks as bd
from support import guest_images as gi
from support import guest_tools as gt
from support import import_fixtures as fx

IMAGEPORT = [sys.executable, "-m", "imageport.cli.main"]
NO_SUCH_UUID = b"00000000-0000-4000-8000-000000000000"

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 is not installed"
)
opt_in = pytest.mark.skipif(
    not gt.boot_tests_enabled(), reason="set IMAGEPORT_BOOT_TESTS=1 (minutes per boot)"
)


def boot(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMAGEPORT, "boot", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def bare_fs(tmp_path: Path) -> Path:
    """A filesystem image without a partition table: nothing for a firmware to boot (a
    partition uploaded instead of a disk)."""
    image = tmp_path / "partition.raw"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    return image


def stage(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["stages"] if s["stage"] == name)


def test_a_disk_without_boot_code_finds_no_bootable_device_under_seabios(
    bare_fs: Path, tmp_path: Path
) -> None:
    proc = boot(str(bare_fs), "--timeout", "60", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "claims: neither BIOS nor UEFI" in out
    assert "booted: BIOS, to show what a machine does with it" in out
    assert "BIOS: FAIL: The firmware found no bootable device." in out
    assert "    Boot failed: not a bootable disk\n    No bootable device.\n" in out
    assert "  screenshot: partition.raw.boot.png" in out
    assert png_size(tmp_path / "partition.raw.boot.png") == (720, 400)  # the text-mode screen
    assert "result: FAIL, no login prompt under BIOS" in out


def test_uefi_forced_on_a_disk_without_an_esp_ends_in_the_firmware_shell(
    bare_fs: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "uefi.png"
    proc = boot(str(bare_fs), "--uefi", "--json", "--screenshot", str(shot), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "imageport.boot/1"
    assert doc["claimed_firmware"] == [] and doc["forced_firmware"] == "uefi"
    assert doc["passed"] is False
    (run,) = doc["boots"]
    assert run["firmware"] == "uefi" and run["outcome"] == "no-bootable-device"
    assert run["ended"] == "settled" and run["accelerator"] in ("kvm", "tcg")
    assert run["why"][0]["line"].startswith('BdsDxe: failed to load Boot0001 "UEFI Misc Device"')
    assert any("UEFI Interactive Shell" in line for line in run["serial_tail"])
    assert run["screenshot"] == str(shot) and png_size(shot)[0] >= 640


def test_the_debian_image_reaches_its_login_prompt_under_bios(tmp_path: Path) -> None:
    image = gi.guest_raw("gpt-bios-esp-ext4")
    proc = boot(str(image), "--bios", "--json", "--screenshot", "login.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["claimed_firmware"] == ["bios", "uefi"] and doc["passed"] is True
    (run,) = doc["boots"]
    assert run["outcome"] == "login", run["summary"]
    assert run["summary"].startswith("Reached a login prompt after ")
    assert [s["reached"] for s in run["stages"]][:5] == [True] * 5
    assert stage(run, "firmware")["evidence"][0]["line"] == "Booting from 0000:7c00"
    assert stage(run, "boot-loader")["evidence"][0]["line"].startswith("GNU GRUB  version 2.06")
    assert "Linux version 6.1." in stage(run, "kernel")["evidence"][0]["line"]
    assert (
        "EXT4-fs (vda3): mounted filesystem" in stage(run, "root-filesystem")["evidence"][0]["line"]
    )
    assert stage(run, "login")["evidence"][0]["line"].startswith("imageport-guest login:")
    assert png_size(tmp_path / "login.png") == (1280, 800)  # the kernel's framebuffer console
    print(f"BIOS: {run['summary']} ({run['seconds']} s)")


def test_grub_without_its_configuration_stops_at_its_command_line(tmp_path: Path) -> None:
    proc = boot(str(bd.grub_disk("no-config")), "--json", "--timeout", "60", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["claimed_firmware"] == ["bios"]
    (run,) = doc["boots"]
    assert (run["outcome"], run["ended"]) == ("boot-loader-failed", "settled"), run["summary"]
    assert run["summary"] == (
        "The boot loader started but failed (rescue mode, or no kernel to boot)."
    )
    assert [s["stage"] for s in run["stages"] if s["reached"]] == ["firmware", "boot-loader"]
    assert stage(run, "boot-loader")["evidence"][0]["line"].endswith(
        "GNU GRUB  version 2.06-13+deb12u2"
    )
    assert run["why"][0]["line"].strip().startswith("Minimal BASH-like line editing is supported")
    assert run["serial_tail"][-1] == "grub>"
    print(f"GRUB without grub.cfg: {run['summary']} ({run['seconds']} s)")


def test_grub_that_cannot_reach_its_prefix_enters_rescue_mode(tmp_path: Path) -> None:
    proc = boot(str(bd.grub_disk("rescue")), "--json", "--timeout", "60", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run,) = json.loads(proc.stdout)["boots"]
    assert (run["outcome"], run["ended"]) == ("boot-loader-failed", "settled"), run["summary"]
    assert [w["line"] for w in run["why"]] == ["error: no such partition.", "grub rescue>"]
    assert stage(run, "firmware")["reached"]
    print(f"GRUB rescue: {run['summary']} ({run['seconds']} s)")


def test_usage_errors_exit_2(bare_fs: Path, tmp_path: Path) -> None:
    both = boot(str(bare_fs), "--bios", "--uefi", cwd=tmp_path)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    short = boot(str(bare_fs), "--timeout", "5", cwd=tmp_path)
    assert short.returncode == 2 and "--timeout is in seconds, 10 to 3600" in short.stderr
    missing = boot(str(tmp_path / "nope.raw"), cwd=tmp_path)
    assert missing.returncode == 2 and "cannot open" in missing.stderr
    assert not list(tmp_path.glob("*.png"))


def test_an_image_with_a_backing_file_is_not_booted(tmp_path: Path) -> None:
    top = fx.backing_qcow2()  # names a host file as its backing file
    proc = boot(str(top), cwd=tmp_path)
    assert proc.returncode == 2
    assert "IMG-SAFE" in proc.stdout + proc.stderr
    assert "is not safe to boot" in proc.stderr


@opt_in
def test_the_debian_image_reaches_its_login_prompt_under_uefi(tmp_path: Path) -> None:
    proc = boot(str(gi.guest_raw("gpt-bios-esp-ext4")), "--uefi", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = json.loads(proc.stdout)["boots"]
    assert run["outcome"] == "login"
    assert stage(run, "firmware")["evidence"][0]["line"].startswith("BdsDxe: starting Boot")
    print(f"UEFI: {run['summary']} ({run['seconds']} s)")


@opt_in
def test_a_uefi_only_image_does_not_start_under_bios(tmp_path: Path) -> None:
    image = gi.guest_raw("gpt-esp-btrfs")
    proc = boot(str(image), "--bios", "--timeout", "30", "--json", cwd=tmp_path)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["claimed_firmware"] == ["uefi"]
    (run,) = doc["boots"]
    assert run["outcome"] == "no-login" and run["serial_silent"] is True
    assert not stage(run, "boot-loader")["reached"]
    assert "serial console stayed silent throughout" in run["summary"]


@opt_in
def test_a_kernel_without_a_serial_console_leaves_the_screenshot_as_evidence(
    tmp_path: Path,
) -> None:
    image = gi.guest_raw("gpt-bios-esp-ext4-defects")  # "ro quiet", and no virtio in the initrd
    proc = boot(str(image), "--bios", "--timeout", "120", "--json", cwd=tmp_path)
    assert proc.returncode == 1
    (run,) = json.loads(proc.stdout)["boots"]
    assert stage(run, "boot-loader")["reached"] and not stage(run, "kernel")["evidence"]
    assert run["outcome"] == "no-login"
    assert "has no console=ttyS0); the screenshot shows the screen." in run["summary"]
    assert Path(tmp_path, run["screenshot"]).stat().st_size > 0


def patched_copy(dest: Path, patch: Callable[[bytes], bytes]) -> Path:
    """A sparse copy of the Debian test image whose grub.cfg is changed by ``patch`` (keeping
    its length), in the file's data block in place: ext4 keeps no checksum of file data, so
    GRUB reads the changed file as it is."""
    src = gi.guest_raw("gpt-bios-esp-ext4")
    subprocess.run(["cp", "--sparse=always", str(src), str(dest)], check=True)
    marker = b"# written by imageport's tests/support/guest_images.py"
    chunk = 64 << 20
    with open(dest, "r+b") as f:
        offset = 0
        while data := f.read(chunk + 4096):
            at = data.find(marker)
            if at >= 0:
                cfg = data[at : data.index(b"\n}\n", at) + 3]
                new = patch(cfg)
                assert len(new) == len(cfg) and new != cfg
                f.seek(offset + at)
                f.write(new)
                return dest
            offset += chunk
            f.seek(offset)
    raise AssertionError("grub.cfg not found in the test image")


@opt_in
def test_a_wrong_root_drops_to_the_initramfs_shell_and_says_why(tmp_path: Path) -> None:
    image = patched_copy(
        tmp_path / "wrong-root.raw",
        lambda cfg: re.sub(rb"root=UUID=[0-9a-f-]{36}", b"root=UUID=" + NO_SUCH_UUID, cfg),
    )
    try:
        proc = boot(str(image), "--bios", "--json", cwd=tmp_path)
    finally:
        image.unlink()  # about 1 GB of data
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run,) = json.loads(proc.stdout)["boots"]
    assert run["outcome"] == "emergency-shell", run["summary"]
    assert run["summary"] == (
        "The root filesystem was not mounted: the boot dropped to an emergency shell."
    )
    assert stage(run, "kernel")["reached"] and not stage(run, "root-filesystem")["reached"]
    why = [w["line"] for w in run["why"]]
    assert any("Gave up waiting for root file system device" in line for line in why)
    assert any(f"ALERT!  UUID={NO_SUCH_UUID.decode()} does not exist" in line for line in why)
    print(f"wrong root=: {run['summary']} ({run['seconds']} s)")


@opt_in
def test_a_kernel_without_its_initrd_cannot_reach_the_root_disk_and_panics(
    tmp_path: Path,
) -> None:
    # the virtio disk driver is a module in the initrd: without it, root= names nothing
    image = patched_copy(
        tmp_path / "no-initrd.raw", lambda cfg: cfg.replace(b"\tinitrd", b"#initrd")
    )
    try:
        proc = boot(str(image), "--bios", "--json", cwd=tmp_path)
    finally:
        image.unlink()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run,) = json.loads(proc.stdout)["boots"]
    assert run["outcome"] == "kernel-panic", run["summary"]
    assert run["summary"].startswith(
        "The kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs on "
    )
    why = [w["line"] for w in run["why"]]
    assert why[0].endswith("] No filesystem could mount root, tried:")
    assert not stage(run, "root-filesystem")["reached"]
    print(f"no initrd: {run['summary']} ({run['seconds']} s)")


@opt_in
def test_a_start_job_waiting_for_a_missing_disk_is_named(tmp_path: Path) -> None:
    """fstab requires a data disk (by label) that is not attached, with no time limit: systemd
    waits for it until the boot is stopped."""
    image = bd.debian_variant("waits-for-disk")
    proc = boot(str(image), "--bios", "--timeout", "240", "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run,) = json.loads(proc.stdout)["boots"]
    assert (run["outcome"], run["ended"]) == ("waiting-for-disk", "timeout"), run["summary"]
    device = f"/dev/disk/by-label/{bd.MISSING_LABEL}"
    assert run["summary"] == (
        f"Still waiting for a disk when the boot was stopped after 240 s: {device}."
    )
    assert stage(run, "root-filesystem")["reached"] and not stage(run, "login")["reached"]
    # systemd redraws its status line every second (one message), cut to 80 columns once its
    # timer needs more room (a few more): every line quoted is about that one unit
    why = [w["line"] for w in run["why"]]
    assert "Job dev-disk-by\\x2dlabel-gone.device/start running (" in why[0]
    assert all("Job dev-disk-by\\x2dlabel-gone.devic" in line for line in why)
    print(f"waiting for a disk: {run['summary']}")


@opt_in
def test_cloud_init_that_finishes_is_waited_for_and_reported(tmp_path: Path) -> None:
    image = bd.debian_variant("cloud-init")  # datasource_list: [ None ]: no network needed
    proc = boot(str(image), "--bios", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = json.loads(proc.stdout)["boots"]
    assert (run["outcome"], run["ended"]) == ("login", "settled")
    assert stage(run, "cloud-init")["reached"]
    assert "Cloud-init v. 22.4.2 finished at" in stage(run, "cloud-init")["evidence"][0]["line"]
    assert run["summary"].endswith("; cloud-init finished.")
    print(f"cloud-init: {run['summary']} ({run['seconds']} s)")
