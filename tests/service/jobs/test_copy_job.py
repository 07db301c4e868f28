"""Copying an image in the region, on SQLite and PostgreSQL: the request checks, the job (a hard
link of the stored file, a copy where no link can be made), deletion of either image, and
recovery of an interrupted copy job."""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, update

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.images import queries as image_queries
from imageport.service.images.lifecycle import delete_image
from imageport.service.jobs import state as job_state
from imageport.service.jobs.copy_job import COPY_JOB, copy_image
from imageport.service.jobs.dispatch import run_job
from imageport.service.jobs.recovery import MAX_ATTEMPTS, RESTARTED, recover
from imageport.service.tables import images, jobs
from support import shared_images

DISK = b"QFI\xfb" + bytes(60) + b"stored image bytes" * 100


@pytest.fixture
def services(backend_services: Services) -> Services:
    """These tests run on SQLite and on a real PostgreSQL server."""
    return backend_services


def active_image(
    services: Services, project_id: str, name: str, data: bytes = DISK, status: str = "active"
) -> str:
    """An image as an import job leaves it: a row and its stored file (made in no time)."""
    return shared_images.active_image(
        services,
        project_id,
        name,
        data=data,
        status=status,
        description="the source",
        min_ram=1024,
        max_ram=4096,
        report={"summary": {"verdict": "pass"}},
    )


def row(services: Services, table: Table, row_id: str) -> Any:
    with services.db.connect() as conn:
        return conn.execute(select(table).where(table.c.id == row_id)).one()


def code_of(call: Callable[[], object]) -> tuple[int, str]:
    with pytest.raises(ServiceError) as info:
        call()
    return info.value.status, info.value.code


def test_copy_shares_the_stored_file_and_survives_the_source(services: Services) -> None:
    mine = create_project(services, "mine").id
    source_id = active_image(services, mine, "source")
    job_id = copy_image(
        services,
        mine,
        source_id,
        {"name": "copy", "description": "a copy", "enterprise_project_id": "0"},
    )
    job = row(services, jobs, job_id)
    assert (job.job_type, job.status) == (COPY_JOB, "INIT")
    copy_id = job.image_id
    queued = image_queries.get_image(services, mine, copy_id)
    assert (queued.status, queued.name, queued.disk_format) == ("queued", "copy", "qcow2")

    run_job(services, job_id)  # the queue's dispatcher sends it to the copy job
    job = row(services, jobs, job_id)
    assert (job.status, job.percent, job.error_code) == ("SUCCESS", 100.0, None)
    source = image_queries.get_image(services, mine, source_id)
    copy = image_queries.get_image(services, mine, copy_id)
    assert copy.status == "active" and copy.active_at is not None
    assert (copy.size, copy.virtual_size, copy.checksum) == (
        source.size,
        source.virtual_size,
        source.checksum,
    )
    assert (copy.min_disk, copy.min_ram, copy.max_ram) == (40, 1024, 4096)
    props = copy.properties
    assert props["__originalimagename"] == source_id
    assert props["__data_origin"] == f"image,{source_id}"
    assert props["__description"] == "a copy" and props["enterprise_project_id"] == "0"
    assert props["__os_version"] == "Ubuntu 22.04 server 64bit"
    assert props["__image_size"] == str(len(DISK)) and copy.tags == []
    assert row(services, images, copy_id).report == {"summary": {"verdict": "pass"}}
    folder = services.settings.images_dir
    stored, copied = folder / f"{source_id}.qcow2", folder / f"{copy_id}.qcow2"
    assert copy.blob == copied.name
    assert os.stat(stored).st_ino == os.stat(copied).st_ino  # one inode, two names
    assert os.stat(copied).st_nlink == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted([stored.name, copied.name])

    delete_image(services, mine, source_id, None)
    assert not stored.exists()
    assert copied.read_bytes() == DISK
    assert image_queries.get_image(services, mine, copy_id).status == "active"
    delete_image(services, mine, copy_id, None)
    assert list(folder.iterdir()) == []


def test_deleting_the_copy_leaves_the_source(services: Services) -> None:
    mine = create_project(services, "mine").id
    source_id = active_image(services, mine, "source")
    job_id = copy_image(services, mine, source_id, {"name": "copy"})
    run_job(services, job_id)
    delete_image(services, mine, row(services, jobs, job_id).image_id, None)
    stored = services.settings.images_dir / f"{source_id}.qcow2"
    assert stored.read_bytes() == DISK and os.stat(stored).st_nlink == 1
    assert image_queries.get_image(services, mine, source_id).status == "active"


