"""Uploads from a browser (the web console): the part size the CLI would choose, keys a browser
can send, presigned part URLs bound to the part's bytes and the session's key, and completion
from the parts the server holds."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from imageport.auth import SignedRequest, sigv4_query
from imageport.auth.errors import SignatureError
from imageport.client.upload import choose_part_size
from imageport.limits import GiB, MiB, TiB
from imageport.service.access.authn import Principal
from imageport.service.access.projects import create_key, create_project, revoke_key
from imageport.service.buckets import browser_uploads as uploads
from imageport.service.buckets import buckets as bucket_cases
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid, Unauthenticated
from imageport.service.ports import StagedFile

BASE = "http://127.0.0.1:8081"


@pytest.mark.parametrize("size", [0, 1, 5 * MiB, 100 * GiB, 1 * TiB, 5 * TiB])
@pytest.mark.parametrize("requested", [1, 5 * MiB, 16 * MiB, 64 * MiB, 10 * GiB])
def test_the_part_size_is_the_clis(size: int, requested: int) -> None:
    assert uploads.part_size_for(size, requested) == choose_part_size(size, requested)


def test_parts_cover_the_file_exactly() -> None:
    plan = uploads.plan_parts(12 * MiB + 3, 5 * MiB)
    assert [(p.number, p.size) for p in plan] == [(1, 5 * MiB), (2, 5 * MiB), (3, 2 * MiB + 3)]
    assert uploads.plan_parts(0, 5 * MiB) == [uploads.PartPlan(1, 0)]


@pytest.mark.parametrize("key", ["a/../b", "./x", "a/./b", "..", "a/.."])
def test_keys_a_browser_would_rewrite_are_refused(key: str) -> None:
    with pytest.raises(RequestInvalid, match="browser"):
        uploads.check_browser_key(key)


def test_a_key_holding_a_line_feed_is_refused_before_an_upload_starts() -> None:
    """The bucket API cannot address such a key (its route answers a plain 404 to a path with
    a line feed), so every part URL of the upload would fail: refused up front, not left as an
    upload that can never be completed."""
    with pytest.raises(RequestInvalid, match="line feed"):
        uploads.check_browser_key("dir/two\nlines.raw")


@pytest.mark.parametrize(
    "key", ["a..b", "dir/disk.raw", ".hidden", "dir//x", "disk 1.raw", "cr\rkey", "tab\tkey"]
)
def test_other_keys_are_the_bucket_apis_business(key: str) -> None:
    uploads.check_browser_key(key)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:8081", ("http", "127.0.0.1:8081")),
        ("https://obs.example.com:443/", ("https", "obs.example.com")),
        ("http://Obs.Example.com:80", ("http", "obs.example.com")),
        ("http://[::1]:8081", ("http", "[::1]:8081")),
    ],
)
def test_the_signed_host_is_the_one_a_browser_sends(url: str, base: tuple[str, str]) -> None:
    assert uploads.bucket_api_base(url) == base


class Tenant:
    def __init__(self, services: Services, name: str) -> None:
        project = create_project(services, name)
        key = create_key(services, project.id)
        self.principal = Principal(project.id, key.access_key)
        self.secret = key.secret_key
        self.bucket = f"{name}-uploads"
        bucket_cases.create_bucket(services, project.id, self.bucket)


def _sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _put_part(services: Services, upload_id: str, number: int, data: bytes, tmp: Path) -> None:
    staged = services.store.staging_path()
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(data)
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    services.store.commit_part(
        upload_id, number, StagedFile(staged, len(data), md5, hashlib.sha256(data).hexdigest())
    )


def test_part_urls_are_signed_for_the_sessions_key_and_the_parts_bytes(
    services: Services,
) -> None:
    alpha = Tenant(services, "alpha")
    pid = alpha.principal.project_id
    started = uploads.start_upload(services, pid, alpha.bucket, "dir/disk one.raw", 12 * MiB)
    assert (started.part_size, started.parts) == (16 * MiB, 1)
    digest = _sha(b"part one")

    def presign(parts: list[tuple[int, str]], who: Principal = alpha.principal) -> dict[int, str]:
        """Part URLs of alpha's upload, asked for by ``who``."""
        return uploads.presign_parts(
            services, who, BASE, alpha.bucket, started.key, started.upload_id, parts
        )

    urls = presign([(1, digest)])
    split = urlsplit(urls[1])
    assert split.path == f"/{alpha.bucket}/dir/disk%20one.raw"
    seen = SignedRequest(
        "PUT", split.path, split.query, {"host": split.netloc, "x-amz-checksum-sha256": digest}
    )
    assert sigv4_query.verify(seen, lambda ak: alpha.secret, services.clock()) == (
        alpha.principal.access_key
    )
    assert alpha.secret not in urls[1]

    beta = Tenant(services, "beta")
    with pytest.raises(NotFound):  # another project's upload is not there
        presign([(1, digest)], beta.principal)
    with pytest.raises(RequestInvalid, match="sha256"):
        presign([(1, "x")])
    with pytest.raises(RequestInvalid, match="1-16"):
        presign([(n, digest) for n in range(1, 18)])
    with pytest.raises(RequestInvalid, match="twice"):  # one URL would be dropped
        presign([(1, digest), (1, _sha(b"other bytes"))])
    revoke_key(services, alpha.principal.access_key)
    with pytest.raises(Unauthenticated):
        presign([(1, digest)])


