"""Image export on real parts: an image made active by the import job (qemu-img and the checker
in limited workers), exported by the export job through the job runner into a bucket of the
local object store; the object is read back and compared with the stored image's disk.

The tests of the job's own logic (request checks, quick export, a bucket gone, recovery) run on
the fakes of :mod:`fakes` (object store, image worker, queue), which the contract tests in
tests/adapters hold to the same ports; the bytes of every format are checked on the real ones."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from imageport.adapters.image_worker import SubprocessImageWorker
from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import Conflict, NotFound, RequestInvalid
from imageport.service.jobs.dispatch import run_job
from imageport.service.jobs.export_request import EXPORT_JOB, export_image
from imageport.service.jobs.manage import cancel_job
from imageport.service.jobs.recovery import recover
from imageport.service.tables import images, jobs
from imageport.service.tools.to_raw import convert_to_raw
from support import builders, service_fixtures
from support import import_fixtures as fx

OUT = "exports"


def _active_image(services: Services, name: str = "img") -> str:
    """An image made active by the import job (stored as qcow2); its id."""
    job_id = fx.register(services, fx.good_image("qcow2"), name=name)
    run_job(services, job_id)  # the runner sends import jobs to the import job
    image = fx.image_row(services, job_id)
    assert image.status == "active", fx.job_row(services, job_id).fail_reason
    return str(image.id)


def _out_bucket(
    services: Services, project_id: str, name: str = OUT, storage_class: str = "STANDARD"
) -> None:
    services.store.create_bucket(name, project_id, storage_class, services.settings.region)


def _export(
    services: Services, image_id: str, key: str, fmt: str | None, quick: bool = False
) -> Any:
    body: dict[str, object] = {"bucket_url": f"{OUT}:{key}", "is_quick_export": quick}
    if fmt is not None:
        body["file_format"] = fmt
    job_id = export_image(services, fx.project_id(services), image_id, body)
    run_job(services, job_id)
    return fx.job_row(services, job_id)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _raw_sha256(path: Path, fmt: str, out: Path) -> str:
    """sha256 of the disk in ``path``: qemu-img ``convert -O raw``, or our reader for zvhd2."""
    if fmt in ("zvhd2", "zvhd"):
        convert_to_raw(path, out)
    else:
        driver = "vpc" if fmt == "vhd" else fmt
        builders.qemu_img("convert", "-f", driver, "-O", "raw", str(path), str(out))
    try:
        return _file_sha256(out)
    finally:
        out.unlink()


def _assert_variant(path: Path, fmt: str) -> None:
    """The file is the variant clouds import: streamOptimized VMDK, dynamic VHD."""
    data = path.read_bytes()
    if fmt == "qcow2":
        assert data[:4] == b"QFI\xfb"
    elif fmt == "vmdk":
        assert data[:4] == b"KDMV"
        assert b'createType="streamOptimized"' in data[: 64 << 10]
    elif fmt == "vhd":
        footer = data[-512:]
        assert footer[:8] == b"conectix"
        assert int.from_bytes(footer[60:64], "big") == 3  # dynamic


def _stored(services: Services, image_id: str) -> Any:
    with services.db.connect() as conn:
        return conn.execute(select(images).where(images.c.id == image_id)).one()


@pytest.fixture
def image_id(services: Services) -> str:
    made = _active_image(services)
    _out_bucket(services, fx.project_id(services))
    return made


@pytest.fixture
def faked(tmp_path: Path) -> Iterator[Services]:
    """Services on SQLite with the fake object store, image worker and queue."""
    made = service_fixtures.make_fake_services(tmp_path / "data")
    yield made
    made.db.dispose()


@pytest.fixture
def fake_image_id(faked: Services) -> str:
    """``image_id`` on the fakes: an image the import job made active with the fake worker."""
    made = _active_image(faked)
    _out_bucket(faked, fx.project_id(faked))
    return made


def test_export_to_every_format_holds_the_stored_disk(
    services: Services, image_id: str, tmp_path: Path
) -> None:
    image = _stored(services, image_id)
    stored = services.settings.images_dir / image.blob
    expected = _raw_sha256(stored, "qcow2", tmp_path / "stored.raw")
    for fmt in ("qcow2", "vmdk", "vhd", "zvhd2", "zvhd", "raw"):
        job = _export(services, image_id, f"out/disk.{fmt}", fmt)
        assert (job.status, job.error_code, job.fail_reason) == ("SUCCESS", None, None)
        assert (job.job_type, job.percent, job.phase) == (EXPORT_JOB, 100.0, "upload")
        info = services.store.get_object(OUT, f"out/disk.{fmt}")
        assert info is not None
        with services.store.local_path(OUT, f"out/disk.{fmt}") as path:
            data_md5 = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
            assert info.etag == f'"{data_md5}"'
            assert info.sha256 == _file_sha256(path)
            _assert_variant(path, fmt)
            assert _raw_sha256(path, fmt, tmp_path / f"{fmt}.raw") == expected, fmt
        assert (info.storage_class, info.content_type) == ("STANDARD", "application/octet-stream")
        assert job.params["result"] == {
            "object_size": info.size,
            "object_etag": info.etag,
            "object_sha256": info.sha256,
        }
        # the image is untouched
        assert _stored(services, image_id).status == "active"
    assert list(services.settings.tmp_dir.iterdir()) == []


@pytest.fixture(params=["real", "fake"])
def either(request: pytest.FixtureRequest) -> tuple[Services, str]:
    """An active image and the services that made it: the real store and worker (the local
    store's hard links and copies are what a user gets), and the fakes (the jobs' own logic)."""
    if request.param == "real":
        return request.getfixturevalue("services"), request.getfixturevalue("image_id")
    return request.getfixturevalue("faked"), request.getfixturevalue("fake_image_id")


def test_quick_export_is_the_stored_file_and_replaces_an_object(
    either: tuple[Services, str],
) -> None:
    services, image_id = either
    fx.put_object(services, fx.project_id(services), "old", fx.good_raw())  # bucket "images"
    image = _stored(services, image_id)
    first = _export(services, image_id, "same.qcow2", "vmdk")
    assert first.status == "SUCCESS"
    job = _export(services, image_id, "same.qcow2", None, quick=True)  # replaces it
    assert (job.status, job.params["file_format"]) == ("SUCCESS", "qcow2")
    with services.store.local_path(OUT, "same.qcow2") as path:
        assert path.read_bytes() == (services.settings.images_dir / image.blob).read_bytes()
    info = services.store.get_object(OUT, "same.qcow2")
    assert info is not None and info.sha256 == image.checksum
    assert [o.key for o in services.store.list_objects(OUT)] == ["same.qcow2"]
    # the image's file is still there, and the object outlives the image
    (services.settings.images_dir / image.blob).unlink()
    with services.store.local_path(OUT, "same.qcow2") as path:
        assert path.stat().st_size == info.size


def test_requests_are_checked_before_any_job(faked: Services, fake_image_id: str) -> None:
    services, image_id = faked, fake_image_id
    pid = fx.project_id(services)
    other = create_project(services, "other").id
    _out_bucket(services, other, "theirs")
    _out_bucket(services, pid, "cold-one", "COLD")

    def refused(body: dict[str, object], target: str = image_id) -> tuple[str, int]:
        with pytest.raises((RequestInvalid, Conflict, NotFound)) as caught:
            export_image(services, pid, target, body)
        error = caught.value
        assert isinstance(error, RequestInvalid | Conflict | NotFound)
        return error.code, error.status

    url = f"{OUT}:k.qcow2"
    assert refused({"bucket_url": "theirs:k", "file_format": "qcow2"}) == ("IMG.0069", 400)
    assert refused({"bucket_url": "nobucket:k", "file_format": "qcow2"}) == ("IMG.0069", 400)
    assert refused({"bucket_url": "cold-one:k", "file_format": "qcow2"}) == ("IMG.0058", 400)
    assert refused({"bucket_url": f"{OUT}:a b", "file_format": "qcow2"}) == ("IMG.0175", 400)
    assert refused({"bucket_url": "no-colon", "file_format": "qcow2"}) == ("IMG.0017", 400)
    assert refused({"bucket_url": url, "file_format": "vdi"}) == ("IMG.0072", 400)
    assert refused({"bucket_url": url}) == ("IMG.0001", 400)
    assert refused({"bucket_url": url, "file_format": "raw", "is_quick_export": True}) == (
        "IMG.0072",
        400,
    )
    assert refused({"bucket_url": url, "file_format": "qcow2", "x": 1}) == ("IMG.0001", 400)
    assert refused({"bucket_url": url, "file_format": "qcow2"}, "no-such-image") == (
        "IMG.NOT_FOUND",
        404,
    )
    with services.db.begin() as conn:  # another project's image is not found either
        conn.execute(update(images).where(images.c.id == image_id).values(project_id=other))
    assert refused({"bucket_url": url, "file_format": "qcow2"}) == ("IMG.NOT_FOUND", 404)
    with services.db.begin() as conn:
        conn.execute(
            update(images).where(images.c.id == image_id).values(project_id=pid, status="killed")
        )
    assert refused({"bucket_url": url, "file_format": "qcow2"}) == ("IMG.STATE", 409)
    with services.db.connect() as conn:
        assert conn.execute(select(jobs.c.id).where(jobs.c.job_type == EXPORT_JOB)).all() == []


def test_cancel_during_conversion_leaves_no_object_and_no_scratch(
    services: Services, image_id: str
) -> None:
    services.worker = SubprocessImageWorker(services.settings, rate_limit=100 << 10)
    job_id = export_image(
        services,
        fx.project_id(services),
        image_id,
        {"bucket_url": f"{OUT}:slow.vmdk", "file_format": "vmdk"},
    )
    runner = threading.Thread(target=run_job, args=(services, job_id))
    runner.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = fx.job_row(services, job_id)
        if job.phase == "convert" and job.percent > 2:
            break
        time.sleep(0.1)
    assert (job.phase, job.status) == ("convert", "RUNNING")
    cancel_job(services, fx.project_id(services), job_id)
    runner.join(timeout=20)
    assert not runner.is_alive()
    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code) == ("FAIL", "IMG.CANCELLED")
    assert services.store.get_object(OUT, "slow.vmdk") is None
    assert list(services.settings.tmp_dir.iterdir()) == []
    assert _stored(services, image_id).status == "active"


def test_a_bucket_deleted_meanwhile_fails_the_job(either: tuple[Services, str]) -> None:
    services, image_id = either
    job_id = export_image(
        services,
        fx.project_id(services),
        image_id,
        {"bucket_url": f"{OUT}:x.qcow2", "file_format": "qcow2"},
    )
    services.store.delete_bucket(OUT)
    run_job(services, job_id)
    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code) == ("FAIL", "IMG.0069")
    assert OUT in job.fail_reason
    assert _stored(services, image_id).status == "active"
    assert list(services.settings.tmp_dir.iterdir()) == []


def test_an_interrupted_export_runs_again_after_a_restart(backend_services: Services) -> None:
    """On SQLite and PostgreSQL, with the real store and worker (a real zvhd2 export)."""
    _interrupted_export_runs_again(backend_services)


def test_an_interrupted_export_runs_again_after_a_restart_on_the_fakes(
    fake_backend_services: Services,
) -> None:
    _interrupted_export_runs_again(fake_backend_services)


def _interrupted_export_runs_again(services: Services) -> None:
    image_id = _active_image(services)
    _out_bucket(services, fx.project_id(services))
    job_id = export_image(
        services,
        fx.project_id(services),
        image_id,
        {"bucket_url": f"{OUT}:again.zvhd2", "file_format": "zvhd2"},
    )
    with services.db.begin() as conn:  # as a crash mid-job leaves it
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(status="RUNNING", attempts=1, phase="convert", percent=40.0)
        )
    (services.settings.tmp_dir / "stage-partial").write_bytes(b"half a file")
    assert job_id in recover(services)
    assert list(services.settings.tmp_dir.iterdir()) == []
    run_job(services, job_id)
    job = fx.job_row(services, job_id)
    assert (job.status, job.attempts) == ("SUCCESS", 2)
    assert services.store.get_object(OUT, "again.zvhd2") is not None
    assert _stored(services, image_id).status == "active"
