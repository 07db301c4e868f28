"""The check report an image keeps, reached by the image and by its job (on the fakes: what is
stored is the worker's document; the real checker's report is read through a server in
tests/cli/test_remote_cli.py)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from imageport.rules.base import CheckOptions
from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid
from imageport.service.images import object_check
from imageport.service.images.reports import image_report, job_report
from imageport.service.jobs.export_request import export_image
from imageport.service.jobs.import_job import run_job
from imageport.service.ports import ImageInspection
from imageport.service.tables import images
from support import import_fixtures as fx
from support import service_fixtures
from support.fakes.image_worker import PASSING_REPORT, FakeImageWorker


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = service_fixtures.make_fake_services(tmp_path / "data")
    yield made
    made.db.dispose()


def _code(call: Callable[[], object]) -> str:
    with pytest.raises(NotFound) as err:
        call()
    return err.value.code


def test_an_imported_image_keeps_its_report_by_image_and_by_job(services: Services) -> None:
    job_id = fx.register(services, fx.good_image("qcow2"), name="good")
    image_id = fx.image_row(services, job_id).id
    project = fx.project_id(services)
    assert _code(lambda: image_report(services, project, image_id)) == "IMG.NO_REPORT"
    assert _code(lambda: job_report(services, project, job_id)) == "IMG.NO_REPORT"
    run_job(services, job_id)
    assert image_report(services, project, image_id) == PASSING_REPORT
    assert job_report(services, project, job_id) == PASSING_REPORT


def test_another_projects_report_is_not_found_and_an_export_has_none(
    services: Services,
) -> None:
    job_id = fx.register(services, fx.good_image("qcow2"), name="good")
    run_job(services, job_id)
    image_id = fx.image_row(services, job_id).id
    other = create_project(services, "other").id
    assert _code(lambda: image_report(services, other, image_id)) == "IMG.NOT_FOUND"
    assert _code(lambda: job_report(services, other, job_id)) == "IMG.NOT_FOUND"
    project = fx.project_id(services)
    services.store.create_bucket("out", project, "STANDARD", services.settings.region)
    export = export_image(
        services, project, image_id, {"bucket_url": "out:x.qcow2", "file_format": "qcow2"}
    )
    assert _code(lambda: job_report(services, project, export)) == "IMG.NO_REPORT"


def test_an_object_is_checked_without_storing_anything(services: Services) -> None:
    project = fx.project_id(services)
    fx.put_object(services, project, "disk.qcow2", fx.good_image("qcow2"))
    body = {"image_url": "images:disk.qcow2", "min_disk": 40}
    assert object_check.check_object(services, project, body) == PASSING_REPORT
    with services.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(images)).scalar() == 0
    other = create_project(services, "other").id
    assert _code(lambda: object_check.check_object(services, other, body)) == "NoSuchBucket"
    with pytest.raises(RequestInvalid) as err:
        object_check.check_object(services, project, {**body, "is_fast": True})
    assert (err.value.code, err.value.field) == ("IMG.0001", "is_fast")


class _RecordingChecker(FakeImageWorker):
    """A checker that keeps the options it was given and names its inputs in its report."""

    def __init__(self) -> None:
        super().__init__()
        self.options: list[CheckOptions] = []

    def inspect(
        self, path: Path, options: CheckOptions, *, cancelled: Callable[[], bool]
    ) -> ImageInspection:
        self.options.append(options)
        found = super().inspect(path, options, cancelled=cancelled)
        report = {"file": str(path), "bitmap": options.bitmap_path}
        return dataclasses.replace(found, report=report)


def test_an_object_is_checked_for_fast_import_with_the_bitmap_beside_it(
    services: Services,
) -> None:
    """``is_quick_import`` checks the object as a quick import's job will: told so, and given
    the ``<base>.mf`` beside a RAW object; the report names both as ``bucket:key``."""
    checker = _RecordingChecker()
    services.worker = checker
    project = fx.project_id(services)
    services.store.create_bucket("images", project, "STANDARD", services.settings.region)
    fx.store_bytes(services, "images", "dir/disk.raw", b"\0" * 4096)
    body = {"image_url": "images:dir/disk.raw", "is_quick_import": True}
    assert object_check.check_object(services, project, body) == {
        "file": "images:dir/disk.raw",
        "bitmap": None,  # none beside it yet: IMG-FAST-RAW will say so
    }
    fx.store_bytes(services, "images", "dir/disk.mf", b"bitmap")
    assert object_check.check_object(services, project, body) == {
        "file": "images:dir/disk.raw",
        "bitmap": "images:dir/disk.mf",
    }
    assert [o.fast_import for o in checker.options] == [True, True]
    object_check.check_object(services, project, {"image_url": "images:dir/disk.raw"})
    assert checker.options[-1].fast_import is False
    assert checker.options[-1].bitmap_path is None  # no bitmap without fast import
    with pytest.raises(RequestInvalid) as err:
        object_check.parse_check_request({**body, "type": "IsoImage"})
    assert (err.value.code, err.value.field) == ("IMG.0167", "is_quick_import")


def test_a_check_request_declares_the_architecture_as_a_registration_does() -> None:
    url = "images:disk.qcow2"
    assert object_check.parse_check_request({"image_url": url})[1].architecture is None
    _, arm = object_check.parse_check_request({"image_url": url, "architecture": "arm"})
    assert (arm.architecture, arm.uefi) == ("arm", True)  # arm boots with UEFI only
    _, x86 = object_check.parse_check_request({"image_url": url, "architecture": "x86"})
    assert (x86.architecture, x86.uefi) == ("x86", False)
    with pytest.raises(RequestInvalid) as err:
        object_check.parse_check_request({"image_url": url, "architecture": "x86_64"})
    assert err.value.code == "IMG.0212"


def test_a_check_request_declares_the_type_as_a_registration_does() -> None:
    url = "images:disk.qcow2"
    assert object_check.parse_check_request({"image_url": url})[1].disk_kind == "system"
    _, data = object_check.parse_check_request(
        {"image_url": url, "type": "DataImage", "min_disk": 2000}
    )
    assert (data.disk_kind, data.min_disk_gib) == ("data", 2000)  # a data disk's range
    _, iso = object_check.parse_check_request({"image_url": url, "type": "IsoImage"})
    assert iso.disk_kind == "iso"
    for wrong, code in (
        ({"type": "BMS"}, "IMG.0024"),
        ({"min_disk": 2000}, "IMG.0055"),  # a system disk: 40-1024
    ):
        with pytest.raises(RequestInvalid) as err:
            object_check.parse_check_request({"image_url": url, **wrong})
        assert err.value.code == code


def test_as_many_checks_run_as_there_are_workers(services: Services) -> None:
    project = fx.project_id(services)
    fx.put_object(services, project, "disk.qcow2", fx.good_image("qcow2"))
    slot = object_check._slot(services)
    taken = 0
    while slot.acquire(blocking=False):
        taken += 1
    try:
        assert taken == services.settings.workers
        with pytest.raises(RequestInvalid) as err:
            object_check.check_object(services, project, {"image_url": "images:disk.qcow2"})
        assert err.value.code == "IMG.0194"
    finally:
        for _ in range(taken):
            slot.release()
    assert object_check.check_object(services, project, {"image_url": "images:disk.qcow2"})


class _HeldChecker(FakeImageWorker):
    """A checker whose checks run until :attr:`go` is set (a check that takes its time)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.running = threading.Semaphore(0)

    def inspect(
        self, path: Path, options: CheckOptions, *, cancelled: Callable[[], bool]
    ) -> ImageInspection:
        self.running.release()
        assert self.go.wait(30)
        return super().inspect(path, options, cancelled=cancelled)