def test_completion_waits_for_every_planned_part_at_its_size(
    services: Services, tmp_path: Path
) -> None:
    alpha = Tenant(services, "alpha")
    pid = alpha.principal.project_id
    size = 12 * MiB
    data = bytes(range(256)) * (size // 256)
    started = uploads.start_upload(services, pid, alpha.bucket, "disk.raw", size, 5 * MiB)
    assert (started.part_size, started.parts) == (5 * MiB, 3)

    def complete() -> str:
        with pytest.raises(RequestInvalid) as refused:
            uploads.complete_from_server(
                services, pid, alpha.bucket, "disk.raw", started.upload_id, size, 5 * MiB
            )
        assert refused.value.code == "InvalidPart"
        return refused.value.message

    _put_part(services, started.upload_id, 1, data[: 5 * MiB], tmp_path)
    _put_part(services, started.upload_id, 3, data[10 * MiB :], tmp_path)
    assert complete() == "part 2 is not on the server yet"
    _put_part(services, started.upload_id, 2, data[5 * MiB : 9 * MiB], tmp_path)
    assert complete() == f"part 2 has {4 * MiB} bytes on the server, {5 * MiB} expected"
    _put_part(services, started.upload_id, 2, data[5 * MiB : 10 * MiB], tmp_path)
    assert [
        p.number
        for p in uploads.stored_parts(services, pid, alpha.bucket, "disk.raw", started.upload_id)
    ] == [1, 2, 3]
    info = uploads.complete_from_server(
        services, pid, alpha.bucket, "disk.raw", started.upload_id, size, 5 * MiB
    )
    assert info.size == size
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_an_empty_file_is_one_empty_part(services: Services, tmp_path: Path) -> None:
    alpha = Tenant(services, "alpha")
    pid = alpha.principal.project_id
    started = uploads.start_upload(services, pid, alpha.bucket, "empty.raw", 0)
    assert started.parts == 1
    _put_part(services, started.upload_id, 1, b"", tmp_path)
    info = uploads.complete_from_server(
        services, pid, alpha.bucket, "empty.raw", started.upload_id, 0, started.part_size
    )
    assert info.size == 0


def test_another_projects_upload_id_is_no_upload_of_ones_own_bucket(
    services: Services, tmp_path: Path
) -> None:
    """beta names its own bucket with alpha's upload id (or its own upload with alpha's key):
    no part URL, no listing, no completion, no abort; alpha's upload is untouched."""
    alpha, beta = Tenant(services, "alpha"), Tenant(services, "beta")
    theirs = uploads.start_upload(services, alpha.principal.project_id, alpha.bucket, "d.raw", 1)
    _put_part(services, theirs.upload_id, 1, b"a", tmp_path)
    mine = uploads.start_upload(services, beta.principal.project_id, beta.bucket, "e.raw", 1)
    bid = beta.principal.project_id
    for key, upload_id in (("d.raw", theirs.upload_id), ("d.raw", mine.upload_id)):
        with pytest.raises(NotFound, match="upload"):
            uploads.presign_parts(
                services, beta.principal, BASE, beta.bucket, key, upload_id, [(1, _sha(b"a"))]
            )
        with pytest.raises(NotFound, match="upload"):
            uploads.stored_parts(services, bid, beta.bucket, key, upload_id)
        with pytest.raises(NotFound, match="upload"):
            uploads.complete_from_server(services, bid, beta.bucket, key, upload_id, 1, 5 * MiB)
        with pytest.raises(NotFound, match="upload"):
            uploads.abort_upload(services, bid, beta.bucket, key, upload_id)
    held = uploads.stored_parts(
        services, alpha.principal.project_id, alpha.bucket, "d.raw", theirs.upload_id
    )
    assert held == [uploads.PartPlan(1, 1)]


def test_a_part_url_ends_five_minutes_after_it_was_signed(services: Services) -> None:
    alpha = Tenant(services, "alpha")
    started = uploads.start_upload(services, alpha.principal.project_id, alpha.bucket, "k", 1)
    digest = _sha(b"a")
    url = uploads.presign_parts(
        services, alpha.principal, BASE, alpha.bucket, "k", started.upload_id, [(1, digest)]
    )[1]
    split = urlsplit(url)
    seen = SignedRequest(
        "PUT", split.path, split.query, {"host": split.netloc, "x-amz-checksum-sha256": digest}
    )
    signed_at = sigv4_query.parse_query_auth(split.query).signed_at  # X-Amz-Date
    last = signed_at + timedelta(seconds=uploads.PART_URL_SECONDS)
    assert sigv4_query.verify(seen, lambda ak: alpha.secret, last)
    with pytest.raises(SignatureError, match="expired"):
        sigv4_query.verify(seen, lambda ak: alpha.secret, last + timedelta(seconds=1))
