"""The SigV4 presigner (:func:`imageport.auth.sigv4_query.presign`, what the web console hands a
browser for each upload part) signs exactly as botocore's ``S3SigV4QueryAuth`` does, and its
URLs pass the verifier, with a signed checksum header binding them to one body."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from imageport.auth import SignatureError, SignedRequest, sigv4_query
from support.signers import AK, SK, now, secret_for

BASE = "http://127.0.0.1:9000"
PART = "/images/disk%20one.raw?partNumber=3&uploadId=U-1"


def _seen(method: str, url: str, headers: dict[str, str] | None = None) -> SignedRequest:
    split = urlsplit(url)
    return SignedRequest(method, split.path, split.query, {"Host": split.netloc, **(headers or {})})


def _signed_at(url: str) -> datetime:
    date = parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
    return datetime.strptime(date + "+0000", "%Y%m%dT%H%M%SZ%z")


def test_the_signature_is_botocores_for_the_same_request_and_time() -> None:
    botocore = AWSRequest(method="PUT", url=BASE + PART)
    S3SigV4QueryAuth(Credentials(AK, SK), "s3", "us-east-1", expires=300).add_auth(botocore)
    ours = sigv4_query.presign(
        "PUT", BASE + PART, AK, SK, region="us-east-1", now=_signed_at(botocore.url), expires=300
    )
    assert parse_qs(urlsplit(ours).query) == parse_qs(urlsplit(botocore.url).query)
    assert urlsplit(ours).path == urlsplit(botocore.url).path


def test_a_presigned_part_url_verifies_until_it_expires() -> None:
    url = sigv4_query.presign("PUT", BASE + PART, AK, SK, region="r", now=now(), expires=300)
    seen = _seen("PUT", url, {"Content-Length": "5"})
    assert sigv4_query.verify(seen, secret_for, now()) == AK
    with pytest.raises(SignatureError, match="expired"):
        sigv4_query.verify(seen, secret_for, now() + timedelta(seconds=301))
    other_part = dataclasses.replace(
        seen, raw_query=seen.raw_query.replace("partNumber=3", "partNumber=4")
    )
    with pytest.raises(SignatureError) as refused:
        sigv4_query.verify(other_part, secret_for, now())
    assert refused.value.code == "SignatureDoesNotMatch"


def test_a_signed_checksum_header_binds_the_url_to_one_body() -> None:
    digest = base64.b64encode(hashlib.sha256(b"part three").digest()).decode()
    url = sigv4_query.presign(
        "PUT",
        BASE + PART,
        AK,
        SK,
        region="us-east-1",
        now=now(),
        expires=300,
        headers={"x-amz-checksum-sha256": digest},
    )
    assert parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"] == ["host;x-amz-checksum-sha256"]
    assert sigv4_query.verify(
        _seen("PUT", url, {"x-amz-checksum-sha256": digest}), secret_for, now()
    )
    other = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    for headers in ({"x-amz-checksum-sha256": other}, {}):
        with pytest.raises(SignatureError) as refused:
            sigv4_query.verify(_seen("PUT", url, headers), secret_for, now())
        assert refused.value.code == "SignatureDoesNotMatch"


def test_a_validity_beyond_a_week_is_refused() -> None:
    with pytest.raises(ValueError, match="expires"):
        sigv4_query.presign("PUT", BASE + PART, AK, SK, region="r", now=now(), expires=604_801)
