"""rclone (the Debian program, unmodified) against the real bucket API, configured as
:func:`s3_server.rclone` does (provider Other, path style, http). rclone differs from the other
clients in ways the server must take: ``?uploads=`` with an "=", Content-MD5 on every part,
ETags XML-escaped as ``&#34;`` in Complete, ``Accept-Encoding`` among the signed headers, an md5
kept in ``X-Amz-Meta-Md5chksum`` for its checks, and UploadPartCopy for a copy inside the
store."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from imageport.service.context import Services
from support import s3_server

MiB = 1024 * 1024


def _listing(url: str, creds: s3_server.Credentials, home: Path, remote: str) -> list[Any]:
    out = s3_server.rclone(url, creds, home, "lsjson", "--files-only", "-R", remote).stdout
    entries: list[Any] = json.loads(out)
    return sorted(entries, key=lambda entry: entry["Path"])


def test_rclone_multipart_copy_reads_and_deletes(services: Services, tmp_path: Path) -> None:
    creds = s3_server.new_credentials(services, "alpha")
    source = tmp_path / "disk.qcow2"
    data = os.urandom(17 * MiB)
    source.write_bytes(data)
    with s3_server.running(services) as url:
        s3_server.rclone(url, creds, tmp_path, "mkdir", "loc:images")
        assert services.store.get_bucket("images") is not None
        # 17 MiB over a 5 MiB cut-off: four parts of 5 MiB at most, each with Content-MD5
        s3_server.rclone(
            url,
            creds,
            tmp_path,
            "copyto",
            "--s3-upload-cutoff",
            "5M",
            "--s3-chunk-size",
            "5M",
            "--s3-storage-class",
            "STANDARD_IA",
            str(source),
            "loc:images/disk/disk.qcow2",
        )
        head = s3_server.boto3_client(url, creds).head_object(
            Bucket="images", Key="disk/disk.qcow2"
        )
        assert head["ContentLength"] == len(data) and head["ETag"].endswith('-4"')
        assert head["StorageClass"] == "STANDARD_IA"
        assert head["Metadata"]["md5chksum"]  # rclone's own md5, kept for its checks

        # a copy inside the store, in 5 MiB parts (UploadPartCopy), then both listed
        s3_server.rclone(
            url,
            creds,
            tmp_path,
            "copyto",
            "--s3-copy-cutoff",
            "5M",
            "loc:images/disk/disk.qcow2",
            "loc:images/copy/disk.qcow2",
        )
        copied = s3_server.boto3_client(url, creds).head_object(
            Bucket="images", Key="copy/disk.qcow2"
        )
        assert copied["ETag"].endswith('-4"')
        listed = _listing(url, creds, tmp_path, "loc:images")
        assert [(e["Path"], e["Size"]) for e in listed] == [
            ("copy/disk.qcow2", len(data)),
            ("disk/disk.qcow2", len(data)),
        ]
        assert listed[1]["Tier"] == "STANDARD_IA"

        # reads: a range, the whole object back, and rclone's md5 check of both copies
        ranged = s3_server.rclone(
            url,
            creds,
            tmp_path,
            "cat",
            "--offset",
            str(MiB),
            "--count",
            "1024",
            "loc:images/disk/disk.qcow2",
        ).stdout
        assert ranged == data[MiB : MiB + 1024]
        back = tmp_path / "back.qcow2"
        s3_server.rclone(url, creds, tmp_path, "copyto", "loc:images/copy/disk.qcow2", str(back))
        assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()
        md5sum = s3_server.rclone(url, creds, tmp_path, "md5sum", "loc:images").stdout
        sums = md5sum.decode().split("\n")
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324
        assert sorted(line for line in sums if line) == [
            f"{md5}  copy/disk.qcow2",
            f"{md5}  disk/disk.qcow2",
        ]

        # a wrong secret is refused, and nothing of the bucket shows
        refused = s3_server.rclone(
            url, creds, tmp_path, "lsf", "loc:images", secret="x" * 40, check=False
        )
        assert refused.returncode != 0 and b"SignatureDoesNotMatch" in refused.stderr

        s3_server.rclone(url, creds, tmp_path, "purge", "loc:images")
        assert services.store.get_bucket("images") is None
