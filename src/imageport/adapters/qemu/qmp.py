"""A minimal client of QEMU's machine protocol (QMP) on a connected unix socket: the
capabilities handshake, then commands one at a time; events in between are skipped.

The boot test uses it for ``screendump`` (the display as PNG), ``query-status`` and ``quit``;
the servers for power (``cont``, ``stop``, ``system_powerdown``, ``system_reset``, ``send-key``,
``quit``). Nothing of the guest passes through it. Every read has a deadline and an answer is
capped at :data:`MAX_REPLY` bytes. Failures raise the error class the caller names
(:class:`~imageport.service.ports.BootError` by default)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from imageport.errors import ImageportError
from imageport.service.ports import BootError

#: Bytes one QMP reply may have (query-status is tiny; events carry a few hundred bytes).
MAX_REPLY = 1 << 20


class Qmp:
    def __init__(
        self,
        sock: socket.socket,
        timeout: float = 10.0,
        *,
        error: type[ImageportError] = BootError,
    ) -> None:
        self._sock = sock
        self._buf = b""
        self._timeout = timeout
        self._error = error
        self._read_message(time.monotonic() + timeout)  # the greeting
        self.execute("qmp_capabilities")

    def close(self) -> None:
        self._sock.close()

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command``; its ``return`` value. The error class on an error reply."""
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise self._error(f"QEMU's machine protocol socket failed: {exc}") from exc
        deadline = time.monotonic() + self._timeout
        while True:
            reply = self._read_message(deadline)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise self._error(f"QEMU refused {command}: {reply['error'].get('desc', reply)}")
            # an event ({"event": ...}): not the answer

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._error("QEMU's machine protocol did not answer in time")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError as exc:
                raise self._error("QEMU's machine protocol did not answer in time") from exc
            except OSError as exc:
                raise self._error(f"QEMU's machine protocol socket failed: {exc}") from exc
            if not chunk:
                raise self._error("QEMU closed its machine protocol socket")
            self._buf += chunk
            if len(self._buf) > MAX_REPLY:
                raise self._error("QEMU's machine protocol sent an over-long reply")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise self._error("QEMU's machine protocol sent something that is not JSON") from exc
        if not isinstance(value, dict):
            raise self._error("QEMU's machine protocol sent something that is not an object")
        return value
