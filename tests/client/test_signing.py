"""The client's signers: what they sign verifies with our verifiers and equals the real SDKs'."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from imageport.auth import SignatureError, sdk_hmac, sigv4
from imageport.auth.request import SignedRequest
from imageport.client.signing import (
    UNSIGNED_PAYLOAD,
    Credentials,
    content_md5,
    sdk_hmac_headers,
    sigv4_headers,
)

AK, SK, PROJECT = "AK_TEST", "SK_TEST", "0123456789abcdef0123456789abcdef"
CREDS = Credentials(AK, SK, PROJECT)


def secret_for(access: str) -> str | None:
    return SK if access == AK else None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _as_received(
    method: str, url: str, headers: dict[str, str], body: bytes | None
) -> SignedRequest:
    """What the server sees: request line, headers (+ Content-Length), body hash if read."""
    split = urlsplit(url)
    sent = dict(headers)
    if body:
        sent["Content-Length"] = str(len(body))
    return SignedRequest(
        method,
        split.path,
        split.query,
        sent,
        None if body is None else hashlib.sha256(body).hexdigest(),
    )


IMS_CASES = [
    (
        "POST",
        "/v2/cloudimages/action",
        [],
        b'{"name":"img","image_url":"b:k","min_disk":40}',
        "application/json;charset=utf-8",
    ),
    (
        "GET",
        "/v2/cloudimages",
        [("__imagetype", "private"), ("limit", "10"), ("name", "a b/é~")],
        b"",
        "application/json",
    ),
    ("GET", f"/v1/{PROJECT}/jobs/ff80", [], b"", "application/json"),
    (
        "PUT",
        "/v1/cloudimages/5d87/upload",
        [],
        b'{"image_url":"b:disk image.qcow2"}',
        "application/json;charset=utf-8",
    ),
    (
        "PATCH",
        "/v2/images/5d87",
        [],
        b'[{"op":"replace","path":"/name","value":"x"}]',
        "application/openstack-images-v2.1-json-patch",
    ),
]


@pytest.mark.parametrize(("method", "path", "query", "body", "ctype"), IMS_CASES)
def test_sdk_hmac_equals_huaweicloudsdkcore_and_verifies(
    method: str, path: str, query: list[tuple[str, str]], body: bytes, ctype: str
) -> None:
    when = _now()
    headers = {
        "Content-Type": ctype,
        "X-Project-Id": PROJECT,
        "X-Sdk-Date": when.strftime("%Y%m%dT%H%M%SZ"),
        "Host": "127.0.0.1:9292",
    }
    sdk = SdkRequest(
        method=method,
        schema="http",
        host="127.0.0.1:9292",
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    Signer(SimpleNamespace(ak=AK, sk=SK)).sign(sdk)

    ours = sdk_hmac_headers(method, sdk.url, {"Content-Type": ctype}, body, CREDS, now=when)

    assert ours["Authorization"] == sdk.header_params["Authorization"]
    assert "SignedHeaders=content-type;host;x-project-id;x-sdk-" in ours["Authorization"]
    assert ours.get("X-Sdk-Content-Sha256") == sdk.header_params.get("X-Sdk-Content-Sha256")
    received = _as_received(method, sdk.url, ours, body)
    # the SDK sends UNSIGNED-PAYLOAD for a non-JSON body; only such routes take it
    unsigned = not ctype.startswith("application/json")
    assert sdk_hmac.verify(received, secret_for, _now(), unsigned_payload=unsigned) == AK


def test_sdk_hmac_tampered_body_is_refused() -> None:
    body = b'{"name":"img"}'
    url = "http://127.0.0.1:8080/v2/cloudimages/action"
    ours = sdk_hmac_headers("POST", url, {"Content-Type": "application/json"}, body, CREDS)
    with pytest.raises(SignatureError) as err:
        sdk_hmac.verify(_as_received("POST", url, ours, b'{"name":"evil"}'), secret_for, _now())
    assert err.value.code == "SignatureDoesNotMatch"


S3_CASES = [
    ("PUT", "http://127.0.0.1:8081/images", {"x-default-storage-class": "WARM"}, b""),
    ("GET", "http://127.0.0.1:8081/images?uploads&prefix=disk%20image.qcow2", {}, b""),
    ("GET", "http://127.0.0.1:8081/images?list-type=2&max-keys=1000", {}, b""),
    (
        "POST",
        "http://127.0.0.1:8081/images/dir/disk.qcow2?uploadId=abc",
        {"Content-Type": "application/xml"},
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
        b"</CompleteMultipartUpload>",
    ),
]


@pytest.mark.parametrize(("method", "url", "headers", "body"), S3_CASES)
def test_sigv4_equals_botocore_and_verifies(
    method: str, url: str, headers: dict[str, str], body: bytes
) -> None:
    boto = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    S3SigV4Auth(BotoCredentials(AK, SK), "s3", "us-east-1").add_auth(boto)
    when = datetime.strptime(boto.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    ours = sigv4_headers(
        method, url, headers, CREDS, payload_sha256=hashlib.sha256(body).hexdigest(), now=when
    )

    assert ours["Authorization"] == boto.headers["Authorization"]
    assert sigv4.verify(_as_received(method, url, ours, body), secret_for, _now()) == AK


def test_unsigned_part_equals_botocore_and_the_md5_is_signed() -> None:
    url = "http://127.0.0.1:8081/images/disk.qcow2?partNumber=3&uploadId=abc"
    body = b"part bytes" * 1000
    _, md5_b64 = content_md5(body)
    boto = AWSRequest(
        method="PUT",
        url=url,
        data=body,
        headers={"Content-MD5": md5_b64, "X-Amz-Content-SHA256": UNSIGNED_PAYLOAD},
    )
    SigV4Auth(BotoCredentials(AK, SK), "s3", "us-east-1").add_auth(boto)
    when = datetime.strptime(boto.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    ours = sigv4_headers(
        "PUT", url, {"Content-MD5": md5_b64}, CREDS, payload_sha256=UNSIGNED_PAYLOAD, now=when
    )

    assert ours["Authorization"] == boto.headers["Authorization"]
    assert "SignedHeaders=content-md5;host;x-amz-content-sha256;x-amz-date" in ours["Authorization"]
    # streamed: the server has not read the body when it verifies
    assert sigv4.verify(_as_received("PUT", url, ours, None), secret_for, _now()) == AK
    # a server that hashed the body still accepts UNSIGNED-PAYLOAD
    assert sigv4.verify(_as_received("PUT", url, ours, body), secret_for, _now()) == AK
    # a changed Content-MD5 breaks the signature
    forged = {**ours, "Content-MD5": content_md5(b"other")[1]}
    with pytest.raises(SignatureError) as err:
        sigv4.verify(_as_received("PUT", url, forged, None), secret_for, _now())
    assert err.value.code == "SignatureDoesNotMatch"


def test_credentials_repr_hides_the_secret() -> None:
    assert SK not in repr(CREDS)
