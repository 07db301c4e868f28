"""``imageport image update|copy|tag`` and ``imageport job cancel`` against the real image API on
loopback: a file uploaded with ``imageport upload`` is registered and imported (the test runs
the job as a worker would), then updated, tagged and copied with the CLI; what the user sees is
the command's output and the image the server shows afterwards."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from imageport.service.jobs.dispatch import run_job
from imageport.service.tables import jobs
from support import import_fixtures as fx
from support.live_apis import IMAGEPORT, Live, live_apis


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_apis(tmp_path) as apis:
        apis.cli_ok("bucket", "create", "images")
        apis.cli_ok("upload", str(fx.good_image("qcow2")), "images/good.qcow2")
        yield apis


def _registered(live: Live, name: str, *extra: str) -> tuple[str, str]:
    """Register ``images:good.qcow2`` as ``name``: (job id, image id); the job not run."""
    made = live.cli_ok("image", "register", name, "images:good.qcow2", "--json", *extra)
    job_id = json.loads(made.stdout)["job_id"]
    job = json.loads(live.cli_ok("job", "show", job_id, "--json").stdout)
    return job_id, str(job["entities"]["image_id"])


def _active(live: Live, name: str) -> str:
    job_id, image_id = _registered(live, name)
    run_job(live.services, job_id)
    assert json.loads(live.cli_ok("image", "show", image_id, "--json").stdout)["status"] == "active"
    return image_id


def _show(live: Live, image_id: str) -> dict[str, object]:
    doc = json.loads(live.cli_ok("image", "show", image_id, "--json").stdout)
    assert isinstance(doc, dict)
    return doc


def test_update_tags_and_copy_an_active_image(live: Live) -> None:
    image_id = _active(live, "good")

    # update: one JSON patch, the updated image printed
    updated = live.cli_ok(
        "image",
        "update",
        image_id,
        "--name",
        "renamed",
        "--description",
        "patched by the CLI",
        "--min-ram",
        "1024",
        "--max-ram",
        "4096",
        "--config-init",
        "--firmware",
        "uefi",
    ).stdout
    for line in (
        "name: renamed",
        "__description: patched by the CLI",
        "min_ram: 1024",
        "max_ram: 4096",
        "__is_config_init: true",
        "hw_firmware_type: uefi",
    ):
        assert line in updated.splitlines()
    shown = _show(live, image_id)
    assert (shown["name"], shown["min_ram"], shown["__is_config_init"]) == ("renamed", 1024, "true")
    again = json.loads(
        live.cli_ok("image", "update", image_id, "--no-config-init", "--json").stdout
    )
    assert again["__is_config_init"] == "false" and again["name"] == "renamed"

    nothing = live.cli("image", "update", image_id)
    assert nothing.returncode == 2 and "nothing to update: give --name" in nothing.stderr
    ram = live.cli("image", "update", image_id, "--min-ram", "-1")
    assert ram.returncode == 2 and "HTTP 400 IMG.0055" in ram.stderr
    assert len(ram.stderr.strip().splitlines()) == 1
    badname = live.cli("image", "update", image_id, "--name", "no/slash", "--description", "x")
    assert badname.returncode == 2 and "IMG.0003" in badname.stderr
    assert _show(live, image_id)["__description"] == "patched by the CLI"  # all or none

    # tags: add (a comma list too), list, replace, remove
    live.cli_ok("image", "tag", "add", image_id, "team=core", "env=dev,tier=")
    assert live.cli_ok("image", "tag", "ls", image_id).stdout.splitlines() == [
        "team=core",
        "env=dev",
        "tier=",
    ]
    live.cli_ok("image", "tag", "add", image_id, "env=prod")
    listed = json.loads(live.cli_ok("image", "tag", "ls", image_id, "--json").stdout)
    assert {"key": "env", "value": "prod"} in listed and len(listed) == 3
    removed = live.cli_ok("image", "tag", "rm", image_id, "tier")
    assert removed.stdout.strip() == f"removed tag tier from image {image_id}"
    assert "tier=" not in live.cli_ok("image", "tag", "ls", image_id).stdout
    missing = live.cli("image", "tag", "rm", image_id, "tier")
    assert missing.returncode == 2 and "HTTP 404" in missing.stderr
    badkey = live.cli("image", "tag", "add", image_id, "no.dots=1")
    assert badkey.returncode == 2 and "HTTP 400 IMG.0001" in badkey.stderr
    noeq = live.cli("image", "tag", "add", image_id, "justakey")
    assert noeq.returncode == 2 and "'justakey' is not KEY=VALUE" in noeq.stderr
    twice = live.cli("image", "tag", "add", image_id, "a=1,a=2")
    assert twice.returncode == 2 and "a given more than once" in twice.stderr

    # copy: the job id, then --wait follows the copy job to its image
    taken = live.cli("image", "copy", image_id, "--name", "renamed")
    assert taken.returncode == 2 and "IMG.0009" in taken.stderr  # the name is in use
    made = json.loads(live.cli_ok("image", "copy", image_id, "--name", "copy-1", "--json").stdout)
    job = json.loads(live.cli_ok("job", "show", made["job_id"], "--json").stdout)
    assert job["job_type"] == "imsCopyImageInRegionJob"
    printed = live.cli_ok(
        "image", "copy", image_id, "--name", "copy-2", "--description", "c2"
    ).stdout
    assert printed.startswith("job ") and f"(copy of image {image_id} as 'copy-2')" in printed
    copy_job = printed.split()[1]
    waiter = subprocess.Popen(
        [*IMAGEPORT, "job", "wait", copy_job, "--json"],
        env=live.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_job(live.services, copy_job)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    copy_id = json.loads(out)["entities"]["image_id"]
    copied = _show(live, copy_id)
    assert (copied["name"], copied["status"], copied["__description"]) == ("copy-2", "active", "c2")


def test_copy_wait_follows_the_job(live: Live) -> None:
    image_id = _active(live, "good")
    waiting = subprocess.Popen(
        [*IMAGEPORT, "image", "copy", image_id, "--name", "copied", "--wait", "--json"],
        env=live.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    pending: list[str] = []
    while not pending and time.monotonic() < deadline:
        with live.services.db.connect() as conn:
            pending = list(conn.execute(select(jobs.c.id).where(jobs.c.status == "INIT")).scalars())
        time.sleep(0.05)
    assert len(pending) == 1
    run_job(live.services, pending[0])
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    job = json.loads(out)
    assert (job["status"], job["job_type"]) == ("SUCCESS", "imsCopyImageInRegionJob")
    assert _show(live, job["entities"]["image_id"])["name"] == "copied"


def test_update_of_an_image_not_active_is_refused(live: Live) -> None:
    _, image_id = _registered(live, "queued-one")
    refused = live.cli("image", "update", image_id, "--name", "x")
    assert refused.returncode == 2 and "HTTP 409 IMG.STATE" in refused.stderr
    assert "only active images can be updated" in refused.stderr


def test_job_cancel_ends_a_job_not_started(live: Live) -> None:
    job_id, image_id = _registered(live, "to-cancel")
    cancelled = live.cli_ok("job", "cancel", job_id)
    assert cancelled.stdout.strip() == f"job {job_id} cancelled: IMG.CANCELLED"
    killed = live.cli("image", "show", image_id)
    assert killed.returncode == 1 and "status: killed" in killed.stdout
    again = live.cli("job", "cancel", job_id)
    assert again.returncode == 2 and "HTTP 409 IMG.STATE" in again.stderr
    assert "has already ended (FAIL)" in again.stderr
    unknown = live.cli("job", "cancel", "0" * 32, "--json")
    assert unknown.returncode == 2 and "HTTP 404" in unknown.stderr
