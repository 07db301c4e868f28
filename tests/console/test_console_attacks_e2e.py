"""Attacks on the web console in Chromium, against a real ``imageport serve``: what a hostile
project's user can make another project's browser do through the service's own origins."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from support import console_browser
from support.e2e_clients import s3_client
from support.server_process import ServeProcess


def session_token(server: ServeProcess, project: str) -> str:
    """A console session of ``project``, signed in over HTTP: the cookie's value."""
    keys = server.keys[project]
    answer = httpx.post(
        server.ims_url + "/console/signin",
        data={"access_key": keys.access_key, "secret_key": keys.secret_key},
    )
    assert answer.status_code == 303, answer.text
    token: str = answer.cookies["imageport_console"]
    return token


def test_a_page_in_another_projects_bucket_cannot_swap_the_console_session(
    server: ServeProcess, page: Page
) -> None:
    """Project beta stores a page in its bucket and sends its presigned link to alpha's user.
    The bucket API is on the console's host (another port: cookies are shared), so a script
    there could push out alpha's session cookie and set beta's session in its place; alpha
    would then upload into beta's buckets. The page's script must not run."""
    beta = server.keys["beta"]
    theirs = session_token(server, "beta")
    flood = "".join(f"document.cookie='filler{n}=1; path=/';" for n in range(200))
    swap = f"document.cookie='imageport_console={theirs}; path=/console';"
    s3 = s3_client(server, beta)
    s3.create_bucket(Bucket="beta-bait")
    s3.put_object(
        Bucket="beta-bait",
        Key="read-me.html",
        Body=f"<p>hello</p><script>{flood}{swap}</script>".encode(),
        ContentType="text/html",
    )
    link = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "beta-bait", "Key": "read-me.html"}
    )

    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    page.goto(link)
    expect(page.get_by_text("hello")).to_be_visible()
    page.goto(server.ims_url + "/console/images")
    expect(page.get_by_text("Project alpha")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"].startswith("filler")]
