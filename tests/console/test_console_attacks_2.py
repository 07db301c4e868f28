"""Attacks on the console's buckets, check/register and servers areas, in Chromium against a
real ``imageport serve`` (projects ``alpha`` and ``beta``): each test is an attack that worked
before its fix, or one that is expected to keep failing."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from imageport.service.access.console_sessions import csrf_value
from support import console_browser
from support.e2e_clients import s3_client
from support.server_process import ServeProcess

MiB = 1024 * 1024


def _bucket(server: ServeProcess, project: str, name: str) -> Any:
    s3 = s3_client(server, server.keys[project])
    s3.create_bucket(Bucket=name)
    return s3


def _session_token(server: ServeProcess, project: str) -> str:
    """A console session of ``project``, opened as its browser would (the cookie's value)."""
    keys = server.keys[project]
    with httpx.Client(base_url=server.ims_url) as client:
        signed = client.post(
            "/console/signin",
            data={"access_key": keys.access_key, "secret_key": keys.secret_key},
        )
        assert signed.status_code == 303
        token = client.cookies.get("imageport_console")
    assert token
    return token


def test_a_page_stored_in_a_bucket_cannot_sign_a_browser_into_its_project(
    server: ServeProcess, page: Page
) -> None:
    """beta stores a web page and sends alpha's user its presigned URL. The bucket API is the
    console's site (same host, another port, and cookies ignore ports): the page's script set
    the console's session cookie to beta's session, and the browser then used the console as
    beta (an upload meant for alpha's bucket went to beta's). The bucket API's answers are
    sandboxed now: the script does not run."""
    s3 = _bucket(server, "beta", "beta-pages")
    theirs = _session_token(server, "beta")
    script = (
        f"<script>document.cookie = 'imageport_console={theirs}; path=/console';"
        f"location = '{server.ims_url}/console/buckets';</script>"
    )
    s3.put_object(Bucket="beta-pages", Key="hello.html", Body=script, ContentType="text/html")
    link = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "beta-pages", "Key": "hello.html"}, ExpiresIn=600
    )
    page.goto(link)
    page.wait_for_timeout(1000)
    assert page.url == link  # the script did not send the browser on
    assert not [c for c in page.context.cookies() if c["name"] == "imageport_console"]
    page.goto(server.ims_url + "/console/buckets")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_the_register_link_of_an_object_opens_the_form_with_that_object(
    server: ServeProcess, page: Page
) -> None:
    """The bucket page's (and the upload page's) "Register" link names the object with
    ``bucket`` and ``key``, as the check link does; the register form read only ``source`` and
    opened with no object chosen, silently."""
    s3 = _bucket(server, "alpha", "alpha-links")
    s3.put_object(Bucket="alpha-links", Key="disks/web.qcow2", Body=b"not really a disk")
    console_browser.sign_in(
        page, server.ims_url, server.keys["alpha"], then="/console/buckets/alpha-links"
    )
    page.get_by_role("link", name="Folder disks/").click()
    page.get_by_role("link", name="Register disks/web.qcow2 as an image").click()
    chosen = page.get_by_label("File in a bucket", exact=True)
    expect(chosen).to_have_value("alpha-links:disks/web.qcow2")
    expect(page.get_by_label("Name", exact=True)).to_have_value("web")


def test_an_object_whose_key_holds_a_carriage_return_is_really_deleted(
    server: ServeProcess, page: Page
) -> None:
    """A form field's line breaks are sent as CR LF by every browser: the delete form sent the
    key ``notes\\rv1.txt`` as ``notes\\r\\nv1.txt``, S3's delete of a missing key succeeds, and
    the page said "deleted" while the object stayed. The key now travels in the form's URL.
    The same for aborting an unfinished upload of such a key."""
    s3 = _bucket(server, "alpha", "alpha-keys")
    key = "notes\rv1.txt"
    s3.put_object(Bucket="alpha-keys", Key=key, Body=b"still here?")
    s3.create_multipart_upload(Bucket="alpha-keys", Key=key)
    console_browser.sign_in(
        page, server.ims_url, server.keys["alpha"], then="/console/buckets/alpha-keys"
    )
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#objects tr", has_text="v1.txt").get_by_role("button").click()
    expect(page.get_by_role("status")).to_contain_text("deleted")
    assert "Contents" not in s3.list_objects_v2(Bucket="alpha-keys")

    page.goto(server.ims_url + "/console/buckets/alpha-keys/upload")
    page.locator("#unfinished tr", has_text="v1.txt").get_by_role("button").click()
    expect(page.get_by_role("status").first).to_contain_text("aborted")
    assert not s3.list_multipart_uploads(Bucket="alpha-keys").get("Uploads")


