"""The images area of the console in Chromium, against a real ``imageport serve``: a real guest
image is uploaded with boto3 and registered with the vendor's SDK, then the list shows its
import's progress live (no reload) until it is active, and the image page shows its properties,
report, tags, shares (project beta accepts it), copy, export to a bucket, a boot test's verdict
and screenshot, and deletes with a confirmation; another project's image is "not found".

The change record of automatic configuration is rendered from a real report in the fast
``test_images_pages.py`` (making a configured image takes the editing appliance about 30 s)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from huaweicloudsdkims.v2 import CreateImageRequest, CreateImageRequestBody
from playwright.sync_api import Browser, Page, expect

from support import console_browser, import_fixtures
from support.e2e_clients import ims_client, s3_client, wait_job
from support.server_process import Keys, ServeProcess, serve_process

#: the SDK marks ShowJob deprecated; clients still call it
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '[a-z_]+' of ImsClient is deprecated:DeprecationWarning"
)

#: bytes per second qemu-img may read on the slow server: the 1.8 MiB guest then converts in
#: about 14 s, long enough to watch its progress
SLOW_RATE = 128 * 1024
#: how long a test waits for a job in the browser (ms)
JOB_MS = 180_000


def upload(server: ServeProcess, keys: Keys, bucket: str, key: str) -> None:
    """The good guest (qcow2) as ``bucket/key`` of ``keys``' project, with boto3."""
    s3 = s3_client(server, keys)
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(import_fixtures.good_image("qcow2")), bucket, key)


def register(server: ServeProcess, keys: Keys, name: str, image_url: str) -> str:
    """CreateImage with the vendor's SDK; the job id."""
    body = CreateImageRequestBody(name=name, image_url=image_url, min_disk=40, type="ECS")
    job_id: str = ims_client(server, keys).create_image(CreateImageRequest(body=body)).job_id
    return job_id


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    env = {"IMAGEPORT_CONVERT_RATE_LIMIT_BYTES": str(SLOW_RATE)}
    with serve_process(tmp_path_factory.mktemp("slow-console"), env=env) as started:
        yield started


@pytest.fixture(scope="module")
def web_image(server: ServeProcess) -> str:
    """The id of project alpha's active image "web-server" (the good guest)."""
    alpha = server.keys["alpha"]
    upload(server, alpha, "alpha-images", "disk/guest.qcow2")
    job_id = register(server, alpha, "web-server", "alpha-images:disk/guest.qcow2")
    job = wait_job(ims_client(server, alpha), job_id)
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    image_id: str = job.entities.image_id
    return image_id


def open_image(page: Page, server: ServeProcess, image_id: str) -> None:
    page.goto(f"{server.ims_url}/console/images/{image_id}")


def test_the_list_shows_an_imports_progress_live_until_it_is_active(
    slow_server: ServeProcess, page: Page, shots: Path
) -> None:
    alpha = slow_server.keys["alpha"]
    upload(slow_server, alpha, "alpha-slow", "disk/guest.qcow2")
    console_browser.sign_in(page, slow_server.ims_url, alpha)
    register(slow_server, alpha, "progress-image", "alpha-slow:disk/guest.qcow2")
    page.goto(slow_server.ims_url + "/console/images")
    page.evaluate("window.stillTheSamePage = true")  # a navigation would forget it
    row = page.get_by_role("row", name=re.compile("progress-image"))
    text = row.locator("[data-job-text]")
    expect(text).to_have_text(re.compile(r"^.+: \d{1,3} %"))
    first = text.inner_text()
    expect(text).not_to_have_text(first, timeout=60_000)
    expect(text).to_have_text(re.compile(r"Converting: \d{1,2} % \(.+ of .+\)"), timeout=60_000)
    seen = text.inner_text()
    console_browser.shoot(page, "image-progress", shots)
    expect(text).not_to_have_text(seen, timeout=60_000)  # the percent moves on
    expect(page.locator("#images-live")).to_contain_text("progress-image")

    expect(row.locator("[data-image-status]")).to_have_text("Active", timeout=JOB_MS)
    expect(row.locator(".job-progress")).to_have_count(0)
    expect(page.locator("#images-live")).to_have_text("progress-image is now Active.")
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.url == slow_server.ims_url + "/console/images"


