"""The import's optional boot phase on the fakes: off by default, on by the registration's
``boot_test`` or the ``import_boot_test`` setting; its verdicts join the report; a boot that
reaches no kernel fails the import with IMG-BOOT, any other failed boot is a warning, and a
firmware that cannot be booted here is a note."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from imageport.api.ims.render import job_document
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.images import lifecycle
from imageport.service.jobs import manage
from imageport.service.jobs.import_job import run_job
from imageport.service.tables import jobs
from support import import_fixtures as fx
from support import service_fixtures
from support.fakes import GOOD_DEBIAN, FakeImageWorker
from support.fakes.boot_runner import KERNEL_PANIC, NO_BOOTABLE_DEVICE, PNG, FakeBootRunner


def make(tmp_path: Path, **settings: Any) -> Services:
    return service_fixtures.make_fake_services(tmp_path / "data", **settings)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = make(tmp_path)
    yield made
    made.db.dispose()


def runner(services: Services) -> FakeBootRunner:
    assert isinstance(services.boot, FakeBootRunner)
    return services.boot


def phases_seen(services: Services, job_id: str) -> list[str]:
    """Run the job, noting each phase it enters (from the runner's point of view: the phase
    written when a boot starts)."""
    seen: list[str] = []
    fake = runner(services)

    def note(call: Any) -> None:
        seen.append(fx.job_row(services, job_id).phase)

    fake.on_boot = note
    run_job(services, job_id)
    return seen


def test_without_the_option_an_import_boots_nothing(services: Services) -> None:
    job_id = fx.register(services, fx.good_image("qcow2"), name="plain")
    with services.db.connect() as conn:
        params: Any = conn.execute(select(jobs.c.params).where(jobs.c.id == job_id)).scalar()
    assert params["boot_test"] is False
    run_job(services, job_id)
    image = fx.image_row(services, job_id)
    assert image.status == "active" and "boot" not in image.report
    assert runner(services).calls == []


def test_the_option_ends_the_import_with_a_boot_of_each_claimed_firmware(
    services: Services,
) -> None:
    job_id = fx.register(services, fx.good_image("qcow2"), name="booted", boot_test=True)
    assert phases_seen(services, job_id) == ["boot", "boot"]
    job, image = fx.job_row(services, job_id), fx.image_row(services, job_id)
    assert (job.status, job.phase, job.percent) == ("SUCCESS", "store", 100.0)
    assert image.status == "active"
    calls = runner(services).calls
    assert [(c.firmware, c.image_format, c.timeout) for c in calls] == [
        ("bios", "qcow2", 300.0),
        ("uefi", "qcow2", 300.0),
    ]
    assert calls[0].image.parent == services.settings.tmp_dir  # the file before it is stored
    boot = image.report["boot"]
    assert boot["claimed_firmware"] == ["bios", "uefi"] and boot["passed"] is True
    assert [b["job_id"] for b in boot["boots"]] == [job_id, job_id]
    assert image.report["findings"] == [] and image.report["summary"]["verdict"] == "pass"
    screens = services.settings.boot_screens_dir
    assert sorted(p.name for p in screens.iterdir()) == [
        f"{image.id}.bios.png",
        f"{image.id}.uefi.png",
    ]
    assert (screens / f"{image.id}.bios.png").read_bytes() == PNG
    assert list(services.settings.tmp_dir.iterdir()) == []
    assert services.boot_slots.taken == 0


def test_the_setting_turns_it_on_and_the_option_off_again(tmp_path: Path) -> None:
    services = make(tmp_path, import_boot_test=True)
    try:
        on = fx.register(services, fx.good_image("qcow2"), name="by-setting")
        off = fx.register(services, fx.good_image("qcow2"), name="opted-out", boot_test=False)
        run_job(services, on)
        run_job(services, off)
        assert "boot" in fx.image_row(services, on).report
        assert "boot" not in fx.image_row(services, off).report
        assert len(runner(services).calls) == 2  # the first image's two firmwares only
    finally:
        services.db.dispose()


def test_a_boot_that_reaches_no_kernel_fails_the_import_with_img_boot(
    services: Services,
) -> None:
    runner(services).consoles["uefi"] = NO_BOOTABLE_DEVICE
    job_id = fx.register(services, fx.good_image("qcow2"), name="no-uefi", boot_test=True)
    run_job(services, job_id)
    job, image = fx.job_row(services, job_id), fx.image_row(services, job_id)
    assert (job.status, job.error_code) == ("FAIL", "IMG-BOOT")
    assert (image.status, image.error_code) == ("killed", "IMG-BOOT")
    assert job.fail_reason.startswith(
        "IMG-BOOT: Booted under UEFI, the image did not reach a login prompt: The firmware "
        "found no bootable device.\n  evidence: console: Boot failed: not a bootable disk"
    )
    assert "fix: The firmware found nothing to boot" in job.fail_reason
    report = image.report
    (finding,) = report["findings"]
    assert (finding["rule_id"], finding["severity"]) == ("IMG-BOOT", "error")
    assert finding["evidence"][-1] == (
        f"screenshot: GET /v1/cloudimages/{image.id}/boot-test/screenshot?firmware=uefi"
    )
    assert report["summary"] == {"verdict": "fail", "errors": 1, "warnings": 0, "info": 0}
    assert [b["outcome"] for b in report["boot"]["boots"]] == ["login", "no-bootable-device"]
    assert list(services.settings.images_dir.glob("*")) == []  # nothing stored
    # the killed image keeps its evidence, screenshots included, until it is deleted
    assert len(list(services.settings.boot_screens_dir.glob(f"{image.id}.*.png"))) == 2
    lifecycle.delete_image(services, fx.project_id(services), image.id, None)
    assert list(services.settings.boot_screens_dir.iterdir()) == []


def test_a_boot_that_panics_stores_the_image_with_an_img_boot_warning(
    services: Services,
) -> None:
    runner(services).consoles["bios"] = KERNEL_PANIC
    job_id = fx.register(services, fx.good_image("qcow2"), name="panics", boot_test=True)
    run_job(services, job_id)
    image = fx.image_row(services, job_id)
    assert image.status == "active"
    (finding,) = image.report["findings"]
    assert (finding["rule_id"], finding["severity"]) == ("IMG-BOOT", "warning")
    assert finding["message"].startswith(
        "Booted under BIOS, the image did not reach a login prompt: The kernel panicked: "
    )
    assert "initrd lacks the disk's driver" in finding["advice"]
    assert image.report["summary"]["verdict"] == "pass"
    assert image.report["summary"]["warnings"] == 1
    record = manage.show_job(services, fx.project_id(services), job_id)
    entities: Any = job_document(record)["entities"]
    assert entities["alarm_code"] == "IMG-BOOT"


def test_a_firmware_that_cannot_boot_here_is_a_note_and_the_other_is_booted(
    services: Services,
) -> None:
    runner(services).missing.add("uefi")
    job_id = fx.register(services, fx.good_image("qcow2"), name="no-ovmf", boot_test=True)
    run_job(services, job_id)
    image = fx.image_row(services, job_id)
    assert image.status == "active"
    assert [c.firmware for c in runner(services).calls] == ["bios"]
    (note,) = image.report["findings"]
    assert (note["rule_id"], note["severity"]) == ("IMG-BOOT", "info")
    assert note["message"] == (
        "The import's boot test did not run fully: not booted under UEFI: UEFI firmware is "
        "not installed here: apt-get install ovmf."
    )
    assert [b["firmware"] for b in image.report["boot"]["boots"]] == ["bios"]


def test_a_quick_import_of_zvhd2_is_not_booted_and_says_why(services: Services) -> None:
    services.worker = FakeImageWorker(dataclasses.replace(GOOD_DEBIAN, format="zvhd2"))
    job_id = fx.register(
        services,
        fx.good_image("qcow2"),
        name="fast",
        boot_test=True,
        is_quick_import=True,
        os_version="Debian GNU/Linux 12.0.0 64bit",
    )
    run_job(services, job_id)
    image = fx.image_row(services, job_id)
    assert (image.status, image.disk_format) == ("active", "zvhd2"), image.fail_reason
    assert runner(services).calls == []
    (note,) = image.report["findings"]
    assert note["message"] == (
        "The import's boot test did not run fully: not booted: the file is stored as zvhd2, "
        "which QEMU does not read."
    )


def test_the_option_is_refused_where_it_cannot_apply(tmp_path: Path, services: Services) -> None:
    pid = fx.project_id(services)
    fx.put_object(services, pid, "uploads/d.qcow2", fx.good_image("qcow2"))
    url = f"{fx.BUCKET}:uploads/d.qcow2"
    for body, code in (
        ({"boot_test": "yes"}, codes.BAD_REQUEST),
        (
            {"boot_test": True, "type": "IsoImage", "os_version": "Debian GNU/Linux 12.0.0 64bit"},
            codes.BOOT_NOT_OFFERED,
        ),
    ):
        with pytest.raises(ServiceError) as caught:
            lifecycle.create_image_from_file(
                services, pid, {"name": "x", "image_url": url, "min_disk": 40, **body}
            )
        assert caught.value.code == code, body
    off = make(tmp_path / "off", boot_test_concurrency=0)
    try:
        opid = fx.project_id(off)
        fx.put_object(off, opid, "uploads/d.qcow2", fx.good_image("qcow2"))
        with pytest.raises(ServiceError) as caught:
            lifecycle.create_image_from_file(
                off, opid, {"name": "x", "image_url": url, "min_disk": 40, "boot_test": True}
            )
        assert caught.value.code == codes.BOOT_NOT_OFFERED
        # the setting alone asks nothing of a server that offers no boot tests
        quiet = fx.register(off, fx.good_image("qcow2"), name="quiet")
        run_job(off, quiet)
        assert fx.image_row(off, quiet).status == "active"
    finally:
        off.db.dispose()


def test_an_uninitialized_registration_takes_the_option_too(services: Services) -> None:
    pid = fx.project_id(services)
    image = lifecycle.create_glance_image(
        services, pid, {"name": "raw-one", "disk_format": "qcow2", "container_format": "bare"}
    )
    fx.put_object(services, pid, "uploads/u.qcow2", fx.good_image("qcow2"))
    job_id = lifecycle.register_image_file(
        services, pid, image.id, {"image_url": f"{fx.BUCKET}:uploads/u.qcow2", "boot_test": True}
    )
    run_job(services, job_id)
    row = fx.image_row(services, job_id)
    assert row.status == "active" and row.report["boot"]["passed"] is True
    with pytest.raises(ServiceError) as caught:
        lifecycle.register_image_file(
            services, pid, image.id, {"image_url": f"{fx.BUCKET}:uploads/u.qcow2", "boot": 1}
        )
    assert caught.value.code == codes.BAD_REQUEST
