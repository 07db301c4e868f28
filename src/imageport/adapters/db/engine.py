"""Open the service database (SQLite or PostgreSQL) and bring its schema up to date.

:func:`open_database` is the only place an Engine is made: SQLite gets WAL, foreign keys and a
busy timeout so the API threads and the job workers can share it; PostgreSQL URLs are used as
given (``postgresql+pg8000://...``). :func:`upgrade` runs the Alembic migrations to head
holding the database's write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), so
``imageport serve`` and ``imageport admin`` starting together on a new database do not both
create the tables: the second waits, then finds the schema at head.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x696D6167_65706F72
"""PostgreSQL advisory-lock key held while migrating (the bytes ``imagepor``)."""
_UPGRADE_LOCK = threading.Lock()
"""Alembic keeps its migration context in module globals: one upgrade per process at a time."""


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    # switching a new database to WAL needs it to itself: when several processes open it at
    # once (serve and admin started together) the switch can fail at once instead of waiting
    deadline = time.monotonic() + 30
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config() -> Config:
    """The Alembic configuration pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration not yet applied (a no-op on an up-to-date database)."""
    config = alembic_config()
    with _UPGRADE_LOCK, engine.begin() as connection:
        # both locks are released when this transaction ends
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        elif connection.dialect.name == "sqlite":
            # pysqlite runs DDL outside any transaction unless one is begun explicitly
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_database(url: str, *, migrate: bool = True) -> Engine:
    """An Engine for ``url``; the schema is migrated to head unless ``migrate`` is False."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if migrate:
        upgrade(engine)
    return engine
