"""The thread that follows one running machine: it reads the serial console into the
server's log and to its attached sessions, types what they send, and notices QEMU ending.

QEMU closes the serial socket when it exits, so the end of that stream is the first sign; the
watcher then makes sure the process is gone (``alive``, which reads ``/proc``: QEMU is not the
service's child) and reports the end: first ``cleanup`` (the host forgets the machine), then
:attr:`MachineWatcher.ended` is set, then, unless the host itself was stopping the machine
(:attr:`MachineWatcher.stopping`), ``stopped_by_itself`` (the guest powered off, or QEMU died).
If the stream ends while QEMU lives on, the watcher connects again. :meth:`detach` lets go of
a machine that keeps running (the service is shutting down).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from imageport.adapters.qemu.console_log import ConsoleFanout, ConsoleLog
from imageport.service.ports import MachineError

#: Seconds between two looks at whether QEMU still runs while its console is silent.
_LIVENESS_EVERY = 1.0
#: Seconds QEMU has to be gone once its console stream ended.
_EXIT_SECONDS = 10.0
#: Seconds one write to the console may block (a guest that does not read its serial port).
_TYPE_SECONDS = 5.0

log = logging.getLogger("imageport.servers")


class MachineWatcher:
    def __init__(
        self,
        server_id: str,
        serial_path: Path,
        serial: socket.socket,
        console_log: ConsoleLog,
        alive: Callable[[], bool],
        *,
        cleanup: Callable[[], None],
        stopped_by_itself: Callable[[], None],
    ) -> None:
        self.server_id = server_id
        self.fanout = ConsoleFanout(self._type)
        self.ended = threading.Event()
        #: set by the host before it stops the machine: the end is then not reported
        self.stopping = False
        self._serial_path = serial_path
        self._serial: socket.socket | None = serial
        self._log = console_log
        self._alive = alive
        self._cleanup = cleanup
        self._stopped_by_itself = stopped_by_itself
        self._lock = threading.Lock()
        self._detached = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"machine {server_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def detach(self) -> None:
        """Stop following the machine, which keeps running; returns once the thread ended."""
        self._detached.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._pump():
                if self._detached.is_set():
                    return
                if self._gone(_EXIT_SECONDS):
                    break
                self._reconnect()
        except Exception:  # a bug here must not leave the machine unaccounted for
            log.exception("watching server %s failed", self.server_id)
        finally:
            self._close_serial()
            self._log.close()
            self.fanout.end()
        if self._detached.is_set():
            return
        self._gone(_EXIT_SECONDS)
        self._cleanup()
        self.ended.set()
        if not self.stopping:
            log.info("server %s: the machine ended by itself", self.server_id)
            self._stopped_by_itself()

    def _pump(self) -> bool:
        """Copy console output until the stream ends (False) or QEMU is gone or the watcher
        is detached (True)."""
        last_look = time.monotonic()
        while not self._detached.is_set():
            sock = self._serial
            if sock is None:
                return False
            if select.select([sock], [], [], _LIVENESS_EVERY)[0]:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return False
                if not data:
                    return False
                self._log.append(data)
                self.fanout.publish(data)
            if time.monotonic() - last_look >= _LIVENESS_EVERY:
                last_look = time.monotonic()
                if not self._alive():
                    return True
        return True

    def _gone(self, seconds: float) -> bool:
        """Whether QEMU has ended (waiting up to ``seconds``)."""
        deadline = time.monotonic() + seconds
        while self._alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def _reconnect(self) -> None:
        self._close_serial()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self._serial_path))
        except OSError:
            sock.close()
            time.sleep(_LIVENESS_EVERY)
            return
        sock.settimeout(_TYPE_SECONDS)
        with self._lock:
            self._serial = sock

    def _close_serial(self) -> None:
        with self._lock:
            sock, self._serial = self._serial, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _type(self, data: bytes) -> None:
        with self._lock:
            if self._serial is None:
                raise MachineError("the console is not connected")
            try:
                self._serial.sendall(data)
            except OSError as exc:
                raise MachineError(f"typing on the console failed: {exc}") from exc
