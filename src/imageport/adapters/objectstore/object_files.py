"""The local object store's folders and database, and how an object file is published.

Layout under the data dir (``Settings``)::

    objects/<blob>                 one file per object; <blob> is random, never derived from a key
    uploads/<upload_id>/assembly   parts written in place, at (N-1) * stride (see assembly.py)
    uploads/<upload_id>/<blob>     one file per other uploaded part of a multipart upload
    tmp/stage-<id>                 bodies being received, objects being assembled

Records live in the ``buckets``, ``objects``, ``uploads`` and ``parts`` tables.

Durability and atomicity, in this order for every write:

1. the new data is written completely to a staged file in ``tmp/`` and fsynced (by the caller,
   or here when parts are joined);
2. the file is renamed to a fresh random name in its final directory, and the directory fsynced
   (:meth:`ObjectFiles._place`);
3. the row pointing at it is committed, replacing the old row in the same transaction
   (:meth:`ObjectFiles._publish`);
4. only then is the replaced file removed.

A reader therefore sees the old object or the new one, never a mix; a crash leaves at worst an
unreferenced file, which the store's ``remove_orphans`` removes at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from imageport.adapters.objectstore.assembly import Slots
from imageport.adapters.objectstore.frontier import HashFrontier
from imageport.durable import fsync_dir
from imageport.service.clock import new_id, time_text, utc_now
from imageport.service.errors import NotFound
from imageport.service.ports import ObjectInfo
from imageport.service.tables import objects

MAX_LIST = 10_000
"""Most rows one list call returns."""


def no_such_bucket(name: str) -> NotFound:
    return NotFound("NoSuchBucket", f"bucket {name!r} does not exist")


class ObjectFiles:
    """The state every part of the local store shares: its folders, its database, the
    in-place part slots and hash frontier of multipart uploads; and the two steps that make a
    new object file durable and visible."""

    def __init__(self, settings: Any, engine: Engine) -> None:
        self._db = engine
        self._objects: Path = settings.objects_dir
        self._uploads: Path = settings.uploads_dir
        self._tmp: Path = settings.tmp_dir
        for folder in (self._objects, self._uploads, self._tmp):
            folder.mkdir(parents=True, exist_ok=True)
        # S3 lists keys in binary (UTF-8 byte) order: SQLite's default; PostgreSQL needs "C".
        self._key = (
            objects.c.key.collate("C") if engine.dialect.name == "postgresql" else objects.c.key
        )
        self._slots = Slots()
        self._frontier = HashFrontier(engine, self._uploads)

    def staging_path(self) -> Path:
        return self._tmp / f"stage-{new_id()}"

    @staticmethod
    def _now() -> str:
        return time_text(utc_now())

    def _place(self, source: Path) -> str:
        """Rename ``source`` to a fresh blob in ``objects/`` durably; its name."""
        blob = new_id()
        os.replace(source, self._objects / blob)
        fsync_dir(self._objects)
        return blob

    def _publish(
        self, info: ObjectInfo, blob: str, *, also: Callable[[Any], None] | None = None
    ) -> None:
        """Commit the row of ``info`` pointing at the placed file ``blob``, replacing any row of
        the same key, with whatever ``also`` adds to the same transaction. If that fails the
        placed file is removed (a bucket gone meanwhile is ``NoSuchBucket``); once it committed,
        the replaced object's file is. The DELETE comes first so that SQLite takes the write
        lock before anything is read."""
        try:
            with self._db.begin() as conn:
                old = conn.execute(
                    delete(objects)
                    .where((objects.c.bucket == info.bucket) & (objects.c.key == info.key))
                    .returning(objects.c.blob)
                ).scalar_one_or_none()
                conn.execute(
                    insert(objects).values(
                        bucket=info.bucket,
                        key=info.key,
                        size=info.size,
                        etag=info.etag,
                        sha256=info.sha256,
                        content_type=info.content_type,
                        storage_class=info.storage_class,
                        metadata=dict(info.metadata),
                        blob=blob,
                        created_at=info.created_at,
                    )
                )
                if also is not None:
                    also(conn)
        except IntegrityError as exc:
            (self._objects / blob).unlink(missing_ok=True)
            raise no_such_bucket(info.bucket) from exc
        except BaseException:
            (self._objects / blob).unlink(missing_ok=True)
            raise
        if old:
            (self._objects / old).unlink(missing_ok=True)
