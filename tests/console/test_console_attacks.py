"""Attacks on the web console over HTTP, without a browser: the console application over a real
database (the fakes for the object store, the worker and the queue), served on loopback, and a
signed-in client sending what a hostile user or page would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from imageport.console.app import build_console_app
from imageport.console.pages import BASE, Site, safe_next
from imageport.service.access.console_sessions import csrf_value, sign_in_with_key
from imageport.service.access.projects import create_key, create_project
from imageport.service.context import Services
from support import service_fixtures
from support.server_process import running_app
from support.shared_images import active_image


class Signed:
    """A signed-in browser of one project, as an HTTP client of the console."""

    def __init__(self, services: Services, url: str, project: str) -> None:
        self.project_id = create_project(services, project).id
        key = create_key(services, project)
        session = sign_in_with_key(services, key.access_key, key.secret_key)
        self.csrf = csrf_value(session.token)
        self.client = httpx.Client(base_url=url, cookies={"imageport_console": session.token})

    def post(self, path: str, form: dict[str, str]) -> httpx.Response:
        return self.client.post(BASE + path, data={"csrf": self.csrf, **form})


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = service_fixtures.make_fake_services(tmp_path / "data")
    try:
        yield made
    finally:
        made.db.dispose()


@pytest.fixture
def alpha(services: Services) -> Iterator[Signed]:
    app = Starlette(routes=[Mount(BASE, app=build_console_app(services))])
    with running_app(app) as url:
        signed = Signed(services, url, "alpha")
        yield signed
        signed.client.close()


#: a report as the check writes it when it finds nothing
CLEAN_REPORT: dict[str, Any] = {
    "schema": "imageport.check/1",
    "format": "qcow2",
    "findings": [],
    "summary": {"verdict": "pass", "errors": 0, "warnings": 0, "info": 0},
}

#: every form of the image page that needs a field (the boot test's are all optional)
IMAGE_FORMS = (
    "tags",
    "tags/delete",
    "members",
    "members/delete",
    "answer",
    "export",
    "copy",
)


def test_a_form_sent_without_its_fields_is_refused_not_a_server_error(
    services: Services, alpha: Signed
) -> None:
    """A hand-made POST (only the anti-forgery value) gets the form's refusal with the
    vendor's code, never a 500 without the console's security headers."""
    image_id = active_image(services, alpha.project_id, "web", report=CLEAN_REPORT)
    for form in IMAGE_FORMS:
        answer = alpha.post(f"/images/{image_id}/{form}", {})
        assert answer.status_code in (400, 403, 404), (form, answer.status_code, answer.text)
        assert "Error code" in answer.text or "Refused" in answer.text, form
        assert answer.headers["content-security-policy"].startswith("default-src 'none'"), form


@pytest.mark.parametrize(
    "target",
    [
        "/console/../v2/images",
        "/console/..//evil.example",
        "/console/%2e%2e/v2/images",
        "/console/.%2E/%2e%2E/vnc/vnc_auto.html",
        "/console/images/../../v2/images",
        "/console/./../x",
    ],
)
def test_next_never_leaves_the_console_through_dot_segments(target: str) -> None:
    """A browser resolves ``..`` (also written ``%2e%2e``) before it follows a redirect, so
    ``/console/../x`` is ``/x``: another route of the image API's origin, not a console page."""
    chosen = safe_next(target)
    assert chosen == "/console/images"
    assert urljoin("http://host/console/signin", chosen).startswith("http://host/console/")


def test_next_keeps_a_console_page() -> None:
    for target in ("/console/images/abc?done=copy", "/console/images?q=a..b", "/console/x/..."):
        assert safe_next(target) == target