def test_the_image_page_shows_properties_report_jobs_and_tags(
    server: ServeProcess, page: Page, shots: Path, web_image: str
) -> None:
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    row = page.get_by_role("row", name=re.compile("web-server"))
    expect(row.locator("[data-image-status]")).to_have_text("Active")
    console_browser.shoot(page, "images", shots)
    page.get_by_role("link", name="web-server").click()
    expect(page.get_by_role("heading", name="web-server")).to_be_visible()
    expect(page.locator('[data-property="id"]')).to_have_text(web_image)
    expect(page.locator('[data-property="__os_version"]')).to_contain_text("Debian")
    expect(page.locator('[data-property="disk_format"]')).to_have_text("qcow2")
    # the report partial (its own area's): the verdict and the finding with its rule ID
    report = page.locator("section", has=page.locator("#report-heading"))
    expect(report).to_contain_text("Passes")
    expect(report).to_contain_text("IMG-ROOT-PASSWORD")
    jobs = page.locator("#image-jobs")
    expect(jobs).to_contain_text("Import")
    expect(jobs).to_contain_text("Succeeded")
    console_browser.shoot(page, "image", shots)

    page.get_by_label("Key", exact=True).fill("team")
    page.get_by_label("Value", exact=True).fill("web")
    page.get_by_role("button", name="Add tag").click()
    expect(page.get_by_role("status").first).to_have_text("The tag was saved.")
    expect(page.get_by_role("row", name="team web")).to_be_visible()
    page.get_by_label("Key", exact=True).fill("no spaces allowed")
    page.get_by_role("button", name="Add tag").click()
    expect(page.get_by_role("alert")).to_contain_text("Refused (IMG.0001)")
    expect(page.get_by_label("Key", exact=True)).to_have_value("no spaces allowed")
    page.get_by_role("button", name="Delete tag team").click()
    expect(page.get_by_text("The tag was deleted.")).to_be_visible()
    expect(page.get_by_text("No tags.")).to_be_visible()


def test_sharing_with_project_beta_who_accepts_it(
    server: ServeProcess, page: Page, browser: Browser, web_image: str
) -> None:
    alpha, beta = server.keys["alpha"], server.keys["beta"]
    with console_browser.new_page(browser) as beta_page:
        console_browser.sign_in(beta_page, server.ims_url, beta)
        answer = beta_page.goto(f"{server.ims_url}/console/images/{web_image}")
        assert answer is not None and answer.status == 404
        expect(beta_page.get_by_role("heading", name="Not found")).to_be_visible()

        console_browser.sign_in(page, server.ims_url, alpha)
        open_image(page, server, web_image)
        page.get_by_label("Project ID").fill(beta.project_id)
        page.get_by_role("button", name="Share", exact=True).click()
        expect(page.get_by_role("row", name=re.compile(beta.project_id))).to_contain_text(
            "Waiting for an answer"
        )

        beta_page.goto(server.ims_url + "/console/images")
        beta_page.get_by_role("button", name="Accept web-server").click()
        expect(beta_page.get_by_text("You accepted the shared image.")).to_be_visible()
        expect(beta_page.locator('[data-property="__imagetype"]')).to_have_text("shared")
        expect(beta_page.locator('[data-property="owner"]')).to_have_text(alpha.project_id)
        expect(beta_page.get_by_role("button", name="Export")).to_have_count(0)  # alpha's
        beta_page.goto(server.ims_url + "/console/images?type=shared")
        expect(beta_page.get_by_role("link", name="web-server")).to_be_visible()

        page.reload()
        member = page.get_by_role("row", name=re.compile(beta.project_id))
        expect(member).to_contain_text("Accepted")
        page.get_by_role("button", name=f"Stop sharing with {beta.project_id}").click()
        expect(page.get_by_text("The image is not shared with any project.")).to_be_visible()
        gone = beta_page.goto(f"{server.ims_url}/console/images/{web_image}")
        assert gone is not None and gone.status == 404


