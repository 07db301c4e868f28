"""The servers area of the console without a browser or a real machine: its pages and JSON routes
over the service with the in-memory server host (the same service calls as the server API), the
create form's refusals at their fields, and the pure helpers (readable console log, status words).
The browser tests with a real QEMU server are ``test_servers_e2e.py``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from imageport.console.app import build_console_app
from imageport.console.i18n import LANGUAGES, Language
from imageport.console.server_page import readable_log
from imageport.console.servers import FieldError, field_error
from imageport.service import codes
from imageport.service.access.console_sessions import sign_in_with_key
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.servers.passwords import VAULT
from imageport.service.servers.statuses import ServerStatus, TaskState
from support import server_rows
from support.sdk_clients import projects_with_keys
from support.server_fixtures import add_keypair, fake_host, fake_queue, server_services
from support.server_process import running_app
from support.shared_images import active_image

STRONG = "Imageport-2030"  # a test password the rules accept


@dataclass
class Console:
    services: Services
    client: httpx.Client
    csrf: str
    project_id: str
    other_project_id: str
    image_id: str

    def post(self, path: str, **fields: str) -> httpx.Response:
        return self.client.post(
            f"/console{path}", data={"csrf": self.csrf, **fields}, follow_redirects=False
        )


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    services = server_services(tmp_path)
    alpha, beta = projects_with_keys(services, "alpha", "beta")
    session = sign_in_with_key(services, alpha.access_key, alpha.secret_key)
    image_id = active_image(services, alpha.project_id, "debian-12")
    app = Starlette(routes=[Mount("/console", app=build_console_app(services))])
    with (
        running_app(app) as base,
        httpx.Client(base_url=base, cookies={"imageport_console": session.token}) as client,
    ):
        yield Console(services, client, session.csrf, alpha.project_id, beta.project_id, image_id)


def create_form(console: Console, **fields: str) -> httpx.Response:
    values = {
        "image": console.image_id,
        "name": "web-1",
        "flavor": "s1.small.1",
        "disk": "",
        "login": "password",
        "password": STRONG,
        "password_confirm": STRONG,
    }
    values.update(fields)
    return console.post("/servers/new", **values)


def field_of(html: str, field: str) -> tuple[str, str]:
    """The attributes of the form control ``field`` and its message (text and code)."""
    control = re.search(rf'<(?:input|select|textarea) id="{field}"[^>]*>', html)
    message = re.search(rf'<p class="field-message" id="{field}-error">(.*?)</p>', html, re.S)
    assert control is not None and message is not None, html[:3000]
    return control.group(0), re.sub(r"<[^>]+>", "", message.group(1))


# -- the list and the actions ------------------------------------------------------------------


def test_the_list_shows_each_server_with_the_actions_its_status_allows(console: Console) -> None:
    running = server_rows.add_server(
        console.services, console.project_id, console.image_id, status="ACTIVE", name="web-1"
    )
    stopped = server_rows.add_server(
        console.services, console.project_id, console.image_id, status="SHUTOFF", name="db-1"
    )
    server_rows.add_server(
        console.services, console.other_project_id, console.image_id, name="theirs"
    )
    page = console.client.get("/console/servers")
    assert page.status_code == 200
    html = page.text
    assert "web-1" in html and "db-1" in html and "theirs" not in html
    assert "Running" in html and "Stopped" in html and "debian-12" in html

    def buttons(server_id: str) -> dict[str, bool]:
        block = html.split(f'data-actions-of="{server_id}"', 1)[1].split("</div>", 1)[0]
        found = re.findall(r'data-action="(\w+)"( disabled)?', block)
        return {name: not disabled for name, disabled in found}

    assert buttons(running) == {"start": False, "stop": True, "reboot": True, "delete": True}
    assert buttons(stopped) == {"start": True, "stop": False, "reboot": False, "delete": True}
    states = console.client.get("/console/servers/states").json()["servers"]
    by_id = {s["id"]: s for s in states}
    assert by_id[running]["actions"] == ["stop", "reboot", "delete"]
    assert (by_id[running]["busy"], by_id[stopped]["label"]) == (False, "Stopped")


def test_stop_asks_the_service_and_the_status_shows_the_task(console: Console) -> None:
    server_id = server_rows.add_server(
        console.services, console.project_id, console.image_id, status="ACTIVE", name="web-1"
    )
    done = console.post(f"/servers/{server_id}/action", action="stop", back="list")
    assert done.status_code == 303
    assert done.headers["location"] == "/console/servers?done=stop&name=web-1"
    assert len(fake_queue(console.services).submitted) == 1  # the stopServers job
    state = console.client.get(f"/console/servers/{server_id}/state").json()
    assert (state["status"], state["task_state"], state["busy"]) == (
        "ACTIVE",
        "powering-off",
        True,
    )
    assert state["label"] == "Running · stopping" and state["actions"] == []
    listed = console.client.get("/console/servers?done=stop&name=web-1").text
    assert "Stopping web-1…" in listed
    # a second action while the task runs is the API's refusal, with its code
    again = console.post(f"/servers/{server_id}/action", action="reboot")
    assert again.status_code == 400 and codes.ECS_STATE in again.text


def test_another_projects_server_is_not_found_on_every_route(console: Console) -> None:
    theirs = server_rows.add_server(
        console.services, console.other_project_id, console.image_id, status="ACTIVE"
    )
    for path in (f"/servers/{theirs}", f"/servers/{theirs}/image"):
        page = console.client.get(f"/console{path}")
        assert page.status_code == 404 and "Not found" in page.text
    for path in (f"/servers/{theirs}/state", f"/servers/{theirs}/console-log"):
        answer = console.client.get(f"/console{path}")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == codes.ECS_NOT_FOUND
    for path in (f"/servers/{theirs}/serial-console", f"/servers/{theirs}/remote-console"):
        answer = console.client.post(f"/console{path}", headers={"X-CSRF-Token": console.csrf})
        assert answer.status_code == 404
    stop = console.post(f"/servers/{theirs}/action", action="stop")
    assert stop.status_code == 404
    assert fake_queue(console.services).submitted == []


# -- the create form ---------------------------------------------------------------------------


def test_the_form_offers_the_projects_images_flavors_and_key_pairs(console: Console) -> None:
    add_keypair(console.services, console.project_id, "laptop")
    active_image(console.services, console.other_project_id, "not-ours")
    active_image(console.services, console.project_id, "still-importing", status="queued")
    page = console.client.get(f"/console/servers/new?image={console.image_id}")
    html = page.text
    assert page.status_code == 200
    assert f'<option value="{console.image_id}" selected>debian-12' in html
    assert "not-ours" not in html and "still-importing" not in html
    assert "s1.small.1 (vCPUs: 1, memory: 1 GiB)" in html
    assert "s1.large.1 (vCPUs: 2, memory: 2 GiB)" in html
    assert '<option value="laptop"' in html
    for field in ("image", "name", "flavor", "disk", "keypair", "password", "password_confirm"):
        assert f'<label for="{field}">' in html


def test_a_created_server_opens_its_page_and_the_password_is_kept_nowhere(
    console: Console,
) -> None:
    made = create_form(console, disk="50")
    assert made.status_code == 303
    location = made.headers["location"]
    server_id = location.rsplit("/", 1)[1]
    assert location == f"/console/servers/{server_id}"
    page = console.client.get(location)
    assert page.status_code == 200
    assert "web-1" in page.text and "Creating" in page.text and "50 GiB" in page.text
    assert STRONG not in page.text
    row = server_rows.server_row(console.services, server_id)
    assert (row.flavor_id, row.disk_gib, row.status) == ("s1.small.1", 50, "BUILD")
    assert STRONG not in repr(tuple(row))
    assert VAULT.take(server_id) == STRONG  # in memory until the first start, as from the API


@pytest.mark.parametrize(
    ("fields", "field", "code", "words"),
    [
        ({"name": "no spaces allowed"}, "name", codes.ECS_INVALID, "letters, digits"),
        ({"disk": "20"}, "disk", codes.ECS_INVALID, "40-1024"),
        ({"disk": "lots"}, "disk", codes.ECS_INVALID, "whole number"),
        ({"flavor": "s9.huge"}, "flavor", codes.ECS_FLAVOR_UNKNOWN, "not a flavor"),
        ({"image": "0" * 36}, "image", codes.ECS_IMAGE_UNKNOWN, "no image"),
        ({"password": "weakpass", "password_confirm": "weakpass"}, "password", "Ecs.0011", "three"),
        ({"password_confirm": "Imageport-2031"}, "password_confirm", "Ecs.0011", "differ"),
        ({"login": "keypair"}, "keypair", codes.ECS_INVALID, "choose a key pair"),
        ({"login": "keypair", "keypair": "gone"}, "keypair", codes.ECS_KEYPAIR_UNKNOWN, "gone"),
    ],
)
def test_a_refused_field_is_shown_at_the_field_with_the_vendors_code(
    console: Console, fields: dict[str, str], field: str, code: str, words: str
) -> None:
    refused = create_form(console, **fields)
    html = refused.text
    assert refused.status_code == 400
    control, message = field_of(html, field)
    assert 'aria-invalid="true"' in control and f"{field}-error" in control
    assert code in message and words in message
    assert 'role="alert"' in html and f'href="#{field}"' in html
    # what was typed comes back, but never a password
    assert 'value="web-1"' in html or field == "name"
    assert STRONG not in html and "weakpass" not in html and "Imageport-2031" not in html
    assert fake_queue(console.services).submitted == []


def test_field_error_places_a_refusal_by_its_message_then_its_code() -> None:
    def place(code: str, message: str) -> str | None:
        return field_error(RequestInvalid(code, message)).field

    assert place(codes.ECS_INVALID, "root_volume.size: must be 40-1024 (GiB)") == "disk"
    assert place(codes.ECS_PASSWORD, "adminPass must be 8-26 characters long") == "password"
    assert place(codes.ECS_FLAVOR_UNKNOWN, "flavorRef 'x' is not a flavor") == "flavor"
    assert place(codes.ECS_QUOTA, "the project has 10 servers") is None
    assert field_error(RequestInvalid(codes.ECS_NO_RESOURCES, "host full")) == FieldError(
        None, codes.ECS_NO_RESOURCES, "host full"
    )


# -- a server's page -----------------------------------------------------------------------------


def test_the_page_shows_the_console_log_readable(console: Console) -> None:
    server_id = server_rows.add_server(
        console.services, console.project_id, console.image_id, status="ACTIVE", name="web-1"
    )
    machine = fake_host(console.services).machines[server_id]
    machine.console.extend(["\x1b[2J\x1b[1;1HBooting \x1b[32mDebian\x1b[0m", "web-1 login: "])
    page = console.client.get(f"/console/servers/{server_id}")
    assert page.status_code == 200
    assert "Booting Debian\nweb-1 login:" in page.text and "\x1b" not in page.text
    assert 'id="log-auto" checked' not in page.text  # it has booted: no refreshing
    assert page.text.count('name="back" value="server"') == 2  # its actions come back here
    log = console.client.get(f"/console/servers/{server_id}/console-log?lines=1").json()
    assert log == {"output": "web-1 login: "}


def test_console_tokens_come_from_the_consoles_service_for_a_running_server(
    console: Console,
) -> None:
    running = server_rows.add_server(
        console.services, console.project_id, console.image_id, status="ACTIVE"
    )
    stopped = server_rows.add_server(
        console.services, console.project_id, console.image_id, status="SHUTOFF"
    )
    headers = {"X-CSRF-Token": console.csrf}
    for route, socket in (
        ("serial-console", "/serial/websocket"),
        ("remote-console", "/vnc/websockify"),
    ):
        answer = console.client.post(f"/console/servers/{running}/{route}", headers=headers)
        path = answer.json()["path"]
        assert path.startswith(f"{socket}?token=")
        token = path.split("token=", 1)[1]
        assert console.services.console_tokens.project_of(token) == console.project_id
        refused = console.client.post(f"/console/servers/{stopped}/{route}", headers=headers)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == codes.ECS_STATE
        forged = console.client.post(f"/console/servers/{running}/{route}")
        assert forged.status_code == 403  # no anti-forgery value: no token


def test_create_image_from_the_server_opens_the_new_images_page(console: Console) -> None:
    server_id = server_rows.add_server(
        console.services, console.project_id, console.image_id, status="SHUTOFF", name="web-1"
    )
    form = console.client.get(f"/console/servers/{server_id}/image")
    assert form.status_code == 200 and '<label for="name">' in form.text
    refused = console.post(f"/servers/{server_id}/image", name=" spaced ")
    control, message = field_of(refused.text, "name")
    assert 'aria-invalid="true"' in control and codes.NAME_INVALID in message
    made = console.post(f"/servers/{server_id}/image", name="web-1-image", description="fixed")
    assert made.status_code == 303
    image_id = made.headers["location"].rsplit("/", 1)[1]
    assert made.headers["location"] == f"/console/images/{image_id}"
    listed = console.client.get("/console/images").text
    assert "web-1-image" in listed
    taken = console.post(f"/servers/{server_id}/image", name="web-1-image")
    _, message = field_of(taken.text, "name")
    assert codes.NAME_TAKEN in message


# -- pure helpers --------------------------------------------------------------------------------


def test_readable_log_leaves_what_a_terminal_would_show() -> None:
    raw = (
        "\x1b]0;title\x07\x1b[?25l\x1b[1;31mred\x1b[0m text\r\n"
        "progress 10%\rprogress 100%\r\n"
        "tab\tkept\x00\x07 bell gone\n"
        "\u202eevil\u202c order\n"
        "login: "
    )
    assert readable_log(raw) == (
        "red text\nprogress 100%\ntab\tkept bell gone\nevil order\nlogin: "
    )


def test_every_status_and_task_has_words_in_both_languages() -> None:
    for code in LANGUAGES:
        t = Language(code)
        for status in ServerStatus:
            assert t(f"servers.status.{status}")
        for task in TaskState:
            assert t(f"servers.task.{task}")


def test_the_pages_speak_chinese_too(console: Console) -> None:
    server_id = server_rows.add_server(
        console.services, console.project_id, console.image_id, status="SHUTOFF", name="web-1"
    )
    chinese = {"Accept-Language": "zh-CN,zh;q=0.9"}
    listed = console.client.get("/console/servers", headers=chinese).text
    assert "云服务器" in listed and "关机" in listed and "开机" in listed
    form = console.client.get("/console/servers/new", headers=chinese).text
    assert "创建云服务器" in form and "使用密码" in form
    page = console.client.get(f"/console/servers/{server_id}", headers=chinese).text
    assert "控制台日志" in page and "串口控制台" in page and "远程登录" in page
    refused = console.client.post(
        "/console/servers/new",
        data={"csrf": console.csrf, "image": console.image_id, "name": "bad name"},
        headers=chinese,
    ).text
    assert "提交未被接受" in refused and codes.ECS_INVALID in refused


def test_server_forms_refuse_a_field_they_do_not_read(console: Console) -> None:
    """A field the form does not offer (user_data, a server count...) was dropped and the server
    made without it; a console-token route took any body. Now each is refused with IMG.0001."""
    refused = create_form(console, user_data="I2Nsb3VkLWNvbmZpZw==")
    assert refused.status_code == 400
    assert "IMG.0001" in refused.text and "user_data" in refused.text
    assert fake_queue(console.services).submitted == []
    server_id = server_rows.add_server(
        console.services, console.project_id, console.image_id, status="ACTIVE", name="web-1"
    )
    stop = console.post(f"/servers/{server_id}/action", action="stop", type="HARD")
    assert stop.status_code == 400 and "type" in stop.text
    assert fake_queue(console.services).submitted == []
    image = console.post(f"/servers/{server_id}/image", name="web-1-image", min_ram="1024")
    assert image.status_code == 400 and "min_ram" in image.text
    token = console.client.post(
        f"/console/servers/{server_id}/remote-console",
        headers={"X-CSRF-Token": console.csrf},
        json={"remote_console": {"protocol": "vnc", "type": "novnc"}},
    )
    assert token.status_code == 400 and token.json()["error"]["code"] == "IMG.0001"


def test_the_create_form_knows_no_image_or_key_pair_of_another_project(console: Console) -> None:
    theirs = active_image(console.services, console.other_project_id, "their-image")
    add_keypair(console.services, console.other_project_id, "their-key")
    refused = create_form(console, image=theirs)
    assert refused.status_code == 400 and codes.ECS_IMAGE_UNKNOWN in refused.text
    refused = create_form(console, login="keypair", keypair="their-key")
    assert refused.status_code == 400 and codes.ECS_KEYPAIR_UNKNOWN in refused.text
    assert fake_queue(console.services).submitted == []


def test_no_image_is_made_of_another_projects_server(console: Console) -> None:
    theirs = server_rows.add_server(
        console.services, console.other_project_id, console.image_id, status="SHUTOFF"
    )
    made = console.post(f"/servers/{theirs}/image", name="their-disk")
    assert made.status_code == 404 and "Not found" in made.text
    assert "their-disk" not in console.client.get("/console/images").text


@pytest.mark.parametrize("login", ["sso", "Password", ""])
def test_a_login_the_form_does_not_offer_is_refused(console: Console, login: str) -> None:
    """``login`` is ``keypair`` or ``password``; any other value was read as "key pair"."""
    add_keypair(console.services, console.project_id, "laptop")
    refused = create_form(console, login=login, keypair="laptop")
    assert refused.status_code == 400 and "login" in refused.text
    assert fake_queue(console.services).submitted == []


def test_a_login_prompt_counts_when_the_guest_writes_after_it_on_its_line() -> None:
    from imageport.console.server_page import shows_login_prompt

    assert shows_login_prompt("Debian GNU/Linux 12 web-1 ttyS0\n\nweb-1 login: ")
    assert shows_login_prompt("web-1 login: [   63.54] cloud-init[420]: Cloud-init v. 22.4.2")
    assert not shows_login_prompt("Starting systemd-logind.service - User Login Management...")
    assert not shows_login_prompt("")
