"""The import job end to end on real parts: SQLite and a real PostgreSQL server (every test runs
on both), the local object store, qemu-img and the checker in limited worker processes, with
images built by the real tools."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from pathlib import Path

import pytest

from imageport import metrics
from imageport.adapters.image_worker import SubprocessImageWorker
from imageport.service.context import Services
from imageport.service.jobs import state as job_state
from imageport.service.jobs.import_job import run_job
from imageport.service.jobs.manage import cancel_job
from support import guest_fixtures as gf
from support import import_fixtures as fx
from support import kernel_fixtures as kt


@pytest.fixture
def services(backend_services: Services) -> Services:
    """These tests run on SQLite and on a real PostgreSQL server."""
    return backend_services


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _finished(services: Services) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "imageport_jobs_finished_total", {"job_type": "imsImportImageJob", "status": "SUCCESS"}
        )
        or 0.0
    )


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk"])
def test_good_image_becomes_active_qcow2_with_the_same_disk(
    services: Services, tmp_path: Path, fmt: str
) -> None:
    source = fx.good_image(fmt)
    job_id = fx.register(services, source, name=f"good-{fmt}")
    before = _finished(services)
    run_job(services, job_id)

    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code, job.fail_reason) == ("SUCCESS", None, None)
    assert (job.percent, job.phase, job.attempts) == (100.0, "store", 1)
    assert job.end_time is not None
    image = fx.image_row(services, job_id)
    assert (image.status, image.disk_format) == ("active", "qcow2")
    stored = services.settings.images_dir / image.blob
    assert image.blob == f"{image.id}.qcow2"
    assert image.size == stored.stat().st_size
    assert image.checksum == _sha256(stored)
    assert image.virtual_size == 128 << 20
    props = image.properties
    assert props["__image_size"] == str(image.size)
    assert props["__os_version"] == "Debian GNU/Linux 12.0.0 64bit"
    assert (props["__platform"], props["__os_type"], props["__os_bit"]) == ("Debian", "Linux", "64")
    assert props["__data_origin"] == f"file,{fx.BUCKET}:uploads/good-{fmt}.{fmt}"
    assert image.report["summary"]["verdict"] == "pass"
    assert image.active_at is not None
    # the stored disk holds exactly what the uploaded one held
    assert fx.raw_of(stored, "qcow2", tmp_path / "out.raw") == fx.raw_of(
        source, fmt, tmp_path / "in.raw"
    )
    assert list(services.settings.tmp_dir.iterdir()) == []
    assert _finished(services) == before + 1


def test_stored_format_raw_is_honoured(tmp_path: Path, database_url: str) -> None:
    from support import service_fixtures

    services = service_fixtures.make_services(tmp_path / "d", database_url, stored_format="raw")
    job_id = fx.register(services, fx.good_image("qcow2"))
    run_job(services, job_id)
    image = fx.image_row(services, job_id)
    assert (image.status, image.disk_format) == ("active", "raw")
    stored = services.settings.images_dir / image.blob
    assert stored.read_bytes() == fx.good_raw().read_bytes()
    services.db.dispose()


def _assert_failed(services: Services, job_id: str, rule: str) -> str:
    job = fx.job_row(services, job_id)
    image = fx.image_row(services, job_id)
    assert job.status == "FAIL", job.fail_reason
    assert job.error_code == rule
    assert (image.status, image.error_code, image.fail_reason) == ("killed", rule, job.fail_reason)
    assert list(services.settings.images_dir.glob("*")) == []
    assert list(services.settings.tmp_dir.iterdir()) == []
    return str(job.fail_reason)


def test_backing_file_fails_img_safe_and_the_report_is_kept(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registration refuses it at once (tests/service/images/test_header_checks.py); the job
    refuses it too, should it get one."""
    fx.without_header_checks(monkeypatch)
    job_id = fx.register(services, fx.backing_qcow2(), name="backing")
    run_job(services, job_id)
    reason = _assert_failed(services, job_id, "IMG-SAFE")
    assert reason.startswith("IMG-SAFE: ")
    assert "/etc/passwd" in reason
    report = fx.image_row(services, job_id).report
    assert report["summary"]["verdict"] == "fail"
    assert "IMG-SAFE" in {f["rule_id"] for f in report["findings"]}


