"""The images pages rendered by the console application over a real database (the fakes for the
object store, the image worker and the queue), without a browser: what the list and the image
page show and what they refuse, and the change record of automatic configuration rendered from
a real report (the check of the guest with network defects, with the plan the configuration
code makes for it: making such an image through the editing appliance takes about 30 s, which
the browser tests leave out)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from imageport.configure.record import plan_document
from imageport.console.app import build_console_app
from imageport.console.pages import BASE
from imageport.reports.json_report import report_document
from imageport.service.access.console_sessions import csrf_value, sign_in_with_key
from imageport.service.access.projects import create_key, create_project
from imageport.service.context import Services
from imageport.service.jobs.dispatch import run_job
from imageport.service.jobs.image_jobs import recent_jobs
from imageport.service.tools.check import check_image
from support import import_fixtures as fx
from support import is_config_fixtures as icf
from support import service_fixtures
from support.fix_runs import plan
from support.server_process import running_app
from support.shared_images import active_image


@dataclass
class Console:
    """A signed-in browser of one project, as an HTTP client of the console application."""

    services: Services
    client: httpx.Client
    project_id: str
    csrf: str

    def get(self, path: str, **params: str) -> Any:
        return self.client.get(BASE + path, params=params, follow_redirects=False)

    def post(self, path: str, form: dict[str, str]) -> Any:
        return self.client.post(
            BASE + path, data={"csrf": self.csrf, **form}, follow_redirects=False
        )


@dataclass
class Site:
    """The console application over ``services``, served on loopback at ``url``."""

    services: Services
    url: str
    clients: list[httpx.Client]


def signed_in(site: Site, project: str) -> Console:
    """A session of a new key of ``project`` (created when missing)."""
    services = site.services
    project_id = fx.project_id(services) if project == "tester" else None
    if project_id is None:
        project_id = create_project(services, project).id
    key = create_key(services, project)
    session = sign_in_with_key(services, key.access_key, key.secret_key)
    client = httpx.Client(base_url=site.url, cookies={"imageport_console": session.token})
    site.clients.append(client)
    return Console(services, client, project_id, csrf_value(session.token))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    services = service_fixtures.make_fake_services(tmp_path / "data")
    app = Starlette(routes=[Mount(BASE, app=build_console_app(services))])
    try:
        with running_app(app) as url:
            made = Site(services, url, [])
            yield made
            for client in made.clients:
                client.close()
    finally:
        services.db.dispose()


@pytest.fixture
def tester(site: Site) -> Console:
    """The project ``fx.register`` imports into."""
    return signed_in(site, "tester")


#: a report as the check writes it when it finds nothing
CLEAN_REPORT: dict[str, Any] = {
    "schema": "imageport.check/1",
    "format": "qcow2",
    "findings": [],
    "summary": {"verdict": "pass", "errors": 0, "warnings": 0, "info": 0},
}


def text_of(html: str) -> str:
    """The page's text as a reader sees it (tags dropped, spaces collapsed)."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_an_importing_image_shows_its_jobs_phase_until_it_is_active(tester: Console) -> None:
    job_id = fx.register(tester.services, fx.good_image("qcow2"), name="importing")
    page = tester.get("/images")
    assert page.status_code == 200, page.text
    assert f'data-job-id="{job_id}"' in page.text
    assert "importing Queued 0 % Waiting: 0 %" in text_of(page.text)

    run_job(tester.services, job_id)
    after = tester.get("/images")
    assert "data-job-id" not in after.text
    assert "importing Active" in text_of(after.text)
    assert "61 B" in text_of(after.text)  # the stored size (the fake worker's file)


def test_the_list_filters_searches_and_pages(tester: Console) -> None:
    pid = tester.project_id
    for n, name in enumerate(["alpha-web", "alpha-db", "beta-web"]):
        active_image(
            tester.services,
            pid,
            name,
            report=CLEAN_REPORT,
            created_at=f"2030-01-0{n + 1}T00:00:00.000Z",
        )
    shown = text_of(tester.get("/images", q="ALPHA", limit="1").text)
    assert "alpha-db" in shown and "alpha-web" not in shown and "beta-web" not in shown
    page = tester.get("/images", q="ALPHA", limit="1")
    (following,) = re.findall(r'href="([^"]+)" rel="next"', page.text)
    second = tester.client.get(unescape(following))
    assert "alpha-web" in text_of(second.text) and "Next page" not in text_of(second.text)

    assert "beta-web" in tester.get("/images", status="active", type="private").text
    assert "No image matches" in text_of(tester.get("/images", status="killed").text)


def test_the_list_refuses_what_it_does_not_take(tester: Console) -> None:
    for params in ({"sort": "name"}, {"status": "gone"}, {"limit": "101"}, {"limit": "-1"}):
        answer = tester.get("/images", **params)
        assert answer.status_code == 400, params
        assert "Error code IMG.0001" in text_of(answer.text)


