"""Start-up recovery after a simulated crash: temporary files go, orphan image files go, RUNNING
jobs run again (or fail after three starts), and no image stays ``saving``. The jobs run again
on the fake image worker (:mod:`fakes`): recovery is about the records and the files, not about
what a worker makes of the image."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from imageport.service.context import Services
from imageport.service.jobs import state as job_state
from imageport.service.jobs.import_job import run_job
from imageport.service.jobs.recovery import RESTARTED, recover
from imageport.service.tables import jobs
from support import import_fixtures as fx
from support.fakes import FakeImageWorker


@pytest.fixture
def services(backend_services: Services) -> Services:
    """These tests run on SQLite and on a real PostgreSQL server."""
    return backend_services


def _crash_mid_job(services: Services, name: str) -> str:
    """A job claimed by a worker that then died: RUNNING, its image saving."""
    job_id = fx.register(services, fx.good_image("qcow2"), name=name)
    assert job_state.claim(services, job_id) is not None
    return job_id


def test_recovery_cleans_up_and_the_interrupted_job_runs_again(services: Services) -> None:
    services.worker = FakeImageWorker()
    done = fx.register(services, fx.good_image("qcow2"), name="done")
    run_job(services, done)
    kept = services.settings.images_dir / fx.image_row(services, done).blob
    waiting = fx.register(services, fx.good_image("qcow2"), name="waiting")
    crashed = _crash_mid_job(services, "crashed")
    assert fx.image_row(services, crashed).status == "saving"
    tmp = services.settings.tmp_dir
    (tmp / "job-1234.qcow2").write_bytes(b"half a conversion")
    (tmp / "stage-dir").mkdir()
    (tmp / "stage-dir" / "part").write_bytes(b"x")
    orphan = services.settings.images_dir / f"{fx.image_row(services, crashed).id}.qcow2"
    orphan.write_bytes(b"renamed but never committed")

    todo = recover(services)

    assert list(tmp.iterdir()) == []
    assert not orphan.exists() and kept.exists()
    assert todo == [waiting, crashed]  # begin_time order
    job = fx.job_row(services, crashed)
    assert (job.status, job.attempts, job.phase, job.percent) == ("INIT", 1, None, 0.0)
    assert fx.image_row(services, crashed).status == "queued"
    run_job(services, crashed)
    job = fx.job_row(services, crashed)
    assert (job.status, job.attempts) == ("SUCCESS", 2)
    assert fx.image_row(services, crashed).status == "active"


def test_a_job_interrupted_three_times_fails(services: Services) -> None:
    job_id = _crash_mid_job(services, "unlucky")
    with services.db.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(attempts=3))
    assert recover(services) == []
    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code, job.fail_reason) == ("FAIL", "IMG.1075", RESTARTED)
    assert job.end_time is not None
    image = fx.image_row(services, job_id)
    assert (image.status, image.fail_reason) == ("killed", RESTARTED)


def test_no_image_stays_saving(services: Services) -> None:
    job_id = _crash_mid_job(services, "lost")
    with services.db.begin() as conn:  # its job ended without the image (an older bug, say)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(status="SUCCESS"))
    recover(services)
    assert fx.image_row(services, job_id).status == "killed"


def test_recovery_removes_object_files_no_record_points_at(services: Services) -> None:
    services.worker = FakeImageWorker()
    done = fx.register(services, fx.good_image("qcow2"), name="uploaded")
    objects_dir = services.settings.objects_dir
    in_use = [path for path in objects_dir.rglob("*") if path.is_file()]
    assert in_use, "the registered image's object should have a file"
    stray = objects_dir / "renamed-but-never-committed"
    stray.write_bytes(b"a body whose commit never happened")
    aborted = services.settings.uploads_dir / ("0" * 32)
    aborted.mkdir(parents=True)
    (aborted / "part-1").write_bytes(b"a part of an upload with no record")

    recover(services)

    assert not stray.exists() and not aborted.exists()
    assert all(path.exists() for path in in_use)
    run_job(services, done)
    assert fx.job_row(services, done).status == "SUCCESS"
