"""The bucket API with s3cmd (the Debian program), and the refusals a user would meet:
unsigned or badly signed requests, other projects' buckets, a wrong Content-MD5, and an upload
killed mid-body. Real uvicorn server, real clients, raw sockets where a client cannot misbehave."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.exceptions import ClientError

from imageport.service.context import Services
from support import s3_server

MiB = 1024 * 1024


def _s3cmd(config: Path, *args: str) -> str:
    s3cmd = shutil.which("s3cmd")
    if s3cmd is None:
        pytest.fail("s3cmd is not installed (Debian package s3cmd)")
    done = subprocess.run(
        [s3cmd, "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(config.parent)},
    )
    assert done.returncode == 0, f"s3cmd {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_s3cmd_bucket_and_multipart_round_trip(
    url: str, creds: s3_server.Credentials, tmp_path: Path
) -> None:
    config = s3_server.s3cmd_config(tmp_path / "s3cfg", url, creds)
    source = tmp_path / "disk.img"
    data = os.urandom(12 * MiB)
    source.write_bytes(data)
    _s3cmd(config, "mb", "s3://images")
    assert "s3://images" in _s3cmd(config, "ls")
    _s3cmd(config, "put", "--storage-class=STANDARD_IA", str(source), "s3://images/dir/disk.img")
    listing = _s3cmd(config, "ls", "s3://images/dir/")
    assert "s3://images/dir/disk.img" in listing and str(12 * MiB) in listing
    info = _s3cmd(config, "info", "s3://images/dir/disk.img")
    assert "Storage:   STANDARD_IA" in info and "FULL_CONTROL" in info
    assert f"MD5 sum:   {hashlib.md5(data).hexdigest()}" in info  # noqa: S324
    head = s3_server.boto3_client(url, creds).head_object(Bucket="images", Key="dir/disk.img")
    assert head["ETag"].endswith('-3"')  # s3cmd sent it as 3 parts of 5 MiB at most
    back = tmp_path / "back.img"
    _s3cmd(config, "get", "s3://images/dir/disk.img", str(back))
    assert back.read_bytes() == data
    _s3cmd(config, "del", "s3://images/dir/disk.img")
    _s3cmd(config, "rb", "s3://images")
    assert "s3://images" not in _s3cmd(config, "ls")


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def test_bad_credentials_and_other_projects(
    url: str, services: Services, creds: s3_server.Credentials
) -> None:
    mine = s3_server.boto3_client(url, creds)
    mine.create_bucket(Bucket="private")
    mine.put_object(Bucket="private", Key="secret", Body=b"s")

    wrong = s3_server.boto3_client(url, s3_server.Credentials(creds.access_key, "x" * 40, ""))
    with pytest.raises(ClientError) as exc:
        wrong.list_buckets()
    assert _code(exc) == ("SignatureDoesNotMatch", 403)
    unknown = s3_server.boto3_client(url, s3_server.Credentials("A" * 20, "x" * 40, ""))
    with pytest.raises(ClientError) as exc:
        unknown.list_buckets()
    assert _code(exc) == ("InvalidAccessKeyId", 403)

    other = s3_server.boto3_client(url, s3_server.new_credentials(services, "beta"))
    assert other.list_buckets()["Buckets"] == []
    refused: list[Callable[[], object]] = [
        lambda: other.get_object(Bucket="private", Key="secret"),
        lambda: other.list_objects_v2(Bucket="private"),
        lambda: other.put_object(Bucket="private", Key="x", Body=b"x"),
        lambda: other.delete_bucket(Bucket="private"),
    ]
    for call in refused:
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as exc:
        other.head_bucket(Bucket="private")
    assert _code(exc)[1] == 404
    with pytest.raises(ClientError) as exc:
        other.create_bucket(Bucket="private")
    assert _code(exc) == ("BucketAlreadyExists", 409)
    assert mine.get_object(Bucket="private", Key="secret")["Body"].read() == b"s"


def _request(port: int, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        reply = b""
        while got := sock.recv(65536):  # every request here ends with the server closing
            reply += got
        return reply


def test_unsigned_requests_are_refused_before_the_body(url: str, services: Services) -> None:
    port = int(url.rsplit(":", 1)[1])
    reply = _request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 403") and b"<Code>AccessDenied</Code>" in reply
    # an unsigned upload announcing a body with Expect: the 403 comes without sending it
    reply = _request(
        port,
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n"
        b"Expect: 100-continue\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 403") and b"connection: close" in reply.lower()
    # the OBS SDK's unauthenticated probe
    reply = _request(port, b"HEAD /?apiversion HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200") and b"x-obs-api: 3.0" in reply
    assert list(services.settings.tmp_dir.iterdir()) == []


def test_bad_content_md5_stores_nothing(
    url: str, services: Services, creds: s3_server.Credentials
) -> None:
    s3 = s3_server.boto3_client(url, creds)
    s3.create_bucket(Bucket="images")
    import base64

    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()  # noqa: S324
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="images", Key="k", Body=b"payload", ContentMD5=wrong)
    assert _code(exc) == ("BadDigest", 400)
    assert s3.list_objects_v2(Bucket="images")["KeyCount"] == 0
    assert list(services.settings.tmp_dir.iterdir()) == []
    assert list(services.settings.objects_dir.iterdir()) == []


def _signed_put_head(url: str, creds: s3_server.Credentials, path: str, length: int) -> bytes:
    request = AWSRequest(
        method="PUT",
        url=f"{url}{path}",
        headers={"Content-Length": str(length), "x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
    )
    SigV4Auth(BotoCredentials(creds.access_key, creds.secret_key), "s3", "us-east-1").add_auth(
        request
    )
    lines = [f"PUT {path} HTTP/1.1", f"Host: {url.removeprefix('http://')}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_upload_killed_mid_body_leaves_nothing(
    url: str, services: Services, creds: s3_server.Credentials
) -> None:
    s3 = s3_server.boto3_client(url, creds)
    s3.create_bucket(Bucket="images")
    port = int(url.rsplit(":", 1)[1])
    head = _signed_put_head(url, creds, "/images/half.img", 20 * MiB)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + os.urandom(9 * MiB))
        time.sleep(0.3)
    # the server notices the disconnect and removes the staged file
    deadline = time.monotonic() + 10
    while list(services.settings.tmp_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(services.settings.tmp_dir.iterdir()) == []
    assert s3.list_objects_v2(Bucket="images")["KeyCount"] == 0
    # the same raw request, completed, does store the object (the test's request is valid)
    body = os.urandom(MiB)
    reply = _request(port, _signed_put_head(url, creds, "/images/whole.img", MiB), body)
    assert reply.startswith(b"HTTP/1.1 200")
    got: Any = s3.get_object(Bucket="images", Key="whole.img")
    assert got["Body"].read() == body


def test_aws_chunked_upload_is_decoded(url: str, creds: s3_server.Credentials) -> None:
    """What boto3 sends over https with checksums: aws-chunked with a trailer."""
    s3 = s3_server.boto3_client(url, creds)
    s3.create_bucket(Bucket="images")
    data = os.urandom(300_000)
    chunks = [data[:200_000], data[200_000:]]
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big"))
    encoded += b"0\r\nx-amz-checksum-crc32:" + crc + b"\r\n\r\n"  # verified since issue 9
    request = AWSRequest(
        method="PUT",
        url=f"{url}/images/chunked",
        headers={
            "Content-Length": str(len(encoded)),
            "Content-Encoding": "aws-chunked",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-crc32",
        },
    )
    SigV4Auth(BotoCredentials(creds.access_key, creds.secret_key), "s3", "us-east-1").add_auth(
        request
    )
    host = url.removeprefix("http://")
    head = f"PUT /images/chunked HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
    reply = _request(int(host.rsplit(":", 1)[1]), head.encode(), encoded)
    assert reply.startswith(b"HTTP/1.1 200"), reply
    head_reply = s3.head_object(Bucket="images", Key="chunked")
    assert head_reply["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'  # noqa: S324
    assert s3.get_object(Bucket="images", Key="chunked")["Body"].read() == data
