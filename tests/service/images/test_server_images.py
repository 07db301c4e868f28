"""The request to make an image from a server (``POST /v2/cloudimages/action`` with
``instance_id``), checked at once: which server, in which state, with which disk, which fields go
with it, and the quotas. A refused request creates nothing; an accepted one a queued image with
the server's facts and an INIT ``imsCreateImageByInstance`` job."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.images.server_images import (
    SERVER_IMAGE_JOB,
    create_image,
    create_image_from_server,
)
from imageport.service.tables import images, jobs
from support import service_fixtures, shared_images
from support.fakes import FakeJobQueue, FakeServerHost
from support.server_rows import add_server


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = service_fixtures.make_fake_services(tmp_path / "data", project_job_limit=3)
    made.host = FakeServerHost()
    yield made
    made.db.dispose()


@pytest.fixture
def alpha(services: Services) -> str:
    return create_project(services, "alpha").id


@pytest.fixture
def image(services: Services, alpha: str) -> str:
    return shared_images.active_image(services, alpha, "base-image")


def refusal(call: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(ServiceError) as info:
        call()
    return info.value.status, info.value.code, info.value.message


def counts(services: Services) -> tuple[int, int]:
    with services.db.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(images)).scalar_one(),
            conn.execute(select(func.count()).select_from(jobs)).scalar_one(),
        )


def row(services: Services, table: Any, key: Any) -> Any:
    with services.db.connect() as conn:
        return conn.execute(select(table).where(key)).one()


def test_an_accepted_request_queues_an_image_with_the_servers_facts(
    services: Services, alpha: str, image: str
) -> None:
    server = add_server(services, alpha, image, status="ACTIVE", disk_gib=60, firmware="uefi")
    job_id = create_image(
        services,
        alpha,
        {
            "name": "from-server",
            "instance_id": server,
            "description": "fixed",
            "tags": ["env.prod"],
            "min_ram": 1024,
            "max_ram": 4096,
            "type": "ECS",
            "enterprise_project_id": "0",
        },
    )
    job = row(services, jobs, jobs.c.id == job_id)
    assert (job.job_type, job.status, job.params["server_id"]) == (SERVER_IMAGE_JOB, "INIT", server)
    assert (job.params["min_disk"], job.params["hw_firmware_type"]) == (60, "uefi")
    new = row(services, images, images.c.id == job.image_id)
    assert (new.status, new.name, new.min_disk, new.min_ram, new.max_ram, new.tags) == (
        "queued",
        "from-server",
        60,
        1024,
        4096,
        ["env=prod"],
    )
    props = new.properties
    assert props["__data_origin"] == f"instance,{server}"
    assert props["__originalimagename"] == image
    assert "__root_origin" not in props
    assert (props["__is_config_init"], props["hw_firmware_type"], props["architecture"]) == (
        "false",
        "uefi",
        "x86_64",
    )
    assert (props["__os_version"], props["enterprise_project_id"]) == (
        "Ubuntu 22.04 server 64bit",
        "0",
    )
    queue = services.queue
    assert isinstance(queue, FakeJobQueue) and queue.submitted == [job_id]


@pytest.mark.parametrize(
    ("server_kwargs", "status", "code", "words"),
    [
        ({"status": "BUILD"}, 409, "IMG.STATE", "is BUILD"),
        ({"status": "ERROR"}, 409, "IMG.STATE", "is ERROR"),
        ({"status": "DELETED"}, 409, "IMG.STATE", "is DELETED"),
        ({"status": "ACTIVE", "task_state": "rebooting"}, 409, "IMG.STATE", "is REBOOT"),
        ({"status": "ACTIVE", "task_state": "powering-off"}, 409, "IMG.STATE", "(powering-off)"),
        ({"status": "ACTIVE", "task_state": "image_snapshot"}, 409, "IMG.STATE", "busy"),
        ({"disk_gib": 20}, 400, "IMG.0055", "20 GiB system disk"),
        ({"disk_gib": 2048}, 400, "IMG.0055", "40-1024 GiB"),
    ],
)
def test_a_server_that_cannot_be_imaged_is_refused(
    services: Services,
    alpha: str,
    image: str,
    server_kwargs: dict[str, Any],
    status: int,
    code: str,
    words: str,
) -> None:
    server = add_server(services, alpha, image, **server_kwargs)
    before = counts(services)
    refused = refusal(
        lambda: create_image_from_server(services, alpha, {"name": "x", "instance_id": server})
    )
    assert refused[:2] == (status, code) and words in refused[2], refused
    assert counts(services) == before


def test_another_projects_server_is_not_found_like_a_missing_one(
    services: Services, alpha: str, image: str
) -> None:
    beta = create_project(services, "beta").id
    theirs = add_server(services, beta, shared_images.active_image(services, beta, "theirs"))
    for server in (theirs, "0b5e5d8e-1111-4a4a-9c9c-000000000000"):
        refused = refusal(
            functools.partial(create_image, services, alpha, {"name": "x", "instance_id": server})
        )
        assert refused[:2] == (404, "IMG.NOT_FOUND")
        assert refused[2] == f"server {server} not found"


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        ({"image_url": "images:disk.qcow2"}, "IMG.0001", "image_url does not go with instance_id"),
        ({"min_disk": 40}, "IMG.0001", "min_disk does not go with instance_id"),
        ({"os_version": "Ubuntu 22.04 server 64bit"}, "IMG.0001", "os_version does not go"),
        ({"is_quick_import": True}, "IMG.0001", "is_quick_import does not go"),
        ({"is_config_init": True}, "IMG.0001", "the job's check decides it"),
        ({"volume_id": "v-1"}, "IMG.0001", "volume_id does not go"),
        ({"data_images": [{"name": "d", "volume_id": "v"}]}, "IMG.SOURCE", "no data disks"),
        ({"cmk_id": "key"}, "IMG.0095", "no KMS key"),
        ({"colour": "blue"}, "IMG.0001", "unknown field 'colour'"),
        ({"name": "bad name!"}, "IMG.0003", "may hold only"),
        ({"name": None}, "IMG.0013", "name is required"),
        ({"description": "<b>"}, "IMG.0054", "may not contain"),
        ({"min_ram": 2048, "max_ram": 1024}, "IMG.0055", "below min_ram"),
        ({"tags": ["no-dot"]}, "IMG.0001", "key.value"),
        ({"type": "BMS"}, "IMG.0024", "not offered here"),
        ({"architecture": "sparc"}, "IMG.0212", "x86 or arm"),
        ({"hw_firmware_type": "efi"}, "IMG.0141", "bios or uefi"),
        ({"architecture": "arm", "hw_firmware_type": "bios"}, "IMG.0141", "UEFI"),
        ({"instance_id": "../../etc"}, "IMG.0001", "id of a server"),
        ({"instance_id": 42}, "IMG.0001", "id of a server"),
    ],
)
def test_each_bad_field_gets_its_code(
    services: Services, alpha: str, image: str, extra: dict[str, Any], code: str, words: str
) -> None:
    server = add_server(services, alpha, image)
    before = counts(services)
    refused = refusal(
        lambda: create_image(services, alpha, {"name": "x", "instance_id": server, **extra})
    )
    assert refused[1] == code and words in refused[2], refused
    assert counts(services) == before


def test_the_name_and_the_quotas_are_those_of_every_creation(
    services: Services, alpha: str, image: str
) -> None:
    server = add_server(services, alpha, image)
    refused = refusal(
        lambda: create_image(services, alpha, {"name": "base-image", "instance_id": server})
    )
    assert refused[:2] == (400, "IMG.0009")
    for n in range(3):  # project_job_limit=3 unfinished jobs
        create_image(services, alpha, {"name": f"img-{n}", "instance_id": server})
    refused = refusal(
        lambda: create_image(services, alpha, {"name": "one-more", "instance_id": server})
    )
    assert refused[:2] == (400, "IMG.0194")
    services.settings = dataclasses.replace(services.settings, image_quota=4)
    refused = refusal(
        lambda: create_image(services, alpha, {"name": "over", "instance_id": server})
    )
    assert refused[:2] == (400, "IMG.0015")


def test_a_service_without_servers_refuses_instance_id(services: Services, alpha: str) -> None:
    services.host = None
    refused = refusal(lambda: create_image(services, alpha, {"name": "x", "instance_id": "s-1"}))
    assert refused[:2] == (400, "IMG.SOURCE") and "runs no servers" in refused[2]


def test_a_body_without_instance_id_still_registers_a_file(services: Services, alpha: str) -> None:
    """The same route without ``instance_id`` is the file import, with its own checks."""
    refused = refusal(
        lambda: create_image(services, alpha, {"name": "x", "image_url": "nobucket:disk.qcow2"})
    )
    assert refused[1] in ("IMG.0055", "IMG.0069")
