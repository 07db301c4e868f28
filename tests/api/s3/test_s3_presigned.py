"""Presigned URLs against the real bucket API (uvicorn on loopback): made by boto3
(``generate_presigned_url``, SigV4 and v2), ``s3cmd signurl`` (v2) and ``rclone link`` (SigV4),
then used by a plain HTTP client (httpx) that signs nothing, as a browser or curl would."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from imageport.service.context import Services
from support import s3_server

MiB = 1024 * 1024


@pytest.fixture
def s3(url: str, creds: s3_server.Credentials) -> Any:
    client = s3_server.boto3_client(url, creds)
    client.create_bucket(Bucket="images")
    return client


def _error(response: httpx.Response) -> tuple[int, str]:
    """The status and S3 error code of ``response``."""
    code = response.text.partition("<Code>")[2].partition("</Code>")[0]
    return response.status_code, code


def test_presigned_put_then_get_with_range(s3: Any) -> None:
    data = os.urandom(200_000)
    params = {"Bucket": "images", "Key": "disk/my disk.img", "ContentType": "application/x-raw"}
    put_url = s3.generate_presigned_url("put_object", Params=params, ExpiresIn=600)
    put = httpx.put(put_url, content=data, headers={"Content-Type": "application/x-raw"})
    assert put.status_code == 200, put.text
    assert put.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'  # noqa: S324
    # The signed Content-Type must be sent as signed; the URL is reusable until it expires.
    assert _error(httpx.put(put_url, content=b"x", headers={"Content-Type": "text/plain"})) == (
        403,
        "SignatureDoesNotMatch",
    )
    again = httpx.put(put_url, content=data, headers={"Content-Type": "application/x-raw"})
    assert again.status_code == 200

    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "images", "Key": "disk/my disk.img"}, ExpiresIn=600
    )
    got = httpx.get(get_url)
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "application/x-raw"
    part = httpx.get(get_url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    head = s3.head_object(Bucket="images", Key="disk/my disk.img")
    assert head["ContentLength"] == len(data)

    tampered = get_url.replace("disk/my%20disk.img", "disk/other.img")
    assert _error(httpx.get(tampered)) == (403, "SignatureDoesNotMatch")


def test_presigned_upload_part(s3: Any) -> None:
    upload = s3.create_multipart_upload(Bucket="images", Key="big.img")["UploadId"]
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    etags = []
    for number, body in enumerate(parts, start=1):
        part_url = s3.generate_presigned_url(
            "upload_part",
            Params={"Bucket": "images", "Key": "big.img", "UploadId": upload, "PartNumber": number},
        )
        reply = httpx.put(part_url, content=body)
        assert reply.status_code == 200, reply.text
        etags.append(reply.headers["etag"])
    s3.complete_multipart_upload(
        Bucket="images",
        Key="big.img",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, start=1)]
        },
    )
    assert s3.get_object(Bucket="images", Key="big.img")["Body"].read() == b"".join(parts)


def test_a_stored_web_page_opened_by_its_url_runs_nothing(s3: Any) -> None:
    """Any project can store an HTML page and hand out a presigned URL to it; a browser that
    opens it must not run its script on the bucket API's origin, which is the same site as the
    web console (same host, another port): there, a script could set the console's session
    cookie (cookies ignore ports) and sign the browser into the attacker's project."""
    page = b"<script>document.cookie = 'imageport_console=theirs; path=/console'</script>"
    s3.put_object(Bucket="images", Key="page.html", Body=page, ContentType="text/html")
    for params in (
        {"Bucket": "images", "Key": "page.html"},
        {"Bucket": "images", "Key": "page.html", "ResponseContentType": "text/html"},
    ):
        got = httpx.get(s3.generate_presigned_url("get_object", Params=params))
        assert got.status_code == 200 and got.content == page
        policy = got.headers["content-security-policy"]
        assert policy.split(";")[0] == "sandbox" and "default-src 'none'" in policy
    missing = {"Bucket": "images", "Key": "none"}
    refused = httpx.get(s3.generate_presigned_url("get_object", Params=missing))
    assert refused.status_code == 404
    assert refused.headers["content-security-policy"].startswith("sandbox")