def test_luks_qcow2_fails_with_every_rule_listed(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    fx.without_header_checks(monkeypatch)  # registration refuses it at once (IMG.0057)
    job_id = fx.register(services, fx.luks_qcow2(), name="luks")
    run_job(services, job_id)
    job = fx.job_row(services, job_id)
    report = fx.image_row(services, job_id).report
    failing = [f["rule_id"] for f in report["findings"] if f["severity"] == "error"]
    assert "IMG-QCOW2-ENCRYPTED" in failing
    reason = _assert_failed(services, job_id, failing[0])
    # each failing rule's entry starts an unindented line; its evidence and fix lines are indented
    rules = [line.split(":", 1)[0] for line in reason.splitlines() if not line.startswith(" ")]
    assert rules == failing
    assert job.error_code == failing[0]


def test_two_failing_rules_each_name_their_first_evidence_line_and_fix(
    services: Services,
) -> None:
    job_id = fx.register(services, fx.failing_twice_qcow2(), name="twice")
    run_job(services, job_id)
    reason = _assert_failed(services, job_id, "IMG-FSTAB-DATA-DISK")
    report = fx.image_row(services, job_id).report
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert [f["rule_id"] for f in errors] == ["IMG-FSTAB-DATA-DISK", "IMG-BOOT-MODE"]
    fstab, boot = errors
    assert boot["evidence"][1].startswith("UEFI: ")  # the second line stays in the report only
    assert reason.splitlines() == [
        f"IMG-FSTAB-DATA-DISK: {fstab['message']}",
        f"  evidence: /etc/fstab:7: {gf.DATA_DISK_LINE}",
        f"  fix: {fstab['advice']}",
        f"IMG-BOOT-MODE: {boot['message']}",
        "  evidence: BIOS: sector 0: no boot code (+1 more in the check report)",
        f"  fix: {boot['advice']}",
    ]


def test_data_disk_in_fstab_fails_img_fstab_data_disk(services: Services) -> None:
    job_id = fx.register(services, gf.synthetic_guest(data_disk=True), name="datadisk")
    run_job(services, job_id)
    reason = _assert_failed(services, job_id, "IMG-FSTAB-DATA-DISK")
    assert "/dev/vdb1" in reason or "/data" in reason


def test_an_x86_64_guest_registered_arm_fails_img_arch(services: Services) -> None:
    job_id = fx.register(services, kt.x86_64_ready_guest(), name="x86-as-arm", architecture="arm")
    run_job(services, job_id)
    reason = _assert_failed(services, job_id, "IMG-ARCH")
    assert reason.splitlines()[:2] == [
        "IMG-ARCH: The image is declared arm (aarch64), but its programs are built for x86_64: "
        "its servers would be started on aarch64 hosts and would not boot.",
        "  evidence: /usr/bin/sh: ELF 64-bit little-endian, e_machine 62 (x86_64) "
        "(+1 more in the check report)",
    ]
    assert "Register the image with the architecture x86" in reason
    report = fx.image_row(services, job_id).report
    errors = [f["rule_id"] for f in report["findings"] if f["severity"] == "error"]
    assert errors == ["IMG-ARCH"]


def test_an_x86_64_guest_registered_x86_becomes_active(services: Services) -> None:
    for name, body in (("x86-default", {}), ("x86-declared", {"architecture": "x86"})):
        job_id = fx.register(services, kt.x86_64_ready_guest(), name=name, **body)
        run_job(services, job_id)
        job = fx.job_row(services, job_id)
        assert (job.status, job.fail_reason) == ("SUCCESS", None)
        report = fx.image_row(services, job_id).report
        assert "IMG-ARCH" not in {f["rule_id"] for f in report["findings"]}
        assert report["summary"]["verdict"] == "pass"


def test_worker_out_of_memory_fails_the_job_naming_the_limit(
    tmp_path: Path, database_url: str
) -> None:
    from support import service_fixtures

    services = service_fixtures.make_services(
        tmp_path / "d", database_url, worker_memory_bytes=20 << 20
    )
    job_id = fx.register(services, fx.good_image("qcow2"))
    run_job(services, job_id)
    reason = _assert_failed(services, job_id, "IMG.1075")
    assert "memory limit of 20 MiB" in reason
    services.db.dispose()


def test_cancel_during_conversion_kills_qemu_img(services: Services) -> None:
    # qemu-img rate-limited (-r 100 KiB/s): the conversion takes several seconds
    services.worker = SubprocessImageWorker(services.settings, rate_limit=100 << 10)
    job_id = fx.register(services, fx.good_image("qcow2"), name="slow")
    runner = threading.Thread(target=run_job, args=(services, job_id))
    runner.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = fx.job_row(services, job_id)
        if job.phase == "convert" and job.percent > 10:
            break
        time.sleep(0.1)
    assert (job.phase, job.status) == ("convert", "RUNNING")
    started = time.monotonic()
    cancel_job(services, fx.project_id(services), job_id)
    runner.join(timeout=20)
    assert not runner.is_alive()
    assert time.monotonic() - started < 5
    _assert_failed(services, job_id, "IMG.CANCELLED")


def test_cancel_before_start_ends_the_job_without_work(services: Services) -> None:
    job_id = fx.register(services, fx.good_image("qcow2"), name="early")
    cancel_job(services, fx.project_id(services), job_id)
    run_job(services, job_id)
    _assert_failed(services, job_id, "IMG.CANCELLED")


def test_a_job_runs_once_even_when_run_twice(services: Services) -> None:
    job_id = fx.register(services, fx.good_image("qcow2"))
    claimed = job_state.claim(services, job_id)
    assert claimed is not None and claimed.attempts == 1
    assert job_state.claim(services, job_id) is None
    run_job(services, job_id)  # another worker: not INIT, nothing happens
    job = fx.job_row(services, job_id)
    assert (job.status, job.attempts) == ("RUNNING", 1)


def test_replaced_object_fails_img_0057(services: Services) -> None:
    job_id = fx.register(services, fx.good_image("qcow2"), name="swap")
    fx.put_object(services, fx.project_id(services), "uploads/swap.qcow2", fx.good_raw())
    run_job(services, job_id)
    reason = _assert_failed(services, job_id, "IMG.0057")
    assert "replaced" in reason


def test_progress_is_written_by_phase(services: Services) -> None:
    job_id = fx.register(services, fx.good_image("qcow2"))
    claimed = job_state.claim(services, job_id)
    assert claimed is not None
    progress = job_state.Progress(services, job_id)
    progress.phase("convert", 1000)
    row = fx.job_row(services, job_id)
    assert (row.phase, row.percent, row.bytes_done, row.bytes_total) == ("convert", 10.0, 0, 1000)
    time.sleep(job_state.PROGRESS_INTERVAL)
    progress.update(0.5, 500, 1000)
    progress.update(0.6, 600, 1000)  # too soon after the last write: not written
    row = fx.job_row(services, job_id)
    assert (row.percent, row.bytes_done) == (50.0, 500)
    assert dataclasses.asdict(claimed.params)["quick_import"] is False
