"""The vendor's object-storage SDK (esdk-obs-python, unmodified) against the real bucket API.

Against an IP endpoint the SDK forces path style and signs with AWS signature v2 and
``x-amz-*`` headers (``signature="v4"`` gives SigV4 with only a ``Date`` header and
``UNSIGNED-PAYLOAD``), as requests captured from it show. What a user does with
it: create a bucket in a storage class, put a small file and upload a big one in parallel
parts, read the metadata back, list, read a range and the whole object, delete. And its
checkpointed ``uploadFile``: when parts keep failing it gives up but keeps the upload and a
checkpoint file, and the next ``uploadFile`` sends only the parts that are missing."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from obs import (
    CreateBucketHeader,
    GetObjectHeader,
    ObsClient,
    PutObjectHeader,
    UploadFileHeader,
)

from imageport.api.s3.app import build_s3_app
from imageport.service.context import Services
from support import s3_server
from support.server_process import running_app

MiB = 1024 * 1024
PART = 5 * MiB


def _client(
    url: str, creds: s3_server.Credentials, signature: str | None = None, secret: str | None = None
) -> Iterator[Any]:
    extra = {} if signature is None else {"signature": signature}
    client = ObsClient(
        access_key_id=creds.access_key,
        secret_access_key=secret or creds.secret_key,
        server=url,
        **extra,
    )
    try:
        yield client
    finally:
        client.close()


def _ok(response: Any, what: str) -> Any:
    assert response.status < 300, (
        f"{what}: {response.status} {response.errorCode} {response.errorMessage}"
    )
    return response.body


@pytest.mark.parametrize("signature", [None, "v4"], ids=["sigv2", "sigv4"])
def test_obs_sdk_bucket_files_and_reads(
    services: Services, tmp_path: Path, signature: str | None
) -> None:
    creds = s3_server.new_credentials(services, "alpha")
    small = tmp_path / "notes.txt"
    small.write_bytes(b"hello\n")
    big = tmp_path / "disk.qcow2"
    data = os.urandom(3 * PART - 12345)
    big.write_bytes(data)
    with s3_server.running(services) as url:
        obs = next(_client(url, creds, signature))
        _ok(
            obs.createBucket(
                "images", header=CreateBucketHeader(storageClass="WARM"), location="local-1"
            ),
            "createBucket",
        )  # the region served
        assert services.store.get_bucket("images") is not None
        listed = _ok(obs.listBuckets(), "listBuckets")  # asks for each bucket's location
        assert [(b.name, b.location) for b in listed.buckets] == [("images", "local-1")]
        _ok(
            obs.putFile(
                "images",
                "notes.txt",
                str(small),
                metadata={"purpose": "demo"},
                headers=PutObjectHeader(storageClass="COLD"),
            ),
            "putFile",
        )
        _ok(
            obs.uploadFile(
                "images",
                "disk/disk.qcow2",
                str(big),
                partSize=PART,
                taskNum=3,
                enableCheckpoint=True,
                checkpointFile=str(tmp_path / "cp"),
                metadata={"os": "debian"},
                headers=UploadFileHeader(storageClass="WARM"),
            ),
            "uploadFile",
        )

        meta = _ok(obs.getObjectMetadata("images", "disk/disk.qcow2"), "getObjectMetadata")
        assert meta.contentLength == len(data)
        assert meta.storageClass == "STANDARD_IA"  # WARM, spelled as the amz dialect does
        assert meta.etag.strip('"').endswith("-3")
        notes = obs.getObjectMetadata("images", "notes.txt")
        assert _ok(notes, "getObjectMetadata").storageClass == "GLACIER"
        assert ("purpose", "demo") in notes.header  # the SDK strips x-amz-meta-

        listing = _ok(obs.listObjects("images", prefix="disk/", max_keys=100), "listObjects")
        assert [(o.key, o.size) for o in listing.contents] == [("disk/disk.qcow2", len(data))]

        head = _ok(
            obs.getObject(
                "images",
                "disk/disk.qcow2",
                loadStreamInMemory=True,
                headers=GetObjectHeader(range="0-1023"),
            ),
            "ranged getObject",
        )
        assert head.buffer == data[:1024]
        whole = _ok(
            obs.getObject("images", "disk/disk.qcow2", loadStreamInMemory=True), "getObject"
        )
        assert hashlib.sha256(whole.buffer).digest() == hashlib.sha256(data).digest()

        wrong = next(_client(url, creds, signature, secret="x" * 40))
        refused = wrong.getObjectMetadata("images", "notes.txt")
        assert refused.status == 403
        assert wrong.listObjects("images").errorCode == "SignatureDoesNotMatch"

        for key in ("notes.txt", "disk/disk.qcow2"):
            _ok(obs.deleteObject("images", key), "deleteObject")
        _ok(obs.deleteBucket("images"), "deleteBucket")
        assert services.store.get_bucket("images") is None


# the SDK drops the sockets of the requests it retries without closing them (its own leak)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_obs_sdk_checkpoint_upload_resends_only_the_failed_part(
    services: Services, tmp_path: Path
) -> None:
    creds = s3_server.new_credentials(services, "alpha")
    big = tmp_path / "disk.raw"
    data = os.urandom(4 * PART)
    big.write_bytes(data)
    checkpoint = tmp_path / "disk.raw.upload_record"
    counter = s3_server.PartPuts(build_s3_app(services))
    with running_app(counter) as url:
        obs = next(_client(url, creds))
        _ok(obs.createBucket("images"), "createBucket")

        # part 3 fails on every attempt (the SDK tries 4 times): the upload stops, kept
        counter.failing = {3}
        # the SDK raises a bare Exception
        with pytest.raises(Exception, match="some parts are failed"):
            obs.uploadFile(
                "images",
                "disk.raw",
                str(big),
                partSize=PART,
                taskNum=2,
                enableCheckpoint=True,
                checkpointFile=str(checkpoint),
            )
        assert counter.refused >= 2 and checkpoint.exists()
        assert counter.taken() == [1, 2, 4]
        uploads = services.store.list_uploads("images")
        assert len(uploads) == 1
        assert [p.number for p in services.store.list_parts(uploads[0].upload_id)] == [1, 2, 4]
        assert services.store.get_object("images", "disk.raw") is None

        # the server is well again: the same call finishes the same upload with part 3 alone
        counter.failing = set()
        _ok(
            obs.uploadFile(
                "images",
                "disk.raw",
                str(big),
                partSize=PART,
                taskNum=2,
                enableCheckpoint=True,
                checkpointFile=str(checkpoint),
            ),
            "uploadFile",
        )
        assert counter.taken() == [3]
        assert not checkpoint.exists()
        assert list(services.store.list_uploads("images")) == []
        with services.store.open_object("images", "disk.raw") as handle:
            assert hashlib.sha256(handle.read()).digest() == hashlib.sha256(data).digest()