def test_other_projects_bucket_and_mixed_auth(s3: Any, url: str, services: Services) -> None:
    s3.put_object(Bucket="images", Key="secret", Body=b"s")
    other = s3_server.boto3_client(url, s3_server.new_credentials(services, "beta"))
    for operation, method in (("get_object", "GET"), ("put_object", "PUT")):
        foreign = other.generate_presigned_url(
            operation, Params={"Bucket": "images", "Key": "secret"}
        )
        assert _error(httpx.request(method, foreign, content=b"x")) == (404, "NoSuchBucket")
    # The same answer as header auth gives.
    with pytest.raises(other.exceptions.NoSuchBucket):
        other.get_object(Bucket="images", Key="secret")

    mine = s3.generate_presigned_url("get_object", Params={"Bucket": "images", "Key": "secret"})
    both = httpx.get(mine, headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x"})
    assert _error(both) == (400, "InvalidArgument")
    assert "only one auth mechanism allowed" in both.text.lower()
    assert httpx.get(mine).content == b"s"


def test_an_html_object_is_served_sandboxed(s3: Any) -> None:
    """A page stored in a bucket runs no script when a browser opens its presigned URL: the
    bucket API shares its host with the web console (cookies are not port-scoped), so a
    script there could set the console's session cookie to its author's session."""
    page = b"<script>document.cookie='imageport_console=theirs; path=/console'</script>"
    s3.put_object(Bucket="images", Key="page.html", Body=page, ContentType="text/html")
    as_stored = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "images", "Key": "page.html"}
    )
    as_asked = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": "images", "Key": "page.html", "ResponseContentType": "text/html"},
    )
    for link in (as_stored, as_asked):
        reply = httpx.get(link)
        assert reply.status_code == 200 and reply.content == page
        assert reply.headers["content-type"] == "text/html"
        assert reply.headers["content-security-policy"].split(";")[0] == "sandbox"
        assert reply.headers["x-content-type-options"] == "nosniff"
    head = s3.head_object(Bucket="images", Key="page.html")["ResponseMetadata"]["HTTPHeaders"]
    assert head["content-security-policy"].split(";")[0] == "sandbox"


def test_expired_urls_are_access_denied(s3: Any, url: str, creds: s3_server.Credentials) -> None:
    s3.put_object(Bucket="images", Key="k", Body=b"data")
    v4 = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "images", "Key": "k"}, ExpiresIn=1
    )
    request = AWSRequest(method="GET", url=f"{url}/images/k")
    HmacV1QueryAuth(BotoCredentials(creds.access_key, creds.secret_key), expires=1).add_auth(
        request
    )
    v2 = request.url
    time.sleep(2.1)
    for expired in (v4, v2):
        reply = httpx.get(expired)
        assert _error(reply) == (403, "AccessDenied")
        assert "Request has expired" in reply.text
    week = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "images", "Key": "k"}, ExpiresIn=604_801
    )
    assert _error(httpx.get(week)) == (400, "AuthorizationQueryParametersError")


def test_s3cmd_signurl(s3: Any, url: str, creds: s3_server.Credentials, tmp_path: Path) -> None:
    s3cmd = shutil.which("s3cmd")
    if s3cmd is None:
        pytest.fail("s3cmd is not installed (Debian package s3cmd)")
    data = os.urandom(10_000)
    s3.put_object(Bucket="images", Key="dir/disk.img", Body=data)
    config = s3_server.s3cmd_config(tmp_path / "s3cfg", url, creds)
    done = subprocess.run(
        [s3cmd, "-c", str(config), "signurl", "s3://images/dir/disk.img", "+600"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    signed = done.stdout.strip()
    assert "Signature=" in signed and "Expires=" in signed
    got = httpx.get(signed)
    assert got.status_code == 200 and got.content == data


def test_rclone_link(s3: Any, url: str, creds: s3_server.Credentials, tmp_path: Path) -> None:
    """``rclone link`` with provider Other makes a SigV4 presigned GET (host signed only)."""
    s3.put_object(Bucket="images", Key="dir/disk.img", Body=b"linked")
    done = s3_server.rclone(
        url, creds, tmp_path, "link", "--expire", "10m", "loc:images/dir/disk.img"
    )
    link = done.stdout.decode().strip()
    assert "X-Amz-Signature=" in link and "X-Amz-Expires=600" in link
    got = httpx.get(link)
    assert got.status_code == 200 and got.content == b"linked"
