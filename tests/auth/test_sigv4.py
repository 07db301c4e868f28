"""SigV4 verification against requests signed by botocore's own signers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import formatdate

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from imageport.auth import SignatureError, SignedRequest, detect_scheme
from imageport.auth.sigv4 import verify
from support.signers import AK, SK, from_aws, now, secret_for, sha, wrong_secret

BASE = "http://127.0.0.1:9000"
CASES: list[tuple[str, str, bytes, Mapping[str, str]]] = [
    ("PUT", "/images", b"", {}),
    ("POST", "/images/disk/test.qcow2?uploads", b"", {"x-amz-storage-class": "STANDARD_IA"}),
    ("POST", "/images/disk/test.qcow2?uploads=", b"", {}),
    ("PUT", "/images/disk/test.qcow2?partNumber=1&uploadId=x", b"part-data" * 100, {}),
    ("GET", "/images?list-type=2&prefix=disk%2F&encoding-type=url", b"", {}),
    ("PUT", "/images/my%20disk/%C3%A9t%C3%A9%20%E2%9C%93.img", b"unicode key", {}),
    ("GET", "/images/k?acl", b"", {"Range": "bytes=0-1023", "X-Odd": "  a   b  "}),
]


def _s3_signed(
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    region: str = "us-east-1",
    unsigned: bool = False,
) -> AWSRequest:
    url = BASE.replace("http", "https") if unsigned else BASE
    req = AWSRequest(method=method, url=url + path, data=body, headers=dict(headers))
    if unsigned:
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(Credentials(AK, SK), "s3", region).add_auth(req)
    return req


@pytest.mark.parametrize(("method", "path", "body", "headers"), CASES)
def test_botocore_s3_requests_verify(
    method: str, path: str, body: bytes, headers: Mapping[str, str]
) -> None:
    signed = from_aws(_s3_signed(method, path, body, headers))
    assert detect_scheme(signed.headers) == "sigv4"
    assert verify(signed, secret_for, now()) == AK
    # Streaming upload: body not read yet, the signed hex hash is trusted for now.
    assert verify(dataclasses.replace(signed, body_sha256=None), secret_for, now()) == AK


@pytest.mark.parametrize(("method", "path", "body", "headers"), CASES)
def test_unsigned_payload_and_other_region(
    method: str, path: str, body: bytes, headers: Mapping[str, str]
) -> None:
    signed = from_aws(_s3_signed(method, path, body, headers, region="region", unsigned=True))
    assert signed.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    assert verify(signed, secret_for, now()) == AK
    # The payload is not covered: another body still verifies.
    assert verify(dataclasses.replace(signed, body_sha256=sha(b"x")), secret_for, now()) == AK


def test_generic_sigv4auth_without_content_header() -> None:
    req = AWSRequest(method="POST", url=BASE + "/images?delete", data=b"<Delete/>")
    SigV4Auth(Credentials(AK, SK), "s3", "eu-west-1").add_auth(req)
    signed = from_aws(req)
    assert signed.header("x-amz-content-sha256") is None
    assert verify(signed, secret_for, now()) == AK
    with pytest.raises(SignatureError) as err:
        verify(dataclasses.replace(signed, body_sha256=None), secret_for, now())
    assert err.value.code == "InvalidRequest"


def test_esdk_obs_variant_uses_date_only() -> None:
    """esdk-obs v4: no X-Amz-Date, the instant carried by Date (RFC 1123), no spaces after ",".

    botocore's S3SigV4Auth builds the canonical request from the headers it is given, so signing
    a request that carries Date and UNSIGNED-PAYLOAD reproduces what esdk-obs sends.
    """
    amz = now().strftime("%Y%m%dT%H%M%SZ")
    when = datetime.strptime(amz, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    req = AWSRequest(method="GET", url=BASE + "/images/disk/test.qcow2?acl")
    req.context["timestamp"] = amz
    req.headers["Host"] = "127.0.0.1:9000"
    req.headers["Date"] = formatdate(when.timestamp(), usegmt=True)
    req.headers["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"
    signer = S3SigV4Auth(Credentials(AK, SK), "s3", "region")
    sig = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
    names = signer.signed_headers(signer.headers_to_sign(req))
    headers = {
        **dict(req.headers.items()),
        "Authorization": f"AWS4-HMAC-SHA256 Credential={AK}/{amz[:8]}/region/s3/aws4_request,"
        f"SignedHeaders={names},Signature={sig}",
    }
    obs = SignedRequest("GET", "/images/disk/test.qcow2", "acl", headers, None)
    assert "x-amz-date" not in obs.headers and "date" in names.split(";")
    assert verify(obs, secret_for, now()) == AK
    assert _code(dataclasses.replace(obs, raw_query="")) == "SignatureDoesNotMatch"


def _code(
    signed: SignedRequest,
    secrets: Callable[[str], str | None] = secret_for,
    at: datetime | None = None,
) -> str:
    with pytest.raises(SignatureError) as err:
        verify(signed, secrets, at or now())
    return err.value.code


def test_rejections() -> None:
    signed = from_aws(_s3_signed(*CASES[3]))
    assert _code(signed, wrong_secret) == "SignatureDoesNotMatch"
    assert _code(signed, lambda ak: None) == "InvalidAccessKeyId"
    assert _code(dataclasses.replace(signed, raw_path="/images/disk/other")) == (
        "SignatureDoesNotMatch"
    )
    assert _code(dataclasses.replace(signed, raw_query="partNumber=2&uploadId=x")) == (
        "SignatureDoesNotMatch"
    )
    assert _code(dataclasses.replace(signed, method="POST")) == "SignatureDoesNotMatch"
    assert _code(dataclasses.replace(signed, body_sha256=sha(b"tampered"))) == (
        "XAmzContentSHA256Mismatch"
    )
    changed = {**signed.headers, "host": "evil:9000"}
    assert _code(dataclasses.replace(signed, headers=changed)) == "SignatureDoesNotMatch"
    assert _code(signed, at=now() + timedelta(minutes=16)) == "RequestTimeTooSkewed"
    assert _code(signed, at=now() - timedelta(minutes=16)) == "RequestTimeTooSkewed"
    for bad in (
        "",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=a",
        "AWS4-HMAC-SHA256 " + "x" * 9000,
        signed.headers["authorization"].replace("Signature=", "Signature=z"),
    ):
        headers = {**signed.headers, "authorization": bad}
        assert _code(dataclasses.replace(signed, headers=headers)) == (
            "AuthorizationHeaderMalformed"
        )


def test_unsigned_amz_headers_are_refused() -> None:
    """A signed PUT seen on the wire must not become a copy of another object (or gain
    metadata) by an added, unsigned ``x-amz-*`` header; S3 answers AccessDenied too."""
    signed = from_aws(_s3_signed(*CASES[3]))
    for name in ("x-amz-copy-source", "x-amz-meta-owner", "x-obs-storage-class"):
        added = {**signed.headers, name: "/secrets/key"}
        assert _code(dataclasses.replace(signed, headers=added)) == "AccessDenied"
    # headers the signer covered stay fine: botocore signs the x-amz-* headers it sends
    assert verify(from_aws(_s3_signed(*CASES[1])), secret_for, now()) == AK


@settings(max_examples=300, deadline=None)
@given(
    auth=st.text(max_size=300),
    date=st.text(max_size=40),
    path=st.text(max_size=40),
    query=st.text(max_size=40),
    sha_hdr=st.text(max_size=70),
)
def test_garbage_only_raises_signature_error(
    auth: str, date: str, path: str, query: str, sha_hdr: str
) -> None:
    prefix = "AWS4-HMAC-SHA256 Credential=AK_TEST/20260101/r/s3/aws4_request, SignedHeaders="
    for value in (auth, prefix + auth):
        headers = {
            "Authorization": value,
            "X-Amz-Date": date,
            "Date": date,
            "x-amz-content-sha256": sha_hdr,
            "host": path,
        }
        with pytest.raises(SignatureError):
            verify(SignedRequest("GET", path, query, headers, None), secret_for, now())
