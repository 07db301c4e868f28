"""``imageport server console``: a real CLI process attached to a server's serial console
through the image API as ``imageport serve`` serves it (the server a row with a machine on the
fake host), through a pipe and through a pseudo-terminal.

Looking a server up by name needs the server list (``GET /v1/{project_id}/cloudservers/detail``,
the vendor's ListServersDetails); a stub of that route stands in front of the API here."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from imageport.service.access.projects import AccessKey, create_key, create_project
from imageport.service.context import Services
from support import service_fixtures
from support.console_servers import add_server, serve_image_api
from support.fakes import FakeServerHost

IMAGEPORT = [sys.executable, "-m", "imageport.cli.main"]
GREETING = b"\r\nDebian GNU/Linux 12 vm1 ttyS0\r\n\r\nvm1 login: "


@dataclass
class ServerList:
    """A stub of ListServersDetails: ``servers`` answered to every ``.../cloudservers/detail``
    (``status`` other than 200 answers the vendor's error instead)."""

    servers: list[dict[str, str]] = field(default_factory=list)
    status: int = 200
    queries: list[bytes] = field(default_factory=list)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def stub(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not scope["path"].endswith("/cloudservers/detail"):
                await app(scope, receive, send)
                return
            self.queries.append(scope["query_string"])
            doc: object = {"count": len(self.servers), "servers": self.servers}
            if self.status != 200:
                doc = {"error": {"code": "IMG.NOT_FOUND", "message": "no such API"}}
            body = json.dumps(doc).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return stub


@dataclass
class Setup:
    services: Services
    host: FakeServerHost
    key: AccessKey
    listing: ServerList
    env: dict[str, str]

    def server(self, name: str = "vm1") -> str:
        server_id = add_server(self.services, self.host, self.key.project_id, name=name)
        self.listing.servers.append({"id": server_id, "name": name})
        return server_id

    def console(self, *args: str, **popen: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            [*IMAGEPORT, "server", "console", *args], env=self.env, **popen
        )

    @contextlib.contextmanager
    def piped(
        self, *args: str
    ) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes], IO[bytes]]]:
        """The console with its input, output and errors piped: (process, in, out, err)."""
        with self.console(
            *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:
            assert proc.stdin and proc.stdout and proc.stderr
            try:
                yield proc, proc.stdin, proc.stdout, proc.stderr
            finally:
                if proc.poll() is None:
                    proc.kill()

    def run(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*IMAGEPORT, "server", "console", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    services = service_fixtures.make_fake_services(tmp_path / "data")
    host = FakeServerHost()
    host.console_greeting = GREETING
    services.host = host
    key = create_key(services, create_project(services, "alpha").id)
    listing = ServerList()
    with serve_image_api(services, listing.wrap) as base:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPORT_")}
        env.update(
            IMAGEPORT_ENDPOINT=base,
            IMAGEPORT_ACCESS_KEY=key.access_key,
            IMAGEPORT_SECRET_KEY=key.secret_key,
            IMAGEPORT_PROJECT_ID=key.project_id,
            HOME=str(tmp_path),
            XDG_CONFIG_HOME=str(tmp_path / "config"),
        )
        yield Setup(services, host, key, listing, env)
    services.db.dispose()


def _wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _read_until(fd: int, wanted: bytes, seconds: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while wanted not in seen:
        assert time.monotonic() < deadline, f"never saw {wanted!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the pty's other end closed
                break
            seen += chunk
    return seen


def test_the_console_shows_the_guest_and_types_what_is_piped_in(setup: Setup) -> None:
    server_id = setup.server()
    with setup.piped(server_id) as (proc, stdin, stdout, stderr):
        seen = _read_until(stdout.fileno(), b"vm1 login: ")
        assert seen == GREETING
        stdin.write(b"root\n")
        stdin.flush()
        _wait_for(lambda: setup.host.consoles[-1].typed == b"root\n")
        setup.host.guest_prints(server_id, b"Password: ")
        assert _read_until(stdout.fileno(), b"Password: ") == b"Password: "
        stdin.write(b"secret\x1dnot typed")  # Ctrl-] detaches; what follows is not sent
        stdin.flush()
        assert proc.wait(30) == 0
        assert b"imageport: detached" in stderr.read()
    assert setup.host.consoles[-1].typed == b"root\nsecret"
    _wait_for(lambda: setup.host.consoles[-1].closed)


def test_the_end_of_the_input_detaches(setup: Setup) -> None:
    done = setup.run(setup.server(), stdin=b"root\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().endswith("imageport: detached\n")
    _wait_for(lambda: setup.host.consoles[-1].typed == b"root\n")


def test_the_console_ends_when_the_server_stops(setup: Setup) -> None:
    server_id = setup.server()
    with setup.piped(server_id) as (proc, _, stdout, stderr):
        _read_until(stdout.fileno(), b"vm1 login: ")
        setup.host.guest_powered_off(server_id)
        assert proc.wait(30) == 1
        assert "imageport: the console closed: the server stopped" in stderr.read().decode()


def test_a_terminal_is_put_in_raw_mode_so_every_key_reaches_the_guest(setup: Setup) -> None:
    server_id = setup.server()
    controller, terminal = pty.openpty()
    proc = setup.console(server_id, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    try:
        _read_until(controller, b"vm1 login: ")
        # no line editing, no echo by the terminal, Ctrl-C is a key, not a signal
        os.write(controller, b"ro\x7fot\r\x03")
        _wait_for(lambda: setup.host.consoles[-1].typed == b"ro\x7fot\r\x03")
        os.write(controller, b"\x1d")
        assert proc.wait(30) == 0
        assert b"imageport: detached" in _read_until(controller, b"detached")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)


def test_a_server_is_found_by_its_name(setup: Setup) -> None:
    setup.server("web")
    other = setup.server("db")
    done = setup.run("db", stdin=b"\x1d")
    assert done.returncode == 0, done.stderr
    assert setup.host.calls[-1] == ("attach_console", other)
    assert setup.listing.queries[-1] == b"name=db"


def test_a_name_must_name_exactly_one_server(setup: Setup) -> None:
    setup.server("twin")
    setup.server("twin")
    done = setup.run("twin")
    assert done.returncode == 2
    assert "2 servers are named 'twin': give the id of one" in done.stderr.decode()
    done = setup.run("nobody")
    assert (done.returncode, done.stderr.decode()) == (
        2,
        "imageport: no server is named 'nobody'\n",
    )
    setup.listing.status = 404  # a service without the server list
    done = setup.run("twin")
    assert done.returncode == 2
    assert "this service lists no servers): give its id" in done.stderr.decode()


def test_a_server_without_a_console_is_an_error(setup: Setup) -> None:
    server_id = setup.server()
    setup.host.stop(server_id, hard=True, timeout=0)
    # the row still says ACTIVE: the URL is given, the WebSocket is refused
    done = setup.run(server_id)
    assert done.returncode == 2
    assert "has no console now: its machine does not run" in done.stderr.decode()
