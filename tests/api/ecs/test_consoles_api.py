"""The console routes over real HTTP: the vendor's SDK (huaweicloudsdkecs, unmodified) asks for
the URLs, and a WebSocket client (``websockets.sync.client``) opens them against the image API
served as ``imageport serve`` serves it (uvloop, the limited HTTP protocol upgrading to
WebSockets). Servers are rows with machines on the fake host; the display is a unix socket
served by an echo server that greets like VNC."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkecs.v2 import EcsClient
from huaweicloudsdkecs.v2 import model as m
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from imageport.api.ecs import console_sockets
from imageport.api.http_limits import WS_MAX_MESSAGE_BYTES
from imageport.service import codes
from imageport.service.access.projects import AccessKey, create_key, create_project
from imageport.service.clock import utc_now
from imageport.service.context import Services
from imageport.service.servers import consoles
from imageport.service.servers.console_tokens import TOKEN_SECONDS
from support import sdk_clients, service_fixtures
from support.console_servers import GREETING, EchoDisplay, add_server, serve_image_api
from support.fakes import FakeServerHost

VNC_BODY = b'{"remote_console": {"protocol": "vnc", "type": "novnc"}}'


@dataclass
class Api:
    base: str
    services: Services
    host: FakeServerHost
    alpha: AccessKey
    beta: AccessKey
    sockets: Path

    @property
    def ws_base(self) -> str:
        return "ws" + self.base.removeprefix("http")

    def ecs(self, key: AccessKey | None = None) -> EcsClient:
        return sdk_clients.ecs_client(self.base, key or self.alpha)

    def server(self, key: AccessKey | None = None, **row: str) -> str:
        return add_server(self.services, self.host, (key or self.alpha).project_id, **row)

    def display(self, server_id: str) -> EchoDisplay:
        """An echo display served for ``server_id``'s machine."""
        path = self.sockets / f"{server_id[:8]}.sock"
        self.host.vnc_sockets[server_id] = path
        return EchoDisplay(path)

    def display_url(self, server_id: str, key: AccessKey | None = None) -> str:
        """The WebSocket of a fresh remote_console URL, asked of the service layer (the SDK's
        own requests are the tests above: two identical signed POSTs in one second are a
        replay)."""
        pid = (key or self.alpha).project_id
        ticket = consoles.remote_console(self.services, pid, pid, server_id, VNC_BODY)
        return f"{self.ws_base}/vnc/websockify?token={ticket.token}"

    def serial_url(self, server_id: str, key: AccessKey | None = None) -> str:
        """A fresh serial-console URL (as :meth:`display_url`)."""
        pid = (key or self.alpha).project_id
        ticket = consoles.serial_console(self.services, pid, pid, server_id, b"")
        return f"{self.ws_base}/serial/websocket?token={ticket.token}"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("consoles")
    services = service_fixtures.make_fake_services(data / "data")
    host = FakeServerHost()
    services.host = host
    alpha = create_key(services, create_project(services, "alpha").id)
    beta = create_key(services, create_project(services, "beta").id)
    # unix socket paths must stay under 108 bytes
    with tempfile.TemporaryDirectory(prefix="vnc-") as sockets, serve_image_api(services) as base:
        yield Api(base, services, host, alpha, beta, Path(sockets))
    services.db.dispose()


def _refusal(open_it: Callable[[], object]) -> tuple[int, dict[str, str]]:
    """The HTTP status and error body the handshake was refused with (``open_it`` opens a
    WebSocket, which must be refused)."""
    with pytest.raises(InvalidStatus) as refused:
        opened = open_it()
        if isinstance(opened, ClientConnection):
            opened.close()
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


def _received(ws: ClientConnection, size: int) -> bytes:
    data = b""
    while len(data) < size:
        message = ws.recv(timeout=10)
        assert isinstance(message, bytes)
        data += message
    return data


