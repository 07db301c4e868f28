"""The vendor's path for an image that is not ready for the cloud, end to end on a real
``imageport serve`` with real QEMU servers, driven by the vendor's SDKs and our CLI:

1. a Debian image with two seeded defects (persistent-net rules, a data disk mounted ``nofail``
   from fstab: layout ``gpt-bios-esp-ext4-fixable``) is uploaded with boto3 and registered
   *uninitialized* with the IMS SDK (Glance create + RegisterImage): it goes active with the two
   defects reported and ``__is_config_init`` false;
2. a key pair is imported with the ECS SDK (Nova os-keypairs), and a server created from the
   image with it (CreatePostPaidServers; ShowJob until SUCCESS; ShowServer ACTIVE with its SSH
   forward);
3. ``imageport server ssh`` logs in as root with the injected key (cloud-init took it and the
   user data allowing root from the metadata service) and fixes both defects; the console log
   shows the guest's login prompt;
4. ``imageport serve`` is killed (SIGKILL) and started again: the server is still ACTIVE and
   answers SSH (its QEMU outlived the service and was re-attached);
5. the server is stopped (BatchStopServers SOFT), an image is made from it (the IMS SDK's
   CreateImage with ``instance_id``), its job succeeds and the new image's report no longer
   shows the defects;
6. the server is deleted and its QEMU process is gone.

One Debian boot (TCG: a minute or two); everything else is quick.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkecs.v2 import (
    BatchStopServersOption,
    BatchStopServersRequest,
    BatchStopServersRequestBody,
    CreatePostPaidServersRequest,
    CreatePostPaidServersRequestBody,
    DeleteServersRequest,
    DeleteServersRequestBody,
    EcsClient,
    NovaCreateKeypairOption,
    NovaCreateKeypairRequest,
    NovaCreateKeypairRequestBody,
    PostPaidServer,
    PostPaidServerNic,
    PostPaidServerRootVolume,
    ServerId,
    ShowJobRequest,
    ShowServerConsoleOutputRequest,
    ShowServerRequest,
)
from huaweicloudsdkims.v2 import (
    CreateImageRequest,
    CreateImageRequestBody,
    GlanceCreateImageMetadataRequest,
    GlanceCreateImageMetadataRequestBody,
    GlanceShowImageRequest,
    RegisterImageRequest,
    RegisterImageRequestBody,
)

from support import guest_images, sdk_clients
from support.e2e_clients import imageport_cli, ims_client, s3_client, wait_job
from support.server_process import Keys, ServeProcess, serve_for_servers
from support.ssh_keygen import make_key

pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '[a-z_]+' of (Ims|Ecs)Client is deprecated:DeprecationWarning"
)

#: the defects of the fixable layout, and the rules that report them
DEFECT_RULES = {"IMG-FSTAB-DATA-DISK", "IMG-NET-RULES"}
FIX = (
    "rm -f /etc/udev/rules.d/70-persistent-net.rules"
    " && sed -i '\\#[[:space:]]/data[[:space:]]#d' /etc/fstab && sync && echo fixed"
)
#: the user data the server is created with: root may log in with the key pair (the image has
#: no sudo; cloud-init's default puts the key only in the default user's authorized_keys)
USER_DATA = b"#cloud-config\ndisable_root: false\n"
SSH_SECONDS = 420.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("servers-e2e")
    with serve_for_servers(root, prefix="ip-e2e-") as started:
        yield started


def ecs_client(server: ServeProcess, keys: Keys) -> EcsClient:
    return sdk_clients.ecs_client(server.ims_url, keys)


def cli(server: ServeProcess, keys: Keys, *args: str, timeout: float = 120) -> Any:
    return imageport_cli(server, keys, *args, timeout=timeout)


def report_rules(server: ServeProcess, keys: Keys, image_id: str) -> set[str]:
    done = cli(server, keys, "image", "report", image_id, "--json")
    assert done.returncode in (0, 1), done.stderr
    return {f["rule_id"] for f in json.loads(done.stdout)["findings"]}


def wait_ecs_job(ecs: EcsClient, job_id: str, seconds: float = 300) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        job = ecs.show_job(ShowJobRequest(job_id=job_id))
        if job.status in ("SUCCESS", "FAIL"):
            return job
        assert time.monotonic() < deadline, f"server job {job_id} still {job.status}"
        time.sleep(1)


def register_uninitialized(server: ServeProcess, keys: Keys, path: Path) -> str:
    s3 = s3_client(server, keys)
    s3.create_bucket(Bucket="images")
    s3.upload_file(str(path), "images", "fixable.qcow2")
    ims = ims_client(server, keys)
    image = ims.glance_create_image_metadata(
        GlanceCreateImageMetadataRequest(
            body=GlanceCreateImageMetadataRequestBody(
                name="fixable",
                container_format="bare",
                disk_format="qcow2",
                min_disk=40,
                visibility="private",
                protected=False,
                os_version="Debian GNU/Linux 12.0.0 64bit",
            )
        )
    )
    job = ims.register_image(
        RegisterImageRequest(
            image_id=image.id, body=RegisterImageRequestBody(image_url="images:fixable.qcow2")
        )
    )
    done = wait_job(ims, job.job_id, 300)
    assert done.status == "SUCCESS", (done.error_code, done.fail_reason)
    return str(image.id)


def test_an_uninitialized_image_is_fixed_in_a_server_and_made_an_image_again(
    server: ServeProcess, tmp_path: Path
) -> None:
    keys = server.keys["alpha"]
    image_id = register_uninitialized(
        server, keys, guest_images.guest_image("gpt-bios-esp-ext4-fixable", "qcow2")
    )
    ims = ims_client(server, keys)
    first = ims.glance_show_image(GlanceShowImageRequest(image_id=image_id))
    assert first.status == "active"
    assert DEFECT_RULES <= report_rules(server, keys, image_id)

    ecs = ecs_client(server, keys)
    key = make_key(tmp_path, "ed25519")
    ecs.nova_create_keypair(
        NovaCreateKeypairRequest(
            body=NovaCreateKeypairRequestBody(
                keypair=NovaCreateKeypairOption(
                    name="fixer", public_key=Path(f"{key}.pub").read_text().strip()
                )
            )
        )
    )
    created = ecs.create_post_paid_servers(
        CreatePostPaidServersRequest(
            body=CreatePostPaidServersRequestBody(
                server=PostPaidServer(
                    name="fixer",
                    image_ref=image_id,
                    flavor_ref="s1.large.1",
                    vpcid="default",
                    nics=[PostPaidServerNic(subnet_id="default")],
                    root_volume=PostPaidServerRootVolume(volumetype="SSD", size=40),
                    key_name="fixer",
                    user_data=base64.b64encode(USER_DATA).decode(),
                )
            )
        )
    )
    (server_id,) = created.server_ids
    job = wait_ecs_job(ecs, created.job_id)
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    assert job.entities.sub_jobs[0].entities.server_id == server_id
    shown = ecs.show_server(ShowServerRequest(server_id=server_id)).server
    assert shown.status == "ACTIVE" and shown.os_ext_st_spower_state == 1

    t0 = time.monotonic()
    fixed = None
    while time.monotonic() - t0 < SSH_SECONDS:
        # while the guest boots, the forward takes the connection before sshd can answer it:
        # ssh gives up after its ConnectTimeout, and the test tries again
        try:
            fixed = cli(
                server,
                keys,
                "server",
                "ssh",
                "fixer",
                "-i",
                str(key),
                "--user",
                "root",
                "--",
                FIX,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            continue
        if fixed.returncode == 0:
            break
        time.sleep(5)
    assert fixed is not None and fixed.returncode == 0 and "fixed" in fixed.stdout, (
        fixed.stderr if fixed else "",
        cli(server, keys, "server", "log", "fixer", "--lines", "80").stdout,
    )
    print(f"ssh answered {time.monotonic() - t0:.0f} s after the server was ACTIVE")
    # SSH may answer before getty prints its prompt: the console log gets it soon after
    deadline = time.monotonic() + 180
    while True:
        console = ecs.show_server_console_output(
            ShowServerConsoleOutputRequest(server_id=server_id, length=-1)
        )
        if "login:" in console.output or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert "login:" in console.output

    # the service is killed: the machine lives on, and the restarted service finds it again
    server.kill9()
    server.restart()
    ecs = ecs_client(server, keys)
    ims = ims_client(server, keys)
    again = ecs.show_server(ShowServerRequest(server_id=server_id)).server
    assert again.status == "ACTIVE"
    assert getattr(again, "os_ext_st_spower_state", None) == 1
    assert cli(server, keys, "server", "ssh", "fixer", "-i", str(key), "--", "true").returncode == 0

    stop = ecs.batch_stop_servers(
        BatchStopServersRequest(
            body=BatchStopServersRequestBody(
                os_stop=BatchStopServersOption(servers=[ServerId(id=server_id)], type="SOFT")
            )
        )
    )
    assert wait_ecs_job(ecs, stop.job_id).status == "SUCCESS"
    assert ecs.show_server(ShowServerRequest(server_id=server_id)).server.status == "SHUTOFF"

    made = ims.create_image(
        CreateImageRequest(body=CreateImageRequestBody(name="fixed", instance_id=server_id))
    )
    done = wait_job(ims, made.job_id, 300)
    assert done.status == "SUCCESS", (done.error_code, done.fail_reason)
    new_id = done.entities.image_id
    rules = report_rules(server, keys, new_id)
    assert not rules & DEFECT_RULES, rules
    shown_image = ims.glance_show_image(GlanceShowImageRequest(image_id=new_id))
    assert shown_image.status == "active"

    gone = ecs.delete_servers(
        DeleteServersRequest(body=DeleteServersRequestBody(servers=[ServerId(id=server_id)]))
    )
    assert wait_ecs_job(ecs, gone.job_id).status == "SUCCESS"
    left = subprocess.run(
        ["pgrep", "-f", f"imageport-server-{server_id}"], capture_output=True, check=False
    )
    assert left.returncode == 1, left.stdout
