"""Run a command in a limited worker process: rlimits, own session, wall clock, cancellation.

:func:`run_limited` starts ``command`` through the :mod:`~imageport.worker.launcher`
launcher (which sets ``RLIMIT_AS``, ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` and ``RLIMIT_CORE`` = 0 on
itself, then execs the command) in a new session, so that a timeout or a cancellation kills the
whole process group. It reads the command's stdout (capped: a worker that prints more than
``stdout_cap`` bytes is killed) and keeps the tail of its stderr to explain failures, naming the
limit that was hit when one was.

Raises :class:`~imageport.service.ports.WorkerError` (failed, with a reason for the
user) or :class:`~imageport.service.ports.WorkerCancelledError`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from imageport.service.ports import WorkerCancelledError, WorkerError
from imageport.settings import Settings
from imageport.worker import launcher

MiB = 1 << 20
#: Largest file the checker may write (it writes none; a little room for the runtime).
CHECK_FILE_BYTES = 1 * MiB
#: Most CPU seconds judging a header window at registration may take.
HEADER_CPU_SECONDS = 5
#: Most CPU seconds planning automatic configuration may take.
PLAN_CPU_SECONDS = 300
#: Largest file the configuration planner may write (one file the plan puts into the guest).
PLAN_FILE_BYTES = 256 * MiB
#: Most stdout bytes read from a worker (its JSON document); more kills it.
STDOUT_CAP = 16 * MiB
#: Bytes of a worker's stderr kept to explain a failure.
STDERR_TAIL = 64 * 1024
#: Seconds between checks of the wall clock and of ``cancelled()``.
POLL_SECONDS = 0.2
_MEMORY_SIGNS = (
    "MemoryError",
    "Cannot allocate memory",
    "failed to allocate",
    "failed to map segment",
    "cannot allocate",
    "Out of memory",
    "out of memory",
)


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """The resource limits of one worker process."""

    memory_bytes: int
    cpu_seconds: int
    file_bytes: int
    #: Wall-clock seconds before the worker is killed (a hang that uses no CPU).
    wall_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerLimits:
        """The limits from ``settings``; the wall clock defaults to twice the CPU limit."""
        wall = settings.worker_wall_seconds
        return cls(
            memory_bytes=settings.worker_memory_bytes,
            cpu_seconds=settings.worker_cpu_seconds,
            file_bytes=settings.worker_file_bytes,
            wall_seconds=float(wall) if wall else 2.0 * settings.worker_cpu_seconds + 60,
        )

    @classmethod
    def for_check(cls, settings: Settings) -> WorkerLimits:
        """The far tighter limits of the checker, which reads headers, tables and a few guest
        files of an untrusted image and writes nothing: ``check_cpu_seconds`` of CPU (a well
        formed image of any size is checked in about a second), three times that plus 30 s of
        wall clock, at most ``worker_memory_bytes`` of memory, and no file written."""
        cpu = settings.check_cpu_seconds
        return cls(
            memory_bytes=settings.worker_memory_bytes,
            cpu_seconds=cpu,
            file_bytes=CHECK_FILE_BYTES,
            wall_seconds=3.0 * cpu + 30,
        )

    @classmethod
    def for_plan(cls, settings: Settings) -> WorkerLimits:
        """The limits of planning automatic configuration: the checker's memory, at most
        :data:`PLAN_CPU_SECONDS` of CPU (reading the guest's files, and building an initrd
        segment where drivers are missing) and three times that plus 30 s of wall clock, and
        no file larger than ``file_bytes`` (the most a plan may write into the guest)."""
        cpu = min(settings.worker_cpu_seconds, PLAN_CPU_SECONDS)
        return cls(
            memory_bytes=settings.worker_memory_bytes,
            cpu_seconds=cpu,
            file_bytes=PLAN_FILE_BYTES,
            wall_seconds=3.0 * cpu + 30,
        )

    @classmethod
    def for_header(cls, settings: Settings) -> WorkerLimits:
        """The limits of judging a header window at registration, while the client waits:
        the checker's, with at most :data:`HEADER_CPU_SECONDS` of CPU and twice that plus
        10 s of wall clock (a header of a few MiB is judged in well under a second)."""
        check = cls.for_check(settings)
        cpu = min(check.cpu_seconds, HEADER_CPU_SECONDS)
        return cls(
            memory_bytes=check.memory_bytes,
            cpu_seconds=cpu,
            file_bytes=check.file_bytes,
            wall_seconds=2.0 * cpu + 10,
        )


@dataclass(frozen=True, slots=True)
class WorkerResult:
    stdout: bytes
    stderr: str


def limited_command(command: Sequence[str], limits: WorkerLimits) -> list[str]:
    """``command`` prefixed with the launcher that applies ``limits``."""
    return [
        sys.executable,
        "-I",
        "-S",
        str(Path(launcher.__file__)),
        "--as",
        str(limits.memory_bytes),
        "--cpu",
        str(limits.cpu_seconds),
        "--fsize",
        str(limits.file_bytes),
        "--parent",
        str(os.getpid()),
        "--",
        *command,
    ]


def python_command(module: str, *args: str) -> list[str]:
    """The command running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def _size_text(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def limit_hit(returncode: int, stderr: str) -> str | None:
    """The limit (``cpu``, ``file``, ``memory``) a worker that ended with ``returncode`` and
    ``stderr`` hit, if its end says so. A bare SIGKILL says nothing: the CPU hard limit and the
    kernel's out-of-memory killer both send it."""
    if returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return "cpu"
    if returncode in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or "File too large" in stderr:
        return "file"
    if any(sign in stderr for sign in _MEMORY_SIGNS):
        return "memory"
    return None


def describe_failure(name: str, returncode: int, stderr: str, limits: WorkerLimits) -> str:
    """Why worker ``name`` ended with ``returncode``, naming the limit hit if one was."""
    limit = limit_hit(returncode, stderr)
    if limit == "cpu":
        return f"{name} exceeded its CPU time limit of {limits.cpu_seconds} s"
    if limit == "file":
        return f"{name} exceeded its file size limit of {_size_text(limits.file_bytes)}"
    if limit == "memory":
        return f"{name} exceeded its memory limit of {_size_text(limits.memory_bytes)}"
    if returncode == -signal.SIGKILL:
        return (
            f"{name} was killed (CPU time limit of {limits.cpu_seconds} s or memory limit "
            f"of {_size_text(limits.memory_bytes)})"
        )
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = f": {lines[-1][:500]}" if lines else ""
    if returncode < 0:
        return f"{name} was killed by signal {-returncode}{detail}"
    return f"{name} failed with exit status {returncode}{detail}"


class _Reader(threading.Thread):
    """Drains one pipe: keeps up to ``cap`` bytes (or the last ``cap`` with ``tail``) and hands
    every chunk to ``on_chunk``."""

    def __init__(
        self,
        pipe: IO[bytes],
        cap: int,
        *,
        tail: bool,
        on_chunk: Callable[[bytes], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.pipe, self.cap, self.tail, self.on_chunk = pipe, cap, tail, on_chunk
        self.data = bytearray()
        self.overflowed = False
        self.error: BaseException | None = None

    def run(self) -> None:
        fd = self.pipe.fileno()
        try:
            while chunk := os.read(fd, 65536):
                if self.on_chunk is not None and self.error is None:
                    try:
                        self.on_chunk(chunk)
                    except Exception as exc:  # noqa: BLE001 - reported by run_limited
                        self.error = exc
                self.data += chunk
                if len(self.data) > self.cap:
                    if self.tail:
                        del self.data[: len(self.data) - self.cap]
                    else:
                        self.overflowed = True
                        del self.data[self.cap :]
        except OSError:
            return


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker's process group (it leads its own session, so pgid == pid)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_limited(
    command: Sequence[str],
    limits: WorkerLimits,
    *,
    name: str = "the image worker",
    cancelled: Callable[[], bool] | None = None,
    on_stdout: Callable[[bytes], None] | None = None,
    stdout_cap: int = STDOUT_CAP,
    watch: Callable[[], str | None] | None = None,
) -> WorkerResult:
    """Run ``command`` under ``limits``; return its output when it exits with status 0.
    ``watch`` is polled with the wall clock: a reason it returns stops the worker (a
    :class:`WorkerError` with that reason and ``limit="watch"``)."""
    env = {**os.environ, "LC_ALL": "C", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.Popen(  # noqa: S603 - argument list built by our callers
            limited_command(command, limits),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    except OSError as exc:
        raise WorkerError(f"{name} could not be started: {exc.strerror}") from exc
    if proc.stdout is None or proc.stderr is None:  # pragma: no cover - PIPE was given
        raise WorkerError(f"{name} has no output pipes")
    out = _Reader(proc.stdout, stdout_cap, tail=False, on_chunk=on_stdout)
    err = _Reader(proc.stderr, STDERR_TAIL, tail=True)
    out.start()
    err.start()
    deadline = time.monotonic() + limits.wall_seconds
    outcome: str | None = None
    limit: str | None = None
    try:
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            watched = watch() if watch is not None else None
            if out.overflowed:
                outcome = f"{name} printed more than {_size_text(stdout_cap)} and was stopped"
                limit = "output"
            elif time.monotonic() > deadline:
                outcome = (
                    f"{name} exceeded its wall-clock limit of {limits.wall_seconds:g} s "
                    "and was stopped"
                )
                limit = "wall"
            elif watched is not None:
                outcome, limit = watched, "watch"
            elif cancelled is not None and cancelled():
                outcome = "cancelled"
            if outcome is not None:
                _kill_group(proc)
                proc.wait()
                break
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        out.join(timeout=5)
        err.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    if outcome == "cancelled":
        raise WorkerCancelledError(f"{name} was stopped: the job was cancelled")
    if outcome is not None:
        raise WorkerError(outcome, limit=limit)
    stderr = err.data.decode("utf-8", "replace")
    if out.overflowed:
        raise WorkerError(f"{name} printed more than {_size_text(stdout_cap)}", limit="output")
    if proc.returncode != 0:
        raise WorkerError(
            describe_failure(name, proc.returncode, stderr, limits),
            limit=limit_hit(proc.returncode, stderr),
        )
    if out.error is not None:
        raise WorkerError(f"{name}'s output could not be read: {out.error}")
    return WorkerResult(bytes(out.data), stderr)
