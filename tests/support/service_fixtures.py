"""A ready :class:`Services` for service and API tests: real SQLite (or PostgreSQL), the local
object store and the qemu-img image worker, with no job queue (jobs stay INIT until run)."""

from __future__ import annotations

from pathlib import Path

from imageport.adapters.db.engine import open_database
from imageport.service.context import Services
from imageport.settings import load_settings


def make_services(data_dir: Path, database_url: str | None = None, **settings: object) -> Services:
    """Services over ``data_dir`` (and ``database_url`` when given, else SQLite there)."""
    from imageport.adapters.objectstore.local import LocalObjectStore
    from imageport.adapters.qemu_img import QemuImgConverter

    conf = load_settings({}, data_dir=data_dir, database_url=database_url, **settings)
    db = open_database(conf.db_url)
    return Services(conf, db, LocalObjectStore(conf, db), QemuImgConverter(conf))
