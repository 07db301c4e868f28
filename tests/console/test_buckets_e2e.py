"""Buckets and uploads in the console, in Chromium against a real ``imageport serve``: creating,
browsing and deleting buckets and objects, and uploading from the browser straight to the bucket
API in parts, interrupted (a reload, a pause, a dropped connection) and resumed without sending
again the parts the server already holds."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from support import console_browser
from support.e2e_clients import s3_client
from support.import_fixtures import good_image
from support.server_process import IMAGEPORT, ServeProcess

MiB = 1024 * 1024
PART_MIB = 5
#: a file of nine 5 MiB parts, the last one short
BIG_SIZE = 41 * MiB + 12345


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw disk image made for these tests: several parts' worth of bytes that compress to
    nothing (random), so a part sent twice or put in the wrong place would show."""
    path = tmp_path_factory.mktemp("files") / "disk.raw"
    with open(path, "wb") as out:
        out.write(good_image("qcow2").read_bytes())
        out.write(os.urandom(BIG_SIZE - out.tell()))
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bucket(server: ServeProcess, project: str, name: str) -> Any:
    s3 = s3_client(server, server.keys[project])
    s3.create_bucket(Bucket=name)
    return s3


def _held_parts(s3: Any, bucket: str, key: str) -> set[int]:
    """The part numbers of ``key``'s unfinished upload that the server holds."""
    found = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    if not found:
        return set()
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=found[0]["UploadId"])
    return {part["PartNumber"] for part in parts.get("Parts", [])}


