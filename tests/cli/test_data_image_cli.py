"""``imageport image register --data-image`` against the real image API on loopback: an empty
data disk uploaded and registered as a data image (the test runs the job as a worker would),
the same disk refused as a system disk, and the options a data disk has no use for refused."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.service.jobs.dispatch import run_job
from support.live_apis import Live, live_apis


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    disk = tmp_path / "data.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "3G"], check=True)
    with live_apis(tmp_path) as apis:
        apis.cli_ok("bucket", "create", "images")
        apis.cli_ok("upload", str(disk), "images/data.qcow2")
        yield apis


def test_register_data_image(live: Live) -> None:
    registered = live.cli_ok(
        "image", "register", "logs", "images:data.qcow2", "--data-image", "--os-type",
        "Windows", "--min-disk", "50", "--json",
    )  # fmt: skip
    job_id = json.loads(registered.stdout)["job_id"]
    run_job(live.services, job_id)
    job = json.loads(live.cli_ok("job", "wait", job_id, "--json").stdout)
    assert (job["status"], job["job_type"]) == ("SUCCESS", "imsImportDataImageJob")
    image = json.loads(live.cli_ok("image", "show", job["entities"]["image_id"], "--json").stdout)
    assert (image["virtual_env_type"], image["__os_type"], image["min_disk"]) == (
        "DataImage",
        "Windows",
        50,
    )
    assert "__os_version" not in image

    as_system = live.cli_ok("image", "register", "sys", "images:data.qcow2", "--json")
    system_job = json.loads(as_system.stdout)["job_id"]
    run_job(live.services, system_job)
    failed = live.cli("job", "wait", system_job, "--json")
    assert failed.returncode != 0 and "IMG-SYSTEM-DISK" in failed.stdout

    for extra in (["--os-version", "Ubuntu 22.04 server 64bit"], ["--firmware", "uefi"]):
        refused = live.cli("image", "register", "x", "images:data.qcow2", "--data-image", *extra)
        assert refused.returncode == 2 and "--data-image registers a data disk" in refused.stderr
    alone = live.cli("image", "register", "x", "images:data.qcow2", "--os-type", "Linux")
    assert alone.returncode == 2 and "--os-type goes with --data-image" in alone.stderr
    small = live.cli(
        "image", "register", "x", "images:data.qcow2", "--data-image", "--min-disk", "2049"
    )
    assert small.returncode != 0 and "IMG.0055" in small.stderr