def _closed(ws: ClientConnection) -> tuple[int, str]:
    """The close code and reason once the service closes ``ws`` (messages before are read)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=10)
    frame = closed.value.rcvd
    assert frame is not None, "closed without a close frame"
    return frame.code, frame.reason


def _wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- the URLs, through the vendor's SDK ---------------------------------------------------------


def test_the_sdk_gets_a_novnc_url_of_this_service(api: Api) -> None:
    server_id = api.server()
    body = m.ShowServerRemoteConsoleRequestBody(
        remote_console=m.GetServerRemoteConsoleOption(protocol="vnc", type="novnc")
    )
    answer = api.ecs().show_server_remote_console(
        m.ShowServerRemoteConsoleRequest(server_id=server_id, body=body)
    )
    console = answer.remote_console
    assert (console.protocol, console.type) == ("vnc", "novnc")
    url = urlsplit(console.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{api.base}/vnc/vnc_auto.html"
    assert len(parse_qs(url.query)["token"][0]) >= 43


def test_the_sdk_gets_a_serial_console_websocket_url(api: Api) -> None:
    answer = api.ecs().show_serial_console_actions(
        m.ShowSerialConsoleActionsRequest(server_id=api.server())
    )
    url = urlsplit(answer.serial_console.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{api.ws_base}/serial/websocket"
    assert len(parse_qs(url.query)["token"][0]) >= 43


def test_the_sdk_sees_the_vendors_errors(api: Api) -> None:
    active, stopped, theirs = api.server(), api.server(vm_state="stopped"), api.server(api.beta)
    client = api.ecs()

    def remote(server_id: str, protocol: str = "vnc") -> object:
        body = m.ShowServerRemoteConsoleRequestBody(
            remote_console=m.GetServerRemoteConsoleOption(protocol=protocol, type="novnc")
        )
        return client.show_server_remote_console(
            m.ShowServerRemoteConsoleRequest(server_id=server_id, body=body)
        )

    calls: list[tuple[Callable[[], object], int, str]] = [
        (lambda: remote(active, "spice"), 400, codes.ECS_INVALID),
        (lambda: remote(stopped), 400, codes.ECS_STATE),
        (lambda: remote(theirs), 404, codes.ECS_NOT_FOUND),
        (
            lambda: client.show_serial_console_actions(
                m.ShowSerialConsoleActionsRequest(server_id=stopped)
            ),
            400,
            codes.ECS_STATE,
        ),
    ]
    for call, status, code in calls:
        with pytest.raises(ClientRequestException) as refused:
            call()
        assert (refused.value.status_code, refused.value.error_code) == (status, code)


def test_the_display_page_is_the_viewer_and_echoes_nothing(api: Api) -> None:
    page = httpx.get(f"{api.base}/vnc/vnc_auto.html", params={"token": "<script>x</script>"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/static/vnc_auto.js">' in page.text
    assert "<script>" not in page.text and "token" not in page.text.split("<noscript>")[0]
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe" not in policy and "default-src 'none'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"


# -- the display's WebSocket --------------------------------------------------------------------


def test_the_display_bridges_bytes_both_ways(api: Api) -> None:
    server_id = api.server()
    display = api.display(server_id)
    with connect(api.display_url(server_id), subprotocols=["binary"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "binary"
        assert _received(ws, len(GREETING)) == GREETING
        sent = bytes(range(256)) * 1024  # 256 KiB in messages just under the cap
        step = WS_MAX_MESSAGE_BYTES - 1
        for start in range(0, len(sent), step):
            ws.send(sent[start : start + step])
        assert _received(ws, len(sent)) == sent
    assert display.connections == 1
    display.stop()


def test_a_display_url_opens_one_connection(api: Api) -> None:
    server_id = api.server()
    display = api.display(server_id)
    url = api.display_url(server_id)
    with connect(url) as ws:  # no subprotocol offered: none is chosen
        assert ws.subprotocol is None
        assert _received(ws, len(GREETING)) == GREETING
        status, body = _refusal(lambda: connect(url))
        assert (status, body["error_code"]) == (403, codes.ECS_FORBIDDEN)
    display.stop()


def test_the_display_is_refused_without_a_valid_token(api: Api) -> None:
    server_id = api.server()
    display = api.display(server_id)
    serial_token = parse_qs(urlsplit(api.serial_url(server_id)).query)["token"][0]
    for query in ["", "?token=", "?token=not-a-token", f"?token={serial_token}"]:
        url = f"{api.ws_base}/vnc/websockify{query}"
        status, body = _refusal(lambda: connect(url))  # noqa: B023 - called at once
        assert (status, body["error_code"]) == (403, codes.ECS_FORBIDDEN), query
    assert display.connections == 0
    display.stop()


def test_an_expired_display_url_is_refused(api: Api) -> None:
    server_id = api.server()
    url = api.display_url(server_id)
    api.services.clock = lambda: utc_now() + timedelta(seconds=TOKEN_SECONDS)
    try:
        status, body = _refusal(lambda: connect(url))
    finally:
        api.services.clock = utc_now
    assert (status, body["error_code"]) == (403, codes.ECS_FORBIDDEN)


def test_a_page_of_another_origin_cannot_open_a_console(api: Api) -> None:
    server_id = api.server()
    display = api.display(server_id)
    for origin in ["http://evil.example", "null", f"{api.base}.evil.example", "http://127.0.0.1"]:
        url = api.display_url(server_id)
        status, _ = _refusal(lambda: connect(url, origin=Origin(origin)))  # noqa: B023
        assert status == 403, origin
    # the service's own origin (its page) may
    with connect(api.display_url(server_id), origin=Origin(api.base)) as ws:
        assert _received(ws, len(GREETING)) == GREETING
    display.stop()


def test_only_the_binary_subprotocol_is_spoken(api: Api) -> None:
    server_id = api.server()
    status, body = _refusal(
        lambda: connect(api.display_url(server_id), subprotocols=["base64"])  # type: ignore[list-item]
    )
    assert (status, body["error_code"]) == (400, codes.ECS_INVALID)


def test_the_display_closes_when_the_machine_ends_it(api: Api) -> None:
    server_id = api.server()
    display = api.display(server_id)
    with connect(api.display_url(server_id)) as ws:
        assert _received(ws, len(GREETING)) == GREETING
        display.stop()
        assert _closed(ws) == (1000, "the server's display closed")


def test_the_display_closes_when_the_server_stops(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_sockets, "CHECK_SECONDS", 0.1)
    server_id = api.server()
    display = api.display(server_id)
    with connect(api.display_url(server_id)) as ws:
        assert _received(ws, len(GREETING)) == GREETING
        api.host.stop(server_id, hard=True, timeout=0)  # its socket left open: the look finds it
        assert _closed(ws) == (1000, "the server stopped")
    display.stop()


def test_the_display_refuses_text_and_oversized_messages(api: Api) -> None:
    server_id = api.server()
    display = api.display(server_id)
    with connect(api.display_url(server_id)) as ws:
        ws.send("text is not VNC")
        assert _closed(ws)[0] == 1003
    with connect(api.display_url(server_id), max_size=None) as ws:
        ws.send(b"x" * (WS_MAX_MESSAGE_BYTES + 1))
        assert _closed(ws)[0] == 1009  # message too big
    display.stop()


def test_an_idle_display_is_closed(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_sockets, "CHECK_SECONDS", 0.1)
    monkeypatch.setattr(console_sockets, "IDLE_SECONDS", 0.5)
    server_id = api.server()
    display = api.display(server_id)
    with connect(api.display_url(server_id)) as ws:
        started = time.monotonic()
        assert _closed(ws) == (1000, "nothing was sent for 0.5 s")  # the greeting is not activity
        assert time.monotonic() - started >= 0.5
    display.stop()


def _opens(url: str) -> bool:
    """Whether a WebSocket to ``url`` is accepted (it is closed again at once)."""
    try:
        with connect(url):
            return True
    except InvalidStatus as refused:
        if refused.response.status_code != 503:
            raise
        return False


def test_a_project_opens_a_bounded_number_of_consoles(api: Api) -> None:
    server_id = api.server(api.beta)
    with contextlib.ExitStack() as stack:
        opened = [
            stack.enter_context(connect(api.serial_url(server_id, api.beta)))
            for _ in range(console_sockets.MAX_SESSIONS_PER_PROJECT)
        ]
        status, body = _refusal(lambda: connect(api.serial_url(server_id, api.beta)))
        assert (status, body["error_code"]) == (503, "IMG.HTTP503")
        assert _opens(api.serial_url(api.server()))  # another project's is not held back
        opened[0].close()
        _wait_for(lambda: _opens(api.serial_url(server_id, api.beta)))


def test_a_console_refused_for_its_projects_count_keeps_its_url(api: Api) -> None:
    server_id = api.server(api.beta)
    with contextlib.ExitStack() as stack:
        opened = [
            stack.enter_context(connect(api.serial_url(server_id, api.beta)))
            for _ in range(console_sockets.MAX_SESSIONS_PER_PROJECT)
        ]
        url = api.serial_url(server_id, api.beta)
        assert not _opens(url) and not _opens(url)  # refused, twice: the URL is not used up
        opened[0].close()
        _wait_for(lambda: _opens(url))


def test_the_session_is_logged_with_its_token_masked(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    server_id = api.server()
    display = api.display(server_id)
    url = api.display_url(server_id)
    token = parse_qs(urlsplit(url).query)["token"][0]
    with caplog.at_level(logging.INFO, logger="imageport.access"):
        with connect(url) as ws:
            assert _received(ws, len(GREETING)) == GREETING
        _refusal(lambda: connect(url))
        _wait_for(lambda: len([r for r in caplog.records if r.name == "imageport.access"]) >= 2)
    lines = [vars(r) for r in caplog.records if r.name == "imageport.access"]
    assert [(line["path"], line["status"], line["websocket"]) for line in lines[-2:]] == [
        ("/vnc/websockify", 101, True),
        ("/vnc/websockify", 403, True),
    ]
    assert all(line["query"] == "token=***" for line in lines[-2:])
    assert token not in caplog.text
    display.stop()


# -- the serial console's WebSocket -------------------------------------------------------------


def test_the_serial_console_shows_output_and_types_input(api: Api) -> None:
    server_id = api.server()
    greeting = b"Debian GNU/Linux 12 vm1 ttyS0\r\n\r\nvm1 login: "
    api.host.console_greeting = greeting
    try:
        with connect(api.serial_url(server_id)) as ws:
            assert _received(ws, len(greeting)) == greeting
            console = api.host.consoles[-1]
            ws.send("root\r")  # text is typed as UTF-8
            ws.send(b"\x03")  # binary as it is
            _wait_for(lambda: console.typed == b"root\r\x03")
            api.host.guest_prints(server_id, b"Password: ")
            assert _received(ws, 10) == b"Password: "
            api.host.guest_powered_off(server_id)
            assert _closed(ws) == (1000, "the server stopped")
        _wait_for(lambda: console.closed)
    finally:
        api.host.console_greeting = b""


def test_input_sent_just_before_leaving_is_still_typed(api: Api) -> None:
    """A client that types and leaves at once (``echo cmd | imageport server console``) while
    the guest prints: its input is not lost to the output side noticing first."""
    server_id = api.server()
    api.host.console_greeting = b"x" * 65536
    try:
        for attempt in range(20):
            with connect(api.serial_url(server_id)) as ws:
                ws.send(b"typed %d\r" % attempt)
            _wait_for(lambda: api.host.consoles[-1].closed)
            assert api.host.consoles[-1].typed == b"typed %d\r" % attempt
    finally:
        api.host.console_greeting = b""


def test_the_serial_console_is_refused_without_a_valid_token(api: Api) -> None:
    server_id = api.server()
    url = api.serial_url(server_id)
    with connect(url):
        status, body = _refusal(lambda: connect(url))  # used
    assert (status, body["error_code"]) == (403, codes.ECS_FORBIDDEN)
    status, _ = _refusal(lambda: connect(f"{api.ws_base}/serial/websocket?token=forged"))
    assert status == 403


# -- the listener -------------------------------------------------------------------------------


def _raw_exchange(base: str, data: bytes) -> bytes:
    """Send ``data`` on one connection and read until the service closes it."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def test_a_websocket_pipelined_behind_a_request_is_not_opened(api: Api) -> None:
    url = urlsplit(api.display_url(api.server()))
    handshake = (
        f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    health = f"GET /health HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
    answer = _raw_exchange(api.base, health + handshake)
    assert answer.startswith(b"HTTP/1.1 200 ") and b" 101 " not in answer


def test_websockets_count_against_the_connection_caps(tmp_path: Path) -> None:
    services = service_fixtures.make_fake_services(
        tmp_path / "data", http_max_connections_per_client=2
    )
    host = FakeServerHost()
    services.host = host
    key = create_key(services, create_project(services, "alpha").id)
    server_id = add_server(services, host, key.project_id)
    api = Api("", services, host, key, key, tmp_path)
    with serve_image_api(services) as base:
        api.base = base
        with connect(api.serial_url(server_id)), connect(api.serial_url(server_id)):
            assert httpx.get(f"{base}/health").status_code == 503  # a third connection
        _wait_for(lambda: httpx.get(f"{base}/health").status_code == 200)
    services.db.dispose()
