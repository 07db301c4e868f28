"""Finding the jobs that work on an image (the console's live progress asks this): the
unfinished job of each image, an image's recent jobs, and never another project's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.jobs import image_jobs
from imageport.service.jobs.dispatch import run_job
from imageport.service.jobs.export_request import EXPORT_JOB, export_image
from imageport.service.jobs.image_jobs import recent_jobs, unfinished_jobs
from support import import_fixtures as fx
from support import service_fixtures
from support.shared_images import active_image


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = service_fixtures.make_fake_services(tmp_path / "data")
    yield made
    made.db.dispose()


def test_an_importing_image_has_its_job_until_it_ends(services: Services) -> None:
    job_id = fx.register(services, fx.good_image("qcow2"), name="importing")
    image_id = fx.job_row(services, job_id).image_id
    pid = fx.project_id(services)

    found = unfinished_jobs(services, pid, [image_id, "no-such-image"])
    assert list(found) == [image_id]
    assert (found[image_id].id, found[image_id].status) == (job_id, "INIT")

    run_job(services, job_id)
    assert unfinished_jobs(services, pid, [image_id]) == {}
    (ended,) = recent_jobs(services, pid, image_id)
    assert (ended.id, ended.status, ended.percent) == (job_id, "SUCCESS", 100.0)


def test_the_job_begun_last_is_the_images_and_recent_jobs_are_newest_first(
    services: Services,
) -> None:
    pid = fx.project_id(services)
    image_id = active_image(services, pid, "exported")
    services.store.create_bucket("out", pid, "STANDARD", services.settings.region)
    body = {"bucket_url": "out:a.qcow2", "file_format": "qcow2"}
    first = export_image(services, pid, image_id, body)
    second = export_image(services, pid, image_id, {**body, "bucket_url": "out:b.qcow2"})

    assert unfinished_jobs(services, pid, [image_id])[image_id].id == second
    listed = recent_jobs(services, pid, image_id)
    assert [(j.id, j.job_type) for j in listed] == [(second, EXPORT_JOB), (first, EXPORT_JOB)]
    assert [j.id for j in recent_jobs(services, pid, image_id, limit=1)] == [second]


def test_another_projects_jobs_are_never_found(services: Services) -> None:
    job_id = fx.register(services, fx.good_image("qcow2"), name="private")
    image_id = fx.job_row(services, job_id).image_id
    other = create_project(services, "other").id
    assert unfinished_jobs(services, other, [image_id]) == {}
    assert recent_jobs(services, other, image_id) == []


def test_the_numbers_asked_for_are_capped(services: Services) -> None:
    pid = fx.project_id(services)
    many = [f"{n:032x}" for n in range(image_jobs.MAX_IMAGES + 500)]
    assert unfinished_jobs(services, pid, [*many, "x" * 10_000]) == {}
    assert recent_jobs(services, pid, "x" * 65) == []
    assert recent_jobs(services, pid, many[0], limit=10**9) == []
