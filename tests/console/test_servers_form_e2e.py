"""The create-server form in Chromium, without booting anything: what a user sees when a field is
refused (at the field, with the vendor's code, focus there, the passwords never typed back), the
key pair / password choice, and the empty list. Screenshot ``server-create``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huaweicloudsdkims.v2 import CreateImageRequest, CreateImageRequestBody
from playwright.sync_api import Page, expect

from imageport.service import codes
from support import console_browser
from support.e2e_clients import ims_client, s3_client, wait_job
from support.import_fixtures import good_image
from support.server_process import ServeProcess

pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '[a-z_]+' of (Ims|Ecs)Client is deprecated:DeprecationWarning"
)


@pytest.fixture(scope="module")
def image_id(server: ServeProcess) -> Iterator[str]:
    """A small active image of ``alpha`` (the cloud-ready synthetic guest), imported as a user
    would."""
    keys = server.keys["alpha"]
    s3 = s3_client(server, keys)
    s3.create_bucket(Bucket="images")
    s3.upload_file(str(good_image("qcow2")), "images", "small.qcow2")
    ims = ims_client(server, keys)
    job = ims.create_image(
        CreateImageRequest(
            body=CreateImageRequestBody(
                name="debian-small",
                image_url="images:small.qcow2",
                min_disk=40,
                os_version="Debian GNU/Linux 12.0.0 64bit",
            )
        )
    )
    done = wait_job(ims, job.job_id)
    assert done.status == "SUCCESS", (done.error_code, done.fail_reason)
    yield str(done.entities.image_id)


def test_the_empty_list_offers_to_create_one(server: ServeProcess, page: Page) -> None:
    console_browser.sign_in(page, server.ims_url, server.keys["beta"], then="/console/servers")
    expect(page.get_by_role("heading", name="Servers")).to_be_visible()
    expect(page.get_by_text("No servers yet.")).to_be_visible()
    page.get_by_role("link", name="Create server").click()
    expect(page.get_by_role("heading", name="Create a server")).to_be_visible()
    # beta has no image and no key pair: the form says so, and offers the password
    expect(page.get_by_label("Image", exact=True)).to_have_accessible_description(
        "The project has no active system disk image yet: import one first. Images"
    )
    expect(page.get_by_label("With a password")).to_be_checked()


def test_a_refused_field_is_shown_at_the_field_with_the_vendors_code(
    server: ServeProcess, page: Page, image_id: str, shots: Path
) -> None:
    console_browser.sign_in(
        page, server.ims_url, server.keys["alpha"], then=f"/console/servers/new?image={image_id}"
    )
    expect(page.get_by_label("Image", exact=True)).to_have_value(image_id)
    # with a key pair chosen, the password fields are hidden, and the other way round
    page.get_by_label("With a key pair").check()
    expect(page.get_by_label("Password", exact=True)).to_be_hidden()
    page.get_by_label("With a password").check()
    expect(page.get_by_label("Key pair", exact=True)).to_be_hidden()
    page.get_by_label("Server name").fill("web-1")
    page.get_by_label("Password", exact=True).fill("Imageport-2030")
    page.get_by_label("Confirm the password").fill("Imageport-2030")
    console_browser.shoot(page, "server-create", shots)
    page.get_by_label("Server name").fill("web 1")
    page.get_by_role("button", name="Create server").click()

    name = page.get_by_label("Server name")
    expect(page.get_by_role("alert")).to_contain_text("see the field marked below")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    expect(name).to_have_value("web 1")
    expect(page.locator("#name-error")).to_contain_text(codes.ECS_INVALID)
    expect(page.locator("#name-error")).to_contain_text("letters, digits")
    # the passwords are never typed back into the page
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    assert "Imageport-2030" not in page.content()

    page.get_by_label("Server name").fill("web-1")
    page.get_by_label("Password", exact=True).fill("weakpass")
    page.get_by_label("Confirm the password").fill("weakpass")
    page.get_by_label("System disk (GiB)").fill("50")
    page.get_by_role("button", name="Create server").click()
    password = page.get_by_label("Password", exact=True)
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#password-error")).to_contain_text(codes.ECS_PASSWORD)
    expect(page.get_by_label("Server name")).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("System disk (GiB)")).to_have_value("50")

    page.get_by_label("System disk (GiB)").fill("20")
    page.get_by_label("Password", exact=True).fill("Imageport-2030")
    page.get_by_label("Confirm the password").fill("Imageport-2030")
    page.get_by_role("button", name="Create server").click()
    expect(page.get_by_label("System disk (GiB)")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#disk-error")).to_contain_text("40-1024")
    # nothing was made
    page.goto(server.ims_url + "/console/servers")
    expect(page.get_by_text("No servers yet.")).to_be_visible()
