"""Fixtures that run a test on each real database backend: SQLite (a file) and PostgreSQL.

Registered as a pytest plugin (``pytest_plugins = ["support.db_backends"]`` in tests/conftest.py),
or imported by a test module (``from support.db_backends import database_url, postgres_server``), it
gives:

* ``postgres_server`` (session): one throwaway PostgreSQL 15 server (:mod:`pg_server`), stopped
  and removed when the session ends; a missing installation FAILS the test with the fix.
* ``database_url`` (parametrized ``sqlite`` / ``postgresql``): a fresh, empty database for one
  test, as a SQLAlchemy URL. Pass it to ``service_fixtures.make_services(dir, database_url)``
  or ``open_database(url)``. The PostgreSQL database is dropped after the test.
* ``backend_services``: :class:`Services` on that database, the same shape the ``services``
  fixture gives, built through ``service_fixtures.make_services``.
* ``fake_backend_services``: the same with the fakes of :mod:`fakes` for the object store,
  the image worker and the job queue (``service_fixtures.make_fake_services``).
* :func:`db_only_services`: Services with only settings and a database, for identity tests
  (projects, keys, tokens) that never reach the object store or the image worker; the fixture
  ``db_services`` gives one on each backend.

Tests that use ``database_url`` appear twice in the report, ``[sqlite]`` and ``[postgresql]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.service.context import Services
from support import pg_server

BACKENDS = ["sqlite", "postgresql"]


def db_only_services(
    data_dir: Path, database_url: str | None = None, **settings: object
) -> Services:
    """Services on a migrated database whose store and image worker are absent (None)."""
    from imageport.adapters.db.engine import open_database
    from imageport.settings import load_settings

    conf = load_settings({}, data_dir=data_dir, database_url=database_url, **settings)
    # no store, no worker: these tests reach the database only, and fail loudly otherwise
    return Services(conf, open_database(conf.db_url), None, None)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg_server.PostgresServer]:
    """A PostgreSQL server for the whole session (started on first use)."""
    missing = ""
    try:
        server = pg_server.shared_server()
    except pg_server.PostgresMissing as exc:
        missing = str(exc)
    if missing:
        pytest.fail(missing, pytrace=False)
    try:
        yield server
    finally:
        pg_server.stop_shared_server()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database on each backend (SQLite file in tmp_path / new PG database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'backend.db'}"
        return
    server: pg_server.PostgresServer = request.getfixturevalue("postgres_server")
    url = server.fresh_database()
    try:
        yield url
    finally:
        server.drop_database(url)


@pytest.fixture
def backend_services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    """Services over ``database_url`` and a data dir in ``tmp_path`` (no job queue)."""
    from support import service_fixtures

    made = service_fixtures.make_services(tmp_path / "data", database_url)
    try:
        yield made
    finally:
        made.db.dispose()


@pytest.fixture
def fake_backend_services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    """Like ``backend_services``, with the fake store, image worker and job queue
    (``service_fixtures.make_fake_services``)."""
    from support import service_fixtures

    made = service_fixtures.make_fake_services(tmp_path / "data", database_url)
    try:
        yield made
    finally:
        made.db.dispose()


@pytest.fixture
def db_services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    """:func:`db_only_services` over ``database_url`` (so: on each backend)."""
    made = db_only_services(tmp_path / "data", database_url)
    try:
        yield made
    finally:
        made.db.dispose()
