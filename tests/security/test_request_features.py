"""Issue 9, finding 6, second round: bucket-API request features that were still accepted and
ignored, replayed against a real ``imageport serve`` (one server for the module).

A client that sends one of these believes it took effect: a conditional delete that deletes
anyway, a part number answered with the whole object, a copy that was meant to be partial or to
change the storage class, an append that overwrites. Each is now honoured, or refused with
S3's own 400 or with 501 ``NotImplemented`` naming what is not offered.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import quote

import httpx
import pytest

from support import s3_requests
from support.server_process import Keys, ServeProcess, serve_process

PART = 5 * 1024 * 1024
"""The smallest part but the last (S3's rule)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("request-features")) as started:
        yield started


def s3(
    server: ServeProcess,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    keys: Keys | None = None,
) -> httpx.Response:
    """A SigV4-signed bucket-API request of project alpha (or of ``keys``')."""
    return s3_requests.signed(
        server, keys or server.keys["alpha"], method, path, query=query, headers=headers, body=body
    )


code = s3_requests.error_code


def bucket(server: ServeProcess, name: str, objects: dict[str, bytes]) -> None:
    assert s3(server, "PUT", f"/{name}").status_code == 200
    for key, data in objects.items():
        assert s3(server, "PUT", f"/{name}/{key}", body=data).status_code == 200


def exists(server: ServeProcess, path: str) -> bool:
    status = s3(server, "HEAD", path).status_code
    assert status in (200, 404)
    return status == 200


def delete_body(*objects: str) -> tuple[bytes, dict[str, str]]:
    body = f"<Delete>{''.join(objects)}</Delete>".encode()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324 - Content-MD5
    return body, {"Content-MD5": md5}


# -- conditional deletes ------------------------------------------------------------------------


def test_delete_object_honours_its_conditions(server: ServeProcess) -> None:
    bucket(server, "cond-delete", {"a": b"v1", "b": b"v1", "c": b"v1", "d": b"v1"})
    head = s3(server, "HEAD", "/cond-delete/a")
    etag, modified = head.headers["etag"], head.headers["last-modified"]
    modified_c = s3(server, "HEAD", "/cond-delete/c").headers["last-modified"]
    wrong_time = format_datetime(parsedate_to_datetime(modified).replace(year=2001), usegmt=True)
    refused = [
        ("a", {"If-Match": '"00000000000000000000000000000000"'}),
        ("b", {"x-amz-if-match-size": "999"}),
        ("c", {"x-amz-if-match-last-modified-time": wrong_time}),
        ("d", {"If-Match": etag, "x-amz-if-match-size": "3"}),
    ]
    for key, headers in refused:
        reply = s3(server, "DELETE", f"/cond-delete/{key}", headers=headers)
        assert code(reply) == (412, "PreconditionFailed"), (headers, reply.text)
        assert exists(server, f"/cond-delete/{key}"), headers
    # conditions a DELETE does not have in S3 are refused, not dropped
    for headers in ({"If-None-Match": etag}, {"If-Unmodified-Since": modified}):
        assert code(s3(server, "DELETE", "/cond-delete/a", headers=headers)) == (
            501,
            "NotImplemented",
        )
        assert exists(server, "/cond-delete/a")
    assert code(s3(server, "DELETE", "/cond-delete/a", headers={"x-amz-if-match-size": "ten"})) == (
        400,
        "InvalidArgument",
    )
    # the right values delete
    assert s3(server, "DELETE", "/cond-delete/a", headers={"If-Match": etag}).status_code == 204
    assert (
        s3(server, "DELETE", "/cond-delete/b", headers={"x-amz-if-match-size": "2"}).status_code
        == 204
    )
    assert (
        s3(
            server,
            "DELETE",
            "/cond-delete/c",
            headers={"x-amz-if-match-last-modified-time": modified_c},
        ).status_code
        == 204
    )
    assert s3(server, "DELETE", "/cond-delete/d", headers={"If-Match": "*"}).status_code == 204
    assert not any(exists(server, f"/cond-delete/{k}") for k in "abcd")
    # If-Match on a missing key is 404 (S3's answer); without it, deleting nothing is 204
    assert code(s3(server, "DELETE", "/cond-delete/a", headers={"If-Match": etag})) == (
        404,
        "NoSuchKey",
    )
    assert s3(server, "DELETE", "/cond-delete/a").status_code == 204


def test_delete_objects_honours_each_entrys_conditions(server: ServeProcess) -> None:
    bucket(
        server, "cond-multi", {"keep": b"one", "keep2": b"two", "go": b"three", "keep3": b"four"}
    )
    etag = s3(server, "HEAD", "/cond-multi/go").headers["etag"]
    body, headers = delete_body(
        '<Object><Key>keep</Key><ETag>"0000"</ETag></Object>',
        "<Object><Key>keep2</Key><Size>999</Size></Object>",
        "<Object><Key>keep3</Key><LastModifiedTime>2001-01-01T00:00:00Z</LastModifiedTime>"
        "</Object>",
        f"<Object><Key>go</Key><ETag>{etag.replace(chr(34), '&quot;')}</ETag><Size>5</Size>"
        "</Object>",
        '<Object><Key>missing</Key><ETag>"0000"</ETag></Object>',
    )
    reply = s3(server, "POST", "/cond-multi", query="delete", headers=headers, body=body)
    assert reply.status_code == 200, reply.text
    errors = dict(re.findall(r"<Error><Key>([^<]*)</Key><Code>([^<]*)</Code>", reply.text))
    assert errors == {
        "keep": "PreconditionFailed",
        "keep2": "PreconditionFailed",
        "keep3": "PreconditionFailed",
        "missing": "NoSuchKey",
    }
    assert re.findall(r"<Deleted><Key>([^<]*)</Key>", reply.text) == ["go"]
    assert [exists(server, f"/cond-multi/{k}") for k in ("keep", "keep2", "keep3", "go")] == [
        True,
        True,
        True,
        False,
    ]
    # a version other than "null" names nothing in an unversioned bucket
    body, headers = delete_body("<Object><Key>keep</Key><VersionId>v7</VersionId></Object>")
    reply = s3(server, "POST", "/cond-multi", query="delete", headers=headers, body=body)
    assert "<Error><Key>keep</Key><Code>InvalidArgument</Code>" in reply.text, reply.text
    assert exists(server, "/cond-multi/keep")


# -- part numbers on GET and HEAD ---------------------------------------------------------------


def test_part_numbers_are_answered_or_refused(server: ServeProcess) -> None:
    bucket(server, "parts", {"simple": b"0123456789"})
    reply = s3(server, "GET", "/parts/simple", query="partNumber=1")
    assert reply.status_code == 206 and reply.content == b"0123456789"
    assert reply.headers["content-range"] == "bytes 0-9/10"
    for method in ("GET", "HEAD"):
        reply = s3(server, method, "/parts/simple", query="partNumber=3")
        assert reply.status_code == 416, (method, reply.status_code)
        assert reply.content == b"" or code(reply) == (416, "InvalidPartNumber")
    assert code(s3(server, "GET", "/parts/simple", query="partNumber=0")) == (
        400,
        "InvalidArgument",
    )
    assert code(
        s3(server, "GET", "/parts/simple", query="partNumber=1", headers={"Range": "bytes=0-1"})
    ) == (400, "InvalidRequest")
    # a two-part object: its part boundaries are not kept, so no part is answered as the whole
    init = s3(server, "POST", "/parts/multi", query="uploads")
    upload = re.search(r"<UploadId>([^<]+)</UploadId>", init.text)
    assert upload is not None, init.text
    etags = []
    for number, data in ((1, b"a" * PART), (2, b"tail")):
        put = s3(
            server,
            "PUT",
            "/parts/multi",
            body=data,
            query=f"partNumber={number}&uploadId={upload.group(1)}",
        )
        assert put.status_code == 200, put.text
        etags.append(put.headers["etag"])
    parts = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags, 1)
    )
    done = s3(
        server,
        "POST",
        "/parts/multi",
        query=f"uploadId={upload.group(1)}",
        body=f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode(),
    )
    assert done.status_code == 200, done.text
    for number in (1, 2):
        reply = s3(server, "GET", "/parts/multi", query=f"partNumber={number}")
        assert code(reply) == (501, "NotImplemented"), reply.status_code
        assert s3(server, "HEAD", "/parts/multi", query=f"partNumber={number}").status_code == 501
    reply = s3(server, "GET", "/parts/multi", query="partNumber=3")
    assert code(reply) == (416, "InvalidPartNumber")


