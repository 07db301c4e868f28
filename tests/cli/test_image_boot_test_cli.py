"""``imageport image boot-test`` against the real image API on loopback, with the service's own
job queue and a real QEMU machine: a stored image whose disk holds no boot code is booted
through ``POST /v1/cloudimages/{id}/boot-test`` (SeaBIOS finds no bootable device in a few
seconds), the verdict joins the image's report and ``image report`` shows it, and the
screenshot is fetched from its route."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.adapters.job_queue import ThreadJobQueue
from imageport.adapters.qemu.boot_runner import QemuBootRunner
from imageport.service.jobs.dispatch import run_job
from support.live_apis import Live, live_apis
from support.shared_images import PASSING, active_image

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 is not installed"
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_apis(tmp_path) as apis:
        apis.services.boot = QemuBootRunner()
        queue = ThreadJobQueue(1, lambda job_id: run_job(apis.services, job_id))
        apis.services.queue = queue
        queue.start()
        try:
            yield apis
        finally:
            queue.stop()


def empty_qcow2(tmp_path: Path) -> bytes:
    """A 64 MiB qcow2 that holds nothing: no partition table, no boot code."""
    path = tmp_path / "empty.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path.read_bytes()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_stored_image_without_boot_code_is_booted_by_the_service_and_its_verdict_kept(
    live: Live, tmp_path: Path
) -> None:
    disk = empty_qcow2(tmp_path)
    image_id = active_image(
        live.services, live.project_id, "no-boot-code", data=disk, report=PASSING
    )
    shots = tmp_path / "shots"
    started = time.monotonic()
    done = live.cli(
        "image",
        "boot-test",
        image_id,
        "--bios",
        "--timeout",
        "60",
        "--wait",
        "--screenshots",
        str(shots),
        "--json",
        timeout=180,
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr  # the image does not boot
    doc = json.loads(done.stdout)
    boot = doc["boot"]
    (bios,) = boot["boots"]
    assert (bios["firmware"], bios["outcome"], bios["passed"]) == (
        "bios",
        "no-bootable-device",
        False,
    )
    assert bios["summary"] == "The firmware found no bootable device."
    assert [w["line"] for w in bios["why"]] == [
        "Boot failed: not a bootable disk",
        "No bootable device.",
    ]
    assert bios["ended"] == "settled" and bios["job_id"] == doc["job_id"]
    route = f"/v1/cloudimages/{image_id}/boot-test/screenshot?firmware=bios"
    assert bios["screenshot"] == route
    assert doc["screenshots"] == [str(shots / f"{image_id}.bios.png")]
    assert png_size((shots / f"{image_id}.bios.png").read_bytes()) == (720, 400)
    print(f"boot test through the route: {bios['seconds']} s of boot, {took:.1f} s in all")

    job = json.loads(live.cli_ok("job", "show", doc["job_id"], "--json").stdout)
    assert (job["status"], job["job_type"]) == ("SUCCESS", "imsBootTestJob")
    assert job["entities"]["boot_outcomes"] == "bios:no-bootable-device"
    shown = live.cli("image", "report", image_id)
    assert shown.returncode == 0  # the check's verdict: the boot test is reported beside it
    assert "Boot test\n  claims: neither BIOS nor UEFI\n" in shown.stdout
    assert "  BIOS: FAIL: The firmware found no bootable device.\n" in shown.stdout
    assert f"    screenshot: GET {route}\n" in shown.stdout
    assert "  result: FAIL, no login prompt under BIOS\n" in shown.stdout
    # the stored file was only read (an overlay took the machine's writes)
    stored = live.services.settings.images_dir / f"{image_id}.qcow2"
    assert stored.read_bytes() == disk


def test_the_command_refuses_what_the_route_refuses(live: Live, tmp_path: Path) -> None:
    both = live.cli("image", "boot-test", "x", "--bios", "--uefi")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    missing = live.cli("image", "boot-test", "0" * 36)
    assert missing.returncode == 2 and "IMG.NOT_FOUND" in missing.stderr
    image_id = active_image(
        live.services, live.project_id, "short", data=empty_qcow2(tmp_path), report=PASSING
    )
    short = live.cli("image", "boot-test", image_id, "--timeout", "5")
    assert short.returncode == 2 and "IMG.0001" in short.stderr and "timeout" in short.stderr
    loose = live.cli("image", "boot-test", image_id, "--screenshots", str(tmp_path))
    assert loose.returncode == 2 and "--screenshots goes with --wait" in loose.stderr
