"""The local object store: object data as files on this machine, records in the service database.

:class:`LocalObjectStore` is the :class:`~imageport.service.ports.ObjectStore` port on local
files. It is built in three layers, one module each:

* :mod:`.object_files`: the folders under the data dir, the database, and the order in which
  every write is made durable and visible (the file first, then its row, then the old file
  removed), so a reader sees the old object or the new one, never a mix;
* :mod:`.uploads`: multipart uploads, their parts (written in place into an assembly file,
  :mod:`.assembly`, or in files of their own) and their completion (:mod:`.part_joining`);
* this module: buckets, objects, the project's bytes, and the files start-up must keep.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from imageport.adapters.objectstore.assembly import (
    ASSEMBLY,
)
from imageport.adapters.objectstore.object_files import MAX_LIST, no_such_bucket
from imageport.adapters.objectstore.uploads import LocalUploads
from imageport.service.clock import new_id
from imageport.service.errors import Conflict, NotFound
from imageport.service.ports import (
    BucketInfo,
    ObjectInfo,
    StagedFile,
)
from imageport.service.tables import buckets, objects, parts, uploads

CONDITIONAL_DELETE_TRIES = 5
"""Times a conditional delete re-checks an object replaced between its check and its delete
before giving up with 409 ``ConditionalRequestConflict`` (S3's code for that race)."""


class LocalObjectStore(LocalUploads):
    """:class:`~imageport.service.ports.ObjectStore` on local files and the service database."""

    # -- buckets -----------------------------------------------------------------------------

    def create_bucket(
        self, name: str, project_id: str, storage_class: str, location: str
    ) -> BucketInfo:
        info = BucketInfo(name, project_id, storage_class, location, self._now())
        try:
            with self._db.begin() as conn:
                conn.execute(
                    insert(buckets).values(
                        name=name,
                        project_id=project_id,
                        storage_class=storage_class,
                        location=location,
                        created_at=info.created_at,
                    )
                )
        except IntegrityError as exc:
            raise Conflict("BucketAlreadyExists", f"bucket {name!r} already exists") from exc
        return info

    def get_bucket(self, name: str) -> BucketInfo | None:
        with self._db.connect() as conn:
            row = conn.execute(select(buckets).where(buckets.c.name == name)).first()
        if row is None:
            return None
        return BucketInfo(row.name, row.project_id, row.storage_class, row.location, row.created_at)

    def list_buckets(self, project_id: str) -> Sequence[BucketInfo]:
        with self._db.connect() as conn:
            rows = conn.execute(
                select(buckets).where(buckets.c.project_id == project_id).order_by(buckets.c.name)
            ).all()
        return [
            BucketInfo(r.name, r.project_id, r.storage_class, r.location, r.created_at)
            for r in rows
        ]

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket, aborting its unfinished multipart uploads."""
        try:
            with self._db.begin() as conn:
                if (
                    conn.execute(
                        select(objects.c.key).where(objects.c.bucket == name).limit(1)
                    ).first()
                    is not None
                ):
                    raise Conflict("BucketNotEmpty", f"bucket {name!r} is not empty")
                ids = list(
                    conn.execute(select(uploads.c.id).where(uploads.c.bucket == name)).scalars()
                )
                if ids:
                    conn.execute(delete(parts).where(parts.c.upload_id.in_(ids)))
                    conn.execute(delete(uploads).where(uploads.c.id.in_(ids)))
                gone = conn.execute(delete(buckets).where(buckets.c.name == name)).rowcount
                if not gone:
                    raise no_such_bucket(name)
        except IntegrityError as exc:  # an object arrived meanwhile
            raise Conflict("BucketNotEmpty", f"bucket {name!r} is not empty") from exc
        for upload_id in ids:
            shutil.rmtree(self._uploads / upload_id, ignore_errors=True)

    # -- objects -----------------------------------------------------------------------------

    @staticmethod
    def _object_info(row: Any) -> ObjectInfo:
        return ObjectInfo(
            row.bucket,
            row.key,
            row.size,
            row.etag,
            row.sha256,
            row.content_type,
            row.storage_class,
            row.created_at,
            dict(row.metadata or {}),
        )

    def commit_object(
        self,
        bucket: str,
        key: str,
        staged: StagedFile,
        *,
        content_type: str,
        storage_class: str,
        metadata: Mapping[str, str],
    ) -> ObjectInfo:
        info = ObjectInfo(
            bucket,
            key,
            staged.size,
            f'"{staged.md5_hex}"',
            staged.sha256_hex,
            content_type,
            storage_class,
            self._now(),
            dict(metadata),
        )
        self._publish(info, self._place(staged.path))
        return info

    def _object_row(self, bucket: str, key: str) -> Any:
        with self._db.connect() as conn:
            return conn.execute(
                select(objects).where((objects.c.bucket == bucket) & (objects.c.key == key))
            ).first()

    def get_object(self, bucket: str, key: str) -> ObjectInfo | None:
        row = self._object_row(bucket, key)
        return None if row is None else self._object_info(row)

    def _open_blob(self, bucket: str, key: str) -> tuple[Any, int]:
        """An fd on the object's current file, retrying if it is replaced while we look."""
        for _ in range(5):
            row = self._object_row(bucket, key)
            if row is None:
                break
            try:
                return row, os.open(self._objects / row.blob, os.O_RDONLY)
            except FileNotFoundError:
                continue  # replaced between the SELECT and the open: read the new row
        raise NotFound("NoSuchKey", f"object {key!r} does not exist in bucket {bucket!r}")

    def open_object(self, bucket: str, key: str) -> BinaryIO:
        _row, fd = self._open_blob(bucket, key)
        return os.fdopen(fd, "rb")

    def open_object_with_info(self, bucket: str, key: str) -> tuple[ObjectInfo, BinaryIO]:
        """The object's record and its bytes, guaranteed to belong together."""
        row, fd = self._open_blob(bucket, key)
        return self._object_info(row), os.fdopen(fd, "rb")

    @contextlib.contextmanager
    def local_path(self, bucket: str, key: str) -> Iterator[Path]:
        """The object's own file, as a hard link in ``tmp/`` (no copy): it stays valid for the
        whole context even if the object is replaced or deleted meanwhile."""
        link = self._tmp / f"link-{new_id()}"
        for _ in range(5):
            row = self._object_row(bucket, key)
            if row is None:
                break
            try:
                os.link(self._objects / row.blob, link)
            except FileNotFoundError:
                continue
            try:
                yield link
            finally:
                link.unlink(missing_ok=True)
            return
        raise NotFound("NoSuchKey", f"object {key!r} does not exist in bucket {bucket!r}")

    def delete_object(self, bucket: str, key: str) -> bool:
        with self._db.begin() as conn:
            old = conn.execute(
                delete(objects)
                .where((objects.c.bucket == bucket) & (objects.c.key == key))
                .returning(objects.c.blob)
            ).scalar_one_or_none()
        if old is None:
            return False
        (self._objects / old).unlink(missing_ok=True)
        return True

    def delete_object_if(
        self, bucket: str, key: str, check: Callable[[ObjectInfo | None], None]
    ) -> bool:
        """Delete ``bucket/key`` if ``check`` (which raises otherwise) accepts its current
        record (None when there is none), atomically: the row deleted is the very version
        checked (same blob), and a version that replaced it in between is checked again.
        False when there was nothing to delete."""
        for _ in range(CONDITIONAL_DELETE_TRIES):
            row = self._object_row(bucket, key)
            check(None if row is None else self._object_info(row))
            if row is None:
                return False
            with self._db.begin() as conn:
                gone = conn.execute(
                    delete(objects).where(
                        (objects.c.bucket == bucket)
                        & (objects.c.key == key)
                        & (objects.c.blob == row.blob)
                    )
                ).rowcount
            if gone:
                (self._objects / row.blob).unlink(missing_ok=True)
                return True
        raise Conflict(
            "ConditionalRequestConflict",
            f"object {key!r} kept changing while its delete conditions were checked",
        )

    def list_objects(
        self, bucket: str, *, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> Sequence[ObjectInfo]:
        query = select(objects).where(objects.c.bucket == bucket)
        if prefix:
            # substr, not LIKE: SQLite's LIKE ignores ASCII case.
            query = query.where(
                self._key >= prefix, func.substr(objects.c.key, 1, len(prefix)) == prefix
            )
        if start_after:
            query = query.where(self._key > start_after)
        query = query.order_by(self._key).limit(max(0, min(limit, MAX_LIST)))
        with self._db.connect() as conn:
            return [self._object_info(r) for r in conn.execute(query)]

    # -- housekeeping ------------------------------------------------------------------------

    def project_bytes(self, project_id: str) -> int:
        owned = select(buckets.c.name).where(buckets.c.project_id == project_id)
        stored = select(func.coalesce(func.sum(objects.c.size), 0)).where(
            objects.c.bucket.in_(owned)
        )
        pending = (
            select(func.coalesce(func.sum(parts.c.size), 0))
            .select_from(parts)
            .join(uploads, uploads.c.id == parts.c.upload_id)
            .where(uploads.c.bucket.in_(owned))
        )
        with self._db.connect() as conn:
            return int(conn.execute(stored).scalar_one()) + int(conn.execute(pending).scalar_one())

    def iter_blobs_in_use(self) -> Iterator[Path]:
        with self._db.connect() as conn:
            for blob in conn.execute(select(objects.c.blob)).scalars():
                yield self._objects / blob
            for upload_id in conn.execute(select(uploads.c.id)).scalars():
                yield self._uploads / upload_id / ASSEMBLY  # parts written in place
            for upload_id, blob in conn.execute(select(parts.c.upload_id, parts.c.blob)):
                yield self._uploads / upload_id / blob

    def remove_orphans(self) -> int:
        """Remove object and part files no record points at (and the folders left empty)."""
        in_use = {path.resolve() for path in self.iter_blobs_in_use()}
        removed = 0
        for folder in (self._objects, self._uploads):
            if not folder.is_dir():
                continue
            # deepest first, so that a folder is looked at after what it held
            for entry in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(FileNotFoundError, OSError):
                    if entry.is_dir() and not entry.is_symlink():
                        if not any(entry.iterdir()):
                            entry.rmdir()
                    elif entry.resolve() not in in_use:
                        entry.unlink()
                        removed += 1
        return removed


__all__ = ["LocalObjectStore"]
