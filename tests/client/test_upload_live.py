"""``imageport bucket`` and ``imageport upload`` against the real bucket API on loopback:
parallel multipart uploads, resume after a partial upload (by boto3) and after killing the
uploader, MD5-mismatch re-upload, progress output, and errors users see."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from imageport.cli.main import main
from support.live_apis import IMAGEPORT, Live, live_apis

MiB = 1024 * 1024


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_apis(tmp_path) as apis:
        yield apis


def _cli(live: Live, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return live.cli(*args, timeout=timeout)


def _file(tmp_path: Path, size: int, name: str = "disk.img") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def _boto(live: Live) -> Any:  # boto3 has no type stubs here: its clients are Any
    return boto3.client(
        "s3",
        endpoint_url=live.s3_url,
        region_name="us-east-1",
        aws_access_key_id=live.access_key,
        aws_secret_access_key=live.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_bucket_create_ls_rm_and_errors(live: Live, tmp_path: Path) -> None:
    made = _cli(live, "bucket", "create", "images")
    assert made.returncode == 0, made.stderr
    assert _cli(live, "bucket", "create", "cold-one", "--storage-class", "COLD").returncode == 0
    listed = _cli(live, "bucket", "ls", "--json")
    assert sorted(b["name"] for b in json.loads(listed.stdout)) == ["cold-one", "images"]

    again = _cli(live, "bucket", "create", "images")
    assert again.returncode == 2
    assert "HTTP 409 BucketAlreadyOwnedByYou" in again.stderr
    assert "request id" in again.stderr and len(again.stderr.strip().splitlines()) == 1

    path, _ = _file(tmp_path, 1000)
    assert _cli(live, "upload", str(path), "images/a/b.img").returncode == 0
    objects = json.loads(_cli(live, "bucket", "ls", "images", "--json").stdout)
    assert [(o["key"], o["size"], o["storage_class"]) for o in objects] == [
        ("a/b.img", 1000, "STANDARD")
    ]
    busy = _cli(live, "bucket", "rm", "images")
    assert busy.returncode == 2 and "BucketNotEmpty" in busy.stderr
    assert _cli(live, "bucket", "rm", "cold-one").returncode == 0
    assert "cold-one" not in _cli(live, "bucket", "ls").stdout


def test_wrong_secret_and_missing_settings_exit_2_with_one_line(live: Live) -> None:
    bad = _cli(live, "bucket", "ls", "--secret-key", "x" * 40)
    assert bad.returncode == 2
    assert "HTTP 403 SignatureDoesNotMatch" in bad.stderr or "HTTP 401" in bad.stderr
    env = {k: v for k, v in live.env.items() if k != "IMAGEPORT_SECRET_KEY"}
    missing = subprocess.run(
        [*IMAGEPORT, "bucket", "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 2
    assert "missing secret key" in missing.stderr and "IMAGEPORT_SECRET_KEY" in missing.stderr
    down = _cli(live, "bucket", "ls", "--s3-endpoint", "http://127.0.0.1:1")
    assert down.returncode == 2 and "cannot connect" in down.stderr


def test_small_file_is_one_put(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "bucket",
                "create",
                "images",
                "--s3-endpoint",
                live.s3_url,
                "--access-key",
                live.access_key,
                "--secret-key",
                live.secret_key,
            ]
        )
        == 0
    )
    live.counter.reset()
    path, data = _file(tmp_path, 3 * MiB)
    done = _cli(live, "upload", str(path), "images/small.img", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["parts_total"] == 1 and result["size"] == len(data)
    assert live.counter.parts == [] and live.counter.puts == 1
    assert live.object_bytes("images", "small.img") == data


def test_parallel_multipart_upload_with_progress(live: Live, tmp_path: Path) -> None:
    assert _cli(live, "bucket", "create", "images").returncode == 0
    path, data = _file(tmp_path, 23 * MiB + 7)
    done = _cli(
        live,
        "upload",
        str(path),
        "images/dir/disk image.qcow2",
        "--part-size",
        "5",
        "--parallel",
        "3",
        "--progress",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["parts_total"] == 5 and result["parts_sent"] == 5
    assert result["etag"].endswith("-5")
    assert sorted(live.counter.parts) == [1, 2, 3, 4, 5]
    assert live.object_bytes("images", "dir/disk image.qcow2") == data
    # --progress off a TTY: whole lines with size, percent, speed and ETA
    last = done.stderr.strip().splitlines()[-1]
    assert "23.0/23.0 MiB 100.0%" in last and "MB/s" in last and "ETA 0:00" in last
    # without --progress and no TTY: quiet
    quiet = _cli(live, "upload", str(path), "images/again.img", "--part-size", "5")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_resume_sends_only_missing_and_mismatched_parts(live: Live, tmp_path: Path) -> None:
    """An upload started by boto3 (parts 1 and 4 right, part 2 with other bytes) is resumed:
    only parts 2, 3 and 5 are sent, then the object is whole."""
    s3 = _boto(live)
    s3.create_bucket(Bucket="images")
    path, data = _file(tmp_path, 22 * MiB)
    up = s3.create_multipart_upload(Bucket="images", Key="disk.img")["UploadId"]
    for number, body in (
        (1, data[: 5 * MiB]),
        (2, os.urandom(5 * MiB)),
        (4, data[15 * MiB : 20 * MiB]),
    ):
        s3.upload_part(Bucket="images", Key="disk.img", UploadId=up, PartNumber=number, Body=body)
    live.counter.reset()

    done = _cli(live, "upload", str(path), "images/disk.img", "--part-size", "5", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["resumed_upload_id"] == up
    assert (result["parts_total"], result["parts_sent"]) == (5, 3)
    assert sorted(live.counter.parts) == [2, 3, 5]
    assert f"resuming upload {up}: 3 part(s) already stored" in done.stderr
    assert live.object_bytes("images", "disk.img") == data
    assert s3.list_multipart_uploads(Bucket="images").get("Uploads", []) == []


def test_resume_adopts_the_stored_part_size(live: Live, tmp_path: Path) -> None:
    s3 = _boto(live)
    s3.create_bucket(Bucket="images")
    path, data = _file(tmp_path, 20 * MiB)
    up = s3.create_multipart_upload(Bucket="images", Key="disk.img")["UploadId"]
    s3.upload_part(Bucket="images", Key="disk.img", UploadId=up, PartNumber=1, Body=data[: 6 * MiB])
    live.counter.reset()
    done = _cli(live, "upload", str(path), "images/disk.img", "--json")  # asks for 64 MiB
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["part_size"], result["parts_total"], result["parts_sent"]) == (6 * MiB, 4, 3)
    assert sorted(live.counter.parts) == [2, 3, 4]
    assert live.object_bytes("images", "disk.img") == data


def test_killed_uploader_resumes_where_it_stopped(live: Live, tmp_path: Path) -> None:
    """kill -9 the uploader after some parts, run it again: only the parts the server does not
    have go over the wire, and the object is byte-identical."""
    assert _cli(live, "bucket", "create", "images").returncode == 0
    path, data = _file(tmp_path, 30 * MiB)
    live.counter.delay = 0.4
    proc = subprocess.Popen(
        [*IMAGEPORT, "upload", str(path), "images/disk.img", "--part-size", "5", "--parallel", "1"],
        env=live.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while len(live.counter.parts) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(0.6)  # a part in flight when the client died is finished (or dropped) by now
    first_run = sorted(live.counter.parts)
    assert 2 <= len(first_run) < 6, first_run
    live.counter.delay = 0.0
    live.counter.reset()

    done = _cli(live, "upload", str(path), "images/disk.img", "--part-size", "5", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["resumed_upload_id"]
    assert sorted(live.counter.parts) == sorted(set(range(1, 7)) - set(first_run))
    assert result["parts_sent"] == 6 - len(first_run)
    assert live.object_bytes("images", "disk.img") == data


def test_interrupted_upload_says_how_to_resume(live: Live, tmp_path: Path) -> None:
    """The server stops taking parts from part 3 on (503, every retry too): the upload stops,
    says how to resume, and the same command then sends only the parts that are missing."""
    assert _cli(live, "bucket", "create", "images").returncode == 0
    path, data = _file(tmp_path, 16 * MiB)
    live.counter.fail_from = 3
    cut = _cli(live, "upload", str(path), "images/disk.img", "--part-size", "5", "--parallel", "1")
    assert cut.returncode == 2
    assert "HTTP 503 ServiceUnavailable" in cut.stderr
    assert "the parts already sent are kept: run the same command again" in cut.stderr
    assert sorted(live.counter.parts) == [1, 2]
    live.counter.fail_from = None
    live.counter.reset()
    done = _cli(live, "upload", str(path), "images/disk.img", "--part-size", "5", "--json")
    assert done.returncode == 0, done.stderr
    assert sorted(live.counter.parts) == [3, 4]
    assert live.object_bytes("images", "disk.img") == data


def test_upload_to_a_missing_bucket_says_so(live: Live, tmp_path: Path) -> None:
    for size in (11 * MiB, 1000):  # multipart, and one PUT
        path, _ = _file(tmp_path, size)
        gone = _cli(live, "upload", str(path), "nobucket/disk.img", "--part-size", "5")
        assert gone.returncode == 2
        assert "NoSuchBucket" in gone.stderr
        assert "bucket 'nobucket' does not exist" in gone.stderr
        assert "imageport bucket create nobucket" in gone.stderr
        assert "kept" not in gone.stderr and "run the same command again" not in gone.stderr
