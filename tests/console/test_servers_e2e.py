"""A server made and run from the web console in Chromium, on a real ``imageport serve`` with a
real QEMU machine (TCG): ONE Debian 12 boot, used for everything a user does with a server.

1. The Debian image (layout ``gpt-bios-esp-ext4``: cloud-init with the OpenStack datasource, a
   serial console) is uploaded with boto3 and imported with the vendor's IMS SDK (setup).
2. The create form, opened from ``/console/servers/new?image=ID``, makes the server with a
   password; the server's page shows it ``Creating`` then ``Running`` without a reload, and its
   console log, refreshing by itself while it boots, shows the guest's login prompt.
3. The serial console in the page (xterm.js over the serial WebSocket) shows a login prompt
   after Enter; the remote login screen (noVNC over the VNC WebSocket) connects and draws the
   screen. Another project's user gets "not found" for the server's URL.
4. On the list, Stop turns the server to ``Stopped`` without a reload; "Create image" makes an
   image of it and opens the image's page; Delete asks first (dismissed: nothing happens),
   then the server leaves the list.

Screenshots: ``servers``, ``server``, ``server-vnc``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huaweicloudsdkecs.v2 import (
    GetServerRemoteConsoleOption,
    ShowServerRemoteConsoleRequest,
    ShowServerRemoteConsoleRequestBody,
)
from huaweicloudsdkims.v2 import (
    CreateImageRequest,
    CreateImageRequestBody,
    GlanceShowImageRequest,
)
from playwright.sync_api import Browser, expect

from support import console_browser, guest_images, sdk_clients
from support.e2e_clients import ims_client, s3_client, wait_job
from support.server_process import Keys, ServeProcess, serve_for_servers

pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '[a-z_]+' of (Ims|Ecs)Client is deprecated:DeprecationWarning"
)

PASSWORD = "Imageport-2030"  # noqa: S105 - a test password the vendor's rules accept
BOOT_MS = 420_000
"""How long the page may take to show the login prompt (TCG on a busy 2-core machine: 35-110 s
measured, far more while other tests boot machines)."""
STATUS_MS = 180_000
"""How long a stop or a delete may take to show (a soft stop: 5-10 s; the job queue may be
busy with the image's job)."""
IMAGE_SECONDS = 600.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("console-servers")
    with serve_for_servers(root, prefix="ip-console-", tenants=("alpha", "beta")) as started:
        yield started


def import_debian(server: ServeProcess, keys: Keys) -> str:
    """The bootable Debian image, uploaded and imported as a user of ``keys`` would: its id."""
    s3 = s3_client(server, keys)
    s3.create_bucket(Bucket="images")
    s3.upload_file(
        str(guest_images.guest_image("gpt-bios-esp-ext4", "qcow2")), "images", "debian.qcow2"
    )
    ims = ims_client(server, keys)
    job = ims.create_image(
        CreateImageRequest(
            body=CreateImageRequestBody(
                name="debian-12",
                image_url="images:debian.qcow2",
                min_disk=40,
                os_version="Debian GNU/Linux 12.0.0 64bit",
            )
        )
    )
    done = wait_job(ims, job.job_id, 600)
    assert done.status == "SUCCESS", (done.error_code, done.fail_reason)
    return str(done.entities.image_id)


def remote_console_url(server: ServeProcess, keys: Keys, server_id: str) -> str:
    """The display URL the server API hands out (the vendor's ShowServerRemoteConsole)."""
    body = ShowServerRemoteConsoleRequestBody(
        remote_console=GetServerRemoteConsoleOption(protocol="vnc", type="novnc")
    )
    answer = sdk_clients.ecs_client(server.ims_url, keys).show_server_remote_console(
        ShowServerRemoteConsoleRequest(server_id=server_id, body=body)
    )
    return str(answer.remote_console.url)


def test_a_server_created_from_the_page_boots_and_is_run_from_the_console(
    server: ServeProcess, browser: Browser, shots: Path
) -> None:
    alpha, beta = server.keys["alpha"], server.keys["beta"]
    image_id = import_debian(server, alpha)
    with console_browser.new_page(browser) as page:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        logged: list[str] = []
        page.on("console", lambda message: logged.append(f"{message.type}: {message.text}"))

        # -- create it from the form, opened for the image -----------------------------------
        console_browser.sign_in(
            page, server.ims_url, alpha, then=f"/console/servers/new?image={image_id}"
        )
        expect(page.get_by_label("Image", exact=True)).to_have_value(image_id)
        page.get_by_label("Server name").fill("web-1")
        page.get_by_label("Flavor", exact=True).select_option("s1.large.1")
        page.get_by_label("With a password").check()
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Confirm the password").fill(PASSWORD)
        page.get_by_role("button", name="Create server").click()
        page.wait_for_url(re.compile(r".*/console/servers/[0-9a-f-]{36}$"))
        server_id = page.url.rsplit("/", 1)[1]
        assert PASSWORD not in page.content()
        status = page.locator("#server [data-status]")
        page.evaluate("window.imageportNoReload = true")
        expect(status).to_have_text("Running", timeout=STATUS_MS)
        expect(page.locator('[data-field="ssh"]')).to_contain_text("127.0.0.1:")

        # -- its console log shows the login prompt, refreshing by itself ---------------------
        started = time.monotonic()
        expect(page.locator("#console-log")).to_contain_text("login:", timeout=BOOT_MS)
        print(f"the console log showed login: {time.monotonic() - started:.0f} s after ACTIVE")
        assert page.evaluate("window.imageportNoReload") is True  # all without a reload
        expect(page.get_by_label("Refresh every few seconds")).not_to_be_checked()
        console_browser.shoot(page, "server", shots)

        # -- the serial console in the page -----------------------------------------------------
        serial = page.locator("#serial")
        serial.get_by_role("button", name="Connect", exact=True).click()
        expect(serial.get_by_role("status")).to_have_text("Connected.")
        page.locator("#terminal").click()
        page.keyboard.press("Enter")
        expect(page.locator("#terminal .xterm-rows")).to_contain_text("login:")

        # -- the remote login screen ------------------------------------------------------------
        vnc = page.locator("#vnc")
        vnc.get_by_role("button", name="Connect", exact=True).click()
        expect(vnc.get_by_role("status")).to_have_text("Connected.")
        canvas = page.locator("#screen canvas")
        expect(canvas).to_be_visible()
        assert (canvas.bounding_box() or {"width": 0})["width"] > 300
        page.wait_for_timeout(1500)  # the first frame is drawn
        console_browser.shoot(page, "server-vnc", shots)
        vnc.get_by_role("button", name="Disconnect").click()
        expect(vnc.get_by_role("status")).to_contain_text("Disconnected.")

        # -- the vendor's remote_console URL opens the same viewer on a page of its own ---------
        url = remote_console_url(server, alpha, server_id)
        with console_browser.new_page(browser) as viewer:
            viewer.goto(url)
            expect(viewer.get_by_role("status")).to_have_text("Connected.")
            expect(viewer.locator("#screen canvas")).to_be_visible()
            assert "token" not in viewer.url  # out of the address bar (and the history)
        serial.get_by_role("button", name="Disconnect").click()
        expect(serial.get_by_role("status")).to_contain_text("Disconnected.")

        # -- another project's user does not find it ------------------------------------------
        with console_browser.new_page(browser) as theirs:
            console_browser.sign_in(
                theirs, server.ims_url, beta, then=f"/console/servers/{server_id}"
            )
            expect(theirs.get_by_role("heading", name="Not found")).to_be_visible()
            assert "web-1" not in theirs.content()

        # -- stop it from the list: the status changes without a reload -------------------------
        page.goto(server.ims_url + "/console/servers")
        row = page.locator("#servers tbody tr").filter(has_text="web-1")
        expect(row.locator("[data-status]")).to_have_text("Running")
        console_browser.shoot(page, "servers", shots)
        row.get_by_role("button", name="Stop web-1").click()
        expect(page.get_by_role("status").filter(has_text="Stopping web-1")).to_be_visible()
        page.evaluate("window.imageportNoReload = true")
        expect(row.locator("[data-status]")).to_have_text("Stopped", timeout=STATUS_MS)
        assert page.evaluate("window.imageportNoReload") is True
        expect(row.get_by_role("button", name="Start web-1")).to_be_enabled()
        expect(row.get_by_role("button", name="Stop web-1")).to_be_disabled()

        # -- create an image from it: the new image's page opens --------------------------------
        row.get_by_role("link", name="web-1").click()
        page.get_by_role("link", name="Create image").click()
        page.get_by_label("Image name").fill("web-1-image")
        page.get_by_label("Description (optional)").fill("made in the console")
        page.get_by_role("button", name="Create image").click()
        page.wait_for_url(re.compile(r".*/console/images/[0-9a-f-]{36}$"))
        new_image = page.url.rsplit("/", 1)[1]
        ims = ims_client(server, alpha)
        deadline = time.monotonic() + IMAGE_SECONDS
        while True:
            made = ims.glance_show_image(GlanceShowImageRequest(image_id=new_image))
            if made.status in ("active", "killed") or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert made.status == "active", made.status
        assert made.name == "web-1-image"

        # -- delete it, confirming: it leaves the list ------------------------------------------
        page.goto(server.ims_url + "/console/servers")
        delete = row.get_by_role("button", name="Delete web-1")
        page.once("dialog", lambda dialog: dialog.dismiss())
        delete.click()
        expect(row).to_have_count(1)
        page.once("dialog", lambda dialog: dialog.accept())
        delete.click()
        expect(page.get_by_role("status").filter(has_text="Deleting web-1")).to_be_visible()
        expect(row).to_have_count(0, timeout=STATUS_MS)
        expect(page.locator("#server-news")).to_have_text("web-1 was deleted.")
        assert errors == []
        # the browser refused nothing but xterm.js's <style> elements (console.css stands in)
        refused = [line for line in logged if "Content Security Policy" in line]
        print("\n".join(refused))
        assert all("inline style" in line for line in refused), refused
