"""Presigned URLs (query-string authentication), SigV4 and v2, against URLs made by botocore:
``generate_presigned_url`` of a real boto3 client (``s3v4`` and ``s3`` signature versions) and
the ``S3SigV4QueryAuth`` / ``HmacV1QueryAuth`` signers. The signers read the real clock, so the
verifier is given a shifted ``now`` to test expiry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import boto3
import pytest
from botocore.auth import HmacV1QueryAuth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from imageport.auth import (
    SignatureError,
    SignedRequest,
    detect_query_scheme,
    detect_scheme,
    s3v2,
    sigv4_query,
)
from support.signers import AK, SK, now, secret_for, sha, wrong_secret

BASE = "http://127.0.0.1:9000"
Verify = Callable[..., str]


def _client(signature_version: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=BASE,
        region_name="us-east-1",
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        config=Config(signature_version=signature_version, s3={"addressing_style": "path"}),
    )


def _request(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> SignedRequest:
    """What the server sees when an HTTP client (no signing of its own) sends ``url``."""
    split = urlsplit(url)
    return SignedRequest(
        method,
        split.path,
        split.query,
        {"Host": split.netloc, **(headers or {})},
        None if body is None else sha(body),
    )


OPERATIONS = [
    ("GET", "get_object", {"Bucket": "images", "Key": "disk/test.qcow2"}),
    ("PUT", "put_object", {"Bucket": "images", "Key": "uploads/my disk é.img"}),
    (
        "PUT",
        "upload_part",
        {"Bucket": "images", "Key": "big.img", "UploadId": "U-1", "PartNumber": 3},
    ),
    ("GET", "list_objects_v2", {"Bucket": "images", "Prefix": "disk/"}),
]


@pytest.mark.parametrize(("method", "operation", "params"), OPERATIONS)
def test_boto3_sigv4_presigned_urls_verify(method: str, operation: str, params: Any) -> None:
    url = _client("s3v4").generate_presigned_url(operation, Params=params, ExpiresIn=600)
    signed = _request(method, url, {"Content-Length": "5"})
    assert detect_scheme(signed.headers) is None
    assert detect_query_scheme(signed.raw_query) == "sigv4-query"
    assert sigv4_query.verify(signed, secret_for, now()) == AK
    # Still valid 9 minutes later (any body: the payload is unsigned), not 11 minutes later.
    later = dataclasses.replace(signed, body_sha256=sha(b"other"))
    assert sigv4_query.verify(later, secret_for, now() + timedelta(minutes=9)) == AK
    assert _error(sigv4_query.verify, signed, at=now() + timedelta(minutes=11)) == (
        "AccessDenied",
        "Request has expired",
    )


@pytest.mark.parametrize(("method", "operation", "params"), OPERATIONS)
def test_boto3_v2_presigned_urls_verify(method: str, operation: str, params: Any) -> None:
    url = _client("s3").generate_presigned_url(operation, Params=params, ExpiresIn=600)
    signed = _request(method, url)
    assert detect_query_scheme(signed.raw_query) == "s3v2-query"
    assert s3v2.verify_query(signed, secret_for, now()) == AK
    assert _error(s3v2.verify_query, signed, at=now() + timedelta(minutes=11)) == (
        "AccessDenied",
        "Request has expired",
    )


def _v4_signed(
    method: str = "GET",
    path: str = "/images/disk/a.img",
    expires: int = 3600,
    headers: dict[str, str] | None = None,
) -> SignedRequest:
    req = AWSRequest(method=method, url=BASE + path, headers=headers or {})
    S3SigV4QueryAuth(Credentials(AK, SK), "s3", "region", expires=expires).add_auth(req)
    return _request(method, req.url, headers)


def _v2_signed(
    method: str = "GET",
    path: str = "/images/disk/a.img",
    expires: int = 3600,
    headers: dict[str, str] | None = None,
) -> SignedRequest:
    req = AWSRequest(method=method, url=BASE + path, headers=headers or {})
    HmacV1QueryAuth(Credentials(AK, SK), expires=expires).add_auth(req)
    return _request(method, req.url)


def _error(
    verify: Verify,
    signed: SignedRequest,
    secrets: Callable[[str], str | None] = secret_for,
    at: datetime | None = None,
) -> tuple[str, str]:
    with pytest.raises(SignatureError) as err:
        verify(signed, secrets, at or now())
    return err.value.code, err.value.message


def _code(verify: Verify, signed: SignedRequest, **kwargs: Any) -> str:
    return _error(verify, signed, **kwargs)[0]


def _with_param(signed: SignedRequest, name: str, value: str | None) -> SignedRequest:
    """``signed`` with query parameter ``name`` set to ``value`` (None: removed)."""
    pairs = [(k, v) for k, v in parse_qsl(signed.raw_query, keep_blank_values=True) if k != name]
    if value is not None:
        pairs.append((name, value))
    return dataclasses.replace(signed, raw_query=urlencode(pairs, quote_via=quote))


def test_sigv4_tampering_and_wrong_secret() -> None:
    signed = _v4_signed(path="/images/disk/a.img?partNumber=1&uploadId=U")
    assert sigv4_query.verify(signed, secret_for, now()) == AK
    verify = sigv4_query.verify
    assert _code(verify, signed, secrets=wrong_secret) == "SignatureDoesNotMatch"
    assert _code(verify, signed, secrets=lambda ak: None) == "InvalidAccessKeyId"
    assert _code(verify, dataclasses.replace(signed, raw_path="/images/disk/b.img")) == (
        "SignatureDoesNotMatch"
    )
    assert _code(verify, dataclasses.replace(signed, method="DELETE")) == "SignatureDoesNotMatch"
    assert _code(verify, _with_param(signed, "partNumber", "2")) == "SignatureDoesNotMatch"
    assert _code(verify, _with_param(signed, "acl", "")) == "SignatureDoesNotMatch"
    assert _code(verify, _with_param(signed, "X-Amz-Expires", "7200")) == ("SignatureDoesNotMatch")
    other_host = {**signed.headers, "host": "127.0.0.1:9001"}
    assert _code(verify, dataclasses.replace(signed, headers=other_host)) == (
        "SignatureDoesNotMatch"
    )


def test_sigv4_signed_content_sha256_is_the_payload_hash() -> None:
    """A request carrying x-amz-content-sha256 is hashed as in header auth: botocore's signer
    puts the header's value in the canonical request when it signs it."""
    body = b"disk bytes"
    headers = {"X-Amz-Content-SHA256": sha(body)}
    req = AWSRequest(method="PUT", url=BASE + "/images/k", headers=headers)
    signer = S3SigV4QueryAuth(Credentials(AK, SK), "s3", "us-east-1")
    signer.payload = lambda request: sha(body)
    signer.add_auth(req)
    signed = _request("PUT", req.url, headers, body)
    assert "x-amz-content-sha256" in dict(parse_qsl(signed.raw_query))["X-Amz-SignedHeaders"]
    assert sigv4_query.verify(signed, secret_for, now()) == AK
    tampered = dataclasses.replace(signed, body_sha256=sha(b"other"))
    assert _code(sigv4_query.verify, tampered) == "XAmzContentSHA256Mismatch"


