"""Data images and ISO images through the service: real SQLite, the local object store, the
checker and probe in limited worker processes, files made by qemu-img (a data disk with no
system on it) and a hand-made ISO 9660 volume.

A data disk is judged only by the rules about the file (no guest rules: the same empty disk
registered as a system disk fails IMG-SYSTEM-DISK); a registration's ``data_images`` are
sub-jobs of its job, which ends with the last of them. An ISO is stored as it is (``disk_format
iso``), refused as a system disk and refused in an ISO image when it is not an ISO.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid
from imageport.service.images.lifecycle import create_data_image
from imageport.service.jobs.export_request import export_image
from imageport.service.jobs.import_job import run_job
from imageport.service.jobs.manage import cancel_job, show_job
from imageport.service.tables import images
from support import fuzz_seeds
from support import import_fixtures as fx

BUCKET = fx.BUCKET
DEBIAN = "Debian GNU/Linux 12.0.0 64bit"


@pytest.fixture(scope="module")
def data_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 GiB qcow2 data disk with nothing on it (no partition table, no system)."""
    path = tmp_path_factory.mktemp("data") / "data.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "2G"], check=True)
    return path


@pytest.fixture(scope="module")
def iso_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("iso") / "install.iso"
    path.write_bytes(fuzz_seeds.minimal_iso())
    return path


def upload(services: Services, key: str, path: Path) -> str:
    fx.put_object(services, fx.project_id(services), key, path)
    return f"{BUCKET}:{key}"


def test_data_images_are_sub_jobs_of_the_registration(services: Services, data_disk: Path) -> None:
    pid = fx.project_id(services)
    logs = upload(services, "data/logs.qcow2", data_disk)
    job_id = fx.register(
        services,
        fx.good_image("qcow2"),
        name="web",
        os_version=DEBIAN,
        data_images=[{"name": "logs", "image_url": logs, "min_disk": 2, "tags": ["role.logs"]}],
    )
    parent = show_job(services, pid, job_id)
    (sub,) = parent.sub_jobs
    assert (sub.job_type, sub.image_name, sub.status) == ("imsImportDataImageJob", "logs", "INIT")
    run_job(services, job_id)
    parent = show_job(services, pid, job_id)
    assert parent.status == "SUCCESS" and parent.overall_status == "RUNNING"
    assert parent.overall_end_time is None
    run_job(services, sub.id)
    parent = show_job(services, pid, job_id)
    assert parent.overall_status == "SUCCESS", parent.sub_jobs[0].fail_reason
    image = fx.image_row(services, sub.id)
    props = image.properties
    assert (image.status, image.min_disk, image.tags) == ("active", 2, ["role=logs"])
    assert (props["virtual_env_type"], props["__imagetype"], props["__os_type"]) == (
        "DataImage",
        "private",
        "Linux",
    )
    assert "__os_version" not in props and "hw_firmware_type" not in props
    report_rules = {f["rule_id"] for f in image.report["findings"]}
    assert "IMG-SYSTEM-DISK" not in report_rules
    system = fx.image_row(services, job_id)
    assert system.properties["virtual_env_type"] == "FusionCompute"


