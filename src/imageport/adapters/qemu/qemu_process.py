"""The QEMU process of a server: started, found, ended.

:func:`launch` starts QEMU (which daemonizes: the service does not keep it as a child) and
answers the pid it runs as, read from its pid file and checked against ``/proc``; a failed
start raises with QEMU's own message. :func:`kill` ends a QEMU only while ``/proc`` still shows
it as that server's (:func:`~.machine_files.qemu_pid`), so a reused pid is never killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from imageport.adapters.qemu.machine_files import MachineFiles, qemu_pid
from imageport.service.ports import MachineError

#: Seconds QEMU has to open everything and daemonize, and to end after ``quit`` or a kill.
START_SECONDS = 30.0
END_SECONDS = 30.0
#: What QEMU says when it cannot bind the SSH forward's port (another program took it).
PORT_TAKEN = "host forwarding"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connect(path: Path, timeout: float) -> socket.socket:
    """A connection to the unix socket ``path`` (QEMU's QMP or serial console)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def launch(files: MachineFiles, argv: list[str]) -> int:
    """Start QEMU (it daemonizes, paused by ``-S``); the pid it runs as."""
    files.remove_sockets()
    files.pid_file.unlink(missing_ok=True)
    fd = os.open(files.qemu_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as qemu_log:
        proc = subprocess.Popen(  # noqa: S603 - argument list built here, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=qemu_log,
            stderr=qemu_log,
            cwd=files.folder,
            start_new_session=True,
            umask=0o077,
        )
    try:
        status = proc.wait(START_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise MachineError(f"QEMU did not start in {START_SECONDS:.0f} s") from None
    pid = qemu_pid(files, files.daemon_pid())
    if status != 0 or pid is None:
        message = _qemu_message(files) or f"exit status {status}, no message"
        raise MachineError(f"QEMU did not start: {message}")
    return pid


def _qemu_message(files: MachineFiles) -> str:
    try:
        data = files.qemu_log.read_bytes()[-2000:]
    except OSError:
        return ""
    return data.decode(errors="replace").strip()


def kill(pid: int, files: MachineFiles) -> None:
    """SIGKILL the QEMU ``pid`` of the server of ``files``, if that is still what ``pid`` is.
    (Its metadata relays need no killing: each ends when its guest connection does.)"""
    if qemu_pid(files, pid) is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_gone(pid: int, files: MachineFiles) -> None:
    """Wait (up to :data:`END_SECONDS`) until ``pid`` is no QEMU of that server any more."""
    deadline = time.monotonic() + END_SECONDS
    while qemu_pid(files, pid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
