"""Signing in and out of the console in Chromium, and what protects the session."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from support import console_browser
from support.server_process import ServeProcess


def test_sign_in_with_the_key_shows_the_project_and_sign_out_ends_the_session(
    server: ServeProcess, page: Page, shots: Path
) -> None:
    alpha = server.keys["alpha"]
    page.goto(server.ims_url + "/console/images")
    expect(page).to_have_url(f"{server.ims_url}/console/signin?next=%2Fconsole%2Fimages")
    console_browser.shoot(page, "signin", shots)
    console_browser.sign_in(page, server.ims_url, alpha)
    expect(page.get_by_role("heading", name="Private images")).to_be_visible()

    cookie = next(c for c in page.context.cookies() if c["name"] == "imageport_console")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    assert cookie["value"] not in page.content()  # the token is never in a page

    # the cookie's token is a session of its own: it works until sign-out, then never again
    stolen = {"imageport_console": cookie["value"]}
    seen = httpx.get(server.ims_url + "/console/images", cookies=stolen)
    assert seen.status_code == 200
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    again = httpx.get(server.ims_url + "/console/images", cookies=stolen)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/console/signin")


def test_a_wrong_secret_is_refused_at_the_form(server: ServeProcess, page: Page) -> None:
    alpha = server.keys["alpha"]
    page.goto(server.ims_url + "/console/signin")
    page.get_by_label("Access key ID (AK)").fill(alpha.access_key)
    page.get_by_label("Secret access key (SK)").fill("x" * 40)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("the secret is wrong")
    assert not [c for c in page.context.cookies() if c["name"] == "imageport_console"]


def test_sign_in_with_a_token_from_the_token_route(server: ServeProcess, page: Page) -> None:
    beta = server.keys["beta"]
    issued = httpx.post(
        server.ims_url + "/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["hw_ak_sk"],
                    "hw_ak_sk": {
                        "access": {"key": beta.access_key},
                        "secret": {"key": beta.secret_key},
                    },
                }
            }
        },
    )
    token = issued.headers["x-subject-token"]
    page.goto(server.ims_url + "/console/signin")
    page.get_by_label("X-Auth-Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Project beta")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    # signing out ended the console's own token, not the one the user pasted
    still = httpx.get(server.ims_url + "/v2/cloudimages", headers={"X-Auth-Token": token})
    assert still.status_code == 200


def test_a_change_without_the_anti_forgery_value_is_refused(
    server: ServeProcess, page: Page
) -> None:
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    forged = page.request.post(server.ims_url + "/console/signout", form={"csrf": "0" * 64})
    assert forged.status == 403
    assert "not sent from this console" in forged.text()
    page.reload()
    expect(page.get_by_role("heading", name="Private images")).to_be_visible()  # still signed in


def test_a_post_from_another_site_is_refused_before_it_is_read(server: ServeProcess) -> None:
    refused = httpx.post(
        server.ims_url + "/console/signin",
        data={"access_key": "a", "secret_key": "b"},
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert refused.status_code == 403


def test_the_language_switch_shows_chinese_and_sticks(server: ServeProcess, page: Page) -> None:
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    page.get_by_role("link", name="简体中文").click()
    expect(page.get_by_role("heading", name="私有镜像")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.goto(server.ims_url + "/console/images")
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()


def test_pages_forbid_framing_and_inline_scripts(server: ServeProcess) -> None:
    answer = httpx.get(server.ims_url + "/console/signin")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"


def test_sign_in_never_redirects_to_another_site(server: ServeProcess, page: Page) -> None:
    alpha = server.keys["alpha"]
    page.goto(server.ims_url + "/console/signin?next=//evil.example/x")
    page.get_by_label("Access key ID (AK)").fill(alpha.access_key)
    page.get_by_label("Secret access key (SK)").fill(alpha.secret_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.url.startswith(server.ims_url + "/console/images")