def test_a_failed_data_image_fails_the_whole_request(
    services: Services, data_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = fx.project_id(services)
    small = upload(services, "data/small.qcow2", data_disk)

    def register() -> str:
        return fx.register(
            services,
            fx.good_image("qcow2"),
            name="web2",
            os_version=DEBIAN,
            data_images=[{"name": "too small", "image_url": small, "min_disk": 1}],
        )

    # the header tells: refused at once, naming the data image, nothing created
    with pytest.raises(RequestInvalid) as refused:
        register()
    assert refused.value.code == "IMG.0055"
    assert refused.value.message.startswith("data_images[0] (too small): IMG-DISK-SIZE: ")
    fx.without_header_checks(monkeypatch)  # and the job still refuses it
    job_id = register()
    sub_id = show_job(services, pid, job_id).sub_jobs[0].id
    run_job(services, sub_id)  # the sub-job may run first
    parent = show_job(services, pid, job_id)
    assert parent.overall_status == "FAIL" and parent.status == "INIT"
    failed = parent.failed_sub_job
    assert failed is not None and failed.error_code == "IMG-DISK-SIZE"
    assert "min_disk 1 GiB is smaller than the data disk (2 GiB)" in (failed.fail_reason or "")
    cancel_job(services, pid, job_id)  # the parent still can be cancelled
    assert show_job(services, pid, job_id).status == "FAIL"


def test_data_image_route_and_the_same_disk_as_a_system_disk(
    services: Services, data_disk: Path
) -> None:
    pid = fx.project_id(services)
    url = upload(services, "data/disk.qcow2", data_disk)
    job_id = create_data_image(
        services, pid, {"name": "data", "image_url": url, "min_disk": 40, "os_type": "Windows"}
    )
    job = show_job(services, pid, job_id)
    assert job.job_type == "imsImportDataImageJob" and not job.sub_jobs
    run_job(services, job_id)
    job = show_job(services, pid, job_id)
    assert job.status == "SUCCESS", job.fail_reason
    image = fx.image_row(services, job_id)
    assert image.properties["virtual_env_type"] == "DataImage"
    assert image.properties["__os_type"] == "Windows"
    assert image.disk_format == services.settings.stored_format
    assert image.virtual_size == 2 << 30
    # the same file as a system disk: the guest rules run and find no system
    system_job = fx.register(services, data_disk, name="not-a-system", os_version=DEBIAN)
    run_job(services, system_job)
    failed = fx.job_row(services, system_job)
    assert failed.status == "FAIL" and "IMG-SYSTEM-DISK" in failed.fail_reason


def test_iso_image_is_stored_as_it_is(services: Services, iso_file: Path) -> None:
    pid = fx.project_id(services)
    job_id = fx.register(services, iso_file, name="installer", type="IsoImage", os_version=DEBIAN)
    run_job(services, job_id)
    job = fx.job_row(services, job_id)
    assert job.status == "SUCCESS", job.fail_reason
    image = fx.image_row(services, job_id)
    assert (image.disk_format, image.blob) == ("iso", f"{image.id}.iso")
    assert image.properties["virtual_env_type"] == "IsoImage"
    assert image.properties["__os_version"] == DEBIAN
    stored = services.settings.images_dir / image.blob
    assert stored.read_bytes() == iso_file.read_bytes()
    rules = {f["rule_id"] for f in image.report["findings"]}
    assert not rules & {"IMG-SYSTEM-DISK", "IMG-BOOT-MODE", "IMG-LOGIN"}
    # exported only as it is
    with pytest.raises(RequestInvalid) as info:
        export_image(
            services, pid, image.id, {"bucket_url": f"{BUCKET}:out.qcow2", "file_format": "qcow2"}
        )
    assert info.value.code == "IMG.0072" and "is_quick_export" in info.value.message
    export_image(
        services, pid, image.id, {"bucket_url": f"{BUCKET}:out.iso", "is_quick_export": True}
    )


def test_iso_and_disk_are_not_interchangeable(
    services: Services, iso_file: Path, data_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # registration refuses both from the header at once (IMG.0072 naming IMG-FORMAT) ...
    for path, name, extra in (
        (iso_file, "iso-as-ecs", {}),
        (data_disk, "disk-as-iso", {"type": "IsoImage"}),
    ):
        with pytest.raises(RequestInvalid) as refused:
            fx.register(services, path, name=name, os_version=DEBIAN, **extra)
        assert refused.value.code == "IMG.0072"
        assert refused.value.message.startswith("IMG-FORMAT: ")
    fx.without_header_checks(monkeypatch)  # ... and the job's own check still does
    as_system = fx.register(services, iso_file, name="iso-as-ecs", os_version=DEBIAN)
    run_job(services, as_system)
    job = fx.job_row(services, as_system)
    assert job.status == "FAIL" and job.error_code == "IMG-FORMAT"
    assert "iso9660" in job.fail_reason
    disk_as_iso = fx.register(
        services, data_disk, name="disk-as-iso", type="IsoImage", os_version=DEBIAN
    )
    run_job(services, disk_as_iso)
    job = fx.job_row(services, disk_as_iso)
    assert job.status == "FAIL" and job.error_code == "IMG-FORMAT"
    assert "ISO 9660 file; this file is qcow2" in job.fail_reason


def test_data_images_stay_in_the_registering_project(
    services: Services, data_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each data image's file is checked as the system image's is (another project's bucket:
    IMG.0069, nothing created), the quota counts every image of the request, and another
    project can neither read nor cancel the registration's job or its sub-jobs."""
    pid = fx.project_id(services)
    other = create_project(services, "other").id
    mine = upload(services, "data/mine.qcow2", data_disk)
    services.store.create_bucket("theirs", other, "STANDARD", services.settings.region)
    fx.store_bytes(services, "theirs", "data.qcow2", data_disk.read_bytes())

    def register(name: str, *urls: str) -> str:
        items = [{"name": f"{name}-{i}", "image_url": u, "min_disk": 2} for i, u in enumerate(urls)]
        return fx.register(
            services, fx.good_image("qcow2"), name=name, os_version=DEBIAN, data_images=items
        )

    with pytest.raises(RequestInvalid) as refused:
        register("cross", mine, "theirs:data.qcow2")
    assert refused.value.code == "IMG.0069"
    with services.db.connect() as conn:
        held = conn.execute(select(func.count()).where(images.c.project_id == pid)).scalar()
    assert held == 0
    services.settings = dataclasses.replace(services.settings, image_quota=3)
    with pytest.raises(RequestInvalid) as over:
        register("over", mine, mine, mine)  # four images
    assert over.value.code == "IMG.0015" and "this request adds 4" in over.value.message
    services.settings = dataclasses.replace(services.settings, image_quota=4)
    job_id = register("fits", mine, mine, mine)
    subs = [s.id for s in show_job(services, pid, job_id).sub_jobs]
    assert len(subs) == 3
    for foreign in (job_id, *subs):
        for call in (show_job, cancel_job):
            with pytest.raises(NotFound):
                call(services, other, foreign)
    assert {s.status for s in show_job(services, pid, job_id).sub_jobs} == {"INIT"}
