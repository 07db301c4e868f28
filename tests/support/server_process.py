"""Run the service for tests: a real ``imageport serve`` subprocess, or an ASGI app in a thread.

:class:`ServeProcess` starts the installed ``imageport serve`` (the console script next to the
test interpreter) on ports picked by the OS, with its own data directory, reads the real ports
from the ``imageport: listening ...`` line, waits for ``/health``, and creates projects and keys
with ``imageport admin ... --json`` exactly as an operator would. With ``database_url`` both
``serve`` and ``admin`` get ``--database-url`` (PostgreSQL instead of the data dir's SQLite).
It can be killed with SIGKILL and restarted on the same ports, data and database. Its stdout
and stderr are kept in files and shown by :meth:`ServeProcess.output` (tests print it in their
teardown, so pytest shows it on failure).

:func:`running_app` serves any ASGI app with uvicorn on 127.0.0.1 in a background thread, for
API tests that need a real HTTP server but not the whole process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

IMAGEPORT = Path(sys.executable).parent / "imageport"
LISTENING = re.compile(r"^imageport: listening image-api=(\S+) s3-api=(\S+)$", re.MULTILINE)
START_SECONDS = 60.0


@dataclass(frozen=True)
class Keys:
    """A project and one access key of it (what ``imageport admin ... --json`` printed)."""

    project: str
    project_id: str
    access_key: str
    secret_key: str


class ServeProcess:
    """A real ``imageport serve`` on 127.0.0.1 with its own data directory."""

    def __init__(
        self,
        root: Path,
        *args: str,
        workers: int = 2,
        data_dir: Path | None = None,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not IMAGEPORT.exists():
            raise RuntimeError(f"{IMAGEPORT} is missing: run scripts/install --test first")
        self.root = root
        self.data_dir = data_dir or root / "data"
        self.database_url = database_url
        self.db_args = ["--database-url", database_url] if database_url else []
        self.args = ["--workers", str(workers), *self.db_args, *args]
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.ims_url = ""
        self.s3_url = ""
        self.keys: dict[str, Keys] = {}
        self.starts = 0

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, *, ims_port: int = 0, s3_port: int = 0) -> ServeProcess:
        """Start the server and wait until /health answers 200 (raise with its output if not)."""
        self.starts += 1
        self.root.mkdir(parents=True, exist_ok=True)
        stdout = open(self._out_path("stdout"), "wb")
        stderr = open(self._out_path("stderr"), "wb")
        with stdout, stderr:
            self.proc = subprocess.Popen(
                [
                    str(IMAGEPORT),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ims_port),
                    "--s3-port",
                    str(s3_port),
                    "--data-dir",
                    str(self.data_dir),
                    *self.args,
                ],
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            match = LISTENING.search(self._out_path("stdout").read_text(errors="replace"))
            if match:
                self.ims_url, self.s3_url = (f"http://{hp}" for hp in match.groups())
                break
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"imageport serve exited with {self.proc.returncode}\n" + self.output()
                )
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(
                "imageport serve did not print its listening line in "
                f"{START_SECONDS:.0f} s\n" + self.output()
            )
        answer = httpx.get(f"{self.ims_url}/health", timeout=10)
        if answer.status_code != 200:
            raise RuntimeError(
                f"/health answered {answer.status_code} {answer.text}\n" + self.output()
            )
        return self

    def _out_path(self, stream: str) -> Path:
        return self.root / f"serve-{self.starts}.{stream}"

    @property
    def ports(self) -> tuple[int, int]:
        return int(self.ims_url.rsplit(":", 1)[1]), int(self.s3_url.rsplit(":", 1)[1])

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; the exit status (SIGKILL after ``timeout``: a test failure)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(
                f"imageport serve ignored SIGTERM for {timeout} s\n" + self.output()
            ) from None

    def kill9(self) -> None:
        """SIGKILL: the process dies at once, with no chance to clean up."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def restart(self) -> ServeProcess:
        """Start again on the same ports and data (after :meth:`stop` or :meth:`kill9`)."""
        ims_port, s3_port = self.ports
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        return self.start(ims_port=ims_port, s3_port=s3_port)

    def output(self) -> str:
        """Everything every run of the server printed, for failure messages."""
        parts = []
        for n in range(1, self.starts + 1):
            for stream in ("stdout", "stderr"):
                path = self.root / f"serve-{n}.{stream}"
                if path.exists():
                    text = path.read_text(errors="replace")
                    parts.append(f"---- imageport serve run {n} {stream} ----\n{text[-20000:]}")
        return "\n".join(parts)

    def log_lines(self) -> list[dict[str, object]]:
        """The JSON log lines of all runs (stderr), parsed."""
        lines = []
        for n in range(1, self.starts + 1):
            path = self.root / f"serve-{n}.stderr"
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines

    # -- administration -------------------------------------------------------------------------

    def admin(self, *args: str) -> dict[str, str]:
        """``imageport admin --data-dir DIR [--database-url URL] ARGS --json``, its JSON output."""
        proc = subprocess.run(
            [
                str(IMAGEPORT),
                "admin",
                "--data-dir",
                str(self.data_dir),
                *self.db_args,
                *args,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"imageport admin {' '.join(args)} failed ({proc.returncode}): "
                f"{proc.stderr}{proc.stdout}"
            )
        doc: dict[str, str] = json.loads(proc.stdout)
        return doc

    def tenant(self, name: str) -> Keys:
        """A new project ``name`` with one access key (remembered in :attr:`keys`)."""
        project = self.admin("project", "create", name)
        key = self.admin("key", "create", "--project", name)
        keys = Keys(name, project["id"], key["access_key"], key["secret_key"])
        assert key["project_id"] == keys.project_id
        self.keys[name] = keys
        return keys


@contextlib.contextmanager
def serve_process(
    root: Path,
    *args: str,
    workers: int = 2,
    tenants: tuple[str, ...] = ("alpha", "beta"),
    database_url: str | None = None,
    env: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
) -> Iterator[ServeProcess]:
    """A started :class:`ServeProcess` with a project and key per name in ``tenants``; stopped
    (and its output printed, which pytest shows when the test failed) at the end. ``env`` adds
    environment variables (``IMAGEPORT_*`` settings) to the server's."""
    server = ServeProcess(
        root, *args, workers=workers, database_url=database_url, env=env, data_dir=data_dir
    )
    try:
        server.start()
        for name in tenants:
            server.tenant(name)
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop()
        print(server.output())


@contextlib.contextmanager
def serve_for_servers(
    root: Path, *, prefix: str, tenants: tuple[str, ...] = ("alpha",)
) -> Iterator[ServeProcess]:
    """:func:`serve_process` for tests that run servers: its data dir has a short path (a
    server's QEMU sockets live in it, and a unix socket's path has at most 107 bytes; pytest's
    own folders are too deep), and the machines are killed at the end (they outlive the
    service, and a test that failed half-way must not leave them running)."""
    data = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with serve_process(root, tenants=tenants, data_dir=data) as started:
            yield started
    finally:
        for pid_file in data.glob("servers/*/qemu.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def running_app(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_config=None,
        access_log=False,
        http="h11",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
