"""The boot test of a stored image (``imsBootTestJob``) on the fakes: which firmwares it boots,
how its verdicts join the image's report and its screenshots are kept, what the request refuses
before any job exists, the wait for a place to boot, and the ways the job ends. The real QEMU
boot through the real route is in ``tests/api/test_boot_route.py``."""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from imageport.api.ims.render import job_document
from imageport.reports.text_report import render_document
from imageport.service import codes
from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.images import boot_results, lifecycle, members, reports
from imageport.service.jobs import boot_job, manage, recovery
from imageport.service.jobs.boot_request import BOOT_TEST_JOB, boot_test_image
from imageport.service.jobs.copy_job import copy_image
from imageport.service.jobs.dispatch import run_job
from imageport.service.tables import images, jobs
from support import import_fixtures as fx
from support import service_fixtures
from support.fakes.boot_runner import (
    KERNEL_PANIC,
    NO_BOOTABLE_DEVICE,
    PNG,
    STILL_BOOTING,
    FakeBootRunner,
)
from support.shared_images import active_image

_NAMES = itertools.count()
CLAIMS_BOTH: dict[str, Any] = {
    "schema": "imageport.check/1",
    "format": "qcow2",
    "guest": {"boot_modes": ["bios", "uefi"]},
    "findings": [],
    "summary": {"verdict": "pass", "errors": 0, "warnings": 0, "info": 0},
}


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = service_fixtures.make_fake_services(tmp_path / "data")
    yield made
    made.db.dispose()


def runner(services: Services) -> FakeBootRunner:
    assert isinstance(services.boot, FakeBootRunner)
    return services.boot


def code_of(call: Callable[[], object]) -> tuple[str, int]:
    with pytest.raises(ServiceError) as caught:
        call()
    return caught.value.code, caught.value.status


def job(services: Services, job_id: str) -> Any:
    return fx.job_row(services, job_id)


def report_of(services: Services, image_id: str) -> dict[str, Any]:
    return reports.image_report(services, fx.project_id(services), image_id)


def an_image(services: Services, report: dict[str, Any] | None = None, **kw: Any) -> str:
    """A new active image of the test project (a stored qcow2 named by its id)."""
    name = f"bootable-{next(_NAMES)}"
    return active_image(services, fx.project_id(services), name, report=report or CLAIMS_BOTH, **kw)


def test_a_boot_test_boots_each_claimed_firmware_and_its_verdicts_join_the_report(
    services: Services,
) -> None:
    image_id = an_image(services)
    job_id = boot_test_image(services, fx.project_id(services), image_id, None)
    assert services.queue is not None and services.queue.submitted == [job_id]  # type: ignore[attr-defined]
    run_job(services, job_id)

    calls = runner(services).calls
    stored = services.settings.images_dir / f"{image_id}.qcow2"
    assert [(c.image, c.image_format, c.firmware, c.timeout) for c in calls] == [
        (stored, "qcow2", "bios", 300.0),
        (stored, "qcow2", "uefi", 300.0),
    ]
    row = job(services, job_id)
    assert (row.job_type, row.status, row.percent, row.phase) == (
        BOOT_TEST_JOB,
        "SUCCESS",
        100.0,
        "report",
    )
    record = manage.show_job(services, fx.project_id(services), job_id)
    entities: Any = job_document(record)["entities"]
    assert entities["boot_firmware"] == "bios,uefi"
    assert entities["boot_outcomes"] == "bios:login,uefi:login"
    assert entities["boot_passed"] is True

    report = report_of(services, image_id)
    assert report["summary"] == CLAIMS_BOTH["summary"]  # the check's own verdict is untouched
    boot = report["boot"]
    assert boot["schema"] == "imageport.boot/1"
    assert boot["claimed_firmware"] == ["bios", "uefi"] and boot["passed"] is True
    bios, uefi = boot["boots"]
    assert (bios["firmware"], bios["outcome"], bios["passed"]) == ("bios", "login", True)
    assert bios["summary"] == "Reached a login prompt after 2 s."
    assert bios["job_id"] == job_id and bios["timeout"] == 300 and bios["tested_at"]
    assert bios["screenshot"] == f"/v1/cloudimages/{image_id}/boot-test/screenshot?firmware=bios"
    assert [s["stage"] for s in bios["stages"] if s["reached"]] == [
        "firmware",
        "boot-loader",
        "kernel",
        "root-filesystem",
        "login",
    ]
    assert uefi["firmware"] == "uefi"
    for fw in ("bios", "uefi"):
        shot = services.settings.boot_screens_dir / f"{image_id}.{fw}.png"
        assert shot.read_bytes() == PNG
        query = [("firmware", fw)]
        assert (
            boot_results.read_screenshot(services, fx.project_id(services), image_id, query) == PNG
        )
    assert list(services.settings.tmp_dir.glob("boot-*")) == []  # scratch screenshots moved

    text = render_document(report)
    assert (
        "Boot test\n  claims: BIOS, UEFI\n  BIOS: PASS: Reached a login prompt after 2 s." in text
    )
    assert (
        f"    screenshot: GET /v1/cloudimages/{image_id}/boot-test/screenshot?firmware=uefi" in text
    )
    assert "  result: PASS, every firmware booted reached a login prompt\n" in text