def test_the_image_page_shows_the_api_document_report_tags_and_jobs(tester: Console) -> None:
    job_id = fx.register(tester.services, fx.good_image("qcow2"), name="page-image")
    run_job(tester.services, job_id)
    image_id = fx.job_row(tester.services, job_id).image_id
    page = tester.get(f"/images/{image_id}")
    assert page.status_code == 200, page.text
    shown = text_of(page.text)
    assert "page-image Active" in shown
    assert "OS version Debian GNU/Linux 12" in shown or "OS version Debian 12" in shown
    assert f"ID {image_id}" in shown
    assert "Check report" in shown and "Passes" in shown
    assert f"Import {job_id} Succeeded" in shown
    assert "No boot test has run on this image." in shown
    assert "Automatic configuration" not in shown  # not configured

    added = tester.post(f"/images/{image_id}/tags", {"key": "team", "value": "web"})
    assert added.status_code == 303
    assert "team web" in text_of(tester.get(f"/images/{image_id}").text)
    refused = tester.post(f"/images/{image_id}/tags", {"key": "bad key!", "value": ""})
    assert refused.status_code == 400
    assert "Refused (IMG.0001)" in text_of(refused.text)
    assert 'value="bad key!"' in refused.text  # what was typed is kept
    # the language switch leads back to the image page, not to the form's POST route
    assert f'next=%2Fconsole%2Fimages%2F{image_id}"' in refused.text
    assert "%2Ftags" not in refused.text


def test_another_projects_image_and_a_field_the_form_lacks(site: Site) -> None:
    owner = signed_in(site, "owner")
    other = signed_in(site, "other")
    image_id = active_image(site.services, owner.project_id, "private-one", report=CLEAN_REPORT)
    assert other.get(f"/images/{image_id}").status_code == 404
    assert "Not found" in text_of(other.get(f"/images/{image_id}").text)
    assert other.post(f"/images/{image_id}/copy", {"name": "mine"}).status_code == 404
    smuggled = owner.post(f"/images/{image_id}/copy", {"name": "c", "cmk_id": "x"})
    assert smuggled.status_code == 400
    assert "cmk_id: this form has no such field" in text_of(smuggled.text)

    copied = owner.post(f"/images/{image_id}/copy", {"name": "c"})
    assert copied.status_code == 303
    copy_id = copied.headers["location"].split("/")[3].split("?")[0]
    (job,) = recent_jobs(site.services, owner.project_id, copy_id)
    assert owner.get(f"/images/job/{job.id}").json()["entities"]["image_id"] == copy_id
    for path in (f"/images/job/{job.id}", f"/images/{image_id}/document"):
        refused = other.get(path)
        assert refused.status_code == 404, path
        assert refused.json()["error"]["code"] == "IMG.NOT_FOUND"
    screenshot = f"/images/{image_id}/boot-test/screenshot"
    assert other.get(screenshot, firmware="bios").status_code == 404
    assert owner.get(screenshot, firmware="bios").status_code == 404  # no boot test yet
    assert owner.get(screenshot, firmware="arm").status_code == 400


def test_the_change_record_of_automatic_configuration(tester: Console) -> None:
    """A real report: the check of the guest with network defects, its ``configuration``
    section the plan the configuration code makes for that guest (as the import's recheck
    phase writes it), rendered in the image page."""
    guest = icf.defective_guest()
    report = report_document(check_image(guest))
    made = plan(guest)
    section = plan_document(made.changes, made.notes, applied=True)
    section["before"] = report["summary"]
    report["configuration"] = section
    image_id = active_image(tester.services, tester.project_id, "configured", report=report)

    page = tester.get(f"/images/{image_id}")
    shown = text_of(page.text)
    files = {c.path for c in made.changes}
    assert (
        f"Automatic configuration made {len(made.changes)} change(s) in {len(files)} file(s)."
        in shown
    )
    warnings = report["summary"]["warnings"]
    assert f"found {report['summary']['errors']} error(s) and {warnings} warning(s)" in shown
    by_path = {c.path: c for c in made.changes}
    removed = by_path[icf.PERSISTENT_NET]
    assert f"IMG-NET-RULES removed {icf.PERSISTENT_NET}" in shown
    assert f"Why: {removed.why}" in shown
    interfaces = by_path["/etc/network/interfaces"]
    assert interfaces.rule == "IMG-NET-DHCP"
    for line in interfaces.diff:
        kind = "removed" if line.startswith("-") else "added"
        assert f"{kind}: {line[1:].strip()}" in shown, line
    assert page.text.count('class="diff-removed"') >= 1
    assert page.text.count('class="diff-added"') >= 1


def test_the_image_page_speaks_chinese(tester: Console) -> None:
    image_id = active_image(tester.services, tester.project_id, "zh-image", report=CLEAN_REPORT)
    tester.client.cookies.set("imageport_lang", "zh-CN")
    shown = text_of(tester.get(f"/images/{image_id}").text)
    for text in ("属性", "检查报告", "启动测试", "标签", "共享", "导出到桶", "删除 zh-image…"):
        assert text in shown, text
    assert "操作系统版本 Ubuntu 22.04 server 64bit" in shown
