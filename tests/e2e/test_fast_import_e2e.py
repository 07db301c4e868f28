"""Fast import end to end: a real ``imageport serve`` process, unmodified clients.

boto3 uploads an optimized RAW guest and its bitmap (made by ``imageport bitmap``), and a ZVHD2;
the vendor SDK quick-imports them (``ImportImageQuickRequest``) and polls ShowJob to SUCCESS;
ListImages shows them active, stored as RAW and ZVHD2. ``imageport upload --bitmap`` sends an
unoptimized RAW with its bitmap: the quick import fails with IMG-FAST-RAW naming the unmet
rule. ``imageport image register --fast --source FILE`` makes and uploads a missing bitmap, then
imports; without ``--source`` and no bitmap it warns and registers anyway.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkims.v2 import (
    ImportImageQuickRequest,
    ImsClient,
    ListImagesRequest,
    QuickImportImageByFileRequestBody,
)

from imageport.fastimport.bitmap import build_bitmap
from support import fast_fixtures as ff
from support.e2e_clients import IMAGEPORT, imageport_cli, ims_client, s3_client, wait_job
from support.server_process import ServeProcess, serve_process

pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '[a-z_]+' of ImsClient is deprecated:DeprecationWarning"
)

BUCKET = "fast-images"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("serve-fast"), tenants=("alpha",)) as started:
        s3_client(started, started.keys["alpha"]).create_bucket(Bucket=BUCKET)
        yield started


@pytest.fixture(scope="module")
def ready(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The optimized guest as ``disk.raw`` with ``disk.mf`` beside it (made by the CLI)."""
    raw = tmp_path_factory.mktemp("ready") / "disk.raw"
    ff.sparse_disk(ff.ready_raw(), raw, 128 << 20)
    done = subprocess.run(
        [*IMAGEPORT, "bitmap", str(raw)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return raw


def quick_import(client: ImsClient, name: str, key: str) -> str:
    body = QuickImportImageByFileRequestBody(
        name=name,
        os_version=ff.OS_VERSION,
        image_url=f"{BUCKET}:{key}",
        min_disk=40,
        description="fast import end to end",
        type="ECS",
    )
    job_id: str = client.import_image_quick(ImportImageQuickRequest(body=body)).job_id
    return job_id


def listed(client: ImsClient, name: str) -> Any:
    images = client.list_images(ListImagesRequest(imagetype="private", name=name)).images
    assert len(images) == 1, images
    return images[0]


def cli(server: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return imageport_cli(server, server.keys["alpha"], *args, own_home=True)


def test_sdk_quick_imports_raw_with_bitmap_and_zvhd2(server: ServeProcess, ready: Path) -> None:
    keys = server.keys["alpha"]
    s3 = s3_client(server, keys)
    s3.upload_file(str(ready), BUCKET, "disk/ready.raw")
    s3.upload_file(str(ready.with_suffix(".mf")), BUCKET, "disk/ready.mf")
    s3.upload_file(str(ff.ready_zvhd2()), BUCKET, "disk/ready.zvhd2")
    client = ims_client(server, keys)

    raw_job = quick_import(client, "fast-raw", "disk/ready.raw")
    zvhd2_job = quick_import(client, "fast-zvhd2", "disk/ready.zvhd2")
    for job_id, name, fmt in ((raw_job, "fast-raw", "raw"), (zvhd2_job, "fast-zvhd2", "zvhd2")):
        job = wait_job(client, job_id)
        assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
        image = listed(client, name)
        assert (image.id, image.status, image.disk_format) == (job.entities.image_id, "active", fmt)
        assert image.min_disk == 40 and "Debian" in image.os_version
    head = s3.head_object(Bucket=BUCKET, Key="disk/ready.raw")
    assert int(listed(client, "fast-raw").image_size) == head["ContentLength"] == 128 << 20


def test_upload_bitmap_then_unoptimized_guest_fails_img_fast_raw(
    server: ServeProcess, tmp_path: Path
) -> None:
    raw = tmp_path / "netrules.raw"
    ff.sparse_disk(ff.unoptimized_raw(), raw, 128 << 20)
    sent = cli(server, "upload", str(raw), f"{BUCKET}/cli/netrules.raw", "--bitmap", "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["bitmap_key"] == "cli/netrules.mf"
    stored = s3_client(server, server.keys["alpha"]).get_object(
        Bucket=BUCKET, Key="cli/netrules.mf"
    )
    assert stored["Body"].read() == build_bitmap(raw).encode()

    client = ims_client(server, server.keys["alpha"])
    job = wait_job(client, quick_import(client, "fast-netrules", "cli/netrules.raw"))
    assert (job.status, job.error_code) == ("FAIL", "IMG-FAST-RAW")
    assert "IMG-NET-RULES is not met" in job.fail_reason
    assert listed(client, "fast-netrules").status == "killed"


def test_cli_register_fast_makes_the_missing_bitmap(server: ServeProcess, ready: Path) -> None:
    s3 = s3_client(server, server.keys["alpha"])
    s3.upload_file(str(ready), BUCKET, "cli/ready.raw")  # its bitmap stays local
    done = cli(
        server,
        "image",
        "register",
        "cli-fast",
        f"{BUCKET}:cli/ready.raw",
        "--fast",
        "--source",
        str(ready),
        "--os-version",
        ff.OS_VERSION,
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "SUCCESS"
    made = s3.get_object(Bucket=BUCKET, Key="cli/ready.mf")["Body"].read()
    assert made == ready.with_suffix(".mf").read_bytes()  # what `imageport bitmap` wrote
    shown = json.loads(
        cli(
            server, "image", "show", json.loads(done.stdout)["entities"]["image_id"], "--json"
        ).stdout
    )
    assert (shown["status"], shown["disk_format"]) == ("active", "raw")
    assert shown["__bitmap_file"] == f"{BUCKET}:cli/ready.mf"

    # the bitmap is there now: used as it is; a ZVHD2 needs none
    again = cli(
        server,
        "image",
        "register",
        "cli-again",
        f"{BUCKET}:cli/ready.raw",
        "--fast",
        "--source",
        str(ready),
        "--os-version",
        ff.OS_VERSION,
        "--wait",
    )
    assert again.returncode == 0, again.stderr
    assert f"using bitmap {BUCKET}/cli/ready.mf" in again.stdout
    zvhd2 = ff.ready_zvhd2()
    s3.upload_file(str(zvhd2), BUCKET, "cli/ready.zvhd2")
    z2 = cli(
        server,
        "image",
        "register",
        "cli-z2",
        f"{BUCKET}:cli/ready.zvhd2",
        "--fast",
        "--source",
        str(zvhd2),
        "--os-version",
        ff.OS_VERSION,
        "--wait",
    )
    assert z2.returncode == 0, z2.stderr
    assert "is ZVHD2: no bitmap needed" in z2.stdout
    wrong = cli(server, "upload", str(zvhd2), f"{BUCKET}/cli/other.raw", "--bitmap")
    assert wrong.returncode == 2 and "is zvhd2, not RAW" in wrong.stderr

    # no --source and no bitmap in the bucket: a warning, and the registration is refused at
    # once, saying why (the job would have failed the same way)
    s3.copy_object(
        Bucket=BUCKET, Key="cli/lone.raw", CopySource={"Bucket": BUCKET, "Key": "cli/ready.raw"}
    )
    lone = cli(
        server,
        "image",
        "register",
        "cli-lone",
        f"{BUCKET}:cli/lone.raw",
        "--fast",
        "--os-version",
        ff.OS_VERSION,
        "--wait",
    )
    assert lone.returncode == 2
    assert f"warning: no bitmap {BUCKET}/cli/lone.mf" in lone.stderr
    assert "HTTP 400 IMG.0057: IMG-FAST-RAW: No bitmap file was given" in lone.stderr
    assert f"looked for the bitmap file {BUCKET}:cli/lone.mf" in lone.stderr