def test_a_later_test_of_one_firmware_replaces_its_verdict_and_keeps_the_other(
    services: Services,
) -> None:
    image_id = an_image(services)
    run_job(services, boot_test_image(services, fx.project_id(services), image_id, None))
    runner(services).consoles["uefi"] = NO_BOOTABLE_DEVICE
    second = boot_test_image(
        services, fx.project_id(services), image_id, {"firmware": "uefi", "timeout": 60}
    )
    run_job(services, second)
    assert [(c.firmware, c.timeout) for c in runner(services).calls[2:]] == [("uefi", 60.0)]
    boot = report_of(services, image_id)["boot"]
    bios, uefi = boot["boots"]
    assert bios["outcome"] == "login" and bios["job_id"] != second
    assert (uefi["outcome"], uefi["job_id"], uefi["timeout"]) == ("no-bootable-device", second, 60)
    assert boot["passed"] is False
    entities: Any = job_document(manage.show_job(services, fx.project_id(services), second))[
        "entities"
    ]
    assert (entities["boot_outcomes"], entities["boot_passed"]) == (
        "uefi:no-bootable-device",
        False,
    )
    text = render_document(report_of(services, image_id))
    assert "  UEFI: FAIL: The firmware found no bootable device." in text
    assert "      No bootable device." in text
    assert "  result: FAIL, no login prompt under UEFI" in text


def test_an_image_that_claims_no_firmware_is_booted_under_bios_and_both_boots_both(
    services: Services,
) -> None:
    image_id = an_image(services, {"schema": "imageport.check/1", "summary": {"verdict": "pass"}})
    run_job(services, boot_test_image(services, fx.project_id(services), image_id, {}))
    run_job(
        services, boot_test_image(services, fx.project_id(services), image_id, {"firmware": "both"})
    )
    assert [c.firmware for c in runner(services).calls] == ["bios", "bios", "uefi"]
    assert report_of(services, image_id)["boot"]["claimed_firmware"] == []


def test_the_request_is_refused_before_any_job_exists(services: Services) -> None:
    pid = fx.project_id(services)
    image_id = an_image(services)
    for body, code in (
        ({"firmware": "efi"}, codes.BAD_REQUEST),
        ({"firmware": ["bios"]}, codes.BAD_REQUEST),
        ({"timeout": 5}, codes.BAD_REQUEST),
        ({"timeout": 901}, codes.BAD_REQUEST),  # boot_test_max_seconds
        ({"timeout": "60"}, codes.BAD_REQUEST),
        ({"timeout": True}, codes.BAD_REQUEST),
        ({"timeout": 60.5}, codes.BAD_REQUEST),
        ({"uefi": True}, codes.BAD_REQUEST),
        ([], codes.BAD_REQUEST),
    ):
        assert code_of(functools.partial(boot_test_image, services, pid, image_id, body)) == (
            code,
            400,
        ), body
    assert code_of(lambda: boot_test_image(services, pid, "0" * 36, None)) == (
        codes.NOT_FOUND,
        404,
    )
    queued = an_image(services, status="queued")
    assert code_of(lambda: boot_test_image(services, pid, queued, None)) == (codes.STATE, 409)
    no_report = active_image(services, pid, "unchecked", report=None)
    assert code_of(lambda: boot_test_image(services, pid, no_report, None)) == (codes.STATE, 409)
    zvhd2 = an_image(services)
    with services.db.begin() as conn:
        conn.execute(update(images).where(images.c.id == zvhd2).values(disk_format="zvhd2"))
    assert code_of(lambda: boot_test_image(services, pid, zvhd2, None)) == (
        codes.FORMAT_NOT_SUPPORTED,
        400,
    )
    data = an_image(services)
    with services.db.begin() as conn:
        props = conn.execute(select(images.c.properties).where(images.c.id == data)).scalar()
        conn.execute(
            update(images)
            .where(images.c.id == data)
            .values(properties={**(props or {}), "virtual_env_type": "DataImage"})
        )
    assert code_of(lambda: boot_test_image(services, pid, data, None)) == (
        codes.BOOT_NOT_OFFERED,
        400,
    )
    runner(services).missing.add("uefi")
    with pytest.raises(ServiceError, match=r"cannot boot UEFI: .*apt-get install ovmf") as caught:
        boot_test_image(services, pid, image_id, None)  # the image claims UEFI too
    assert caught.value.code == codes.BOOT_NOT_OFFERED
    assert boot_test_image(services, pid, image_id, {"firmware": "bios"})  # BIOS still works
    with services.db.connect() as conn:
        assert conn.execute(select(jobs.c.image_id)).scalars().all() == [image_id]


