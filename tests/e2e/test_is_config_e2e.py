"""Automatic configuration end to end: a real ``imageport serve`` process, its real guest editor
(libguestfs' appliance, one launch: ~35-45 s under TCG), unmodified clients.

boto3 uploads a qcow2 guest with the network defects the merged fixes clear (a MAC-pinned
``70-persistent-net.rules``, eth0 on a static address with its MAC in
``/etc/network/interfaces``); the vendor's IMS SDK registers it with ``is_config: true`` and
polls ShowJob to SUCCESS. The image is active with ``__is_config_init`` true, ``imageport image
report`` shows the ``configuration`` section naming each change, and the stored disk, checked by
the checker, has none of the defects left. The same SDK asking for a quick import with
``is_config`` is refused at once with ``IMG.0001`` saying fast import configures nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkims.v2 import (
    CreateImageRequest,
    CreateImageRequestBody,
    GlanceShowImageRequest,
)

from imageport.service.tools.check import check_image
from support import is_config_fixtures as icf
from support.e2e_clients import imageport_cli, ims_client, s3_client, wait_job
from support.server_process import ServeProcess, serve_process

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Method '[a-z_]+' of ImsClient is deprecated:DeprecationWarning"
    ),
    pytest.mark.skipif(
        shutil.which("guestfish") is None,
        reason="guestfish is not installed (Debian libguestfs-tools; scripts/install --test)",
    ),
]

BUCKET = "config-images"
#: One import with the appliance under TCG: conversions, planning and ~45 s of appliance.
JOB_SECONDS = 600.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("serve-config"), tenants=("alpha",)) as started:
        s3_client(started, started.keys["alpha"]).create_bucket(Bucket=BUCKET)
        yield started


def cli(server: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return imageport_cli(server, server.keys["alpha"], *args, own_home=True)


def test_sdk_import_with_is_config_fixes_the_guest(server: ServeProcess) -> None:
    keys = server.keys["alpha"]
    s3_client(server, keys).upload_file(str(icf.defective_qcow2()), BUCKET, "disk/net.qcow2")
    client = ims_client(server, keys)
    body = CreateImageRequestBody(
        name="configured",
        image_url=f"{BUCKET}:disk/net.qcow2",
        min_disk=40,
        is_config=True,
        type="ECS",
    )
    job = wait_job(client, client.create_image(CreateImageRequest(body=body)).job_id, JOB_SECONDS)
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    image_id = job.entities.image_id
    image = client.glance_show_image(GlanceShowImageRequest(image_id=image_id))
    assert (image.status, image.disk_format) == ("active", "qcow2")
    assert image.is_config_init == "true"

    shown = cli(server, "image", "report", image_id, "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    section = report["configuration"]
    assert section["applied"] is True
    changes = {c["path"]: c for c in section["changes"]}
    assert changes[icf.PERSISTENT_NET]["action"] == "removed"
    assert changes[icf.PERSISTENT_NET]["rule"] == "IMG-NET-RULES"
    assert changes["/etc/network/interfaces"]["rule"] == "IMG-NET-DHCP"
    left = {f["rule_id"] for f in report["findings"] if f["severity"] != "info"}
    assert not left & set(icf.NETWORK_RULES)

    stored = server.data_dir / "images" / f"{image_id}.qcow2"
    after = check_image(stored)
    found = {f.rule_id for f in after.findings if f.severity.value != "info"}
    assert not found & set(icf.NETWORK_RULES), found


def test_sdk_quick_import_with_is_config_is_refused(server: ServeProcess) -> None:
    client = ims_client(server, server.keys["alpha"])
    body = CreateImageRequestBody(
        name="quick-configured",
        image_url=f"{BUCKET}:disk/net.raw",
        min_disk=40,
        os_version="Debian GNU/Linux 12.0.0 64bit",
        is_config=True,
        is_quick_import=True,
        type="ECS",
    )
    with pytest.raises(ClientRequestException) as refused:
        client.create_image(CreateImageRequest(body=body))
    assert refused.value.status_code == 400
    assert refused.value.error_code == "IMG.0001"
    assert "fast import performs no configuration" in refused.value.error_msg