def test_sigv4_expiry_window() -> None:
    signed = _v4_signed(expires=60)
    verify = sigv4_query.verify
    assert verify(signed, secret_for, now() + timedelta(seconds=50)) == AK
    assert _error(verify, signed, at=now() + timedelta(seconds=70)) == (
        "AccessDenied",
        "Request has expired",
    )
    # Signed by a clock a little ahead of ours: accepted inside the skew, refused beyond it.
    assert verify(signed, secret_for, now() - timedelta(minutes=14)) == AK
    assert _error(verify, signed, at=now() - timedelta(minutes=16)) == (
        "AccessDenied",
        "Request is not valid yet",
    )


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("X-Amz-Expires", "604801", "AuthorizationQueryParametersError"),
        ("X-Amz-Expires", "0", "AuthorizationQueryParametersError"),
        ("X-Amz-Expires", "-5", "AuthorizationQueryParametersError"),
        ("X-Amz-Expires", "1e3", "AuthorizationQueryParametersError"),
        ("X-Amz-Expires", "9" * 5000, "AuthorizationQueryParametersError"),
        ("X-Amz-SignedHeaders", "x-amz-date", "AuthorizationQueryParametersError"),
        ("X-Amz-SignedHeaders", "Host", "AuthorizationQueryParametersError"),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA1", "AuthorizationQueryParametersError"),
        ("X-Amz-Credential", f"{AK}/20260101/us-east-1/s3", "AuthorizationQueryParametersError"),
        (
            "X-Amz-Credential",
            f"{AK}/20000101/us-east-1/s3/aws4_request",
            "AuthorizationQueryParametersError",
        ),  # date differs from X-Amz-Date
        ("X-Amz-Credential", "A" * 600, "AuthorizationQueryParametersError"),
        ("X-Amz-Date", "2026-01-01T00:00:00Z", "AuthorizationQueryParametersError"),
        ("X-Amz-Signature", "ABC", "AuthorizationQueryParametersError"),
        ("X-Amz-Signature", None, "AuthorizationQueryParametersError"),
        ("X-Amz-Date", None, "AuthorizationQueryParametersError"),
        ("X-Amz-Security-Token", "FQoGZXIvYXdzE", "InvalidArgument"),
    ],
)
def test_sigv4_bad_parameters(name: str, value: str | None, code: str) -> None:
    assert _code(sigv4_query.verify, _with_param(_v4_signed(), name, value)) == code


def test_sigv4_query_is_capped() -> None:
    signed = _v4_signed()
    huge = dataclasses.replace(signed, raw_query=signed.raw_query + "&x=" + "a" * 20_000)
    assert _code(sigv4_query.verify, huge) == "AuthorizationQueryParametersError"
    many = dataclasses.replace(signed, raw_query=signed.raw_query + "&x" * 300)
    assert _code(sigv4_query.verify, many) == "AuthorizationQueryParametersError"
    twice = dataclasses.replace(signed, raw_query=signed.raw_query + "&X-Amz-Expires=60")
    assert _code(sigv4_query.verify, twice) == "AuthorizationQueryParametersError"


