"""SDK-HMAC-SHA256 verification against huaweicloudsdkcore's own Signer."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import given, settings
from hypothesis import strategies as st

from imageport.auth import SignatureError, SignedRequest, detect_scheme
from imageport.auth.sdk_hmac import verify
from support.signers import AK, SK, now, secret_for, sha, wrong_secret

PROJECT = "0123456789abcdef0123456789abcdef"


def _signed(
    method: str,
    path: str,
    query: Iterable[tuple[str, object]] = (),
    body: bytes = b"",
    ctype: str = "application/json;charset=utf-8",
    when: datetime | None = None,
) -> SignedRequest:
    headers = {
        "Content-Type": ctype,
        "X-Project-Id": PROJECT,
        "User-Agent": "huaweicloud-usdk-python/3.0",
        "X-Sdk-Date": (when or now()).strftime("%Y%m%dT%H%M%SZ"),
    }
    req = SdkRequest(
        method=method,
        schema="http",
        host="127.0.0.1:9292",
        resource_path=path,
        query_params=list(query),
        header_params=headers,
        body=body,
    )
    Signer(SimpleNamespace(ak=AK, sk=SK)).sign(req)
    split = urlsplit(req.url)
    sent = dict(req.header_params)
    if body:
        sent["Content-Length"] = str(len(body))  # added by the HTTP client, not signed
    return SignedRequest(method, split.path, split.query, sent, sha(req.body or b""))


BODY = json.dumps(
    {"name": "img", "image_url": "images:disk/test.qcow2", "min_disk": 40, "is_config": True}
).encode()
CASES: list[tuple[str, str, Iterable[tuple[str, object]], bytes]] = [
    ("POST", "/v2/cloudimages/action", (), BODY),
    (
        "GET",
        "/v2/cloudimages",
        [
            ("__imagetype", "private"),
            ("limit", 10),
            ("name", "a b/é"),
            ("is_whole_image", True),
            ("protected", False),
        ],
        b"",
    ),
    ("GET", f"/v1/{PROJECT}/jobs/ff80", (), b""),
    ("DELETE", "/v2/images/5d87", (), b'{"delete_backup": false}'),
    ("PATCH", "/v2/cloudimages/5d87", (), b'[{"op":"replace","path":"/name","value":"x"}]'),
]


@pytest.mark.parametrize(("method", "path", "query", "body"), CASES)
def test_sdk_requests_verify(
    method: str, path: str, query: Iterable[tuple[str, object]], body: bytes
) -> None:
    signed = _signed(method, path, query, body)
    assert detect_scheme(signed.headers) == "sdk-hmac"
    assert verify(signed, secret_for, now()) == AK


def test_unsigned_payload_header_is_signed() -> None:
    body = b'[{"op":"replace","path":"/name","value":"x"}]'
    signed = _signed(
        "PATCH", "/v2/images/5d87", (), body, ctype="application/openstack-images-v2.1-json-patch"
    )
    assert signed.header("X-Sdk-Content-Sha256") == "UNSIGNED-PAYLOAD"
    assert verify(signed, secret_for, now(), unsigned_payload=True) == AK
    streamed = dataclasses.replace(signed, body_sha256=None)
    assert verify(streamed, secret_for, now(), unsigned_payload=True) == AK
    # only where the route takes it (data uploads, JSON-patch updates): elsewhere the body's
    # own hash must be signed
    assert _code(signed) == "InvalidRequest"
    assert _code(streamed) == "InvalidRequest"


def test_a_declared_body_hash_must_be_the_body_received() -> None:
    """The attack of issue 9: the SDK signed sha256(body) without sending X-Sdk-Content-Sha256;
    whoever copies the request adds that header with the original hash (it need not be signed,
    the canonical request carries its value) and sends another body."""
    signed = _signed(*CASES[0])
    assert "x-sdk-content-sha256" not in signed.headers
    forged_body = json.dumps(
        {"name": "attacker", "image_url": "evil:disk.qcow2", "min_disk": 40}
    ).encode()
    forged = dataclasses.replace(
        signed,
        body_sha256=sha(forged_body),
        headers={**signed.headers, "x-sdk-content-sha256": sha(BODY)},
    )
    assert _code(forged) == "XAmzContentSHA256Mismatch"
    # the honest hash of the body received is fine, and still has to match the signature
    honest = dataclasses.replace(
        signed, headers={**signed.headers, "x-sdk-content-sha256": sha(BODY)}
    )
    assert verify(honest, secret_for, now()) == AK
    # a streamed body's hash is not known when the signature is checked: refused
    assert _code(dataclasses.replace(honest, body_sha256=None)) == "InvalidRequest"
    bad = dataclasses.replace(signed, headers={**signed.headers, "x-sdk-content-sha256": "x"})
    assert _code(bad) == "AuthorizationHeaderMalformed"


def _code(
    signed: SignedRequest,
    secrets: Callable[[str], str | None] = secret_for,
    at: datetime | None = None,
) -> str:
    with pytest.raises(SignatureError) as err:
        verify(signed, secrets, at or now())
    return err.value.code


def test_rejections() -> None:
    signed = _signed(*CASES[0])
    assert _code(signed, wrong_secret) == "SignatureDoesNotMatch"
    assert _code(signed, lambda ak: None) == "InvalidAccessKeyId"
    assert _code(dataclasses.replace(signed, raw_path="/v2/cloudimages/other")) == (
        "SignatureDoesNotMatch"
    )
    assert _code(dataclasses.replace(signed, raw_query="x=1")) == "SignatureDoesNotMatch"
    assert _code(dataclasses.replace(signed, body_sha256=sha(BODY + b" "))) == (
        "SignatureDoesNotMatch"
    )
    assert _code(dataclasses.replace(signed, body_sha256=None)) == "InvalidRequest"
    headers = {**signed.headers, "user-agent": "proxy/1.0"}
    assert _code(dataclasses.replace(signed, headers=headers)) == "SignatureDoesNotMatch"
    assert _code(signed, at=now() + timedelta(minutes=16)) == "RequestTimeTooSkewed"
    old = _signed(*CASES[0], when=datetime.now(UTC) - timedelta(minutes=16))
    assert _code(old) == "RequestTimeTooSkewed"
    query_signed = _signed(*CASES[1])
    assert _code(
        dataclasses.replace(query_signed, raw_query=query_signed.raw_query.replace("true", "false"))
    ) == ("SignatureDoesNotMatch")
    for bad in (
        "SDK-HMAC-SHA256",
        "SDK-HMAC-SHA256 Access=a",
        "SDK-HMAC-SHA256 " + "a" * 9000,
        signed.headers["authorization"].replace("x-sdk-date", ""),
    ):
        headers = {**signed.headers, "authorization": bad}
        assert _code(dataclasses.replace(signed, headers=headers)) == (
            "AuthorizationHeaderMalformed"
        )


@settings(max_examples=300, deadline=None)
@given(
    auth=st.text(max_size=300),
    date=st.text(max_size=20),
    path=st.text(max_size=40),
    query=st.text(max_size=40),
)
def test_garbage_only_raises_signature_error(auth: str, date: str, path: str, query: str) -> None:
    prefix = "SDK-HMAC-SHA256 Access=AK_TEST, SignedHeaders=x-sdk-date;"
    for value in (auth, prefix + auth):
        headers = {"Authorization": value, "X-Sdk-Date": date, "X-Sdk-Content-Sha256": auth}
        with pytest.raises(SignatureError):
            verify(SignedRequest("GET", path, query, headers, None), secret_for, now())
