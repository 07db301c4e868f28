"""A ready :class:`Services` for service and API tests: real SQLite (or PostgreSQL), with either
the real adapters (the local object store and the qemu-img image worker) or the fakes of
:mod:`fakes`, and no running job queue (jobs stay INIT until run)."""

from __future__ import annotations

from pathlib import Path

from imageport.adapters.db.engine import open_database
from imageport.service.context import Services
from imageport.settings import load_settings


def make_services(data_dir: Path, database_url: str | None = None, **settings: object) -> Services:
    """Services over ``data_dir`` (and ``database_url`` when given, else SQLite there)."""
    from imageport.adapters.image_worker import SubprocessImageWorker
    from imageport.adapters.objectstore.local import LocalObjectStore

    conf = load_settings({}, data_dir=data_dir, database_url=database_url, **settings)
    db = open_database(conf.db_url)
    return Services(conf, db, LocalObjectStore(conf, db), SubprocessImageWorker(conf))


def make_fake_services(
    data_dir: Path, database_url: str | None = None, **settings: object
) -> Services:
    """Services on a real database whose object store, image worker and job queue are the
    fakes (:class:`~fakes.FakeObjectStore` with its scratch space in ``tmp/`` as the local
    store's, :class:`~fakes.FakeImageWorker` answering :data:`~fakes.GOOD_DEBIAN`, a
    :class:`~fakes.FakeJobQueue` that records submitted jobs and runs none, and a
    :class:`~fakes.FakeBootRunner` whose machines reach a login prompt): for tests of the
    service's own logic, with no process started."""
    from support.fakes import FakeBootRunner, FakeImageWorker, FakeJobQueue, FakeObjectStore

    conf = load_settings({}, data_dir=data_dir, database_url=database_url, **settings)
    db = open_database(conf.db_url)
    return Services(
        conf,
        db,
        FakeObjectStore(conf.tmp_dir),
        FakeImageWorker(),
        queue=FakeJobQueue(),
        boot=FakeBootRunner(),
    )
