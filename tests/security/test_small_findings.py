"""Issue 9, finding 6 ("smaller things found on the way"), replayed against a real
``imageport serve`` with two projects, alpha and beta (one server for the whole module).

1. Numbers in headers and queries: a Range past any object, digits of other scripts, signs.
2. Multipart uploads: one-byte parts by the thousand, open uploads without end.
3. Image-API bodies: strings, booleans and floats where the vendor wants integers or booleans.
5. Bucket-API features accepted and ignored: encryption, canned ACLs, tags, checksums,
   conditional writes, versions, expected owners.
6. ``POST /v2/images`` with another project's image id, and a reused id in old job records.

(4, unreadable guest files, is in ``test_unreadable_guest_files.py``.)
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support import s3_requests
from support.e2e_clients import token_for
from support.server_process import Keys, ServeProcess, serve_process

OPEN_UPLOADS = 5
"""The server's cap on open multipart uploads per project (IMAGEPORT_PROJECT_OPEN_UPLOADS)."""
SMALL_PARTS = 16
"""Parts under 5 MiB the service lets one upload hold (multipart_uploads.MAX_SMALL_PARTS)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    old = os.environ.get("IMAGEPORT_PROJECT_OPEN_UPLOADS")
    os.environ["IMAGEPORT_PROJECT_OPEN_UPLOADS"] = str(OPEN_UPLOADS)
    try:
        with serve_process(tmp_path_factory.mktemp("small-findings")) as started:
            os.environ.pop("IMAGEPORT_PROJECT_OPEN_UPLOADS")
            yield started
    finally:
        if old is None:
            os.environ.pop("IMAGEPORT_PROJECT_OPEN_UPLOADS", None)
        else:
            os.environ["IMAGEPORT_PROJECT_OPEN_UPLOADS"] = old


# -- clients ------------------------------------------------------------------------------------

s3 = s3_requests.signed
code = s3_requests.error_code


def ims(
    server: ServeProcess,
    keys: Keys,
    method: str,
    path: str,
    *,
    json: object = None,
    content: bytes | None = None,
    content_type: str | None = None,
) -> httpx.Response:
    headers = {"X-Auth-Token": token_for(server, keys)}
    if content_type:
        headers["Content-Type"] = content_type
    return httpx.request(
        method, f"{server.ims_url}{path}", json=json, content=content, headers=headers, timeout=30
    )


def ims_code(reply: httpx.Response) -> tuple[int, str]:
    """(status, IMG code) of a reply; the code is empty for a success."""
    doc: dict[str, Any] = reply.json() if reply.content else {}
    error = doc.get("error")
    return reply.status_code, str(
        doc.get("error_code") or (error.get("code") if isinstance(error, dict) else "")
    )


def bucket_with_object(server: ServeProcess, name: str, data: bytes = b"0123456789") -> str:
    alpha = server.keys["alpha"]
    assert s3(server, alpha, "PUT", f"/{name}").status_code == 200
    assert s3(server, alpha, "PUT", f"/{name}/obj", body=data).status_code == 200
    return f"/{name}/obj"


# -- 1. numbers -----------------------------------------------------------------------------------


def test_a_range_past_any_object_is_416_not_the_whole_object(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    obj = bucket_with_object(server, "ranges")
    for huge in ("18446744073709551615", "99999999999999999999999999999999999999"):
        reply = s3(server, alpha, "GET", obj, headers={"Range": f"bytes={huge}-"})
        assert code(reply) == (416, "InvalidRange"), reply.text
        assert reply.headers["content-range"] == "bytes */10"
    # a suffix larger than the object is the whole object, as a 206 (S3's answer)
    reply = s3(server, alpha, "GET", obj, headers={"Range": "bytes=-18446744073709551615"})
    assert reply.status_code == 206 and reply.content == b"0123456789"
    # an end past the object is clipped; leading zeros are still a number
    reply = s3(server, alpha, "GET", obj, headers={"Range": "bytes=0002-99999999999999999999"})
    assert reply.status_code == 206 and reply.content == b"23456789"
    # signs and "_" are not numbers (int() reads both): the range is ignored (whole object)
    for bad in ("bytes=+3-", "bytes=1_0-", "bytes=-+3"):
        reply = s3(server, alpha, "GET", obj, headers={"Range": bad})
        assert reply.status_code == 200 and reply.content == b"0123456789", bad


def test_paging_numbers_are_ascii_digits_in_range(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    assert s3(server, alpha, "PUT", "/paging").status_code == 200
    init = s3(server, alpha, "POST", "/paging/big", query="uploads")
    upload_id = init.text.split("<UploadId>")[1].split("</UploadId>")[0]
    # "²".isdigit() is True and int("²") raises: this was a 500
    for query in (
        f"uploadId={upload_id}&max-parts=%C2%B2",
        f"uploadId={upload_id}&part-number-marker=%D9%A3",
        f"uploadId={upload_id}&max-parts=99999999999999999999",
    ):
        assert code(s3(server, alpha, "GET", "/paging/big", query=query)) == (
            400,
            "InvalidArgument",
        ), query
    for query in ("max-keys=%2B5", "max-keys=%D9%A3", "max-keys=1_000"):
        assert code(s3(server, alpha, "GET", "/paging", query=query)) == (400, "InvalidArgument"), (
            query
        )
    assert code(s3(server, alpha, "GET", "/paging", query="uploads&max-uploads=-1")) == (
        400,
        "InvalidArgument",
    )
    for number in ("%D9%A3", "%2B3", "3%20"):
        reply = s3(
            server,
            alpha,
            "PUT",
            "/paging/big",
            query=f"partNumber={number}&uploadId={upload_id}",
            body=b"x",
        )
        assert code(reply) == (400, "InvalidArgument"), number
    # a copy-source range past the object is 416, not "bad syntax"
    bucket_with_object(server, "copysrc")
    reply = s3(
        server,
        alpha,
        "PUT",
        "/paging/big",
        query=f"partNumber=1&uploadId={upload_id}",
        headers={
            "x-amz-copy-source": "/copysrc/obj",
            "x-amz-copy-source-range": "bytes=0-18446744073709551615",
        },
    )
    assert code(reply) == (416, "InvalidRange")


def test_image_list_limit_is_read_whole(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    # "000010000" was read as 10 by the range check and then used as 10000
    for limit in ("000010000", "%D9%A3", "-1", "1001"):
        reply = ims(server, alpha, "GET", f"/v2/cloudimages?limit={limit}")
        assert ims_code(reply) == (400, "IMG.0001"), limit
    assert ims(server, alpha, "GET", "/v2/cloudimages?limit=0005").status_code == 200


# -- 2. multipart costs ---------------------------------------------------------------------------


def test_one_byte_parts_are_capped_per_upload(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    assert s3(server, alpha, "PUT", "/tiny").status_code == 200
    init = s3(server, alpha, "POST", "/tiny/parts", query="uploads")
    upload_id = init.text.split("<UploadId>")[1].split("</UploadId>")[0]
    for number in range(1, SMALL_PARTS + 1):
        reply = s3(
            server,
            alpha,
            "PUT",
            "/tiny/parts",
            query=f"partNumber={number}&uploadId={upload_id}",
            body=b"x",
        )
        assert reply.status_code == 200, reply.text
    # replacing a small part is fine; a new one is refused before its body is stored
    assert (
        s3(
            server,
            alpha,
            "PUT",
            "/tiny/parts",
            query=f"partNumber=1&uploadId={upload_id}",
            body=b"y",
        ).status_code
        == 200
    )
    reply = s3(
        server,
        alpha,
        "PUT",
        "/tiny/parts",
        query=f"partNumber={SMALL_PARTS + 1}&uploadId={upload_id}",
        body=b"x",
    )
    assert code(reply) == (400, "EntityTooSmall")
    folder = server.data_dir / "uploads" / upload_id
    assert len(list(folder.iterdir())) <= SMALL_PARTS
    listed = s3(server, alpha, "GET", "/tiny/parts", query=f"uploadId={upload_id}")
    assert listed.text.count("<Part>") == SMALL_PARTS
    assert (
        s3(server, alpha, "DELETE", "/tiny/parts", query=f"uploadId={upload_id}").status_code == 204
    )


def test_open_uploads_are_capped_per_project(server: ServeProcess) -> None:
    alpha, beta = server.keys["alpha"], server.keys["beta"]
    assert s3(server, beta, "PUT", "/many-uploads").status_code == 200
    ids = []
    for n in range(OPEN_UPLOADS):
        reply = s3(server, beta, "POST", f"/many-uploads/k{n}", query="uploads")
        assert reply.status_code == 200, reply.text
        ids.append(reply.text.split("<UploadId>")[1].split("</UploadId>")[0])
    refused = s3(server, beta, "POST", "/many-uploads/one-more", query="uploads")
    assert code(refused) == (403, "QuotaExceeded")
    # the cap is per project: alpha is not affected by beta's uploads
    assert s3(server, alpha, "PUT", "/alpha-uploads").status_code == 200
    reply = s3(server, alpha, "POST", "/alpha-uploads/k", query="uploads")
    assert reply.status_code == 200
    assert (
        s3(
            server,
            alpha,
            "DELETE",
            "/alpha-uploads/k",
            query="uploadId=" + reply.text.split("<UploadId>")[1].split("</UploadId>")[0],
        ).status_code
        == 204
    )
    # aborting one frees its place
    assert (
        s3(server, beta, "DELETE", "/many-uploads/k0", query=f"uploadId={ids[0]}").status_code
        == 204
    )
    assert s3(server, beta, "POST", "/many-uploads/one-more", query="uploads").status_code == 200


# -- 3. strict image-API bodies -------------------------------------------------------------------


def test_image_bodies_take_integers_and_booleans_only_as_json_types(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    bucket_with_object(server, "register", b"QFI\xfb" + bytes(600))
    base = {
        "name": "strict",
        "image_url": "register:obj",
        "min_disk": 40,
        "os_version": "Ubuntu 22.04 server 64bit",
    }
    value: object  # JSON values of every type, the wrong ones on purpose
    for field, value, expected in (
        ("min_disk", "40", "IMG.0055"),
        ("min_disk", True, "IMG.0055"),
        ("min_disk", 40.0, "IMG.0055"),
        ("min_ram", "1024", "IMG.0055"),
        ("max_ram", [1024], "IMG.0055"),
        ("is_config", "true", "IMG.0001"),
        ("is_quick_import", 1, "IMG.0001"),
        ("is_config_init", "false", "IMG.0001"),
    ):
        reply = ims(server, alpha, "POST", "/v2/cloudimages/action", json={**base, field: value})
        assert ims_code(reply) == (400, expected), (field, value, reply.text)
    glance = {"name": "strict-glance", "container_format": "bare", "disk_format": "qcow2"}
    for field, value in (
        ("min_disk", "40"),
        ("min_ram", False),
        ("protected", "true"),
        ("disk_format", ["qcow2"]),
        ("id", False),
        ("id", 0),
    ):
        reply = ims(server, alpha, "POST", "/v2/images", json={**glance, field: value})
        assert reply.status_code == 400, (field, value, reply.status_code, reply.text)
    # what the SDKs send still works: PATCH values are strings in the vendor's SDK
    created = ims(server, alpha, "POST", "/v2/images", json={**glance, "min_disk": 40})
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    patched = ims(
        server,
        alpha,
        "PATCH",
        f"/v2/images/{image_id}",
        content=b'[{"op":"replace","path":"/min_ram","value":"2048"}]',
        content_type="application/openstack-images-v2.1-json-patch",
    )
    assert patched.status_code == 200 and patched.json()["min_ram"] == 2048, patched.text
    assert ims(server, alpha, "DELETE", f"/v2/images/{image_id}").status_code == 204


# -- 5. features that were accepted and ignored ----------------------------------------------


def test_encryption_acl_tagging_and_lock_headers_are_refused(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    assert s3(server, alpha, "PUT", "/features").status_code == 200
    key = base64.b64encode(b"k" * 32).decode()
    key_md5 = base64.b64encode(hashlib.md5(b"k" * 32).digest()).decode()  # noqa: S324
    sse_c = {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": key,
        "x-amz-server-side-encryption-customer-key-md5": key_md5,
    }
    refused: list[tuple[str, str, str, dict[str, str]]] = [
        ("PUT", "/features/a", "", {"x-amz-server-side-encryption": "AES256"}),
        (
            "PUT",
            "/features/a",
            "",
            {
                "x-amz-server-side-encryption": "aws:kms",
                "x-amz-server-side-encryption-aws-kms-key-id": "k1",
            },
        ),
        ("PUT", "/features/a", "", sse_c),
        ("PUT", "/features/a", "", {"x-obs-server-side-encryption": "kms"}),
        ("PUT", "/features/a", "", {"x-amz-acl": "public-read"}),
        ("PUT", "/features/a", "", {"x-obs-acl": "public-read-write"}),
        (
            "PUT",
            "/features/a",
            "",
            {"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'},
        ),
        ("PUT", "/features/a", "", {"x-amz-tagging": "secret=yes"}),
        (
            "PUT",
            "/features/a",
            "",
            {
                "x-amz-object-lock-mode": "COMPLIANCE",
                "x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00Z",
            },
        ),
        ("PUT", "/features/a", "", {"x-amz-website-redirect-location": "/elsewhere"}),
        ("PUT", "/features/a", "", {"x-amz-checksum-crc32c": "AAAAAA=="}),
        ("PUT", "/features/a", "", {"If-Unmodified-Since": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        ("PUT", "/features/a", "", {"Cache-Control": "max-age=60"}),
        ("PUT", "/features/a", "", {"Content-Disposition": "attachment"}),
        ("PUT", "/features/a", "", {"Content-Encoding": "gzip"}),
        ("POST", "/features/mp", "uploads", {"x-amz-server-side-encryption": "AES256"}),
        ("POST", "/features/mp", "uploads", {"x-amz-acl": "authenticated-read"}),
        ("PUT", "/features-public", "", {"x-amz-acl": "public-read"}),
        ("PUT", "/features-locked", "", {"x-amz-bucket-object-lock-enabled": "true"}),
        (
            "PUT",
            "/features/copy",
            "",
            {"x-amz-copy-source": "/features/plain", "x-amz-server-side-encryption": "AES256"},
        ),
        (
            "PUT",
            "/features/copy",
            "",
            {
                "x-amz-copy-source": "/features/plain",
                "x-amz-copy-source-server-side-encryption-customer-algorithm": "AES256",
            },
        ),
        ("GET", "/features/plain", "", sse_c),
        ("HEAD", "/features/plain", "", sse_c),
    ]
    assert s3(server, alpha, "PUT", "/features/plain", body=b"plain").status_code == 200
    for method, path, query, headers in refused:
        reply = s3(
            server,
            alpha,
            method,
            path,
            query=query,
            headers=headers,
            body=b"data"
            if method == "PUT" and "x-amz-copy-source" not in headers and path.count("/") > 1
            else b"",
        )
        assert reply.status_code == 501, (method, path, headers, reply.status_code, reply.text)
        if method != "HEAD":
            assert code(reply) == (501, "NotImplemented")
            assert "<Header>" in reply.text
    # the same header signed into a presigned URL's query (S3 reads it as a header)
    reply = s3(server, alpha, "PUT", "/features/a", query="x-amz-acl=public-read", body=b"d")
    assert code(reply) == (501, "NotImplemented")
    # nothing was stored or created by a refused request
    assert code(s3(server, alpha, "GET", "/features/a")) == (404, "NoSuchKey")
    assert code(s3(server, alpha, "HEAD", "/features-public"))[0] == 404
    # private (rclone sends it on bucket creation) and its equivalents are what we do
    assert (
        s3(server, alpha, "PUT", "/features-private", headers={"x-amz-acl": "private"}).status_code
        == 200
    )
    for acl in ("private", "bucket-owner-full-control", "bucket-owner-read"):
        reply = s3(server, alpha, "PUT", "/features/private", body=b"p", headers={"x-amz-acl": acl})
        assert reply.status_code == 200, (acl, reply.text)


def test_checksums_conditions_versions_and_owners_are_honoured(server: ServeProcess) -> None:
    alpha = server.keys["alpha"]
    assert s3(server, alpha, "PUT", "/honoured").status_code == 200
    data = b"checked bytes"
    good = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    bad = base64.b64encode((zlib.crc32(data) ^ 1).to_bytes(4, "big")).decode()
    assert code(
        s3(server, alpha, "PUT", "/honoured/c", body=data, headers={"x-amz-checksum-crc32": bad})
    ) == (400, "BadDigest")
    assert code(s3(server, alpha, "GET", "/honoured/c")) == (404, "NoSuchKey")
    sha_bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    assert code(
        s3(
            server,
            alpha,
            "PUT",
            "/honoured/c",
            body=data,
            headers={"x-amz-checksum-sha256": sha_bad},
        )
    ) == (400, "BadDigest")
    assert (
        s3(
            server, alpha, "PUT", "/honoured/c", body=data, headers={"x-amz-checksum-crc32": good}
        ).status_code
        == 200
    )
    # conditional writes: If-None-Match: * refuses to replace
    assert code(
        s3(server, alpha, "PUT", "/honoured/c", body=b"new", headers={"If-None-Match": "*"})
    ) == (412, "PreconditionFailed")
    assert s3(server, alpha, "GET", "/honoured/c").content == data
    assert (
        s3(
            server, alpha, "PUT", "/honoured/fresh", body=b"new", headers={"If-None-Match": "*"}
        ).status_code
        == 200
    )
    # copy-source conditions
    assert code(
        s3(
            server,
            alpha,
            "PUT",
            "/honoured/copy",
            headers={"x-amz-copy-source": "/honoured/c", "x-amz-copy-source-if-match": '"0000"'},
        )
    ) == (412, "PreconditionFailed")
    # versions: buckets are unversioned; only "null" names the object
    assert code(s3(server, alpha, "GET", "/honoured/c", query="versionId=abc")) == (
        400,
        "InvalidArgument",
    )
    assert s3(server, alpha, "GET", "/honoured/c", query="versionId=null").content == data
    assert code(s3(server, alpha, "DELETE", "/honoured/c", query="versionId=abc")) == (
        400,
        "InvalidArgument",
    )
    assert s3(server, alpha, "GET", "/honoured/c").status_code == 200
    # expected bucket owner: the owner ID is the project id
    assert code(
        s3(
            server,
            alpha,
            "GET",
            "/honoured/c",
            headers={"x-amz-expected-bucket-owner": "123456789012"},
        )
    ) == (403, "AccessDenied")
    assert (
        s3(
            server,
            alpha,
            "GET",
            "/honoured/c",
            headers={"x-amz-expected-bucket-owner": alpha.project_id},
        ).status_code
        == 200
    )
    # response-* overrides set the reply's headers (they were signed and ignored)
    reply = s3(
        server,
        alpha,
        "GET",
        "/honoured/c",
        query="response-content-type=text%2Fplain&response-content-disposition="
        "attachment%3B%20filename%3Dc.txt",
    )
    assert reply.headers["content-type"] == "text/plain"
    assert reply.headers["content-disposition"] == "attachment; filename=c.txt"
    assert code(
        s3(
            server,
            alpha,
            "GET",
            "/honoured/c",
            query="response-content-type=a%0D%0AX-Injected%3A%201",
        )
    ) == (400, "InvalidArgument")


# -- 6. ids of another project ----------------------------------------------------------------


def test_another_projects_image_id_answers_as_ones_own(server: ServeProcess) -> None:
    alpha, beta = server.keys["alpha"], server.keys["beta"]
    body = {"container_format": "bare", "disk_format": "qcow2"}
    mine = ims(server, beta, "POST", "/v2/images", json={**body, "name": "beta-own"})
    theirs = ims(server, alpha, "POST", "/v2/images", json={**body, "name": "alpha-own"})
    assert mine.status_code == theirs.status_code == 201
    own_id, other_id = mine.json()["id"], theirs.json()["id"]
    replies = [
        ims(server, beta, "POST", "/v2/images", json={**body, "name": f"n{i}", "id": i_d})
        for i, i_d in enumerate((own_id, other_id))
    ]
    assert [r.status_code for r in replies] == [409, 409]
    texts = [r.text.replace(i_d, "ID") for r, i_d in zip(replies, (own_id, other_id), strict=True)]
    assert texts[0] == texts[1], "the answer tells whose id it is"
    assert "exist" not in texts[1], "the answer says an image exists where GET says 404"
    assert ims(server, beta, "GET", f"/v2/images/{other_id}").status_code == 404
    for image_id in (own_id, other_id):
        owner = beta if image_id == own_id else alpha
        assert ims(server, owner, "DELETE", f"/v2/images/{image_id}").status_code == 204


def test_a_reused_id_does_not_show_in_old_jobs(server: ServeProcess) -> None:
    """alpha's finished job names its image; once alpha deleted the image, beta may create an
    image with that id (Glance clients choose ids): alpha's job must not show beta's name."""
    alpha, beta = server.keys["alpha"], server.keys["beta"]
    bucket_with_object(server, "reuse", b"not an image at all" * 100)
    body = {"container_format": "bare", "disk_format": "qcow2", "name": "alpha-short-lived"}
    image_id = ims(server, alpha, "POST", "/v2/images", json=body).json()["id"]
    started = ims(
        server, alpha, "PUT", f"/v1/cloudimages/{image_id}/upload", json={"image_url": "reuse:obj"}
    )
    assert started.status_code == 200, started.text
    job_id = started.json()["job_id"]
    job_path = f"/v1/{alpha.project_id}/jobs/{job_id}"
    deadline = time.monotonic() + 120
    while ims(server, alpha, "GET", job_path).json()["status"] not in ("SUCCESS", "FAIL"):
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.2)
    assert ims(server, alpha, "DELETE", f"/v2/images/{image_id}").status_code == 204
    taken = ims(
        server,
        beta,
        "POST",
        "/v2/images",
        json={**body, "name": "beta-secret-name", "id": image_id},
    )
    assert taken.status_code == 201, taken.text
    job = ims(server, alpha, "GET", job_path).json()
    assert "beta-secret-name" not in str(job), job
    assert ims(server, beta, "DELETE", f"/v2/images/{image_id}").status_code == 204