# -- CopyObject ---------------------------------------------------------------------------------


def test_copy_object_refuses_what_s3_refuses(server: ServeProcess) -> None:
    bucket(server, "copies", {"src": b"hello world"})
    refused = [
        ({"x-amz-copy-source-range": "bytes=0-0"}, "InvalidArgument"),
        ({"x-amz-metadata-directive": "BOGUS"}, "InvalidArgument"),
        ({"x-amz-tagging-directive": "BOGUS"}, "InvalidArgument"),
    ]
    for headers, wanted in refused:
        reply = s3(
            server, "PUT", "/copies/copy", headers={"x-amz-copy-source": "/copies/src", **headers}
        )
        assert code(reply) == (400, wanted), (headers, reply.text)
        assert not exists(server, "/copies/copy"), headers
    # no tags are kept, so a copy without tags is what both directives ask for
    for directive in ("COPY", "REPLACE"):
        assert (
            s3(
                server,
                "PUT",
                "/copies/copy",
                headers={"x-amz-copy-source": "/copies/src", "x-amz-tagging-directive": directive},
            ).status_code
            == 200
        )


def test_copy_object_applies_the_storage_class(server: ServeProcess) -> None:
    bucket(server, "classes", {"src": b"hello world"})

    def storage_class(key: str) -> str:
        return s3(server, "HEAD", f"/classes/{key}").headers["x-amz-storage-class"]

    assert storage_class("src") == "STANDARD"
    reply = s3(
        server,
        "PUT",
        "/classes/copy",
        headers={"x-amz-copy-source": "/classes/src", "x-amz-storage-class": "STANDARD_IA"},
    )
    assert reply.status_code == 200, reply.text
    assert storage_class("copy") == "STANDARD_IA"
    # onto itself: the same class and nothing else changed is S3's 400; a new class is a change
    for headers in ({}, {"x-amz-storage-class": "STANDARD_IA"}):
        reply = s3(
            server,
            "PUT",
            "/classes/copy",
            headers={"x-amz-copy-source": "/classes/copy", **headers},
        )
        assert code(reply) == (400, "InvalidRequest"), headers
    reply = s3(
        server,
        "PUT",
        "/classes/copy",
        headers={"x-amz-copy-source": "/classes/copy", "x-amz-storage-class": "GLACIER"},
    )
    assert reply.status_code == 200, reply.text
    assert storage_class("copy") == "GLACIER"
    assert s3(server, "GET", "/classes/copy").content == b"hello world"


