"""A minimal client of QEMU's machine protocol (QMP) on a connected unix socket: the
capabilities handshake, then commands one at a time; events in between are skipped.

Used for ``screendump`` (the display as PNG), ``query-status`` and ``quit``; nothing of the
guest passes through it. Every read has a deadline and an answer is capped at
:data:`MAX_REPLY` bytes."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from imageport.service.ports import BootError

#: Bytes one QMP reply may have (query-status is tiny; events carry a few hundred bytes).
MAX_REPLY = 1 << 20


class Qmp:
    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self._sock = sock
        self._buf = b""
        self._timeout = timeout
        self._read_message(time.monotonic() + timeout)  # the greeting
        self.execute("qmp_capabilities")

    def close(self) -> None:
        self._sock.close()

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command``; its ``return`` value. :class:`BootError` on an error reply."""
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self._sock.sendall(json.dumps(message).encode() + b"\n")
        deadline = time.monotonic() + self._timeout
        while True:
            reply = self._read_message(deadline)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise BootError(f"QEMU refused {command}: {reply['error'].get('desc', reply)}")
            # an event ({"event": ...}): not the answer

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BootError("QEMU's machine protocol did not answer in time")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError as exc:
                raise BootError("QEMU's machine protocol did not answer in time") from exc
            if not chunk:
                raise BootError("QEMU closed its machine protocol socket")
            self._buf += chunk
            if len(self._buf) > MAX_REPLY:
                raise BootError("QEMU's machine protocol sent an over-long reply")
        line, self._buf = self._buf.split(b"\n", 1)
        value = json.loads(line)
        if not isinstance(value, dict):
            raise BootError("QEMU's machine protocol sent something that is not an object")
        return value
