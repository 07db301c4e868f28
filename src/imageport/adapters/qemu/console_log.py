"""A server's serial console: its log, kept bounded in a file of the server's folder, and the
interactive sessions attached to it.

:class:`ConsoleLog` appends what the guest writes and, when the file passes
:data:`KEEP_BYTES` + :data:`SLACK_BYTES`, rewrites it to its last :data:`KEEP_BYTES` (from a
line start), so a guest that writes without end costs a bounded file. :func:`last_lines` reads
the tail back (also when the machine is off: the file stays until the server is deleted).

:class:`ConsoleFanout` hands the same output to every attached :class:`ConsoleSession`; each
keeps at most :data:`SESSION_BUFFER` unread bytes (a reader that falls behind loses the oldest,
the machine never waits for it). What a session types goes to the guest's serial port.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from imageport.service.ports import MachineError

KEEP_BYTES = 1 << 20
SLACK_BYTES = 256 << 10
SESSION_BUFFER = 256 << 10
#: Sessions one machine may have at once.
MAX_SESSIONS = 8
#: Bytes one write of a session may type.
MAX_TYPED = 64 << 10


class ConsoleLog:
    """Appends to ``path`` (made 0600), trimmed to about its last :data:`KEEP_BYTES`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self._size = os.fstat(self._fd).st_size

    def append(self, data: bytes) -> None:
        os.write(self._fd, data)
        self._size += len(data)
        if self._size > KEEP_BYTES + SLACK_BYTES:
            self._trim()

    def close(self) -> None:
        os.close(self._fd)

    def _trim(self) -> None:
        kept = _tail_bytes(self.path, KEEP_BYTES)
        partial = self.path.with_name(self.path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(kept)
        partial.replace(self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        self._size = len(kept)


_LINE_END = re.compile(r"\r*\n|\r+")


def last_lines(path: Path, lines: int | None) -> str:
    """The last ``lines`` lines of the log at ``path`` (None: all it keeps; 0: none), with
    line ends as ``\\n``; '' when there is no log. CRs before a LF are one line end (a
    guest's terminal driver writes ``\\r\\r\\n`` for a program's ``\\r\\n``); a CR alone ends
    a line too."""
    if lines is not None and lines <= 0:
        return ""
    try:
        data = _tail_bytes(path, KEEP_BYTES + SLACK_BYTES)
    except FileNotFoundError:
        return ""
    text = _LINE_END.sub("\n", data.decode("utf-8", errors="replace"))
    kept = text.split("\n")
    if kept and kept[-1] == "":
        kept.pop()
    if lines is not None:
        kept = kept[-lines:]
    return "\n".join(kept)


def _tail_bytes(path: Path, count: int) -> bytes:
    """The last ``count`` bytes of ``path``, from the first line start in them."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size <= count:
            f.seek(0)
            return f.read()
        f.seek(size - count)
        data = f.read(count)
    newline = data.find(b"\n")
    return data[newline + 1 :] if newline >= 0 else data


class ConsoleFanout:
    """The output of one machine's serial console, for every session attached; ``send``
    types into the console (raises :class:`MachineError` when it cannot)."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._sessions: set[AttachedConsole] = set()
        self._ended = False

    def attach(self) -> AttachedConsole:
        with self._lock:
            if self._ended:
                raise MachineError("the machine is off")
            if len(self._sessions) >= MAX_SESSIONS:
                raise MachineError(f"the console has {MAX_SESSIONS} sessions attached already")
            session = AttachedConsole(self)
            self._sessions.add(session)
            return session

    def publish(self, data: bytes) -> None:
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.feed(data)

    def end(self) -> None:
        """The machine is gone: every session's next read raises :class:`MachineError`."""
        with self._lock:
            self._ended = True
            sessions = list(self._sessions)
            self._sessions.clear()
        for session in sessions:
            session.end()

    def type(self, data: bytes) -> None:
        with self._lock:
            if self._ended:
                raise MachineError("the machine is off")
        for start in range(0, len(data), MAX_TYPED):
            self._send(data[start : start + MAX_TYPED])

    def detach(self, session: AttachedConsole) -> None:
        with self._lock:
            self._sessions.discard(session)


class AttachedConsole:
    """One interactive session (the :class:`~imageport.service.ports.ConsoleSession` port)."""

    def __init__(self, fanout: ConsoleFanout) -> None:
        self._fanout = fanout
        self._buffer = bytearray()
        self._ready = threading.Condition()
        self._ended = False
        self._closed = False

    def feed(self, data: bytes) -> None:
        with self._ready:
            self._buffer += data
            if len(self._buffer) > SESSION_BUFFER:
                del self._buffer[: len(self._buffer) - SESSION_BUFFER]
            self._ready.notify_all()

    def end(self) -> None:
        with self._ready:
            self._ended = True
            self._ready.notify_all()

    def read(self, timeout: float) -> bytes:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._ready:
            while not self._buffer and not self._ended and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return b""
                self._ready.wait(left)
            if self._buffer:
                data = bytes(self._buffer)
                self._buffer.clear()
                return data
        raise MachineError("the machine is off" if self._ended else "the session is closed")

    def write(self, data: bytes) -> None:
        if self._closed:
            raise MachineError("the session is closed")
        self._fanout.type(data)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._fanout.detach(self)
