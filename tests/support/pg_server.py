"""A throwaway PostgreSQL 15 server for the test session: real server, loopback, trust auth.

:func:`start` runs ``initdb`` into a fresh directory, starts ``postgres`` on a free port of
127.0.0.1 (and a private unix-socket directory) with ``fsync=off``, and creates the database
``imageport``; :meth:`PostgresServer.stop` stops it and removes the directory. Each test that
wants a clean database asks :meth:`PostgresServer.fresh_database` for one (a ``CREATE DATABASE``
copies the template in a few milliseconds with fsync off).

PostgreSQL refuses to run as root, so as root every server binary runs as user ``postgres``
through ``runuser``, and the data directory (outside pytest's root-only tmp tree) belongs to it.
When the binaries are missing the caller gets :class:`PostgresMissing` saying what installs them.

:func:`shared_server` starts one server per test process on first use (the session fixture in
:mod:`db_backends` uses it, so a fixture imported into several modules still means one server);
:func:`stop_shared_server` stops it, and an ``atexit`` hook does too if the session dies first.
"""

from __future__ import annotations

import atexit
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("IMAGEPORT_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "imageport"
START_TIMEOUT = 60


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_server_user(argv: list[str]) -> list[str]:
    """``argv`` run as ``postgres`` when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresMissing("runuser (util-linux) is needed to run PostgreSQL as root")
    return [runuser, "-u", "postgres", "--", *argv]


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(
        _as_server_user(argv), capture_output=True, text=True, timeout=START_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr or done.stdout}")


@dataclass
class PostgresServer:
    """A running server; ``url`` is the SQLAlchemy URL of its ``imageport`` database."""

    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url_of(self, database: str) -> str:
        return f"postgresql+pg8000://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_of(DATABASE)

    def _admin(self, sql: str) -> None:
        import pg8000.native

        conn = pg8000.native.Connection(
            "postgres", host="127.0.0.1", port=self.port, database="postgres"
        )
        try:
            conn.run(sql)
        finally:
            conn.close()

    def fresh_database(self) -> str:
        """The URL of a new, empty database on this server."""
        name = "t_" + secrets.token_hex(8)
        self._admin(f"CREATE DATABASE {name}")
        return self.url_of(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`fresh_database` (connections to it are ended)."""
        name = url.rsplit("/", 1)[-1]
        if not (name.startswith("t_") and name[2:].isalnum()):
            raise ValueError(f"not a test database: {name!r}")
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                _as_server_user(
                    [
                        str(PG_BIN / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ]
                ),
                capture_output=True,
                timeout=START_TIMEOUT,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> PostgresServer:
    """initdb + start a server on a free loopback port, with database ``imageport`` created."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            raise PostgresMissing(
                f"PostgreSQL 15 server binaries are missing ({PG_BIN / tool} not found): "
                "`scripts/install --test` installs them (Debian package `postgresql`)"
            )
    root = Path(tempfile.mkdtemp(prefix="imageport-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresMissing(
                "there is no user `postgres` to run the server as: "
                "`scripts/install --test` installs PostgreSQL"
            ) from None
        os.chown(root, user.pw_uid, user.pw_gid)
    server = PostgresServer(root, _free_port())
    try:
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(server.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        options = (
            f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        _run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(server.data_dir),
                "-l",
                str(root / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT),
                "start",
            ],
            "pg_ctl start",
        )
        server._admin(f"CREATE DATABASE {DATABASE}")
    except Exception as exc:
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        server.stop()
        raise RuntimeError(f"could not start PostgreSQL: {exc}\n{tail}") from exc
    return server


_SHARED: list[PostgresServer] = []
_SHARED_LOCK = threading.Lock()


def shared_server() -> PostgresServer:
    """The test process's server, started by the first caller."""
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(start())
            atexit.register(stop_shared_server)
        return _SHARED[0]


def stop_shared_server() -> None:
    """Stop and remove the shared server, if one runs (idempotent)."""
    with _SHARED_LOCK:
        while _SHARED:
            _SHARED.pop().stop()
