"""The metadata service of one server: plain HTTP on a unix socket of its own, answered from
its :class:`~.metadata_tree.MetadataTree` (what the guest fetches from
``http://169.254.169.254/openstack/...``).

How a guest's request gets here: QEMU's user network forwards the guest's connections to
169.254.169.254:80 (``guestfwd``) to a relay it starts per connection
(:mod:`.metadata_relay`), which connects to this server's socket. The socket is in Linux's
abstract namespace (no file, so QEMU, which runs as an unprivileged user, needs no path into
the service's data folder), named after the servers folder and the server id. Both ends check
who is at the other one with ``SO_PEERCRED``: the service answers only a peer running as the
user QEMU runs as (or as itself), and the relay talks only to a listener running as the
service's user, so no other local user can read a server's documents or answer in the
service's place while it is down.

Each connection carries one request (``GET`` or ``HEAD``; its head at most
:data:`MAX_REQUEST_BYTES`, sent within :data:`REQUEST_SECONDS`), answered with
``Connection: close``; at most :data:`MAX_CONNECTIONS` are served at once, more are closed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import select
import socket
import struct
import threading
import time
from pathlib import Path

from imageport.adapters.qemu.metadata_tree import MetadataTree
from imageport.service.ports import MachineError

MAX_REQUEST_BYTES = 16 * 1024
REQUEST_SECONDS = 10.0
MAX_CONNECTIONS = 8
#: How often the accepting thread looks whether it was closed.
_POLL_SECONDS = 0.5
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}

log = logging.getLogger("imageport.servers")


def socket_name(servers_dir: Path, server_id: str) -> str:
    """The abstract socket name of a server's metadata service (without the leading NUL):
    distinct for each installation (servers folder) and server."""
    installation = hashlib.sha256(str(servers_dir.resolve()).encode()).hexdigest()[:16]
    return f"imageport/{installation}/{server_id}/metadata"


def peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end of a connected unix socket."""
    _pid, uid, _gid = _CRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    )
    return int(uid)


def request_line(head: bytes) -> bytes:
    """The request line of ``head`` (ended by CRLF or a bare LF, as :func:`http_answer` reads
    it)."""
    return head.split(b"\n", 1)[0].rstrip(b"\r")


def logged_line(head: bytes) -> str:
    """The request line as it is logged: at most 200 bytes, every byte that is not printable
    ASCII escaped (``\\xNN``), so a guest cannot write lines or terminal controls into the
    service's log."""
    return "".join(
        chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}"
        for b in request_line(head)[:200]
    )


def http_answer(tree: MetadataTree, head: bytes) -> bytes:
    """The whole HTTP response to a request whose head (request line and headers) is
    ``head``."""
    line = request_line(head)
    fields = line.split(b" ")
    if len(fields) != 3 or not fields[1].startswith(b"/") or not fields[2].startswith(b"HTTP/1."):
        return _response(400, b"bad request\n", head_only=False)
    method, target = fields[0], fields[1].decode("ascii", errors="replace")
    if method not in (b"GET", b"HEAD"):
        return _response(405, b"only GET\n", head_only=False)
    body = tree.answer(target)
    if body is None:
        return _response(404, b"not found\n", head_only=method == b"HEAD")
    kind = "application/json" if target.split("?")[0].endswith(".json") else "text/plain"
    return _response(200, body, head_only=method == b"HEAD", kind=kind)


def _response(status: int, body: bytes, *, head_only: bool, kind: str = "text/plain") -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {kind}; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + body


class MetadataService:
    """Answers one server's documents on the abstract socket ``name`` to peers running as one
    of ``peer_uids``, in a thread of this process, until :meth:`close`."""

    def __init__(self, name: str, tree: MetadataTree, peer_uids: frozenset[int]) -> None:
        self.name = name
        self.tree = tree
        self.peer_uids = peer_uids
        self._listener: socket.socket | None = None
        self._closed = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen; :class:`MachineError` when the name is taken (another process answers
        for this server: a second service on the same data, or a squatter)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind("\0" + self.name)
        except OSError as exc:
            listener.close()
            raise MachineError(
                f"the metadata socket @{self.name} is taken by another process: {exc}"
            ) from exc
        listener.listen(16)
        self._listener = listener
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"metadata {self.name}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
        if self._listener is not None:
            self._listener.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None  # started
        while not self._closed.is_set():
            if not select.select([self._listener], [], [], _POLL_SECONDS)[0]:
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            if peer_uid(conn) not in self.peer_uids or not self._slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            head = _read_head(conn)
            if head is not None:
                conn.settimeout(REQUEST_SECONDS)
                answer = http_answer(self.tree, head)
                log.info(
                    "metadata @%s: %s -> %s",
                    self.name,
                    logged_line(head),
                    answer[9:12].decode(),
                )
                conn.sendall(answer)
        except OSError as exc:
            log.debug("metadata request on @%s failed: %s", self.name, exc)
        finally:
            conn.close()
            self._slots.release()


def _read_head(conn: socket.socket) -> bytes | None:
    """The request's head, or None when it is too long, too slow or cut short."""
    deadline = time.monotonic() + REQUEST_SECONDS
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        conn.settimeout(left)
        with contextlib.suppress(TimeoutError):
            chunk = conn.recv(4096)
            if not chunk:
                return None
            data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            return None
    return data
