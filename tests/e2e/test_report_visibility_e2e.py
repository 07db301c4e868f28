"""Every finding of an image's check, read the three ways a user reads it (issue 11's "done
when"): a guest exported from VMware with its tools installed, a resume device named by the old
machine's disk id, a kernel without the IDE driver and no root password goes ``active`` with
warnings, and

* the vendor's SDK (``ShowJob``) shows a SUCCESS job without ``fail_reason`` whose
  ``entities.alarm_code`` names every rule that has more to say;
* our report route (``imageport image report --json``) has each finding with its evidence
  and fix;
* ``imageport image show`` prints the same findings as ``imageport check`` does.

A data disk mounted with ``nofail`` but without ``noauto`` fails the import, and the SDK's
``fail_reason`` says why ``nofail`` is not enough.

A real image API and S3 API on loopback, the real checker in its worker processes, the SDK and
the CLI as real clients; the job is run as a worker of ``imageport serve`` runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkims.v2 import ImsClient
from huaweicloudsdkims.v2 import model as m

from imageport.service.jobs.import_job import run_job
from support import guest_fixtures as gf
from support.live_apis import Live, live_apis

pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '[a-z_]+' of ImsClient is deprecated:DeprecationWarning"
)

BY_ID = "/dev/disk/by-id/ata-VBOX_HARDDISK_VB5f2c9a1e-8d03b7c4"
DPKG_STATUS = "".join(
    f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
    f"Architecture: amd64\nVersion: {version}\nDescription: {name}\n\n"
    for name, version in (("base-files", "12.4+deb12u5"), ("open-vm-tools", "2:12.2.0-1+deb12u2"))
)
WARNED = {"IMG-HYPERVISOR-TOOLS", "IMG-HW-BINDING", "IMG-ROOT-PASSWORD", "IMG-DRIVERS"}
KERNEL_CONFIG = "config-6.1.0-13-amd64"
#: the base guest's kernel without its IDE driver (virtio and Xen front ends complete)
NO_IDE = str(gf.BASE_BOOT[KERNEL_CONFIG]).replace("CONFIG_ATA_PIIX=y\n", "")


def from_vmware() -> Path:
    return gf.build_guest(
        "report-visibility-vmware",
        root={
            **gf.CLOUD_READY,
            "var/lib/dpkg/status": DPKG_STATUS,
            "etc/default/grub": f'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="resume={BY_ID}-part2"\n',
        },
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG, KERNEL_CONFIG: NO_IDE},
    )


def with_a_nofail_data_disk() -> Path:
    """The cloud-ready guest whose fstab mounts a data disk with ``nofail`` (not ``noauto``)."""
    return gf.build_guest(
        "report-visibility-nofail",
        root=gf.CLOUD_READY,
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
        fstab=gf.GOOD_FSTAB + "/dev/vdb1 /data ext4 defaults,nofail 0 2\n",
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_apis(tmp_path) as apis:
        apis.cli_ok("bucket", "create", "images")
        apis.cli_ok("upload", str(from_vmware()), "images/vmware.raw")
        apis.cli_ok("upload", str(with_a_nofail_data_disk()), "images/nofail.raw")
        yield apis


def test_an_active_images_warnings_reach_the_sdk_the_report_route_and_image_show(
    live: Live,
) -> None:
    cred = BasicCredentials(live.access_key, live.secret_key, live.project_id)
    ims = ImsClient.new_builder().with_credentials(cred).with_endpoint(live.ims_url).build()
    body = m.CreateImageRequestBody(
        name="from-vmware", image_url="images:vmware.raw", min_disk=40, os_version=gf_debian()
    )
    job_id = ims.create_image(m.CreateImageRequest(body=body)).job_id
    run_job(live.services, job_id)

    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert (job.status, job.fail_reason) == ("SUCCESS", None)
    alarms = (job.entities.alarm_code or "").split(",")
    assert WARNED <= set(alarms), alarms
    image_id = job.entities.image_id

    report = json.loads(live.cli_ok("image", "report", image_id, "--json").stdout)
    assert report["summary"]["verdict"] == "pass" and report["summary"]["errors"] == 0
    findings = {f["rule_id"]: f for f in report["findings"]}
    assert sorted(set(alarms)) == sorted(findings)  # every finding is named to the SDK
    tools, binding = findings["IMG-HYPERVISOR-TOOLS"], findings["IMG-HW-BINDING"]
    assert tools["severity"] == binding["severity"] == "warning"
    assert any("open-vm-tools" in line for line in tools["evidence"])
    assert "open-vm-tools" in tools["advice"]
    assert any(f"resume={BY_ID}-part2" in line for line in binding["evidence"])
    assert "/etc/default/grub" in binding["advice"]
    ide = findings["IMG-DRIVERS"]  # no IDE driver: a warning while virtio is complete
    assert ide["severity"] == "warning" and "ata_piix" in ide["message"]

    shown = live.cli_ok("image", "show", image_id).stdout
    assert "status: active" in shown
    flat = " ".join(shown.split())  # the text report wraps long lines
    for rule_id, finding in findings.items():
        assert rule_id in shown
        assert " ".join(f"evidence: {finding['evidence'][0]}".split()) in flat
    assert "Result: PASS (0 error(s)" in shown


def gf_debian() -> str:
    """The ``os_version`` the good guest is (Debian 12)."""
    return "Debian GNU/Linux 12.0.0 64bit"


def test_a_nofail_data_disk_line_fails_the_import_and_the_sdk_says_why(live: Live) -> None:
    cred = BasicCredentials(live.access_key, live.secret_key, live.project_id)
    ims = ImsClient.new_builder().with_credentials(cred).with_endpoint(live.ims_url).build()
    body = m.CreateImageRequestBody(
        name="nofail", image_url="images:nofail.raw", min_disk=40, os_version=gf_debian()
    )
    job_id = ims.create_image(m.CreateImageRequest(body=body)).job_id
    run_job(live.services, job_id)
    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert (job.status, job.error_code) == ("FAIL", "IMG-FSTAB-DATA-DISK")
    reason = job.fail_reason or ""
    assert "/etc/fstab:7: /dev/vdb1 /data ext4 defaults,nofail 0 2" in reason
    # the fix says why nofail is not enough; the report's second evidence line says it too
    assert "fix: Add `noauto`" in reason and "nofail alone still mounts it at" in reason
    image_id = job.entities.image_id
    report = json.loads(live.cli("image", "report", image_id, "--json").stdout)
    (finding,) = [f for f in report["findings"] if f["rule_id"] == "IMG-FSTAB-DATA-DISK"]
    assert any(line.startswith("nofail is not enough") for line in finding["evidence"])
