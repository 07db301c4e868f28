"""End-to-end export: a real ``imageport serve``; boto3 uploads the guest, the vendor's IMS SDK
registers it, exports it with ``export_image`` and polls ``show_job`` to SUCCESS; boto3
downloads the object, whose disk is the guest's and whose ETag is its md5."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkims.v2 import (
    CreateImageRequest,
    CreateImageRequestBody,
    ExportImageRequest,
    ExportImageRequestBody,
)

from support import builders, import_fixtures
from support.e2e_clients import ims_client, s3_client, wait_job
from support.server_process import ServeProcess, serve_process

#: the SDK marks ShowJob deprecated; clients still call it
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '[a-z_]+' of ImsClient is deprecated:DeprecationWarning"
)


@pytest.fixture(scope="module")
def guest_qcow2() -> Path:
    """The cloud-ready synthetic Debian guest as qcow2 (about 2 MiB, cached)."""
    return import_fixtures.good_image("qcow2")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("serve-export")) as started:
        yield started


def _raw_sha256(path: Path, driver: str, out: Path) -> str:
    builders.qemu_img("convert", "-f", driver, "-O", "raw", str(path), str(out))
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_vendor_sdk_exports_an_image_that_boto3_downloads(
    server: ServeProcess, guest_qcow2: Path, tmp_path: Path
) -> None:
    keys = server.keys["alpha"]
    s3 = s3_client(server, keys)
    s3.create_bucket(Bucket="alpha-export")
    s3.upload_file(str(guest_qcow2), "alpha-export", "in/guest.qcow2")
    client = ims_client(server, keys)
    job_id = client.create_image(
        CreateImageRequest(
            body=CreateImageRequestBody(
                name="e2e-export",
                image_url="alpha-export:in/guest.qcow2",
                min_disk=40,
                is_config=False,
                type="ECS",
            )
        )
    ).job_id
    job = wait_job(client, job_id)
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    image_id = job.entities.image_id

    exported = client.export_image(
        ExportImageRequest(
            image_id=image_id,
            body=ExportImageRequestBody(
                bucket_url="alpha-export:out/guest.vmdk", file_format="vmdk", is_quick_export=False
            ),
        )
    )
    job = wait_job(client, exported.job_id)
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    assert job.job_type == "imsNativeExportImageJob"
    assert (job.entities.image_id, job.entities.image_name) == (image_id, "e2e-export")

    target = tmp_path / "guest.vmdk"
    s3.download_file("alpha-export", "out/guest.vmdk", str(target))
    head = s3.head_object(Bucket="alpha-export", Key="out/guest.vmdk")
    assert (
        head["ETag"]
        == '"' + hashlib.md5(target.read_bytes(), usedforsecurity=False).hexdigest() + '"'
    )
    assert head["ContentType"] == "application/octet-stream"
    assert target.read_bytes()[:4] == b"KDMV"
    assert _raw_sha256(target, "vmdk", tmp_path / "out.raw") == _raw_sha256(
        guest_qcow2, "qcow2", tmp_path / "in.raw"
    )

    # another project's bucket is refused at once, with the vendor's code
    s3_client(server, server.keys["beta"]).create_bucket(Bucket="beta-export")
    with pytest.raises(ClientRequestException) as refused:
        client.export_image(
            ExportImageRequest(
                image_id=image_id,
                body=ExportImageRequestBody(
                    bucket_url="beta-export:stolen.qcow2", file_format="qcow2"
                ),
            )
        )
    assert (refused.value.status_code, refused.value.error_code) == (400, "IMG.0069")