def test_a_form_route_refuses_a_json_body_instead_of_acting_on_no_fields(
    services: Services, alpha: Signed
) -> None:
    """A page's form takes its fields from a form: a JSON body (which the form would not read)
    is refused, not run as the form with every field left empty (here: deleting the image)."""
    image_id = active_image(services, alpha.project_id, "kept", report=CLEAN_REPORT)
    sent = alpha.client.post(
        f"{BASE}/images/{image_id}/delete",
        json={"confirm": False},
        headers={"X-CSRF-Token": alpha.csrf},
    )
    assert sent.status_code == 400, sent.text
    assert "IMG.0001" in sent.text and "takes a form" in sent.text
    assert alpha.client.get(f"{BASE}/images/{image_id}").status_code == 200


def test_signing_out_of_an_ended_session_clears_the_cookie(
    services: Services, alpha: Signed
) -> None:
    """A session ended elsewhere (signed out in another tab, expired, key revoked): the page's
    Sign out button still signs out, instead of an error page that leaves the dead cookie."""
    token = alpha.client.cookies["imageport_console"]
    assert alpha.post("/signout", {}).status_code == 303  # the session ends
    alpha.client.cookies.set("imageport_console", token)  # another tab kept the cookie
    again = alpha.post("/signout", {})
    assert again.status_code == 303, again.text
    assert again.headers["location"] == "/console/signin?out=1"
    assert 'imageport_console=""' in again.headers["set-cookie"]


def test_behind_a_tls_proxy_the_https_origin_is_the_consoles_own(services: Services) -> None:
    """Behind a TLS proxy (setting ``console_origin``) the browser's ``Origin`` is
    ``https://host``; the console must take it for its own (or nobody could sign in), mark the
    cookie ``Secure``, and still refuse another site's."""
    create_project(services, "alpha")
    key = create_key(services, "alpha")
    form = {"access_key": key.access_key, "secret_key": key.secret_key}
    site = Site(origin="https://console.example.com")
    app = Starlette(routes=[Mount(BASE, app=build_console_app(services, site))])
    with running_app(app) as url, httpx.Client(base_url=url) as client:
        host = "console.example.com"
        signed = client.post(f"{BASE}/signin", data=form, headers={"Origin": f"https://{host}"})
        assert signed.status_code == 303, signed.text
        assert "secure" in signed.headers["set-cookie"].lower()
        own = "http://" + url.removeprefix("http://")  # the request's own origin still counts
        assert client.post(f"{BASE}/signin", data=form, headers={"Origin": own}).status_code == 303
        for other in ("https://evil.example", "http://evil.example", "null"):
            refused = client.post(f"{BASE}/signin", data=form, headers={"Origin": other})
            assert refused.status_code == 403, other


def test_a_second_session_cookie_planted_beside_the_users_is_no_session(
    services: Services, alpha: Signed
) -> None:
    """A page of another port of this host can add a cookie of the same name with a longer
    path (sent first); the console then knows no session rather than the planted one."""
    planted = Signed(services, str(alpha.client.base_url), "beta")
    theirs = planted.client.cookies["imageport_console"]
    ours = alpha.client.cookies["imageport_console"]
    both = f"imageport_console={theirs}; imageport_console={ours}"
    with httpx.Client(base_url=str(alpha.client.base_url)) as browser:
        seen = browser.get(f"{BASE}/images", headers={"Cookie": both})
    assert seen.status_code == 303
    assert seen.headers["location"].startswith(f"{BASE}/signin")
    assert alpha.client.get(f"{BASE}/images").status_code == 200


def test_a_json_member_given_twice_is_refused(alpha: Signed) -> None:
    refused = alpha.client.post(
        f"{BASE}/buckets/nobucket/uploads",
        content=b'{"a": 1, "a": 2}',
        headers={"Content-Type": "application/json", "X-CSRF-Token": alpha.csrf},
    )
    assert refused.status_code == 400
    assert "not JSON" in refused.text or "twice" in refused.text


def test_control_and_bidi_characters_in_a_name_are_shown_not_obeyed() -> None:
    from imageport.console.pages import shown

    assert shown("invoice\u202egpj.exe") == "invoice<U+202E>gpj.exe"
    assert shown("a\rb\x1b[31m") == "a<U+000D>b<U+001B>[31m"
    assert shown("镜像 disk.qcow2") == "镜像 disk.qcow2"
