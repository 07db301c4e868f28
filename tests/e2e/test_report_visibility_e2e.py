"""Every finding of an image's check, read the three ways a user reads it (issue 11's "done
when"): a guest exported from VMware with its tools installed, a resume device named by the old
machine's disk id and no root password goes ``active`` with warnings, and

* the vendor's SDK (``ShowJob``) shows a SUCCESS job without ``fail_reason`` whose
  ``entities.alarm_code`` names every rule that has more to say;
* our report route (``imageport image report --json``) has each finding with its evidence
  and fix;
* ``imageport image show`` prints the same findings as ``imageport check`` does.

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
WARNED = {"IMG-HYPERVISOR-TOOLS", "IMG-HW-BINDING", "IMG-ROOT-PASSWORD"}


def from_vmware() -> Path:
    return gf.build_guest(
        "report-visibility-vmware",
        root={
            **gf.CLOUD_READY,
            "var/lib/dpkg/status": DPKG_STATUS,
            "etc/default/grub": f'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="resume={BY_ID}-part2"\n',
        },
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_apis(tmp_path) as apis:
        apis.cli_ok("bucket", "create", "images")
        apis.cli_ok("upload", str(from_vmware()), "images/vmware.raw")
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