def test_one_boot_test_per_image_at_a_time_and_none_where_they_are_off(
    services: Services, tmp_path: Path
) -> None:
    pid = fx.project_id(services)
    image_id = an_image(services)
    first = boot_test_image(services, pid, image_id, None)
    with pytest.raises(
        ServiceError, match=f"already has a boot test waiting or running \\({first}"
    ):
        boot_test_image(services, pid, image_id, None)
    other = an_image(services)
    assert boot_test_image(services, pid, other, None)  # another image is not held up
    off = service_fixtures.make_fake_services(tmp_path / "off", boot_test_concurrency=0)
    try:
        image = active_image(off, fx.project_id(off), "x", report=CLAIMS_BOTH)
        assert code_of(lambda: boot_test_image(off, fx.project_id(off), image, None)) == (
            codes.BOOT_NOT_OFFERED,
            400,
        )
    finally:
        off.db.dispose()


def test_a_member_of_a_shared_image_may_see_the_verdict_but_not_start_a_test(
    services: Services,
) -> None:
    owner = fx.project_id(services)
    image_id = an_image(services)
    run_job(services, boot_test_image(services, owner, image_id, None))
    guest = create_project(services, "member").id
    members.add_member(services, owner, image_id, {"member": guest})
    assert code_of(lambda: boot_test_image(services, guest, image_id, None)) == (
        codes.NOT_OWNER,
        403,
    )
    assert reports.image_report(services, guest, image_id)["boot"]["passed"] is True
    assert boot_results.read_screenshot(services, guest, image_id, [("firmware", "bios")]) == PNG
    stranger = create_project(services, "stranger").id
    assert code_of(
        lambda: boot_results.read_screenshot(services, stranger, image_id, [("firmware", "bios")])
    ) == (codes.NOT_FOUND, 404)


def test_the_screenshot_route_takes_one_firmware_and_says_when_there_is_none(
    services: Services,
) -> None:
    pid = fx.project_id(services)
    image_id = an_image(services)
    for query in (
        [],
        [("firmware", "BIOS")],
        [("firmware", "bios"), ("firmware", "uefi")],
        [("firmware", "bios"), ("size", "big")],
    ):
        assert code_of(
            functools.partial(boot_results.read_screenshot, services, pid, image_id, query)
        ) == (codes.BAD_REQUEST, 400), query
    assert code_of(
        lambda: boot_results.read_screenshot(services, pid, image_id, [("firmware", "uefi")])
    ) == (codes.NO_REPORT, 404)


def test_a_job_waits_for_a_place_to_boot_without_holding_a_worker(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boot_job, "RETRY_SECONDS", 0.05)
    pid = fx.project_id(services)
    image_id = an_image(services)
    assert services.boot_slots.take_now()  # another boot holds the only place
    job_id = boot_test_image(services, pid, image_id, {"firmware": "bios"})
    started = time.monotonic()
    run_job(services, job_id)  # returns at once: nothing to do yet
    assert time.monotonic() - started < 1.0
    row = job(services, job_id)
    assert (row.status, row.phase) == ("INIT", boot_job.WAITING)
    record = manage.show_job(services, pid, job_id)
    progress: Any = job_document(record, progress=True)["entities"]
    assert progress["current_task"] == "waiting"
    deadline = time.monotonic() + 5
    queue = services.queue
    while queue.submitted.count(job_id) < 2:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the waiting job was not submitted again"
        time.sleep(0.02)
    services.boot_slots.give_back()
    run_job(services, job_id)
    assert job(services, job_id).status == "SUCCESS"
    assert services.boot_slots.taken == 0


def test_only_one_boot_runs_at_a_time_on_the_host(services: Services) -> None:
    """Two boot tests (two projects, two workers): the second waits for the first's place."""
    fake = runner(services)
    fake.consoles["bios"] = STILL_BOOTING
    fake.hold.set()
    first_image, second_image = an_image(services), an_image(services)
    pid = fx.project_id(services)
    first = boot_test_image(services, pid, first_image, {"firmware": "bios", "timeout": 10})
    second = boot_test_image(services, pid, second_image, {"firmware": "bios", "timeout": 10})
    worker = threading.Thread(target=run_job, args=(services, first))
    worker.start()
    deadline = time.monotonic() + 5
    while fake.running == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    run_job(services, second)  # the other worker: no place
    assert job(services, second).status == "INIT" and fake.running == 1
    fake.hold.clear()
    worker.join(10)
    assert job(services, first).status == "SUCCESS"
    run_job(services, second)
    assert job(services, second).status == "SUCCESS"
    assert [c.image.name for c in fake.calls] == [f"{first_image}.qcow2", f"{second_image}.qcow2"]