def test_bucket_forms_refuse_a_field_they_do_not_read(server: ServeProcess, page: Page) -> None:
    """Creating a bucket with an ``acl`` field made a private bucket without a word; each
    bucket form now refuses a field it does not read (IMG.0001), as the JSON routes refuse a
    member."""
    s3 = _bucket(server, "alpha", "alpha-forms")
    s3.put_object(Bucket="alpha-forms", Key="disk.raw", Body=b"x")
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"], then="/console/buckets")
    csrf = page.locator("body").get_attribute("data-csrf") or ""
    for path, form in (
        ("/console/buckets", {"name": "alpha-public", "acl": "public-read"}),
        ("/console/buckets/alpha-forms/delete", {"force": "1"}),
        ("/console/buckets/alpha-forms/objects/delete?key=disk.raw", {"version_id": "v1"}),
    ):
        answer = page.request.post(server.ims_url + path, form={"csrf": csrf, **form})
        assert answer.status == 400, path
        assert "IMG.0001" in answer.text() and next(iter(form.keys() - {"name"})) in answer.text()
    assert "alpha-public" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_object(Bucket="alpha-forms", Key="disk.raw")


def _sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_a_part_url_uploads_its_own_bytes_to_its_own_part_and_nothing_else(
    server: ServeProcess,
) -> None:
    """Held: a part URL the console hands out, replayed with other bytes, without its checksum,
    for another part, key or method, or after its upload was completed or aborted."""
    s3 = _bucket(server, "alpha", "alpha-parts")
    token = _session_token(server, "alpha")
    with httpx.Client(
        base_url=server.ims_url + "/console/buckets/alpha-parts/",
        cookies={"imageport_console": token},
        headers={"X-CSRF-Token": csrf_value(token)},
    ) as console:
        one, two = os.urandom(5 * MiB), b"tail"
        started = console.post(
            "uploads", json={"key": "d.raw", "size": len(one + two), "part_size": 5 * MiB}
        )
        upload = started.json()["upload_id"]

        def urls(upload: str, *parts: tuple[int, bytes]) -> dict[str, str]:
            asked = [{"number": n, "sha256": _sha(body)} for n, body in parts]
            answer = console.post(f"uploads/{upload}/urls", json={"key": "d.raw", "parts": asked})
            assert answer.status_code == 200, answer.text
            found: dict[str, str] = answer.json()["urls"]
            return found

        url = urls(upload, (1, one))["1"]
        signed = {"x-amz-checksum-sha256": _sha(one)}

        def code(answer: httpx.Response) -> str:
            return answer.text.partition("<Code>")[2].partition("</Code>")[0]

        assert code(httpx.put(url, content=two, headers=signed)) == "BadDigest"
        assert code(httpx.put(url, content=two, headers={"x-amz-checksum-sha256": _sha(two)})) == (
            "SignatureDoesNotMatch"
        )
        assert httpx.put(url, content=one).status_code == 403
        assert (
            httpx.put(url.replace("partNumber=1", "partNumber=2"), content=one).status_code == 403
        )
        assert httpx.put(
            url.replace("/d.raw", "/e.raw"), content=one, headers=signed
        ).status_code == (403)
        assert httpx.get(url, headers=signed).status_code == 403
        assert httpx.put(url, content=one, headers=signed).status_code == 200
        tail = urls(upload, (2, two))["2"]
        assert httpx.put(tail, content=two, headers={"x-amz-checksum-sha256": _sha(two)}).is_success
        done = console.post(
            f"uploads/{upload}/complete",
            json={"key": "d.raw", "size": len(one + two), "part_size": 5 * MiB},
        )
        assert done.status_code == 200, done.text
        assert code(httpx.put(url, content=one, headers=signed)) == "NoSuchUpload"
        assert s3.get_object(Bucket="alpha-parts", Key="d.raw")["Body"].read() == one + two

        again = console.post("uploads", json={"key": "d.raw", "size": 4}).json()["upload_id"]
        late = urls(again, (1, two))["1"]
        assert console.post(f"uploads/{again}/abort", json={"key": "d.raw"}).status_code == 200
        assert code(httpx.put(late, content=two, headers={"x-amz-checksum-sha256": _sha(two)})) == (
            "NoSuchUpload"
        )
