"""The image and job use cases on a real database, with the fake object store and job queue of
:mod:`fakes` (held to their ports by the contract tests in tests/adapters)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.images import queries as image_queries
from imageport.service.images import updates as image_updates
from imageport.service.images.lifecycle import (
    create_glance_image,
    create_image_from_file,
    delete_image,
    quick_import,
    register_image_file,
)
from imageport.service.jobs import manage as job_cases
from imageport.service.tables import images, jobs
from support import service_fixtures
from support.fakes import FakeJobQueue
from support.import_fixtures import store_bytes

PARAM_KEYS = {
    "bucket",
    "key",
    "object_size",
    "object_etag",
    "quick_import",
    "is_config",
    "uninitialized",
    "min_disk",
    "os_version",
    "architecture",
    "hw_firmware_type",
    "stored_format",
    "staged",
    "declared_format",
    "disk_kind",
    "boot_test",
}


World = tuple[Services, str, str, FakeJobQueue]


@pytest.fixture
def services(fake_backend_services: Services) -> Services:
    """These tests run on SQLite and on a real PostgreSQL server."""
    return fake_backend_services


@pytest.fixture
def world(services: Services) -> World:
    """Two projects; the first owns bucket ``images`` holding ``disk.qcow2``."""
    queue = FakeJobQueue()  # records what is submitted, runs nothing
    services.queue = queue
    mine = create_project(services, "mine").id
    other = create_project(services, "other").id
    services.store.create_bucket("images", mine, "STANDARD", "local-1")
    services.store.create_bucket("theirs", other, "STANDARD", "local-1")
    store_bytes(services, "images", "disk.qcow2", b"QFI\xfb" + bytes(4096))
    store_bytes(services, "theirs", "disk.qcow2", b"QFI\xfb" + bytes(4096))
    return services, mine, other, queue


BODY = {
    "name": "web",
    "image_url": "images:disk.qcow2",
    "min_disk": 40,
    "os_version": "Ubuntu 22.04 server 64bit",
    "image_tags": [{"key": "k", "value": "v"}],
}


def code_of(call: object) -> str:
    with pytest.raises(ServiceError) as info:
        call()  # type: ignore[operator]
    return info.value.code


def job_row(services: Services, job_id: str) -> dict[str, Any]:
    with services.db.connect() as conn:
        return dict(conn.execute(select(jobs).where(jobs.c.id == job_id)).one()._mapping)


def end_job(services: Services, job_id: str, status: str = "FAIL") -> None:
    with services.db.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(status=status, end_time="2030-01-01T00:00:00.000Z")
        )


def test_create_image_registers_a_queued_image_and_submits_its_job(world: World) -> None:
    services, mine, _, queue = world
    job_id = create_image_from_file(services, mine, BODY)
    assert queue.submitted == [job_id]
    job = job_row(services, job_id)
    assert job["status"] == "INIT" and job["job_type"] == "imsImportImageJob"
    params = job["params"]
    assert isinstance(params, dict) and set(params) == PARAM_KEYS
    assert params["bucket"] == "images" and params["object_size"] == 4100
    assert params["quick_import"] is False and params["uninitialized"] is False
    assert params["stored_format"] == "qcow2" and params["disk_kind"] == "system"
    assert params["boot_test"] is False  # import_boot_test is off by default
    image = image_queries.get_image(services, mine, str(job["image_id"]))
    assert image.status == "queued" and image.visibility == "private"
    assert image.tags == ["k=v"]
    assert image.properties["__os_version"] == "Ubuntu 22.04 server 64bit"
    assert image.properties["__platform"] == "Ubuntu"
    assert image.properties["__data_origin"] == "file,images:disk.qcow2"
    assert all(isinstance(value, str) for value in image.properties.values())
    assert code_of(lambda: create_image_from_file(services, mine, BODY)) == "IMG.0009"


def test_registration_checks_the_object(world: World) -> None:
    services, mine, _, _ = world
    store_bytes(services, "images", "warm.qcow2", b"x" * 10, storage_class="WARM")
    store_bytes(services, "images", "empty.qcow2", b"")
    for url, code in (
        ("theirs:disk.qcow2", "IMG.0069"),
        ("nobucket:disk.qcow2", "IMG.0069"),
        ("images:missing.qcow2", "IMG.0121"),
        ("images:warm.qcow2", "IMG.0058"),
        ("images:empty.qcow2", "IMG.0057"),
    ):
        assert (
            code_of(
                lambda url=url: create_image_from_file(services, mine, {**BODY, "image_url": url})
            )
            == code
        )
    with services.db.connect() as conn:
        assert conn.execute(select(images.c.id)).first() is None  # nothing half-made


def test_normal_import_size_limit_and_quick_import(tmp_path: Path) -> None:
    services = service_fixtures.make_fake_services(tmp_path / "d", normal_import_max_bytes=1000)
    try:
        mine = create_project(services, "mine").id
        services.store.create_bucket("images", mine, "STANDARD", "local-1")
        store_bytes(services, "images", "disk.qcow2", b"x" * 2000)
        assert code_of(lambda: create_image_from_file(services, mine, BODY)) == "IMG.0059"
        job_id = quick_import(services, mine, BODY)
        assert job_row(services, job_id)["params"]["quick_import"] is True
    finally:
        services.db.dispose()


def test_region_without_import(tmp_path: Path) -> None:
    services = service_fixtures.make_fake_services(tmp_path / "d", import_enabled=False)
    try:
        mine = create_project(services, "mine").id
        with pytest.raises(ServiceError) as info:
            create_image_from_file(services, mine, BODY)
        assert (info.value.code, info.value.status) == ("IMG.REGION", 403)
    finally:
        services.db.dispose()


def test_glance_path_registers_an_uninitialized_image(world: World) -> None:
    services, mine, other, queue = world
    image = create_glance_image(
        services, mine, {"name": "raw-one", "disk_format": "qcow2", "min_disk": 50, "tags": ["a=b"]}
    )
    assert image.properties["__is_config_init"] == "false"
    body = {"image_url": "images:disk.qcow2"}
    assert code_of(lambda: register_image_file(services, other, image.id, body)) == "IMG.NOT_FOUND"
    job_id = register_image_file(services, mine, image.id, body)
    job = job_row(services, job_id)
    assert job["job_type"] == "imsNativeImportImageJob" and queue.submitted == [job_id]
    assert job["params"]["uninitialized"] is True
    assert job["params"]["min_disk"] == 50
    # a file from a bucket may be of any format (the vendor's disk_format describes the result)
    assert job["params"]["declared_format"] is None
    assert code_of(lambda: register_image_file(services, mine, image.id, body)) == "IMG.0090"
    end_job(services, job_id)
    with services.db.begin() as conn:
        conn.execute(update(images).values(status="killed"))
    assert code_of(lambda: register_image_file(services, mine, image.id, body)) == "IMG.STATE"


def test_list_filters_sorts_and_pages(world: World) -> None:
    services, mine, other, _ = world
    for i in range(5):
        create_glance_image(
            services,
            mine,
            {"name": f"img-{i}", "disk_format": "qcow2", "tags": [f"n={i}"], "min_ram": i},
        )
    create_glance_image(services, other, {"name": "img-x"})

    def names(*query: tuple[str, str]) -> list[str]:
        return [i.name for i in image_queries.list_images(services, mine, list(query)).images]

    assert names(("sort_key", "name"), ("sort_dir", "asc")) == [f"img-{i}" for i in range(5)]
    assert names(("tag", "n=3")) == ["img-3"]
    assert names(("min_ram", "2")) == ["img-2"]
    assert names(("name", "img-x")) == []  # another project's image never shows
    assert names(("__os_version", "Other Linux(64 bit)"), ("sort_key", "name"))[0] == "img-4"
    assert names(("__os_version", "Ubuntu 22.04 server 64bit")) == []
    assert names(("created_at", "gt:2000-01-01T00:00:00Z"), ("limit", "2")) != []
    assert names(("created_at", "lt:2000-01-01T00:00:00Z")) == []
    assert names(("owner", other)) == []
    page = image_queries.list_images(
        services, mine, [("sort_key", "name"), ("sort_dir", "asc"), ("limit", "2")]
    )
    assert [i.name for i in page.images] == ["img-0", "img-1"] and page.next_marker
    rest = names(("sort_key", "name"), ("sort_dir", "asc"), ("marker", page.next_marker))
    assert rest == ["img-2", "img-3", "img-4"]
    for query in (
        [("sort_key", "password")],
        [("sort_dir", "up")],
        [("limit", "0")],
        [("limit", "1001")],
        [("flavor_id", "x")],
        [("marker", "nope")],
        [("created_at", "after:2020")],
    ):
        assert code_of(lambda q=query: image_queries.list_images(services, mine, q)) == "IMG.0001"


def test_update_image(world: World) -> None:
    services, mine, _, _ = world
    image = create_glance_image(services, mine, {"name": "one"})
    create_glance_image(services, mine, {"name": "two"})
    rename = [{"op": "replace", "path": "/name", "value": "uno"}]
    assert (
        code_of(lambda: image_updates.update_image(services, mine, image.id, rename)) == "IMG.STATE"
    )  # cloudimages PATCH: active images only
    updated = image_updates.update_image(
        services,
        mine,
        image.id,
        [
            *rename,
            {"op": "add", "path": "/__description", "value": "first"},
            {"op": "replace", "path": "/min_ram", "value": "2048"},
            {"op": "add", "path": "/__support_kvm", "value": "true"},
            {"op": "replace", "path": "/hw_firmware_type", "value": "uefi"},
        ],
        glance=True,
    )
    assert updated.name == "uno" and updated.min_ram == 2048
    assert updated.properties["__description"] == "first"
    assert updated.properties["hw_firmware_type"] == "uefi"
    with services.db.begin() as conn:
        conn.execute(update(images).where(images.c.id == image.id).values(status="active"))
    for ops, code in (
        ([{"op": "replace", "path": "/name", "value": "two"}], "IMG.0009"),
        ([{"op": "replace", "path": "/status", "value": "active"}], "IMG.0001"),
        ([{"op": "move", "path": "/name", "value": "x"}], "IMG.0001"),
        ([{"op": "remove", "path": "/name"}], "IMG.0013"),
        ([{"op": "replace", "path": "/min_ram", "value": -1}], "IMG.0055"),
        ({"op": "replace"}, "IMG.0001"),
    ):
        assert (
            code_of(lambda o=ops: image_updates.update_image(services, mine, image.id, o)) == code
        )
    assert (
        image_updates.update_image(
            services, mine, image.id, [{"op": "replace", "path": "/name", "value": "un"}]
        ).name
        == "un"
    )


def test_delete_image_waits_for_its_job_and_removes_the_file(world: World) -> None:
    services, mine, other, _ = world
    job_id = create_image_from_file(services, mine, BODY)
    image_id = str(job_row(services, job_id)["image_id"])
    assert code_of(lambda: delete_image(services, mine, image_id, None)) == "IMG.0090"
    assert code_of(lambda: delete_image(services, other, image_id, None)) == "IMG.NOT_FOUND"
    assert code_of(lambda: delete_image(services, mine, image_id, {"x": 1})) == "IMG.0001"
    end_job(services, job_id, "SUCCESS")
    blob = services.settings.images_dir / f"{image_id}.qcow2"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(b"stored")
    with services.db.begin() as conn:
        conn.execute(
            update(images).where(images.c.id == image_id).values(status="active", blob=blob.name)
        )
    delete_image(services, mine, image_id, {"delete_backup": False})
    assert not blob.exists()
    assert code_of(lambda: image_queries.get_image(services, mine, image_id)) == "IMG.NOT_FOUND"


def test_jobs_are_private_and_cancellable(world: World) -> None:
    services, mine, other, _ = world
    job_id = create_image_from_file(services, mine, BODY)
    assert job_cases.show_job(services, mine, job_id, mine).image_name == "web"
    assert code_of(lambda: job_cases.show_job(services, other, job_id)) == "IMG.NOT_FOUND"
    assert code_of(lambda: job_cases.show_job(services, mine, job_id, other)) == "IMG.NOT_FOUND"
    assert code_of(lambda: job_cases.cancel_job(services, other, job_id)) == "IMG.NOT_FOUND"
    cancelled = job_cases.cancel_job(services, mine, job_id)  # not started: ends at once
    assert (cancelled.status, cancelled.error_code) == ("FAIL", "IMG.CANCELLED")
    assert cancelled.end_time and cancelled.cancel_requested
    image = image_queries.get_image(services, mine, str(cancelled.image_id))
    assert (image.status, image.error_code) == ("killed", "IMG.CANCELLED")
    delete_image(services, mine, image.id, None)  # no job holds it any more
    assert code_of(lambda: job_cases.cancel_job(services, mine, job_id)) == "IMG.STATE"
    running = create_image_from_file(services, mine, BODY)
    with services.db.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == running).values(status="RUNNING"))
    asked = job_cases.cancel_job(services, mine, running)  # the worker will stop it
    assert (asked.status, asked.cancel_requested) == ("RUNNING", True)


def test_image_quota_per_project(world: World) -> None:
    services, mine, other, _ = world
    services.settings = dataclasses.replace(services.settings, image_quota=2)
    create_image_from_file(services, mine, BODY)
    second = create_glance_image(services, mine, {"name": "two"})
    # the third image of the project is refused on every path, and nothing is added
    assert (
        code_of(lambda: create_image_from_file(services, mine, {**BODY, "name": "3"})) == "IMG.0015"
    )
    assert code_of(lambda: quick_import(services, mine, {**BODY, "name": "3"})) == "IMG.0015"
    assert code_of(lambda: create_glance_image(services, mine, {"name": "3"})) == "IMG.0015"
    with services.db.connect() as conn:
        assert len(conn.execute(select(images.c.id)).all()) == 2
    create_glance_image(services, other, {"name": "theirs"})  # quotas are per project
    delete_image(services, mine, second.id, None)
    create_glance_image(services, mine, {"name": "three"})  # room again
    services.settings = dataclasses.replace(services.settings, image_quota=0)  # no limit
    create_glance_image(services, mine, {"name": "four"})
