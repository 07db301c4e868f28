"""Making an image from a server (``imsCreateImageByInstance``) with the real image worker
(qemu-img, the checker) and a fake server host whose disk copy is a REAL qcow2 overlay on a real
guest: the Debian 12 test image, or the small synthetic Debian guest where the test is about
what the rules say of changed guest files.

What a user sees: the new image is the server's disk, standalone (no backing file) and
identical to the disk as it was copied, overlay writes included; it was checked by every rule,
its report kept; ``__data_origin`` is ``instance,<server>``; ``__is_config_init`` says whether
the initialization rules passed on the server's disk (fixed in the server: true; broken in the
server: false). A failing rule, a failed copy or a cancellation kill the image and leave
nothing behind; the server is ``image_snapshot`` only while its disk is copied.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.images.server_images import SERVER_IMAGE_JOB, create_image_from_server
from imageport.service.jobs.dispatch import RUNNERS, run_job
from imageport.service.jobs.manage import cancel_job
from imageport.service.jobs.recovery import recover
from imageport.service.jobs.server_image_job import run_server_image_job
from imageport.service.ports import MachineSpec
from imageport.service.tables import images, jobs, servers
from support import guest_fixtures as gf
from support import guest_images, service_fixtures, shared_images
from support.fakes import FakeServerHost
from support.server_rows import GiB, add_server, overlay_maker, server_row

MiB = 1 << 20


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = service_fixtures.make_services(tmp_path / "data")
    made.host = FakeServerHost()
    yield made
    made.db.dispose()


def fake_host(services: Services) -> FakeServerHost:
    host = services.host
    assert isinstance(host, FakeServerHost)
    return host


def image_of_job(services: Services, job_id: str) -> tuple[Any, Any]:
    with services.db.connect() as conn:
        job = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
        image = conn.execute(select(images).where(images.c.id == job.image_id)).one()
    return job, image


def netrules_guest() -> Path:
    """The synthetic cloud-ready guest with a udev persistent-net rules file (IMG-NET-RULES, a
    warning: an initialization rule)."""
    return gf.build_guest(
        "netrules",
        root={
            **gf.CLOUD_READY,
            "etc/udev/rules.d/70-persistent-net.rules": (
                'SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"\n'
            ),
        },
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
    )


def setup_server(
    services: Services, *, status: str = "SHUTOFF", base: Path | None = None, fmt: str = "raw"
) -> tuple[str, str, str]:
    """A project, its active image and a server made from it whose disk is an overlay on
    ``base`` (default: the synthetic cloud-ready guest, raw); (project, image, server)."""
    project = create_project(services, "alpha").id
    image_id = shared_images.active_image(services, project, "base-image")
    server = add_server(
        services,
        project,
        image_id,
        status=status,
        base=base or gf.synthetic_guest(),
        base_format=fmt,
    )
    return project, image_id, server


def leftovers(services: Services) -> list[str]:
    """What the job left in its scratch space (nothing, once it has ended)."""
    tmp = services.settings.tmp_dir
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def qemu_img_info(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "qcow2", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def test_the_job_type_is_the_vendors_and_runs() -> None:
    assert SERVER_IMAGE_JOB == "imsCreateImageByInstance"
    assert RUNNERS[SERVER_IMAGE_JOB] is run_server_image_job


def test_an_image_from_a_stopped_debian_server_is_its_disk_standalone_checked_and_stored(
    services: Services, tmp_path: Path
) -> None:
    debian = guest_images.guest_image("gpt-bios-esp-ext4", "qcow2")
    project, image_id, server = setup_server(services, base=debian, fmt="qcow2")
    as_copied = tmp_path / "disk-as-copied.qcow2"
    fake_host(services).copy_maker = overlay_maker(writes=[(39 * GiB, MiB, 0x41)], keep=as_copied)
    job_id = create_image_from_server(
        services,
        project,
        {
            "name": "from-deb",
            "instance_id": server,
            "description": "fixed in a server",
            "image_tags": [{"key": "env", "value": "prod"}],
        },
    )
    queued_job, queued = image_of_job(services, job_id)
    assert (queued_job.job_type, queued_job.status, queued.status) == (
        SERVER_IMAGE_JOB,
        "INIT",
        "queued",
    )
    assert queued.properties["__is_config_init"] == "false"  # until the check decides
    started = time.monotonic()
    run_job(services, job_id)
    print(f"image from a 40 GiB server disk on Debian: {time.monotonic() - started:.2f} s")

    job, image = image_of_job(services, job_id)
    assert (job.status, job.phase, job.percent, job.error_code) == ("SUCCESS", "store", 100.0, None)
    assert (image.status, image.disk_format, image.min_disk, image.tags) == (
        "active",
        "qcow2",
        40,
        ["env=prod"],
    )
    stored = services.settings.images_dir / image.blob
    info = qemu_img_info(stored)
    assert "backing-filename" not in info and "full-backing-filename" not in info
    assert info["virtual-size"] == image.virtual_size == 40 * GiB
    # the very disk that was copied: the base's data and the overlay's writes
    same = subprocess.run(
        ["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", str(stored), str(as_copied)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert same.returncode == 0, same.stdout + same.stderr
    read = subprocess.run(
        ["qemu-io", "-r", "-f", "qcow2", "-c", f"read -P 0x41 {39 * GiB} {MiB}", str(stored)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Pattern verification failed" not in read and f"read {MiB}/{MiB}" in read
    props = image.properties
    assert props["__data_origin"] == f"instance,{server}"
    assert props["__originalimagename"] == image_id
    assert "__root_origin" not in props
    assert props["__is_config_init"] == "true"
    assert props["__os_version"].startswith("Debian GNU/Linux 12")
    assert (props["__description"], props["__image_size"]) == (
        "fixed in a server",
        str(image.size),
    )
    assert image.report["summary"]["verdict"] == "pass"
    assert image.report["file"] == f"the system disk of server {server}"
    assert str(services.settings.tmp_dir) not in json.dumps(image.report)
    assert leftovers(services) == []  # the copy discarded, the scratch removed
    assert ("copy_disk", server) in fake_host(services).calls
    after = server_row(services, server)
    assert (after.status, after.task_state) == ("SHUTOFF", None)


def test_a_running_server_is_image_snapshot_only_while_its_disk_is_copied(
    services: Services,
) -> None:
    seen: list[tuple[str, str | None]] = []

    def look(spec: MachineSpec, top: Path) -> None:
        row = server_row(services, spec.server_id)
        seen.append((row.status, row.task_state))

    fake_host(services).copy_maker = overlay_maker(then=look)
    project, _, server = setup_server(services, status="ACTIVE")
    job_id = create_image_from_server(services, project, {"name": "live", "instance_id": server})
    run_job(services, job_id)
    job, image = image_of_job(services, job_id)
    assert (job.status, image.status) == ("SUCCESS", "active"), job.fail_reason
    assert seen == [("ACTIVE", "image_snapshot")]
    after = server_row(services, server)
    assert (after.status, after.task_state) == ("ACTIVE", None)
    assert fake_host(services).state(server).running  # the server ran on
    assert image.properties["__is_config_init"] == "true"


@pytest.mark.parametrize(
    ("base", "in_server", "initialized"),
    [
        pytest.param(netrules_guest, gf.synthetic_guest, "true", id="fixed-in-the-server"),
        pytest.param(gf.synthetic_guest, netrules_guest, "false", id="broken-in-the-server"),
    ],
)
def test_config_init_follows_the_initialization_rules_on_the_servers_disk(
    services: Services, base: Any, in_server: Any, initialized: str
) -> None:
    """The server's disk differs from its image's in one guest file (a udev persistent-net
    rules file, IMG-NET-RULES): what the image from the server says is what the server's disk
    holds, not what the image it was made from held."""
    fake_host(services).copy_maker = overlay_maker(content=in_server())
    project, _, server = setup_server(services, base=base())
    job_id = create_image_from_server(services, project, {"name": "img", "instance_id": server})
    run_job(services, job_id)
    job, image = image_of_job(services, job_id)
    assert (job.status, image.status) == ("SUCCESS", "active"), job.fail_reason
    assert image.properties["__is_config_init"] == initialized
    net_rules = [f for f in image.report["findings"] if f["rule_id"] == "IMG-NET-RULES"]
    assert [f["severity"] for f in net_rules] == ([] if initialized == "true" else ["warning"])


def test_a_failing_rule_kills_the_image_with_its_rule_and_leaves_nothing(
    services: Services,
) -> None:
    fake_host(services).copy_maker = overlay_maker(content=gf.synthetic_guest(data_disk=True))
    project, _, server = setup_server(services)
    stored_before = sorted(p.name for p in services.settings.images_dir.iterdir())
    job_id = create_image_from_server(services, project, {"name": "img", "instance_id": server})
    run_job(services, job_id)
    job, image = image_of_job(services, job_id)
    assert (job.status, job.error_code) == ("FAIL", "IMG-FSTAB-DATA-DISK")
    assert "/etc/fstab" in job.fail_reason
    assert (image.status, image.error_code, image.blob) == ("killed", "IMG-FSTAB-DATA-DISK", None)
    assert image.report["summary"]["verdict"] == "fail"
    assert sorted(p.name for p in services.settings.images_dir.iterdir()) == stored_before
    assert leftovers(services) == []
    assert server_row(services, server).task_state is None


def test_a_failed_copy_fails_the_job_cleanly(services: Services) -> None:
    project, _, server = setup_server(services)
    fake_host(services).fail["copy_disk"] = "qemu: the disk cannot be read"
    job_id = create_image_from_server(services, project, {"name": "img", "instance_id": server})
    run_job(services, job_id)
    job, image = image_of_job(services, job_id)
    assert (job.status, job.error_code) == ("FAIL", "IMG.1075")
    assert "could not be copied: qemu: the disk cannot be read" in job.fail_reason
    assert (image.status, image.blob) == ("killed", None)
    assert leftovers(services) == []
    assert server_row(services, server).task_state is None


def test_a_job_cancelled_while_the_disk_is_copied_cleans_up(services: Services) -> None:
    project, _, server = setup_server(services)
    job_id = create_image_from_server(services, project, {"name": "img", "instance_id": server})

    def cancel(spec: MachineSpec, top: Path) -> None:
        cancel_job(services, project, job_id)

    fake_host(services).copy_maker = overlay_maker(then=cancel)
    run_job(services, job_id)
    job, image = image_of_job(services, job_id)
    assert (job.status, job.error_code, image.status) == ("FAIL", "IMG.CANCELLED", "killed")
    assert image.blob is None and leftovers(services) == []
    assert server_row(services, server).task_state is None


def test_a_server_busy_when_the_job_runs_fails_the_job_without_copying(
    services: Services,
) -> None:
    project, _, server = setup_server(services, status="ACTIVE")
    job_id = create_image_from_server(services, project, {"name": "img", "instance_id": server})
    with services.db.begin() as conn:  # a reboot started after the request was accepted
        conn.execute(
            update(servers)
            .where(servers.c.id == server)
            .values(task_state="rebooting", status="REBOOT")
        )
    run_job(services, job_id)
    job, image = image_of_job(services, job_id)
    assert (job.status, job.error_code, image.status) == ("FAIL", "IMG.STATE", "killed")
    assert ("copy_disk", server) not in fake_host(services).calls
    assert server_row(services, server).task_state == "rebooting"  # not ours to change
    assert leftovers(services) == []


def test_a_restart_takes_the_mark_off_a_server_whose_disk_was_being_copied(
    services: Services,
) -> None:
    project, _, server = setup_server(services, status="ACTIVE")
    job_id = create_image_from_server(services, project, {"name": "img", "instance_id": server})
    with services.db.begin() as conn:  # the service died during the copy
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(status="RUNNING", attempts=1))
        conn.execute(
            update(servers).where(servers.c.id == server).values(task_state="image_snapshot")
        )
    assert recover(services) == [job_id]
    after = server_row(services, server)
    assert (after.status, after.task_state) == ("ACTIVE", None)
    fake_host(services).copy_maker = overlay_maker()
    run_job(services, job_id)  # and the job runs again from the start
    job, _ = image_of_job(services, job_id)
    assert job.status == "SUCCESS", job.fail_reason
