"""A tiny HTTP CONNECT proxy for tests: every tunnel goes to one local port.

esdk-obs speaks its OBS dialect only to a DNS name in virtual-host mode
(``Host: <bucket>.<domain>``), and it cannot resolve a made-up domain. Given
``proxy_host``/``proxy_port`` it opens each connection with ``CONNECT <host>:<port> HTTP/1.0``
(also for plain http; it never sends absolute-form ``GET http://...`` requests), so this proxy
answers ``200 Connection established`` and pipes the bytes both ways to ``127.0.0.1:<target
port>``, whatever host the CONNECT named. Anything else is answered 405 and closed.

    with ConnectProxy(target_port) as proxy:
        ObsClient(..., server="http://obs.test:80", proxy_host="127.0.0.1", proxy_port=proxy.port)
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from types import TracebackType

MAX_HEAD = 8192
CHUNK = 64 * 1024
TIMEOUT = 30.0


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until end of stream, then end ``sink``'s sending side."""
    try:
        while chunk := source.recv(CHUNK):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    """The request head (up to the blank line) and whatever bytes followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(MAX_HEAD)
        if not chunk or len(data) + len(chunk) > MAX_HEAD:
            return b"", b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


class _Tunnel(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(TIMEOUT)
        head, rest = _read_head(conn)
        method, _, target = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        if method != "CONNECT":
            conn.sendall(
                b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        self.server.connects.append(target.split(" ", 1)[0])
        with socket.create_connection(
            ("127.0.0.1", self.server.target_port), timeout=TIMEOUT
        ) as upstream:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
            back.start()
            _pipe(conn, upstream)
            back.join(TIMEOUT)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.target_port = target_port
        self.connects: list[str] = []


class ConnectProxy:
    """The proxy on ``127.0.0.1:<port>`` while the ``with`` block runs; :attr:`connects` lists
    the ``host:port`` each CONNECT named, in order."""

    def __init__(self, target_port: int) -> None:
        self._server = _Server(target_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def connects(self) -> list[str]:
        return list(self._server.connects)

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)
