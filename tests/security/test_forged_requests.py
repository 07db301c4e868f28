"""Issue 9, findings 1 and 5: a captured signed request re-sent with another body, and chunk
signatures that were never checked, reproduced against a real ``imageport serve``.

Each attack is made the way an eavesdropper would: the victim's request is signed by the real
client signer (huaweicloudsdkcore's Signer, botocore's SigV4 and v2 signers, AWS's CRT signer for
the seed of a chunk-signed upload), sent once as the victim sends it, then copied and altered
on the wire (the Authorization header re-spaced, a payload-hash header added, another body).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from awscrt import auth as crt_auth
from awscrt import http as crt_http
from botocore.auth import HmacV1Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from support import sdk_requests
from support.e2e_clients import s3_client
from support.server_process import Keys, ServeProcess, serve_process

EMPTY = hashlib.sha256(b"").hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("forged")) as running:
        s3 = s3_client(running, running.keys["alpha"])
        s3.create_bucket(Bucket="victim")
        s3.put_object(Bucket="victim", Key="disk.qcow2", Body=b"\0" * 4096)
        s3.put_object(Bucket="victim", Key="other.qcow2", Body=b"\1" * 4096)
        yield running


def sdk_signed(
    server: ServeProcess, keys: Keys, method: str, path: str, body: bytes = b""
) -> SdkRequest:
    """A request as the vendor SDK signs it, for ``keys``' project."""
    return sdk_requests.sdk_signed(
        server.ims_url,
        keys.access_key,
        keys.secret_key,
        method,
        path,
        body,
        {"X-Project-Id": keys.project_id},
    )


def send(
    server: ServeProcess,
    req: SdkRequest,
    *,
    body: bytes | None = None,
    extra: dict[str, str] | None = None,
    respace: bool = False,
) -> httpx.Response:
    """Send ``req`` as signed, or as an eavesdropper re-sends it: the Authorization header's
    ``", "`` turned into ``","`` (same signature, different text), headers added, another
    body."""
    headers = dict(req.header_params)
    if respace:
        headers["Authorization"] = headers["Authorization"].replace(", ", ",")
    headers.update(extra or {})
    return httpx.request(
        req.method,
        server.ims_url + req.resource_path,
        headers=headers,
        content=req.body if body is None else body,
        timeout=30,
    )


def error_code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


def image_names(server: ServeProcess, keys: Keys) -> set[str]:
    listing = send(server, sdk_signed(server, keys, "GET", "/v2/cloudimages"))
    assert listing.status_code == 200, listing.text
    return {image["name"] for image in listing.json()["images"]}