def test_a_cancel_ends_the_running_machine_and_leaves_the_report_as_it_was(
    services: Services,
) -> None:
    fake = runner(services)
    fake.consoles["bios"] = STILL_BOOTING
    fake.hold.set()
    pid = fake_pid = fx.project_id(services)
    image_id = an_image(services)
    job_id = boot_test_image(services, pid, image_id, {"firmware": "bios", "timeout": 600})

    def cancel_while_booting(call: object) -> None:
        manage.cancel_job(services, fake_pid, job_id)

    fake.on_boot = cancel_while_booting
    started = time.monotonic()
    run_job(services, job_id)
    assert time.monotonic() - started < 5  # not the 600 s the boot had
    row = job(services, job_id)
    assert (row.status, row.error_code) == ("FAIL", codes.CANCELLED)
    assert "boot" not in report_of(services, image_id)
    assert fx.image_row(services, job_id).status == "active"
    assert list(services.settings.boot_screens_dir.glob("*")) == []
    assert list(services.settings.tmp_dir.glob("boot-*")) == []
    assert services.boot_slots.taken == 0


def test_a_machine_that_cannot_start_fails_the_job_not_the_image(services: Services) -> None:
    runner(services).fail = "QEMU did not start: qemu-system-x86_64: cannot set up guest memory"
    image_id = an_image(services)
    job_id = boot_test_image(services, fx.project_id(services), image_id, {"firmware": "bios"})
    run_job(services, job_id)
    row = job(services, job_id)
    assert (row.status, row.error_code) == ("FAIL", codes.INTERNAL)
    assert row.fail_reason == (
        "no machine could boot the image: QEMU did not start: qemu-system-x86_64: cannot set "
        "up guest memory"
    )
    image = fx.image_row(services, job_id)
    assert image.status == "active" and "boot" not in image.report
    assert services.boot_slots.taken == 0


def test_deleting_the_image_removes_its_screenshots_and_recovery_removes_orphans(
    services: Services,
) -> None:
    pid = fx.project_id(services)
    image_id, kept = an_image(services), an_image(services)
    for image in (image_id, kept):
        run_job(services, boot_test_image(services, pid, image, None))
    screens = services.settings.boot_screens_dir
    assert len(list(screens.glob("*.png"))) == 4
    lifecycle.delete_image(services, pid, image_id, None)
    assert sorted(p.name for p in screens.iterdir()) == [f"{kept}.bios.png", f"{kept}.uefi.png"]
    (screens / f"{'1' * 36}.bios.png").write_bytes(PNG)  # a crash left it behind
    (screens / "notes.txt").write_text("not ours")
    recovery.recover(services)
    assert sorted(p.name for p in screens.iterdir()) == [f"{kept}.bios.png", f"{kept}.uefi.png"]


def test_a_kernel_panic_is_judged_as_the_cli_judges_it(services: Services) -> None:
    runner(services).consoles["bios"] = KERNEL_PANIC
    image_id = an_image(services)
    run_job(
        services, boot_test_image(services, fx.project_id(services), image_id, {"firmware": "bios"})
    )
    (bios,) = report_of(services, image_id)["boot"]["boots"]
    assert bios["outcome"] == "kernel-panic"
    assert bios["summary"] == (
        "The kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs on "
        "unknown-block(0,0)."
    )
    assert 'VFS: Cannot open root device "UUID=1234"' in bios["why"][0]["line"]


def test_a_copy_keeps_the_verdicts_but_not_the_routes_to_the_source_screenshots(
    services: Services,
) -> None:
    pid = fx.project_id(services)
    source = an_image(services)
    run_job(services, boot_test_image(services, pid, source, None))
    copy_job = copy_image(services, pid, source, {"name": "copied"})
    run_job(services, copy_job)
    copied = fx.image_row(services, copy_job)
    assert copied.status == "active" and copied.id != source
    boots = report_of(services, copied.id)["boot"]["boots"]
    assert [(b["outcome"], b["screenshot"]) for b in boots] == [("login", None), ("login", None)]
    assert report_of(services, source)["boot"]["boots"][0]["screenshot"] is not None
    assert code_of(
        lambda: boot_results.read_screenshot(services, pid, copied.id, [("firmware", "bios")])
    ) == (codes.NO_REPORT, 404)