def test_export_copy_and_delete_with_confirmation(
    server: ServeProcess, page: Page, web_image: str
) -> None:
    alpha = server.keys["alpha"]
    s3 = s3_client(server, alpha)
    s3.create_bucket(Bucket="alpha-exports")
    console_browser.sign_in(page, server.ims_url, alpha)
    open_image(page, server, web_image)

    page.get_by_role("textbox", name="Bucket").fill("no-such-bucket")
    page.get_by_label("Object name").fill("out/web.qcow2")
    page.get_by_role("button", name="Export", exact=True).click()
    bucket = page.get_by_role("textbox", name="Bucket")
    expect(bucket).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#export-bucket-message")).to_contain_text("IMG.0069")
    expect(bucket).to_have_value("no-such-bucket")

    bucket.fill("alpha-exports")
    page.get_by_label("Format").select_option("qcow2")
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.get_by_text("The export started: its job is below.")).to_be_visible()
    export_row = page.locator("#image-jobs tbody tr").first
    expect(export_row).to_contain_text("Export")
    expect(export_row.locator("[data-job-status]")).to_have_text("Succeeded", timeout=JOB_MS)
    head = s3.head_object(Bucket="alpha-exports", Key="out/web.qcow2")
    assert head["ContentLength"] > 1 << 20

    page.get_by_label("Name of the copy").fill("web-copy")
    page.get_by_label("Description").fill("a copy made in the console")
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("^web-copy"))).to_be_visible()
    copy_url = page.url.split("?", 1)[0]
    assert web_image not in copy_url
    # a copy links the stored file: it may be active before the page has loaded
    expect(page.locator("h1 [data-image-status]")).to_have_text("Active", timeout=JOB_MS)
    page.reload()
    expect(page.locator("#image-jobs")).to_contain_text("Copy")
    expect(page.locator('[data-property="__description"]')).to_have_text(
        "a copy made in the console"
    )

    page.get_by_role("link", name="Delete web-copy…").click()
    expect(page.get_by_role("heading", name="Delete the image web-copy?")).to_be_visible()
    page.get_by_role("button", name="Delete web-copy").click()
    expect(page.get_by_text("The image was deleted.")).to_be_visible()
    expect(page.get_by_role("link", name="web-copy")).to_have_count(0)
    expect(page.get_by_role("link", name="web-server")).to_be_visible()
    gone = page.goto(copy_url)
    assert gone is not None and gone.status == 404


def test_a_boot_test_shows_its_verdict_and_screenshot(
    server: ServeProcess, page: Page, shots: Path, web_image: str
) -> None:
    """The synthetic guest has no boot loader: under BIOS it never reaches a kernel, and the
    boot ends at its 10 s timeout with a failed verdict and a screenshot of the screen."""
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    open_image(page, server, web_image)
    expect(page.get_by_text("No boot test has run on this image.")).to_be_visible()
    page.get_by_label("Firmware", exact=True).select_option("bios")
    page.get_by_label("Timeout per firmware (seconds)").fill("10")
    page.get_by_role("button", name="Start the boot test").click()
    expect(page.get_by_text("The boot test started: its job is below.")).to_be_visible()
    expect(page.locator("#image-jobs tbody tr").first).to_contain_text("Boot test")
    page.get_by_role("link", name="Show the result").click(timeout=JOB_MS)

    entry = page.locator('.boot-entry[data-firmware="bios"]')
    expect(entry.get_by_role("heading")).to_have_text("BIOS: failed")
    shot = entry.get_by_role("img")
    expect(shot).to_be_visible()
    source = shot.get_attribute("src")
    assert source is not None and source.startswith("/console/images/")
    png = page.request.get(server.ims_url + source)
    assert png.status == 200
    assert png.headers["content-type"] == "image/png"
    assert png.body()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.evaluate("document.querySelector('img.screenshot').naturalWidth") > 0
    page.locator("#boot").scroll_into_view_if_needed()
    console_browser.shoot(page, "image-boot-test", shots)