def test_where_no_link_can_be_made_the_file_is_copied(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)  # as on another filesystem
    mine = create_project(services, "mine").id
    source_id = active_image(services, mine, "source")
    job_id = copy_image(services, mine, source_id, {"name": "copy"})
    run_job(services, job_id)
    copy = image_queries.get_image(services, mine, row(services, jobs, job_id).image_id)
    assert copy.status == "active"
    folder = services.settings.images_dir
    copied = folder / f"{copy.id}.qcow2"
    assert copied.read_bytes() == DISK
    assert os.stat(copied).st_ino != os.stat(folder / f"{source_id}.qcow2").st_ino


def test_synchronous_checks(services: Services) -> None:
    mine = create_project(services, "mine").id
    other = create_project(services, "other").id
    source_id = active_image(services, mine, "source")
    queued_id = active_image(services, mine, "not-yet", status="queued")
    assert code_of(lambda: copy_image(services, mine, queued_id, {"name": "c"})) == (
        409,
        "IMG.STATE",
    )
    assert code_of(lambda: copy_image(services, mine, source_id, {"name": "not-yet"})) == (
        400,
        "IMG.0009",
    )
    assert code_of(lambda: copy_image(services, mine, source_id, {"name": "bad/name"})) == (
        400,
        "IMG.0003",
    )
    assert code_of(lambda: copy_image(services, mine, source_id, {})) == (400, "IMG.0007")
    assert code_of(lambda: copy_image(services, mine, source_id, {"description": "x"})) == (
        400,
        "IMG.0013",
    )
    assert code_of(lambda: copy_image(services, mine, source_id, {"name": "c", "cmk_id": "k"})) == (
        400,
        "IMG.0095",
    )
    assert code_of(lambda: copy_image(services, mine, source_id, {"name": "c", "x": 1})) == (
        400,
        "IMG.0001",
    )
    assert code_of(lambda: copy_image(services, other, source_id, {"name": "c"})) == (
        404,
        "IMG.NOT_FOUND",
    )
    services.settings = dataclasses.replace(services.settings, image_quota=2)
    assert code_of(lambda: copy_image(services, mine, source_id, {"name": "c"})) == (
        400,
        "IMG.0015",
    )
    with services.db.connect() as conn:  # nothing was added by the refused requests
        assert len(conn.execute(select(jobs.c.id)).all()) == 0
        assert len(conn.execute(select(images.c.id)).all()) == 2


def test_a_source_deleted_before_the_job_fails_it_clearly(services: Services) -> None:
    mine = create_project(services, "mine").id
    source_id = active_image(services, mine, "source")
    job_id = copy_image(services, mine, source_id, {"name": "copy"})
    delete_image(services, mine, source_id, None)
    run_job(services, job_id)
    job = row(services, jobs, job_id)
    assert (job.status, job.error_code) == ("FAIL", "IMG.0057")
    assert source_id in job.fail_reason
    copy = image_queries.get_image(services, mine, job.image_id)
    assert copy.status == "killed" and copy.blob is None
    assert list(services.settings.images_dir.iterdir()) == []


def test_an_interrupted_copy_runs_again_after_a_restart(services: Services) -> None:
    mine = create_project(services, "mine").id
    source_id = active_image(services, mine, "source")
    job_id = copy_image(services, mine, source_id, {"name": "copy"})
    copy_id = row(services, jobs, job_id).image_id
    assert job_state.claim(services, job_id) is not None  # a worker took it, then the crash
    leftover = services.settings.images_dir / ".job-crashed.qcow2"
    os.link(services.settings.images_dir / f"{source_id}.qcow2", leftover)
    assert image_queries.get_image(services, mine, copy_id).status == "saving"

    assert recover(services) == [job_id]
    assert not leftover.exists()
    assert image_queries.get_image(services, mine, copy_id).status == "queued"
    run_job(services, job_id)
    assert row(services, jobs, job_id).status == "SUCCESS"
    assert image_queries.get_image(services, mine, copy_id).status == "active"


def test_a_copy_interrupted_too_often_fails(services: Services) -> None:
    mine = create_project(services, "mine").id
    source_id = active_image(services, mine, "source")
    job_id = copy_image(services, mine, source_id, {"name": "copy"})
    assert job_state.claim(services, job_id) is not None
    with services.db.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(attempts=MAX_ATTEMPTS))
    assert recover(services) == []
    job = row(services, jobs, job_id)
    assert (job.status, job.fail_reason) == ("FAIL", RESTARTED)
    copy = image_queries.get_image(services, mine, job.image_id)
    assert copy.status == "killed"
    assert [p.name for p in Path(services.settings.images_dir).iterdir()] == [f"{source_id}.qcow2"]
