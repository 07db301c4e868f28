"""The bucket API driven by boto3 against a real uvicorn server: buckets, objects, ranges,
listings, storage classes and multipart uploads (including one resumed across a restart)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from imageport.service.context import Services
from support import s3_server
from support.service_fixtures import make_services

MiB = 1024 * 1024


@pytest.fixture
def s3(url: str, creds: s3_server.Credentials) -> Any:
    return s3_server.boto3_client(url, creds)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def test_buckets_create_list_head_delete(s3: Any) -> None:
    s3.create_bucket(Bucket="images")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="images")
    assert _code(exc) == ("BucketAlreadyOwnedByYou", 409)
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="Bad_Name")
    assert _code(exc) == ("InvalidBucketName", 400)
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["images"]
    assert s3.head_bucket(Bucket="images")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_location(Bucket="images")["LocationConstraint"] == "local-1"
    s3.put_object(Bucket="images", Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="images")
    assert _code(exc) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket="images", Key="k")
    s3.delete_bucket(Bucket="images")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="images")
    assert _code(exc)[1] == 404


def test_put_get_range_head_delete_and_storage_class(s3: Any) -> None:
    s3.create_bucket(Bucket="images")
    data = os.urandom(100_000)
    put = s3.put_object(
        Bucket="images",
        Key="dir/disk one.img",
        Body=data,
        StorageClass="STANDARD_IA",
        Metadata={"purpose": "test"},
        ContentType="application/x-raw",
    )
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'  # noqa: S324
    head = s3.head_object(Bucket="images", Key="dir/disk one.img")
    assert head["ContentLength"] == len(data) and head["StorageClass"] == "STANDARD_IA"
    assert head["Metadata"] == {"purpose": "test"} and head["ContentType"] == "application/x-raw"
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-imageport-sha256"] == (
        hashlib.sha256(data).hexdigest()
    )
    assert s3.get_object(Bucket="images", Key="dir/disk one.img")["Body"].read() == data
    part = s3.get_object(Bucket="images", Key="dir/disk one.img", Range="bytes=10-19")
    assert part["Body"].read() == data[10:20] and part["ContentRange"] == "bytes 10-19/100000"
    assert (
        s3.get_object(Bucket="images", Key="dir/disk one.img", Range="bytes=99990-")["Body"].read()
        == data[99990:]
    )
    assert (
        s3.get_object(Bucket="images", Key="dir/disk one.img", Range="bytes=-5")["Body"].read()
        == data[-5:]
    )
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="images", Key="dir/disk one.img", Range="bytes=100000-")
    assert _code(exc) == ("InvalidRange", 416)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="images", Key="dir/disk one.img", IfMatch='"0000"')
    assert _code(exc) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="images", Key="cold", Body=b"x", StorageClass="ONEZONE_IA")
    assert _code(exc) == ("InvalidStorageClass", 400)
    s3.put_object(Bucket="images", Key="cold", Body=b"x", StorageClass="GLACIER")
    assert s3.head_object(Bucket="images", Key="cold")["StorageClass"] == "GLACIER"
    copied = s3.copy_object(Bucket="images", Key="copy", CopySource="images/dir/disk one.img")
    assert copied["CopyObjectResult"]["ETag"] == put["ETag"]
    assert s3.get_object(Bucket="images", Key="copy")["Body"].read() == data
    s3.delete_object(Bucket="images", Key="dir/disk one.img")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="images", Key="dir/disk one.img")
    assert _code(exc) == ("NoSuchKey", 404)
    deleted = s3.delete_objects(
        Bucket="images", Delete={"Objects": [{"Key": "cold"}, {"Key": "copy"}]}
    )
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["cold", "copy"]
    assert s3.list_objects_v2(Bucket="images")["KeyCount"] == 0


def test_listings_v1_v2_with_delimiter_and_paging(s3: Any) -> None:
    s3.create_bucket(Bucket="images")
    keys = ["a.img", "disk/1.img", "disk/2.img", "disk/sub/3.img", "other/x", "z+y z"]
    for key in keys:
        s3.put_object(Bucket="images", Key=key, Body=key.encode())
    v2 = s3.list_objects_v2(Bucket="images", Delimiter="/")
    assert [o["Key"] for o in v2["Contents"]] == ["a.img", "z+y z"]
    assert [p["Prefix"] for p in v2["CommonPrefixes"]] == ["disk/", "other/"]
    v2 = s3.list_objects_v2(Bucket="images", Prefix="disk/", Delimiter="/")
    assert [o["Key"] for o in v2["Contents"]] == ["disk/1.img", "disk/2.img"]
    assert [p["Prefix"] for p in v2["CommonPrefixes"]] == ["disk/sub/"]
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket="images", PaginationConfig={"PageSize": 2}
    )
    assert [o["Key"] for page in pages for o in page["Contents"]] == keys
    v1 = s3.list_objects(Bucket="images", Prefix="disk/", Delimiter="/")
    assert [o["Key"] for o in v1["Contents"]] == ["disk/1.img", "disk/2.img"]
    pages = s3.get_paginator("list_objects").paginate(
        Bucket="images", Delimiter="/", PaginationConfig={"PageSize": 1}
    )
    seen = [
        (o["Key"] if "Key" in o else o["Prefix"])
        for page in pages
        for o in page.get("Contents", []) + page.get("CommonPrefixes", [])
    ]
    assert seen == ["a.img", "disk/", "other/", "z+y z"]


def test_multipart_upload_file_and_download(s3: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="images")
    source = tmp_path / "disk.qcow2"
    data = os.urandom(13 * MiB)
    source.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(
        str(source),
        "images",
        "disk/disk.qcow2",
        Config=config,
        ExtraArgs={"StorageClass": "STANDARD_IA"},
    )
    head = s3.head_object(Bucket="images", Key="disk/disk.qcow2")
    md5s = b"".join(
        hashlib.md5(data[i : i + 5 * MiB]).digest()  # noqa: S324
        for i in range(0, len(data), 5 * MiB)
    )
    assert head["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'  # noqa: S324
    assert head["StorageClass"] == "STANDARD_IA" and head["ContentLength"] == len(data)
    target = tmp_path / "back"
    s3.download_file(
        "images",
        "disk/disk.qcow2",
        str(target),
        Config=TransferConfig(multipart_threshold=4 * MiB, multipart_chunksize=4 * MiB),
    )
    assert target.read_bytes() == data


def test_multipart_resumed_after_restart_and_abort(tmp_path: Path) -> None:
    data = os.urandom(11 * MiB)
    chunks = [data[: 5 * MiB], data[5 * MiB : 10 * MiB], data[10 * MiB :]]
    first = make_services(tmp_path / "data")
    creds = s3_server.new_credentials(first, "alpha")
    with s3_server.running(first) as url:
        s3 = s3_server.boto3_client(url, creds)
        s3.create_bucket(Bucket="images")
        upload = s3.create_multipart_upload(Bucket="images", Key="big.img")["UploadId"]
        etag1 = s3.upload_part(
            Bucket="images", Key="big.img", UploadId=upload, PartNumber=1, Body=chunks[0]
        )["ETag"]
        s3.upload_part(
            Bucket="images", Key="big.img", UploadId=upload, PartNumber=3, Body=chunks[2]
        )
        doomed = s3.create_multipart_upload(Bucket="images", Key="doomed")["UploadId"]
    first.db.dispose()

    again = make_services(tmp_path / "data")  # "restart": new server and store, same data
    with s3_server.running(again) as url:
        s3 = s3_server.boto3_client(url, creds)
        listed = s3.list_multipart_uploads(Bucket="images")["Uploads"]
        assert sorted(u["UploadId"] for u in listed) == sorted([upload, doomed])
        parts = s3.list_parts(Bucket="images", Key="big.img", UploadId=upload)["Parts"]
        assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MiB), (3, len(chunks[2]))]
        etag2 = s3.upload_part(
            Bucket="images", Key="big.img", UploadId=upload, PartNumber=2, Body=chunks[1]
        )["ETag"]
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket="images", Key="big.img")
        assert _code(exc) == ("NoSuchKey", 404)  # nothing visible before Complete
        done = s3.complete_multipart_upload(
            Bucket="images",
            Key="big.img",
            UploadId=upload,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": etag1},
                    {"PartNumber": 2, "ETag": etag2},
                    {"PartNumber": 3, "ETag": parts[1]["ETag"]},
                ]
            },
        )
        assert done["ETag"].endswith('-3"')
        assert s3.get_object(Bucket="images", Key="big.img")["Body"].read() == data
        s3.abort_multipart_upload(Bucket="images", Key="doomed", UploadId=doomed)
        assert "Uploads" not in s3.list_multipart_uploads(Bucket="images")
        with pytest.raises(ClientError) as exc:
            s3.upload_part(
                Bucket="images", Key="doomed", UploadId=doomed, PartNumber=1, Body=b"late"
            )
        assert _code(exc) == ("NoSuchUpload", 404)
    again.db.dispose()
    assert list((tmp_path / "data" / "uploads").iterdir()) == []


def test_multipart_uploads_are_listed_page_by_page(
    s3: Any, url: str, creds: s3_server.Credentials
) -> None:
    from imageport.client.s3 import S3Client
    from imageport.client.signing import Credentials as ClientCredentials

    s3.create_bucket(Bucket="images")
    # (each initiate differs: a bucket-API POST is single-use, and three identical ones signed
    # in the same second would carry one signature; a client's own come at different times)
    started = sorted(
        (
            key,
            s3.create_multipart_upload(Bucket="images", Key=key, Metadata={"n": str(n)})[
                "UploadId"
            ],
        )
        for n, key in enumerate(["a.img", "b.img", "b.img", "b.img", "c.img", "other/d.img"])
    )
    # boto3's paginator follows NextKeyMarker / NextUploadIdMarker, two uploads a page
    pages = list(
        s3.get_paginator("list_multipart_uploads").paginate(
            Bucket="images", PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(page.get("Uploads", [])) for page in pages] == [2, 2, 2]
    assert [page["IsTruncated"] for page in pages] == [True, True, False]
    listed = [(u["Key"], u["UploadId"]) for page in pages for u in page["Uploads"]]
    assert listed == started  # each once, in (key, upload id) order
    # markers: after ("b.img", its second id), then after the key alone
    after = s3.list_multipart_uploads(
        Bucket="images", KeyMarker="b.img", UploadIdMarker=started[2][1]
    )
    assert [(u["Key"], u["UploadId"]) for u in after["Uploads"]] == started[3:]
    assert [
        u["Key"] for u in s3.list_multipart_uploads(Bucket="images", KeyMarker="b.img")["Uploads"]
    ] == ["c.img", "other/d.img"]
    with S3Client(url, ClientCredentials(creds.access_key, creds.secret_key)) as ours:
        mine = ours.list_multipart_uploads("images", "b", page_size=1)
    assert [(u.key, u.upload_id) for u in mine] == started[1:4]


def test_multipart_copy_from_stored_objects(
    s3: Any, url: str, creds: s3_server.Credentials
) -> None:
    data = os.urandom(12 * MiB + 777)
    s3.create_bucket(Bucket="images")
    s3.create_bucket(Bucket="backup")
    s3.put_object(Bucket="images", Key="disk.qcow2", Body=data)
    # boto3's managed copy: CreateMultipartUpload + UploadPartCopy with ranges + Complete
    s3.copy(
        {"Bucket": "images", "Key": "disk.qcow2"},
        "backup",
        "copy.qcow2",
        Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
    )
    copied = s3.get_object(Bucket="backup", Key="copy.qcow2")
    assert copied["ETag"].endswith('-3"') and copied["Body"].read() == data

    # by hand: a part from a range, a whole small object as the last part
    s3.put_object(Bucket="images", Key="tail", Body=b"tail bytes")
    upload = s3.create_multipart_upload(Bucket="backup", Key="joined")["UploadId"]
    first = s3.upload_part_copy(
        Bucket="backup",
        Key="joined",
        UploadId=upload,
        PartNumber=1,
        CopySource="/images/disk.qcow2",
        CopySourceRange=f"bytes={MiB}-{6 * MiB - 1}",
    )
    assert first["CopyPartResult"]["ETag"] == f'"{hashlib.md5(data[MiB : 6 * MiB]).hexdigest()}"'  # noqa: S324
    second = s3.upload_part_copy(
        Bucket="backup",
        Key="joined",
        UploadId=upload,
        PartNumber=2,
        CopySource={"Bucket": "images", "Key": "tail"},
    )
    for bad, expected in (
        ("bytes=0-99999999", ("InvalidRange", 416)),
        ("bytes=5-", ("InvalidArgument", 400)),
    ):
        with pytest.raises(ClientError) as exc:
            s3.upload_part_copy(
                Bucket="backup",
                Key="joined",
                UploadId=upload,
                PartNumber=3,
                CopySource="/images/disk.qcow2",
                CopySourceRange=bad,
            )
        assert _code(exc) == expected
    s3.complete_multipart_upload(
        Bucket="backup",
        Key="joined",
        UploadId=upload,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
                {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]},
            ]
        },
    )
    joined = s3.get_object(Bucket="backup", Key="joined")["Body"].read()
    assert joined == data[MiB : 6 * MiB] + b"tail bytes"


def test_part_copy_from_another_projects_bucket_is_refused(
    s3: Any, url: str, services: Services
) -> None:
    stranger = s3_server.boto3_client(url, s3_server.new_credentials(services, "beta"))
    stranger.create_bucket(Bucket="theirs")
    stranger.put_object(Bucket="theirs", Key="secret.img", Body=b"s" * 100)
    s3.create_bucket(Bucket="mine")
    upload = s3.create_multipart_upload(Bucket="mine", Key="stolen")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            Bucket="mine",
            Key="stolen",
            UploadId=upload,
            PartNumber=1,
            CopySource="/theirs/secret.img",
        )
    assert _code(exc) == ("NoSuchBucket", 404)
    assert s3.list_parts(Bucket="mine", Key="stolen", UploadId=upload).get("Parts", []) == []