def test_v2_tampering_wrong_secret_and_expiry() -> None:
    signed = _v2_signed(path="/images/disk/a.img?uploadId=U&partNumber=1")
    verify = s3v2.verify_query
    assert verify(signed, secret_for, now()) == AK
    # The three auth parameters are not part of the signed resource, wherever they are placed.
    query = "&".join(sorted(signed.raw_query.split("&"), reverse=True))
    assert verify(dataclasses.replace(signed, raw_query=query), secret_for, now()) == AK
    assert _code(verify, signed, secrets=wrong_secret) == "SignatureDoesNotMatch"
    assert _code(verify, signed, secrets=lambda ak: None) == "InvalidAccessKeyId"
    assert _code(verify, dataclasses.replace(signed, raw_path="/images/disk/b.img")) == (
        "SignatureDoesNotMatch"
    )
    assert _code(verify, dataclasses.replace(signed, method="PUT")) == "SignatureDoesNotMatch"
    assert _code(verify, _with_param(signed, "partNumber", "2")) == "SignatureDoesNotMatch"
    later = str(int(dict(parse_qsl(signed.raw_query))["Expires"]) + 3600)
    assert _code(verify, _with_param(signed, "Expires", later)) == "SignatureDoesNotMatch"
    assert _error(verify, signed, at=now() + timedelta(hours=2)) == (
        "AccessDenied",
        "Request has expired",
    )
    assert _code(verify, _with_param(signed, "Expires", "tomorrow")) == "AccessDenied"
    assert _code(verify, _with_param(signed, "Expires", "9" * 40)) == "AccessDenied"
    assert _code(verify, _with_param(signed, "Signature", None)) == "AccessDenied"
    assert _code(verify, _with_param(signed, "Signature", "short")) == "SignatureDoesNotMatch"
    assert _code(verify, _with_param(signed, "AWSAccessKeyId", "A" * 200)) == (
        "AuthorizationHeaderMalformed"
    )


def test_v2_far_expiry_is_accepted() -> None:
    """Unlike SigV4's week, a v2 URL may last longer (S3 accepts it; ``s3cmd signurl +N``)."""
    signed = _v2_signed(expires=365 * 24 * 3600)
    assert s3v2.verify_query(signed, secret_for, now() + timedelta(days=300)) == AK


def test_v2_headers_moved_to_the_query_are_signed() -> None:
    """botocore's v2 presigner moves Content-Type and x-amz-* headers into the query."""
    headers = {"Content-Type": "application/x-qemu-disk", "x-amz-meta-purpose": "test"}
    signed = _v2_signed("PUT", "/images/disk.qcow2", headers=headers)
    assert "content-type=" in signed.raw_query and "x-amz-meta-purpose=" in signed.raw_query
    assert s3v2.verify_query(signed, secret_for, now()) == AK
    assert _code(s3v2.verify_query, _with_param(signed, "x-amz-meta-purpose", "other")) == (
        "SignatureDoesNotMatch"
    )
    sent = {**signed.headers, "content-type": "text/plain"}  # the header wins over the query
    assert _code(s3v2.verify_query, dataclasses.replace(signed, headers=sent)) == (
        "SignatureDoesNotMatch"
    )


def test_both_kinds_of_query_auth_are_refused() -> None:
    v2 = _v2_signed()
    v4 = _v4_signed()
    with pytest.raises(SignatureError) as err:
        detect_query_scheme(v4.raw_query + "&" + v2.raw_query)
    assert err.value.code == "InvalidArgument"
    assert detect_query_scheme("list-type=2&prefix=Signature") is None


def test_sigv4_unsigned_amz_headers_are_refused() -> None:
    """The holder of a presigned PUT may not add an unsigned ``x-amz-copy-source`` (turning
    the upload into a copy of another object) or any other x-amz-/x-obs- header, as S3 says."""
    signed = _v4_signed("PUT", "/images/upload.img")
    assert sigv4_query.verify(signed, secret_for, now()) == AK
    for name in ("x-amz-copy-source", "x-obs-copy-source", "x-amz-meta-owner"):
        added = {**signed.headers, name: "images/private.img"}
        code, message = _error(sigv4_query.verify, dataclasses.replace(signed, headers=added))
        assert code == "AccessDenied" and name in message
    meta = {"x-amz-meta-owner": "me"}
    with_meta = _v4_signed("PUT", "/images/upload.img", headers=meta)
    assert sigv4_query.verify(with_meta, secret_for, now()) == AK


def test_v2_encoded_sub_resource_names_are_signed() -> None:
    """``part%4Eumber`` is ``partNumber`` to the API: it must be part of the signed resource,
    or a presigned PUT of an object could upload a part of another upload of it."""
    signed = _v2_signed("PUT", "/images/upload.img")
    assert s3v2.verify_query(signed, secret_for, now()) == AK
    sneaked = dataclasses.replace(
        signed, raw_query=signed.raw_query + "&part%4Eumber=1&upload%49d=U-1"
    )
    assert _code(s3v2.verify_query, sneaked) == "SignatureDoesNotMatch"