def test_one_project_checking_in_a_loop_leaves_a_check_to_the_others(tmp_path: Path) -> None:
    """With 3 workers one project runs at most 2 checks at once (IMG.0194 for a third) and
    another project's check still runs; every place is free again when the checks end."""
    services = service_fixtures.make_fake_services(tmp_path / "data", workers=3)
    checker = _HeldChecker()
    services.worker = checker
    alpha, beta = fx.project_id(services), create_project(services, "beta").id
    body = {}
    for project in (alpha, beta):
        bucket = f"b-{project[:8]}"
        services.store.create_bucket(bucket, project, "STANDARD", services.settings.region)
        fx.store_bytes(services, bucket, "disk.qcow2", b"x" * 512)
        body[project] = {"image_url": f"{bucket}:disk.qcow2"}
    results: list[object] = []
    threads: list[threading.Thread] = []

    def start(project: str) -> None:
        thread = threading.Thread(
            target=lambda: results.append(
                object_check.check_object(services, project, body[project])
            )
        )
        thread.start()
        threads.append(thread)
        assert checker.running.acquire(timeout=30)  # that check is running

    def refused(project: str) -> str:
        with pytest.raises(RequestInvalid) as err:
            object_check.check_object(services, project, body[project])
        assert err.value.code == "IMG.0194"
        return err.value.message

    try:
        start(alpha)
        start(alpha)
        assert "2 checks of this project are running" in refused(alpha)
        start(beta)  # alpha's loop left beta a place
        assert "3 checks are running" in refused(beta)
    finally:
        checker.go.set()
        for thread in threads:
            thread.join(30)
    try:
        assert len(results) == 3
        assert object_check.check_object(services, alpha, body[alpha]) == PASSING_REPORT
        assert object_check.check_object(services, beta, body[beta]) == PASSING_REPORT
    finally:
        services.db.dispose()