def test_a_captured_registration_cannot_be_resent_with_another_body(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    body = json.dumps(
        {"name": "victim-image", "image_url": "victim:disk.qcow2", "min_disk": 40}
    ).encode()
    captured = sdk_signed(server, alpha, "POST", "/v2/cloudimages/action", body)
    first = send(server, captured)
    assert first.status_code == 200, first.text

    forged_body = json.dumps(
        {"name": "attacker-image", "image_url": "victim:other.qcow2", "min_disk": 40}
    ).encode()
    # the attack of the issue: same signature re-spaced, the original body's hash declared in
    # an unsigned X-Sdk-Content-Sha256, and the attacker's body
    forged = send(
        server,
        captured,
        body=forged_body,
        respace=True,
        extra={"X-Sdk-Content-Sha256": hashlib.sha256(body).hexdigest()},
    )
    assert forged.status_code in (400, 401), forged.text
    assert error_code(forged) in ("XAmzContentSHA256Mismatch", "ReplayedRequest")
    # each half of it is refused on its own, too
    respaced = send(server, captured, respace=True)
    assert (respaced.status_code, error_code(respaced)) == (401, "ReplayedRequest")
    fresh = sdk_signed(server, alpha, "POST", "/v2/cloudimages/action", forged_body)
    fresh.header_params["X-Sdk-Content-Sha256"] = hashlib.sha256(body).hexdigest()
    swapped = send(server, fresh, body=forged_body)
    assert (swapped.status_code, error_code(swapped)) == (401, "XAmzContentSHA256Mismatch")
    names = image_names(server, alpha)
    assert "victim-image" in names and "attacker-image" not in names


def test_unsigned_payload_only_where_the_vendor_sends_it(server: ServeProcess) -> None:
    """``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` leaves the body unsigned: refused on a JSON
    route (whoever holds the request could send any body), accepted on a JSON-patch update,
    which the vendor SDK itself sends that way."""
    alpha = server.keys["alpha"]
    body = json.dumps(
        {"name": "unsigned", "image_url": "victim:disk.qcow2", "min_disk": 40}
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "X-Sdk-Date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "X-Project-Id": alpha.project_id,
    }
    req = SdkRequest(
        method="POST",
        schema="http",
        host=server.ims_url.split("//")[1],
        resource_path="/v2/cloudimages/action",
        query_params=[],
        header_params=headers,
        body=body,
    )
    Signer(SimpleNamespace(ak=alpha.access_key, sk=alpha.secret_key)).sign(req)
    assert req.header_params["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    answer = send(server, req)
    assert (answer.status_code, error_code(answer)) == (401, "InvalidRequest"), answer.text
    assert "unsigned" not in image_names(server, alpha)


def test_a_token_request_cannot_be_replayed(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    captured = sdk_signed(server, alpha, "POST", "/v3/auth/tokens")
    first = send(server, captured)
    assert first.status_code == 201 and first.headers["X-Subject-Token"]
    again = send(server, captured, respace=True)
    assert (again.status_code, error_code(again)) == (401, "ReplayedRequest")
    assert "X-Subject-Token" not in again.headers


def test_an_export_request_cannot_be_replayed(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    body = json.dumps({"bucket_url": "victim:out.qcow2", "file_format": "qcow2"}).encode()
    captured = sdk_signed(server, alpha, "POST", "/v1/cloudimages/no-such-image/file", body)
    first = send(server, captured)
    assert first.status_code == 404, first.text  # refused, but it used up its signature
    again = send(server, captured, respace=True)
    assert (again.status_code, error_code(again)) == (401, "ReplayedRequest")


def _crt_signed(
    server: ServeProcess,
    keys: Keys,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body_value: str,
) -> dict[str, str]:
    """Headers of a request signed by AWS's CRT signer with payload hash ``body_value``."""
    request = crt_http.HttpRequest(
        method, path, crt_http.HttpHeaders([("Host", server.s3_url.split("//")[1]), *headers])
    )
    config = crt_auth.AwsSigningConfig(
        algorithm=crt_auth.AwsSigningAlgorithm.V4,
        signature_type=crt_auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
        credentials_provider=crt_auth.AwsCredentialsProvider.new_static(
            keys.access_key, keys.secret_key
        ),
        region="local-1",
        service="s3",
        date=datetime.now(UTC),
        signed_body_value=body_value,
        signed_body_header_type=crt_auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256,
    )
    signed = dict(crt_auth.aws_sign_request(request, config).result(10).headers)
    del signed["Host"]  # httpx sends it
    return signed


def _s3_signed(
    server: ServeProcess,
    keys: Keys,
    method: str,
    path: str,
    body: bytes,
    *,
    v2: bool = False,
    unsigned: bool = False,
) -> dict[str, str]:
    """Headers of an S3 request as botocore signs it (SigV4 or v2), or as the CRT signer does
    with ``UNSIGNED-PAYLOAD`` (what esdk-obs sends with v4, and any client over https)."""
    if unsigned:
        return _crt_signed(
            server, keys, method, path, [], crt_auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD
        )
    req = AWSRequest(method=method, url=server.s3_url + path, data=body, headers={})
    creds = Credentials(keys.access_key, keys.secret_key)
    signer: Any = HmacV1Auth(creds) if v2 else S3SigV4Auth(creds, "s3", "local-1")
    signer.add_auth(req)
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in req.headers.items()}


def _object(server: ServeProcess, key: str) -> bytes:
    s3 = s3_client(server, server.keys["alpha"])
    data: bytes = s3.get_object(Bucket="victim", Key=key)["Body"].read()
    return data


@pytest.mark.parametrize("mode", ["v2", "sigv4-unsigned-payload"])
def test_a_captured_put_whose_body_is_not_signed_cannot_carry_another_body(
    server: ServeProcess, mode: str
) -> None:
    alpha = server.keys["alpha"]
    key = f"replayed-{mode}.txt"
    original = b"the victim's data"
    headers = _s3_signed(
        server, alpha, "PUT", f"/victim/{key}", original, v2=mode == "v2", unsigned=mode != "v2"
    )
    first = httpx.put(f"{server.s3_url}/victim/{key}", headers=headers, content=original)
    assert first.status_code == 200, first.text
    forged = httpx.put(
        f"{server.s3_url}/victim/{key}", headers=headers, content=b"attacker's data!!"
    )
    # 503 SlowDown: S3 clients retry it signing again, an attacker's copy never gets through
    assert forged.status_code == 503 and b"already used" in forged.content, forged.text
    assert _object(server, key) == original


def test_a_captured_bodiless_write_cannot_be_resent_with_a_body(server: ServeProcess) -> None:
    """Review of issue 9, H1: a zero-byte PUT whose body is not signed was repeatable, so a
    copy with a body counted as its first use."""
    alpha = server.keys["alpha"]
    url = f"{server.s3_url}/victim/was-empty.txt"
    for v2 in (True, False):
        headers = _s3_signed(
            server, alpha, "PUT", "/victim/was-empty.txt", b"", v2=v2, unsigned=not v2
        )
        for _ in range(2):  # the same empty PUT again is the same operation
            assert httpx.put(url, headers=headers, content=b"").status_code == 200
        forged = httpx.put(url, headers=headers, content=b"<script>attacker</script>")
        assert forged.status_code == 503, forged.text
        assert _object(server, "was-empty.txt") == b""


def test_a_refused_write_does_not_give_its_signature_back(server: ServeProcess) -> None:
    """Review of issue 9, H2: the victim's PUT carried a header v2 does not sign and the server
    refused (501); its signature was released, and the copy without that header, with the
    attacker's body, was accepted."""
    alpha = server.keys["alpha"]
    req = AWSRequest(
        method="PUT",
        url=f"{server.s3_url}/victim/refused.txt",
        data=b"v",
        headers={"Cache-Control": "no-cache"},
    )
    HmacV1Auth(Credentials(alpha.access_key, alpha.secret_key)).add_auth(req)
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in req.headers.items()}
    first = httpx.put(f"{server.s3_url}/victim/refused.txt", headers=headers, content=b"v")
    assert first.status_code == 501, first.text
    del headers["Cache-Control"]
    forged = httpx.put(
        f"{server.s3_url}/victim/refused.txt", headers=headers, content=b"<script>attacker</script>"
    )
    assert forged.status_code == 503, forged.text
    listed = s3_client(server, alpha).list_objects_v2(Bucket="victim", Prefix="refused")
    assert listed.get("KeyCount") == 0


def test_a_negative_chunk_size_is_refused_at_once(server: ServeProcess) -> None:
    """Review of issue 9, H3: ``int(x, 16)`` took "-6" and the decoder walked backwards for
    ever on the event loop both listeners share."""
    alpha = server.keys["alpha"]
    for n, size in enumerate((b"-6", b"0x1", b"+1", b"1_0")):
        headers = _crt_signed(
            server,
            alpha,
            "PUT",
            f"/victim/negative-{n}.bin",
            [("Content-Encoding", "aws-chunked"), ("x-amz-decoded-content-length", "2")],
            crt_auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD,
        )
        answer = httpx.put(
            f"{server.s3_url}/victim/negative-{n}.bin",
            headers=headers,
            content=b"1\r\nA\r\n" + size + b"\r\nX\r\n0\r\n\r\n",
            timeout=10,
        )
        assert answer.status_code == 400 and b"IncompleteBody" in answer.content, answer.text
        assert httpx.get(f"{server.ims_url}/health", timeout=5).status_code == 200


def test_an_identical_signed_put_with_a_signed_body_may_be_resent(server: ServeProcess) -> None:
    """S3's own rule where the signature covers the body: the same request is the same
    operation (rclone re-sends its bucket creation; clients retry within the same second)."""
    alpha = server.keys["alpha"]
    data = b"signed body"
    headers = _s3_signed(server, alpha, "PUT", "/victim/covered.txt", data)
    for _ in range(2):
        answer = httpx.put(f"{server.s3_url}/victim/covered.txt", headers=headers, content=data)
        assert answer.status_code == 200, answer.text
    changed = httpx.put(
        f"{server.s3_url}/victim/covered.txt", headers=headers, content=b"signed bodz"
    )
    assert changed.status_code == 400 and b"XAmzContentSHA256Mismatch" in changed.content


def _chunked_put(
    server: ServeProcess,
    keys: Keys,
    key: str,
    chunks: list[bytes],
    signatures: list[str] | None = None,
) -> httpx.Response:
    """A ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` PUT: the seed signed by AWS's CRT signer, the
    chunks signed as the AWS S3 reference describes (``signatures`` replaces them)."""
    decoded = sum(len(chunk) for chunk in chunks)
    headers = _crt_signed(
        server,
        keys,
        "PUT",
        f"/victim/{key}",
        [("Content-Encoding", "aws-chunked"), ("x-amz-decoded-content-length", str(decoded))],
        crt_auth.AwsSignedBodyValue.STREAMING_AWS4_HMAC_SHA256_PAYLOAD,
    )
    now = datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    seed = headers["Authorization"].rsplit("Signature=", 1)[1]
    key_bytes = b"AWS4" + keys.secret_key.encode()
    for part in (now.strftime("%Y%m%d"), "local-1", "s3", "aws4_request"):
        key_bytes = hmac.new(key_bytes, part.encode(), hashlib.sha256).digest()
    scope = f"{now:%Y%m%d}/local-1/s3/aws4_request"
    body, previous = b"", seed
    for n, chunk in enumerate([*chunks, b""]):
        sts = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                headers["X-Amz-Date"],
                scope,
                previous,
                EMPTY,
                hashlib.sha256(chunk).hexdigest(),
            )
        )
        previous = hmac.new(key_bytes, sts.encode(), hashlib.sha256).hexdigest()
        if signatures is not None:
            previous = signatures[n]
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    return httpx.put(f"{server.s3_url}/victim/{key}", headers=headers, content=body, timeout=30)


