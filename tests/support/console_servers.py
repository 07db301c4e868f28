"""What the console tests need around a server: a server row, its fake machine, a VNC-like unix
socket, and the image API served as ``imageport serve`` serves it.

* :func:`add_server` inserts a server row directly (the server CRUD is another module's) and
  makes and starts its machine on a :class:`~fakes.FakeServerHost`
  (:func:`support.server_rows.add_server`).
* :class:`EchoDisplay` serves a unix socket as QEMU's VNC socket would be reached: it greets
  each connection with an RFB version line, then echoes every byte back; :meth:`EchoDisplay.stop`
  drops its connections, as QEMU's end does.
* :func:`serve_image_api` runs the image API application of ``imageport serve``
  (:func:`imageport.server.build_apps`) under the same uvicorn server (the limited HTTP
  protocol, WebSockets on) in a background thread, on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import uvloop
from starlette.types import ASGIApp

from imageport.api.http_limits import HttpLimits
from imageport.server import bind, build_apps, make_server
from imageport.service.clock import new_uuid
from imageport.service.context import Services
from support import server_rows
from support.fakes import FakeServerHost

GREETING = b"RFB 003.008\n"
#: The ``vm_state`` the console tests give a server -> its ``status``.
CONSOLE_STATES = {"active": "ACTIVE", "stopped": "SHUTOFF", "building": "BUILD"}


def add_server(
    services: Services,
    host: FakeServerHost,
    project_id: str,
    *,
    name: str = "vm1",
    vm_state: str = "active",
    task_state: str | None = None,
) -> str:
    """A server row of ``project_id`` in ``vm_state`` (and ``task_state``), its machine on
    ``host`` (which must be ``services.host``) running when ``vm_state`` is ``active``, made
    by :func:`support.server_rows.add_server`: the id."""
    assert services.host is host
    status = CONSOLE_STATES[vm_state]
    return server_rows.add_server(
        services, project_id, new_uuid(), status=status, task_state=task_state, name=name
    )


class EchoDisplay:
    """A unix socket server that greets with :data:`GREETING` and echoes (see the module
    docstring); counts its connections."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(8)
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(GREETING)
            while data := conn.recv(65536):
                conn.sendall(data)
        conn.close()

    def stop(self) -> None:
        """Stop listening and end every connection (the machine went away)."""
        self._listener.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._open.clear()


@contextlib.contextmanager
def serve_image_api(
    services: Services, wrap: Callable[[ASGIApp], ASGIApp] | None = None
) -> Iterator[str]:
    """The image API of ``imageport serve`` over ``services`` on a free loopback port, in a
    thread (uvloop, the limited protocol, WebSockets on); yields its base URL. ``wrap`` puts
    a test's stub routes in front of it."""
    sock = bind("127.0.0.1", 0)
    app, _ = build_apps(services)
    if wrap is not None:
        app = wrap(app)
    server = make_server(app, HttpLimits.from_settings(services.settings), "ims")

    def run() -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the image API did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
