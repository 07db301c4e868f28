"""The database layer on both real backends: SQLite files and a PostgreSQL 15 server.

The migrations must build exactly the tables :mod:`imageport.service.tables` describes (so
the two cannot drift), opening must be safe when several processes start on a new database at
once, and every column type the service uses must survive a round trip through each driver
(pysqlite, pg8000). The identity tests (test_projects, test_authn, test_iam_tokens) also run
on both backends through the same ``database_url`` fixture.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, select

from imageport.adapters.db.engine import alembic_config, open_database
from imageport.service.clock import new_id, new_uuid, time_text, utc_now
from imageport.service.tables import images, jobs, metadata, objects, projects

pytest_plugins = ["support.db_backends"]  # database_url: each test on both backends

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def _differences(url: str) -> list[Any]:
    engine = open_database(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_schema(database_url: str) -> None:
    assert _differences(database_url) == []
    engine = open_database(database_url)  # a second open is a no-op
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == HEAD
        tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert tables == set(metadata.tables)
    finally:
        engine.dispose()


def test_processes_opening_a_new_database_together(database_url: str) -> None:
    """`imageport serve` and `imageport admin` started at once on a new database: both work."""
    code = (
        "import sys\nfrom imageport.adapters.db.engine import open_database\n"
        "open_database(sys.argv[1]).dispose()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    assert [rc for rc, _ in results] == [0, 0, 0], results
    assert _differences(database_url) == []


def test_column_types_round_trip(database_url: str) -> None:
    engine = open_database(database_url)
    now = time_text(utc_now())
    project = new_id()
    image = new_uuid()
    properties = {
        "__os_version": "Ubuntu 22.04 server 64bit",
        "__description": 'é ✓ "q"',
        "nested": {"list": [1, 2.5, None, True]},
    }
    report = {"schema": "imageport.check/1", "findings": [{"rule": "IMG-SAFE", "n": 2**40}]}
    huge = 5 * 2**40  # 5 TiB: needs a 64-bit column
    try:
        with engine.begin() as conn:
            conn.execute(insert(projects).values(id=project, name="types", created_at=now))
            conn.execute(
                insert(images).values(
                    id=image,
                    project_id=project,
                    name="img",
                    status="active",
                    visibility="private",
                    protected=True,
                    container_format="bare",
                    disk_format="qcow2",
                    min_disk=40,
                    min_ram=0,
                    size=huge,
                    virtual_size=huge + 1,
                    properties=properties,
                    tags=[],
                    report=report,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(jobs).values(
                    id=new_id(),
                    project_id=project,
                    job_type="imsImportImageJob",
                    status="INIT",
                    image_id=image,
                    params={"bucket": "b", "key": "k", "quick_import": False, "os_version": None},
                    percent=12.5,
                    bytes_done=huge,
                    bytes_total=huge,
                    cancel_requested=False,
                    attempts=0,
                    begin_time=now,
                )
            )
        with engine.connect() as conn:
            row = conn.execute(select(images)).one()
            job = conn.execute(select(jobs)).one()
        assert row.protected is True and row.size == huge and row.virtual_size == huge + 1
        assert row.properties == properties and row.report == report and row.tags == []
        assert job.cancel_requested is False and job.percent == 12.5
        assert job.bytes_done == huge
        assert job.params == {"bucket": "b", "key": "k", "quick_import": False, "os_version": None}
        # a 1024-character object key is a primary-key column on both backends
        with engine.begin() as conn:
            conn.execute(
                insert(metadata.tables["buckets"]).values(
                    name="bkt",
                    project_id=project,
                    storage_class="STANDARD",
                    location="local-1",
                    created_at=now,
                )
            )
            conn.execute(
                insert(objects).values(
                    bucket="bkt",
                    key="k/" + "é" * 1020,
                    size=0,
                    etag='"x"',
                    sha256="0" * 64,
                    content_type="application/octet-stream",
                    storage_class="STANDARD",
                    metadata={"purpose": "test"},
                    blob=new_id(),
                    created_at=now,
                )
            )
        with engine.connect() as conn:
            stored = conn.execute(select(objects.c.key, objects.c.metadata)).one()
        assert stored.key == "k/" + "é" * 1020 and stored.metadata == {"purpose": "test"}
    finally:
        engine.dispose()