def test_chunk_signatures_are_verified(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    chunks = [b"a" * 65536, b"b" * 1000]
    good = _chunked_put(server, alpha, "chunked.bin", chunks)
    assert good.status_code == 200, good.text
    assert _object(server, "chunked.bin") == b"".join(chunks)

    zeros = _chunked_put(server, alpha, "zeros.bin", chunks, signatures=["0" * 64] * 3)
    assert zeros.status_code == 403 and b"SignatureDoesNotMatch" in zeros.content, zeros.text
    s3 = s3_client(server, alpha)
    listed = s3.list_objects_v2(Bucket="victim", Prefix="zeros")
    assert listed.get("KeyCount") == 0


def test_streaming_modes_not_verified_here_are_refused(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    headers = _s3_signed(server, alpha, "PUT", "/victim/trailer.bin", b"x")
    headers["X-Amz-Content-SHA256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    answer = httpx.put(f"{server.s3_url}/victim/trailer.bin", headers=headers, content=b"x")
    assert answer.status_code == 501 and b"NotImplemented" in answer.content, answer.text


@pytest.mark.parametrize("trailer", ["right", "wrong", "crc32c"])
def test_trailer_checksums_are_verified(server: ServeProcess, trailer: str) -> None:
    """``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (what boto3 sends over https): the body is not
    signed, its checksum comes after it as a trailer; it must be checked, not dropped."""
    alpha = server.keys["alpha"]
    data = b"trailer-checked data " * 1000
    name = "x-amz-checksum-crc32c" if trailer == "crc32c" else "x-amz-checksum-crc32"
    crc = zlib.crc32(data if trailer != "wrong" else data + b"!")
    headers = _crt_signed(
        server,
        alpha,
        "PUT",
        f"/victim/trailer-{trailer}.bin",
        [
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", str(len(data))),
            ("x-amz-trailer", name),
        ],
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    value = base64.b64encode(crc.to_bytes(4, "big")).decode()
    body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + f"{name}:{value}\r\n\r\n".encode()
    answer = httpx.put(
        f"{server.s3_url}/victim/trailer-{trailer}.bin", headers=headers, content=body, timeout=30
    )
    if trailer == "right":
        assert answer.status_code == 200, answer.text
        assert _object(server, "trailer-right.bin") == data
        return
    expected = (400, b"BadDigest") if trailer == "wrong" else (501, b"NotImplemented")
    assert (answer.status_code, expected[1] in answer.content) == (expected[0], True), answer.text
    listed = s3_client(server, alpha).list_objects_v2(Bucket="victim", Prefix=f"trailer-{trailer}")
    assert listed.get("KeyCount") == 0


def test_a_dropped_data_upload_cannot_be_finished_with_another_image(server: ServeProcess) -> None:
    """Round 2 of the review, H1: an SDK-signed Glance upload (UNSIGNED-PAYLOAD) whose
    connection dropped had its signature given back; whoever logged its headers then sent
    their own image with them, and the import job ran on it."""
    alpha = server.keys["alpha"]
    created = send(
        server,
        sdk_signed(
            server,
            alpha,
            "POST",
            "/v2/images",
            json.dumps(
                {"name": "dropped", "disk_format": "qcow2", "container_format": "bare"}
            ).encode(),
        ),
    )
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    headers = {
        "Content-Type": "application/octet-stream",
        "X-Sdk-Date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "X-Project-Id": alpha.project_id,
    }
    req = SdkRequest(
        method="PUT",
        schema="http",
        host=server.ims_url.split("//")[1],
        resource_path=f"/v2/images/{image_id}/file",
        query_params=[],
        header_params=headers,
        body=b"\0" * 1024,
    )
    Signer(SimpleNamespace(ak=alpha.access_key, sk=alpha.secret_key)).sign(req)
    assert req.header_params["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    host, port = server.ims_url.removeprefix("http://").rsplit(":", 1)
    head = (
        f"PUT {req.resource_path} HTTP/1.1\r\nHost: {req.header_params['Host']}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in req.header_params.items() if k != "Host")
        + "Content-Length: 1048576\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as victim:
        victim.sendall(head + b"\0" * 4096)  # then the victim's connection drops
        time.sleep(0.3)
    time.sleep(0.3)
    forged = httpx.put(
        server.ims_url + req.resource_path,
        timeout=30,
        headers={k: v for k, v in req.header_params.items() if k != "Host"},
        content=b"attacker's image" * 4096,
    )
    assert (forged.status_code, error_code(forged)) == (401, "ReplayedRequest"), forged.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/victim/disk.qcow2?annotation"),
        ("DELETE", "/victim/disk.qcow2?annotation"),
        ("DELETE", "/victim?metadataConfiguration"),
        ("PUT", "/victim?abac"),
        ("GET", "/victim/disk.qcow2?annotation"),
    ],
)
def test_an_unknown_sub_resource_is_refused_not_routed_to_the_object(
    server: ServeProcess, method: str, path: str
) -> None:
    """Round 2 of the review: S3's newer sub-resources (boto3's put/delete_object_annotation,
    delete_bucket_metadata_table_configuration) were routed by method and path alone, so they
    overwrote or deleted the object or the bucket itself."""
    alpha = server.keys["alpha"]
    body = b"just a note" if method == "PUT" else b""
    headers = _s3_signed(server, alpha, method, path, body)
    answer = httpx.request(method, server.s3_url + path, headers=headers, content=body)
    assert answer.status_code == 501 and b"NotImplemented" in answer.content, answer.text
    assert _object(server, "disk.qcow2") == b"\0" * 4096


def test_a_path_that_is_not_utf8_is_a_client_error(server: ServeProcess) -> None:
    answer = httpx.get(f"{server.s3_url}/victim/%ff", timeout=10)
    assert answer.status_code == 400 and b"InvalidURI" in answer.content, answer.text
    errors = [line for line in server.log_lines() if line.get("status") == 500]
    assert errors == []


def test_a_trailer_sent_twice_is_refused(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    data = b"twice"
    value = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    headers = _crt_signed(
        server,
        alpha,
        "PUT",
        "/victim/twice.bin",
        [
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "5"),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
        ],
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    body = b"5\r\ntwice\r\n0\r\n" + f"x-amz-checksum-crc32:{value}\r\n".encode() * 2 + b"\r\n"
    answer = httpx.put(f"{server.s3_url}/victim/twice.bin", headers=headers, content=body)
    assert answer.status_code == 400 and b"IncompleteBody" in answer.content, answer.text