def _wait_for_parts(page: Page, s3: Any, bucket: str, key: str, least: int) -> set[int]:
    """The parts the server holds once it holds ``least`` of them (the page's events are
    served meanwhile: Playwright's sync API runs route handlers only while it is called)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        held = _held_parts(s3, bucket, key)
        if len(held) >= least:
            return held
        page.wait_for_timeout(200)
    raise AssertionError(f"the server never held {least} parts of {key}")


def _part_puts(server: ServeProcess, bucket: str, *, stored: bool = False) -> list[int]:
    """The part numbers of the part PUTs the server's access log shows for ``bucket``, in the
    order they ended (``stored``: only those answered 200)."""
    numbers = []
    for line in server.log_lines():
        if (
            line.get("api") == "s3"
            and line.get("method") == "PUT"
            and (line.get("status") == 200 or not stored)
            and str(line.get("path", "")).startswith(f"/{bucket}/")
        ):
            query = parse_qs(str(line.get("query", "")))
            if "partNumber" in query:
                numbers.append(int(query["partNumber"][0]))
    return numbers


class PartGate:
    """Sees every part PUT a page sends to the bucket API (a Playwright route) and lets through
    only those numbered up to ``limit``: the others stay pending, as on a connection that
    stalled, so an upload can be interrupted with a known set of parts on the server (the
    stalled ones never reach it). :meth:`open` takes the gate away."""

    def __init__(self, page: Page, s3_url: str, limit: int) -> None:
        self.limit = limit
        self.sent: list[int] = []
        self._page = page
        self._pattern = f"{s3_url}/**"
        page.route(self._pattern, self._route)

    def open(self) -> None:
        self._page.unroute(self._pattern)

    def _route(self, route: Route) -> None:
        request = route.request
        if request.method != "PUT":
            route.continue_()
            return
        number = int(parse_qs(urlsplit(request.url).query)["partNumber"][0])
        self.sent.append(number)
        if number <= self.limit:
            route.continue_()
        # else: left pending until the page gives up on it (a reload, a pause)


def _open_upload(page: Page, server: ServeProcess, bucket: str, project: str = "alpha") -> None:
    console_browser.sign_in(
        page, server.ims_url, server.keys[project], then=f"/console/buckets/{bucket}/upload"
    )
    expect(page.get_by_role("heading", name=f"Upload to {bucket}")).to_be_visible()


def _choose(page: Page, path: Path, *, part_mib: int | None = None) -> None:
    if part_mib is not None:
        page.get_by_text("Advanced").click()
        page.get_by_label("Part size (MiB)").fill(str(part_mib))
    page.get_by_label("Image file").set_input_files(path)


def test_buckets_are_listed_created_and_refused_at_the_field(
    server: ServeProcess, page: Page, shots: Path
) -> None:
    _bucket(server, "beta", "taken-by-beta")
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"], then="/console/buckets")
    expect(page.get_by_role("heading", name="Buckets")).to_be_visible()
    classes = page.get_by_label("Storage class")
    expect(classes.locator("option")).to_have_text(
        ["Standard (default)", "Infrequent Access (WARM)", "Archive (COLD)"]
    )
    expect(classes).to_have_value("STANDARD")
    expect(
        page.get_by_text("Images can be imported only from objects of the Standard class")
    ).to_be_visible()

    for name, code in (("Bad_Name", "InvalidBucketName"), ("taken-by-beta", "BucketAlreadyExists")):
        page.get_by_label("Bucket name").fill(name)
        page.get_by_role("button", name="Create bucket").click()
        field = page.get_by_label("Bucket name")
        expect(field).to_have_attribute("aria-invalid", "true")
        message = page.locator("#bucket-name-error")
        expect(message).to_contain_text(f"({code})")
        expect(field).to_have_attribute("aria-describedby", "bucket-name-hint bucket-name-error")
    expect(page.get_by_label("Bucket name")).to_have_value("taken-by-beta")

    page.get_by_label("Bucket name").fill("alpha-images")
    page.get_by_role("button", name="Create bucket").click()
    expect(page.get_by_role("heading", name="Bucket alpha-images")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Bucket alpha-images created.")
    page.get_by_role("link", name="All buckets").click()
    page.get_by_label("Bucket name").fill("alpha-archive")
    page.get_by_label("Storage class").select_option("COLD")
    page.get_by_role("button", name="Create bucket").click()
    page.get_by_role("link", name="All buckets").click()
    rows = page.locator("#buckets tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("alpha-archive")
    expect(rows.nth(0)).to_contain_text("Archive (COLD)")
    expect(rows.nth(1)).to_contain_text("alpha-images")
    expect(rows.nth(1)).to_contain_text("Standard")
    expect(rows.nth(1).locator("time")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
    )
    assert "taken-by-beta" not in page.content()  # another project's bucket is never listed
    console_browser.shoot(page, "buckets", shots)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete bucket alpha-archive").click()
    expect(page.get_by_role("status")).to_have_text("Bucket alpha-archive deleted.")
    expect(rows).to_have_count(1)

    page.get_by_role("link", name="简体中文").click()
    expect(page.get_by_role("heading", name="桶列表")).to_be_visible()
    expect(page.get_by_label("存储类别").locator("option").first).to_have_text("标准存储 (默认)")


def test_a_bucket_page_lists_objects_by_folder_and_deletes_with_confirmation(
    server: ServeProcess, page: Page, shots: Path
) -> None:
    s3 = _bucket(server, "alpha", "alpha-browse")
    image = good_image("qcow2")
    s3.put_object(Bucket="alpha-browse", Key="debian/disk.qcow2", Body=image.read_bytes())
    s3.put_object(Bucket="alpha-browse", Key="debian/notes.txt", Body=b"x" * 2000)
    s3.put_object(Bucket="alpha-browse", Key="readme.txt", Body=b"hello")
    for n in range(3):
        s3.put_object(Bucket="alpha-browse", Key=f"many/part-{n}.txt", Body=b"y")
    console_browser.sign_in(
        page, server.ims_url, server.keys["alpha"], then="/console/buckets/alpha-browse"
    )
    table = page.locator("#objects")
    expect(table.get_by_role("link", name="Folder debian/")).to_be_visible()
    expect(table.locator("tr", has_text="readme.txt")).to_contain_text("5 bytes")
    expect(page.get_by_role("button", name="Delete bucket")).to_be_visible()

    table.get_by_role("link", name="Folder debian/").click()
    row = page.locator("#objects tr", has_text="disk.qcow2")
    size = image.stat().st_size
    expect(row).to_contain_text(f"{size / MiB:.1f} MiB")
    expect(row.get_by_title(f"{size} bytes")).to_be_visible()
    expect(row).to_contain_text("Standard")
    expect(row.get_by_role("link", name="Check debian/disk.qcow2")).to_have_attribute(
        "href", "/console/check?bucket=alpha-browse&key=debian%2Fdisk.qcow2"
    )
    expect(
        row.get_by_role("link", name="Register debian/disk.qcow2 as an image")
    ).to_have_attribute("href", "/console/register?bucket=alpha-browse&key=debian%2Fdisk.qcow2")
    crumbs = page.get_by_role("navigation", name="Folder")
    expect(crumbs.get_by_role("link", name="debian")).to_have_attribute("aria-current", "location")
    console_browser.shoot(page, "bucket", shots)

    page.once("dialog", lambda dialog: dialog.dismiss())  # asked first; nothing happens
    page.get_by_role("button", name="Delete debian/notes.txt").click()
    expect(page.locator("#objects tr", has_text="notes.txt")).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete debian/notes.txt").click()
    expect(page.get_by_role("status")).to_have_text("Object debian/notes.txt deleted.")
    expect(page.locator("#objects tr", has_text="notes.txt")).to_have_count(0)
    assert "Contents" not in s3.list_objects_v2(Bucket="alpha-browse", Prefix="debian/notes")

    # paging by marker, the page size capped by the server
    page.goto(server.ims_url + "/console/buckets/alpha-browse?prefix=many/&max=2")
    expect(page.locator("#objects tbody tr")).to_have_count(2)
    page.get_by_role("link", name="Next page").click()
    expect(page.locator("#objects tbody tr")).to_have_count(1)
    expect(page.locator("#objects")).to_contain_text("part-2.txt")

    # a bucket that holds objects is not deleted
    page.goto(server.ims_url + "/console/buckets/alpha-browse")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete bucket").click()
    expect(page.get_by_role("alert")).to_contain_text("BucketNotEmpty")


def test_an_upload_interrupted_by_a_reload_resumes_without_sending_parts_again(
    server: ServeProcess, page: Page, big_file: Path
) -> None:
    bucket, key = "alpha-reload", "images/disk.raw"
    s3 = _bucket(server, "alpha", bucket)
    _open_upload(page, server, bucket)
    page.goto(server.ims_url + f"/console/buckets/{bucket}/upload?prefix=images/")
    gate = PartGate(page, server.s3_url, limit=3)
    _choose(page, big_file, part_mib=PART_MIB)
    expect(page.get_by_label("Object key")).to_have_value(key)
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_role("status")).to_have_text("Uploading images/disk.raw in 9 parts…")
    held = _wait_for_parts(page, s3, bucket, key, 3)
    assert held == {1, 2, 3}
    expect(page.locator("#upload-progress")).not_to_have_attribute("value", "0")

    page.reload()  # the parts in flight (four at a time: up to 4-7, held at the gate) are cut off
    assert {1, 2, 3, 4} <= set(gate.sent) <= set(range(1, 8))
    gate.open()
    assert sorted(_part_puts(server, bucket)) == [1, 2, 3]  # 4 to 7 never reached the server
    page.get_by_label("Image file").set_input_files(big_file)  # the same file again
    expect(page.get_by_role("status")).to_have_text(
        "An earlier upload of this file stopped with 3 of 9 parts on the server: "
        "Start sends only the rest."
    )
    expect(
        page.get_by_role("listitem").filter(has_text="Interrupted in this browser")
    ).to_contain_text(key)
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Uploaded {key} ({BIG_SIZE / MiB:.1f} MiB).", timeout=60_000
    )
    resumed = _part_puts(server, bucket)[3:]
    assert sorted(resumed) == [4, 5, 6, 7, 8, 9]  # 1 to 3 were not sent again
    assert sorted(_part_puts(server, bucket, stored=True)) == list(range(1, 10))
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert _sha256(got) == _sha256(big_file.read_bytes())
    expect(page.locator("#upload-progress")).to_have_attribute("value", "100")
    expect(page.get_by_role("link", name="Check it")).to_have_attribute(
        "href", f"/console/check?bucket={bucket}&key=images%2Fdisk.raw"
    )
    assert page.evaluate("localStorage.getItem('imageport.uploads.v1')") == "{}"


def test_pause_and_a_dropped_connection_resume_where_they_stopped(
    server: ServeProcess, page: Page, shots: Path, big_file: Path
) -> None:
    bucket, key = "alpha-pause", "disk.raw"
    s3 = _bucket(server, "alpha", bucket)
    _open_upload(page, server, bucket)
    gate = PartGate(page, server.s3_url, limit=2)
    _choose(page, big_file, part_mib=PART_MIB)
    page.get_by_role("button", name="Start upload").click()
    assert _wait_for_parts(page, s3, bucket, key, 2) == {1, 2}
    progress = page.locator("#upload-progress-text")
    expect(progress).to_contain_text(re.compile(r"/s · .* left"))  # speed and time left
    page.get_by_role("button", name="Pause").click()
    status = page.get_by_role("status")
    expect(status).to_have_text(
        "Paused with 2 of 9 parts on the server. Resume continues, even after this page is "
        "reloaded."
    )
    expect(page.get_by_role("button", name="Resume")).to_be_focused()
    console_browser.shoot(page, "upload", shots)
    assert {1, 2, 3} <= set(gate.sent) <= set(range(1, 7))
    gate.open()
    page.wait_for_timeout(1000)
    assert sorted(_part_puts(server, bucket)) == [1, 2]  # paused: nothing more is sent

    page.context.set_offline(True)  # the connection drops, then comes back
    page.get_by_role("button", name="Resume").click()
    expect(status).to_have_text("The connection dropped; the upload goes on when it is back.")
    page.wait_for_timeout(1000)
    assert sorted(_part_puts(server, bucket)) == [1, 2]
    page.context.set_offline(False)
    expect(status).to_have_text(f"Uploaded {key} ({BIG_SIZE / MiB:.1f} MiB).", timeout=60_000)
    assert sorted(_part_puts(server, bucket)[2:]) == [3, 4, 5, 6, 7, 8, 9]
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert _sha256(got) == _sha256(big_file.read_bytes())


def test_a_raw_images_bitmap_goes_beside_it_and_abort_deletes_the_parts(
    server: ServeProcess, page: Page, tmp_path: Path
) -> None:
    bucket = "alpha-fast"
    s3 = _bucket(server, "alpha", bucket)
    raw = tmp_path / "guest.raw"
    with open(raw, "wb") as out:
        out.truncate(64 * MiB)
        out.write(b"data" * 1000)
        out.seek(40 * MiB)
        out.write(os.urandom(MiB))
    subprocess.run([str(IMAGEPORT), "bitmap", str(raw)], check=True, capture_output=True)
    bitmap = tmp_path / "guest.mf"
    _open_upload(page, server, bucket)
    page.get_by_label("Image file").set_input_files(raw)
    page.get_by_label("Object key").fill("fast/guest.raw")
    page.get_by_label("Bitmap file (.mf), optional").set_input_files(bitmap)
    expect(page.locator("#upload-bitmap-key")).to_have_text("It will be stored as fast/guest.mf.")
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_role("status")).to_have_text(
        "Uploaded fast/guest.raw (64.0 MiB) and its bitmap fast/guest.mf.", timeout=60_000
    )
    got = s3.get_object(Bucket=bucket, Key="fast/guest.mf")["Body"].read()
    assert got == bitmap.read_bytes()
    assert _sha256(s3.get_object(Bucket=bucket, Key="fast/guest.raw")["Body"].read()) == _sha256(
        raw.read_bytes()
    )

    # an upload aborted from the page leaves nothing behind
    page.reload()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_label("Image file").set_input_files(raw)
    page.get_by_label("Object key").fill("aborted.raw")
    page.route(f"{server.s3_url}/**", lambda route: None)  # the parts never arrive
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_role("button", name="Abort")).to_be_enabled()
    _wait_for_upload(s3, bucket, "aborted.raw")
    page.get_by_role("button", name="Abort").click()
    expect(page.get_by_role("status")).to_have_text(
        "Upload aborted; the parts already sent were deleted."
    )
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def _wait_for_upload(s3: Any, bucket: str, key: str) -> None:
    deadline = time.monotonic() + 30
    while not s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads"):
        assert time.monotonic() < deadline, f"no upload of {key} started"
        time.sleep(0.2)


def test_another_projects_bucket_is_not_found(server: ServeProcess, page: Page) -> None:
    s3 = _bucket(server, "beta", "beta-private")
    s3.put_object(Bucket="beta-private", Key="secret.raw", Body=b"beta")
    started = s3.create_multipart_upload(Bucket="beta-private", Key="secret.raw")
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"], then="/console/buckets")
    for path in ("/console/buckets/beta-private", "/console/buckets/beta-private/upload"):
        answer = page.goto(server.ims_url + path)
        assert answer is not None and answer.status == 404
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    listed = page.request.get(
        server.ims_url
        + f"/console/buckets/beta-private/uploads/{started['UploadId']}/parts?key=secret.raw"
    )
    assert listed.status == 404
    assert listed.json()["error"]["code"] == "NoSuchBucket"
    csrf = page.locator("body").get_attribute("data-csrf") or ""
    urls = page.request.post(
        server.ims_url + f"/console/buckets/beta-private/uploads/{started['UploadId']}/urls",
        data={
            "key": "secret.raw",
            "parts": [{"number": 1, "sha256": base64.b64encode(bytes(32)).decode()}],
        },
        headers={"X-CSRF-Token": csrf},
    )
    assert urls.status == 404
    unread = page.request.post(
        server.ims_url + "/console/buckets/beta-private/uploads",
        data={"key": "k", "size": 1, "acl": "public-read"},
        headers={"X-CSRF-Token": csrf},
    )
    assert unread.status == 400
    assert unread.json()["error"] == {
        "code": "InvalidArgument",
        "message": "unknown member 'acl'",
    }
    deleted = page.request.post(
        server.ims_url + "/console/buckets/beta-private/delete", form={"csrf": csrf}
    )
    assert deleted.status == 404
    assert s3.head_bucket(Bucket="beta-private")


def test_only_the_consoles_origin_may_upload_parts_across_origins(server: ServeProcess) -> None:
    s3 = _bucket(server, "alpha", "alpha-cors")
    started = s3.create_multipart_upload(Bucket="alpha-cors", Key="k")
    part = f"{server.s3_url}/alpha-cors/k?partNumber=1&uploadId={started['UploadId']}"
    console = server.ims_url  # http://127.0.0.1:<image API port>
    asks = {
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "x-amz-checksum-sha256",
    }

    allowed = httpx.options(part, headers={"Origin": console, **asks})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == console
    assert allowed.headers["access-control-allow-methods"] == "PUT"
    assert allowed.headers["access-control-allow-headers"] == "x-amz-checksum-sha256"
    assert "access-control-allow-credentials" not in allowed.headers

    host = "127.0.0.1"
    refused_origins = [
        "http://evil.example",
        f"http://evil.example:{server.ports[0]}",  # the console's port on another host
        f"http://{host}:{server.ports[1]}",  # the bucket API itself
        f"http://{host}:1",
        "null",
    ]
    for origin in refused_origins:
        refused = httpx.options(part, headers={"Origin": origin, **asks})
        assert refused.status_code == 403, origin
        assert "access-control-allow-origin" not in refused.headers
        assert "<Code>AccessForbidden</Code>" in refused.text
    for other in (
        {"Access-Control-Request-Method": "DELETE"},
        {**asks, "Access-Control-Request-Headers": "x-amz-copy-source"},
    ):
        refused = httpx.options(part, headers={"Origin": console, **other})
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
    not_a_part = httpx.options(f"{server.s3_url}/alpha-cors/k", headers={"Origin": console, **asks})
    assert not_a_part.status_code == 403

    # the answers to PUTs are readable by the console's pages only
    for origin, readable in ((console, True), ("http://evil.example", False)):
        answer = httpx.put(part, content=b"x", headers={"Origin": origin})
        assert answer.status_code == 403  # unsigned
        assert ("access-control-allow-origin" in answer.headers) is readable
        if readable:
            assert "ETag" in answer.headers["access-control-expose-headers"]
    listing = httpx.get(f"{server.s3_url}/alpha-cors", headers={"Origin": console})
    assert "access-control-allow-origin" not in listing.headers


def test_the_script_sha256_used_over_plain_http_matches_hashlib(
    server: ServeProcess, page: Page
) -> None:
    """Pages not in a secure context (plain HTTP to a host other than loopback) have no
    WebCrypto: the script's own SHA-256 then signs each part."""
    s3 = _bucket(server, "alpha", "alpha-sha")
    del s3
    _open_upload(page, server, "alpha-sha")
    for length in (0, 3, 55, 56, 63, 64, 65, 119, 1000):
        text = "abc" * length
        text = text[:length]
        expected = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert page.evaluate("(t) => window.imageport.sha256Script(t)", text) == expected