# -- headers asking for features this service does not have --------------------------------------


def test_unknown_and_unoffered_headers_are_refused(server: ServeProcess) -> None:
    bucket(server, "unoffered", {"app": b"ab"})
    refused: list[tuple[str, str, str, dict[str, str], bytes]] = [
        ("PUT", "/unoffered/app", "", {"x-amz-write-offset-bytes": "2"}, b"zz"),
        ("PUT", "/unoffered/exp", "", {"x-obs-expires": "1"}, b"x"),
        ("PUT", "/unoffered/x", "", {"x-amz-checksum-xxhash64": "AAAAAAAAAAA="}, b"x"),
        ("PUT", "/unoffered/x", "", {"x-amz-sdk-checksum-algorithm": "XXHASH3"}, b"x"),
        ("PUT", "/unoffered/x", "", {"x-amz-some-future-feature": "on"}, b"x"),
        (
            "PUT",
            "/unoffered/x",
            "",
            {"x-amz-copy-source": "/unoffered/app", "x-amz-object-annotation-directive": "REPLACE"},
            b"",
        ),
        (
            "POST",
            "/unoffered/mp",
            "uploads",
            {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-type": "FULL_OBJECT"},
            b"",
        ),
        (
            "GET",
            "/unoffered",
            "list-type=2",
            {"x-amz-optional-object-attributes": "RestoreStatus"},
            b"",
        ),
        ("GET", "/unoffered/app", "", {"x-amz-object-attributes": "ETag"}, b""),
        ("PUT", "/unoffered-ns", "", {"x-amz-bucket-namespace": "account-regional"}, b""),
        ("PUT", "/unoffered-epid", "", {"x-obs-epid": "0"}, b""),
    ]
    for method, path, query, headers, body in refused:
        reply = s3(server, method, path, query=query, headers=headers, body=body)
        assert code(reply) == (501, "NotImplemented"), (headers, reply.status_code, reply.text)
        assert f"<Header>{next(iter(headers)).lower()}</Header>" in reply.text or len(headers) > 1
    assert s3(server, "GET", "/unoffered/app").content == b"ab"  # not overwritten
    assert not exists(server, "/unoffered/exp")
    assert code(s3(server, "HEAD", "/unoffered-ns"))[0] == 404
    # what real clients send keeps working: boto3's ranged GET with checksum mode
    reply = s3(
        server,
        "GET",
        "/unoffered/app",
        headers={"Range": "bytes=0-0", "x-amz-checksum-mode": "ENABLED"},
    )
    assert reply.status_code == 206 and reply.content == b"a"


def test_more_checksums_are_verified(server: ServeProcess) -> None:
    bucket(server, "sums", {})
    data = b"summed"
    for name, digest in (
        ("md5", hashlib.md5(data).digest()),  # noqa: S324 - S3's MD5
        ("sha512", hashlib.sha512(data).digest()),
    ):
        bad = base64.b64encode(bytes(len(digest))).decode()
        reply = s3(server, "PUT", "/sums/k", body=data, headers={f"x-amz-checksum-{name}": bad})
        assert code(reply) == (400, "BadDigest"), name
        good = base64.b64encode(digest).decode()
        assert (
            s3(
                server, "PUT", "/sums/k", body=data, headers={f"x-amz-checksum-{name}": good}
            ).status_code
            == 200
        )


# -- conditions where S3 has none, and the other documented parameters -----------------------------


def test_conditions_are_refused_where_they_are_not_honoured(server: ServeProcess) -> None:
    bucket(server, "where", {"obj": b"x"})
    init = s3(server, "POST", "/where/mp", query="uploads")
    upload = re.search(r"<UploadId>([^<]+)</UploadId>", init.text)
    assert upload is not None
    ident = upload.group(1)
    refused = [
        ("PUT", "/where/mp", f"partNumber=1&uploadId={ident}", {"If-None-Match": "*"}, b"p"),
        ("PUT", "/where/mp", f"partNumber=1&uploadId={ident}", {"If-Match": '"00"'}, b"p"),
        ("POST", "/where/mp2", "uploads", {"If-None-Match": "*"}, b""),
        (
            "POST",
            "/where/mp",
            f"uploadId={ident}",
            {"If-Modified-Since": "Wed, 21 Oct 2015 07:28:00 GMT"},
            b"<CompleteMultipartUpload/>",
        ),
        (
            "POST",
            "/where/mp",
            f"uploadId={ident}",
            {"If-None-Match": '"abc"'},
            b"<CompleteMultipartUpload/>",
        ),
        ("GET", "/where", "", {"If-None-Match": "*"}, b""),
    ]
    for method, path, query, headers, body in refused:
        reply = s3(server, method, path, query=query, headers=headers, body=body)
        assert code(reply) == (501, "NotImplemented"), (method, query, headers, reply.text)


def test_if_range_sends_the_whole_object_when_it_changed(server: ServeProcess) -> None:
    bucket(server, "ifrange", {"obj": b"0123456789"})
    head = s3(server, "HEAD", "/ifrange/obj")
    reply = s3(
        server,
        "GET",
        "/ifrange/obj",
        headers={"Range": "bytes=0-1", "If-Range": head.headers["etag"]},
    )
    assert reply.status_code == 206 and reply.content == b"01"
    reply = s3(
        server,
        "GET",
        "/ifrange/obj",
        headers={"Range": "bytes=0-1", "If-Range": '"another-version"'},
    )
    assert reply.status_code == 200 and reply.content == b"0123456789"
    reply = s3(
        server,
        "GET",
        "/ifrange/obj",
        headers={"Range": "bytes=0-1", "If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )
    assert reply.status_code == 200 and reply.content == b"0123456789"
    reply = s3(server, "HEAD", "/ifrange/obj", headers={"Range": "bytes=0-1"})
    assert reply.status_code == 206 and reply.headers["content-length"] == "2"


def test_list_parameters_are_honoured(server: ServeProcess) -> None:
    for name in ("lists-a1", "lists-a2", "lists-b1"):
        assert s3(server, "PUT", f"/{name}").status_code == 200
    reply = s3(server, "GET", "/", query="prefix=lists-a")
    assert re.findall(r"<Name>([^<]*)</Name>", reply.text) == ["lists-a1", "lists-a2"]
    reply = s3(server, "GET", "/", query="prefix=lists-&max-buckets=2")
    assert re.findall(r"<Name>([^<]*)</Name>", reply.text) == ["lists-a1", "lists-a2"]
    token = re.search(r"<ContinuationToken>([^<]*)</ContinuationToken>", reply.text)
    assert token is not None, reply.text
    reply = s3(
        server,
        "GET",
        "/",
        query=f"prefix=lists-&max-buckets=2&continuation-token={quote(token.group(1), safe='')}",
    )
    assert re.findall(r"<Name>([^<]*)</Name>", reply.text) == ["lists-b1"], reply.text
    assert "<ContinuationToken>" not in reply.text
    reply = s3(server, "GET", "/", query="prefix=lists-&bucket-region=elsewhere-1")
    assert re.findall(r"<Name>([^<]*)</Name>", reply.text) == []
    assert code(s3(server, "GET", "/", query="max-buckets=0")) == (400, "InvalidArgument")
    # multipart uploads listed with a delimiter and URL encoding
    for key in ("dir/one", "dir/two", "top=one"):
        reply = s3(server, "POST", f"/lists-a1/{key}", query="uploads")
        assert reply.status_code == 200, reply.text
    reply = s3(server, "GET", "/lists-a1", query="uploads&delimiter=%2F&encoding-type=url")
    assert re.findall(r"<Upload><Key>([^<]*)</Key>", reply.text) == ["top%3Done"], reply.text
    assert re.findall(r"<CommonPrefixes><Prefix>([^<]*)</Prefix>", reply.text) == ["dir/"]
    assert "<EncodingType>url</EncodingType>" in reply.text
    for query in (
        "uploads&encoding-type=base64",
        "encoding-type=base64",
        "list-type=2&encoding-type=base64",
    ):
        assert code(s3(server, "GET", "/lists-a1", query=query)) == (400, "InvalidArgument")
    upload = re.search(r"<Key>top%3Done</Key><UploadId>([^<]+)</UploadId>", reply.text)
    assert upload is not None
    reply = s3(
        server, "GET", "/lists-a1/top=one", query=f"uploadId={upload.group(1)}&encoding-type=url"
    )
    assert "<Key>top%3Done</Key>" in reply.text, reply.text
    # OBS's ListBuckets options: each bucket's location, bucket types, marker paging
    reply = s3(server, "GET", "/", query="prefix=lists-a", headers={"x-obs-location": "true"})
    assert re.findall(r"<Location>([^<]*)</Location>", reply.text) == ["local-1", "local-1"]
    reply = s3(server, "GET", "/", query="prefix=lists-", headers={"x-obs-bucket-type": "POSIX"})
    assert re.findall(r"<Name>([^<]*)</Name>", reply.text) == []
    reply = s3(server, "GET", "/", query="prefix=lists-&marker=lists-a1&max-keys=1")
    assert re.findall(r"<Name>([^<]*)</Name>", reply.text) == ["lists-a2"]
    assert "<NextMarker>lists-a2</NextMarker>" in reply.text
    # OBS image processing would answer the original image
    assert code(
        s3(server, "GET", "/unknown-bucket/obj", query="x-image-process=image%2Fresize")
    ) == (501, "NotImplemented")


def test_bucket_creation_refuses_another_region_and_directory_buckets(server: ServeProcess) -> None:
    elsewhere = (
        b"<CreateBucketConfiguration><LocationConstraint>eu-west-1"
        b"</LocationConstraint></CreateBucketConfiguration>"
    )
    assert code(s3(server, "PUT", "/elsewhere", body=elsewhere)) == (
        400,
        "IllegalLocationConstraintException",
    )
    directory = (
        b"<CreateBucketConfiguration><Location><Type>AvailabilityZone</Type>"
        b"<Name>usw2-az1</Name></Location><Bucket><Type>Directory</Type>"
        b"<DataRedundancy>SingleAvailabilityZone</DataRedundancy></Bucket>"
        b"</CreateBucketConfiguration>"
    )
    assert code(s3(server, "PUT", "/directory", body=directory)) == (501, "NotImplemented")
    tagged = (
        b"<CreateBucketConfiguration><Tags><Tag><Key>a</Key><Value>b</Value></Tag>"
        b"</Tags></CreateBucketConfiguration>"
    )
    assert code(s3(server, "PUT", "/tagged", body=tagged)) == (501, "NotImplemented")
    for name in ("elsewhere", "directory", "tagged"):
        assert s3(server, "HEAD", f"/{name}").status_code == 404
    here = (
        b"<CreateBucketConfiguration><LocationConstraint>local-1"
        b"</LocationConstraint></CreateBucketConfiguration>"
    )
    assert s3(server, "PUT", "/here", body=here).status_code == 200


def test_multipart_size_and_initiation_checks_are_honoured(server: ServeProcess) -> None:
    bucket(server, "mpchecks", {})

    def start() -> str:
        init = s3(server, "POST", "/mpchecks/obj", query="uploads")
        found = re.search(r"<UploadId>([^<]+)</UploadId>", init.text)
        assert found is not None
        return found.group(1)

    ident = start()
    put = s3(server, "PUT", "/mpchecks/obj", query=f"partNumber=1&uploadId={ident}", body=b"12345")
    complete = (
        f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"
        f"{put.headers['etag']}</ETag></Part></CompleteMultipartUpload>"
    ).encode()
    reply = s3(
        server,
        "POST",
        "/mpchecks/obj",
        query=f"uploadId={ident}",
        body=complete,
        headers={"x-amz-mp-object-size": "6"},
    )
    assert code(reply) == (400, "InvalidRequest"), reply.text
    assert not exists(server, "/mpchecks/obj")
    reply = s3(
        server,
        "POST",
        "/mpchecks/obj",
        query=f"uploadId={ident}",
        body=complete,
        headers={"x-amz-mp-object-size": "5"},
    )
    assert reply.status_code == 200, reply.text
    # a checksum of the whole object on completion is not computed here: refused
    ident = start()
    reply = s3(
        server,
        "POST",
        "/mpchecks/obj",
        query=f"uploadId={ident}",
        body=complete,
        headers={"x-amz-checksum-crc32": "AAAAAA=="},
    )
    assert code(reply) == (501, "NotImplemented")
    # abort only the upload started at the time named
    wrong = "Wed, 21 Oct 2015 07:28:00 GMT"
    reply = s3(
        server,
        "DELETE",
        "/mpchecks/obj",
        query=f"uploadId={ident}",
        headers={"x-amz-if-match-initiated-time": wrong},
    )
    assert code(reply) == (412, "PreconditionFailed")
    listed = s3(server, "GET", "/mpchecks", query="uploads")
    assert ident in listed.text
    initiated = re.search(r"<Initiated>([^<]+)</Initiated>", listed.text)
    assert initiated is not None
    when = format_datetime(
        datetime.fromisoformat(initiated.group(1).replace("Z", "+00:00")), usegmt=True
    )
    reply = s3(
        server,
        "DELETE",
        "/mpchecks/obj",
        query=f"uploadId={ident}",
        headers={"x-amz-if-match-initiated-time": when},
    )
    assert reply.status_code == 204, reply.text
