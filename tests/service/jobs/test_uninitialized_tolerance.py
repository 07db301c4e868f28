"""An image registered uninitialized is fixed in a server later: the errors of the
initialization rules it can be fixed of there (a data-disk line in fstab, say) are warnings for
it, so its import succeeds and its report still names them; the same file registered as
initialized fails; IMG-DRIVERS stays an error (a server that cannot find its disk cannot be
fixed in one)."""

from __future__ import annotations

from pathlib import Path

from imageport.findings import Severity
from imageport.rules.base import CheckOptions
from imageport.service.context import Services
from imageport.service.images.lifecycle import create_glance_image, register_image_file
from imageport.service.jobs.import_job import run_job
from imageport.service.tools.check import TOLERATED_NOTE, check_image
from support import guest_fixtures as gf
from support import import_fixtures as imf
from support import kernel_fixtures as kt


def console_ready_with_a_data_disk() -> Path:
    """A guest fit for an uninitialized image (root has a password) whose fstab mounts a data
    disk at boot (IMG-FSTAB-DATA-DISK, an error)."""
    return gf.build_guest(
        "glance-datadisk",
        root={**gf.CLOUD_READY, "etc/shadow": imf.ROOT_SHADOW},
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
        fstab=gf.GOOD_FSTAB + gf.DATA_DISK_LINE + "\n",
    )


def test_the_check_makes_a_fixable_error_a_warning_only_when_uninitialized() -> None:
    image = console_ready_with_a_data_disk()
    as_initialized = check_image(image, CheckOptions())
    uninitialized = check_image(image, CheckOptions(uninitialized=True))
    (before,) = [f for f in as_initialized.findings if f.rule_id == "IMG-FSTAB-DATA-DISK"]
    (after,) = [f for f in uninitialized.findings if f.rule_id == "IMG-FSTAB-DATA-DISK"]
    assert (before.severity, as_initialized.passed) == (Severity.ERROR, False)
    assert (after.severity, uninitialized.passed) == (Severity.WARNING, True)
    assert after.message == before.message + TOLERATED_NOTE
    assert after.evidence == before.evidence


def test_missing_disk_drivers_stay_an_error_when_uninitialized() -> None:
    report = check_image(kt.novirtio_guest(), CheckOptions(uninitialized=True))
    drivers = [f.severity for f in report.findings if f.rule_id == "IMG-DRIVERS"]
    assert drivers == [Severity.ERROR]


def test_the_glance_path_imports_it_and_the_cloudimages_path_refuses_it(
    services: Services,
) -> None:
    pid = imf.project_id(services)
    imf.put_object(services, pid, "uploads/fixable.raw", console_ready_with_a_data_disk())
    body = {"image_url": f"{imf.BUCKET}:uploads/fixable.raw"}
    queued = create_glance_image(services, pid, {"name": "to-fix", "disk_format": "raw"})
    job_id = register_image_file(services, pid, queued.id, body)
    run_job(services, job_id)
    job, image = imf.job_row(services, job_id), imf.image_row(services, job_id)
    assert (job.status, image.status) == ("SUCCESS", "active"), job.fail_reason
    assert image.properties["__is_config_init"] == "false"
    found = [f for f in image.report["findings"] if f["rule_id"] == "IMG-FSTAB-DATA-DISK"]
    assert [f["severity"] for f in found] == ["warning"]
    initialized = imf.register(services, console_ready_with_a_data_disk(), name="as-ready")
    run_job(services, initialized)
    assert imf.job_row(services, initialized).error_code == "IMG-FSTAB-DATA-DISK"
