"""The local object store: object data as files on this machine, records in the service database.

Layout under the data dir (``Settings``)::

    objects/<blob>                 one file per object; <blob> is random, never derived from a key
    uploads/<upload_id>/assembly   parts written in place, at (N-1) * stride (see assembly.py)
    uploads/<upload_id>/<blob>     one file per other uploaded part of a multipart upload
    tmp/stage-<id>                 bodies being received, objects being assembled

Records live in the ``buckets``, ``objects``, ``uploads`` and ``parts`` tables.

Durability and atomicity, in this order for every write:

1. the new data is written completely to a staged file in ``tmp/`` and fsynced (by the caller,
   or here when parts are joined);
2. the file is renamed to a fresh random name in its final directory, and the directory fsynced;
3. the row pointing at it is committed (replacing the old row in the same transaction);
4. only then is the replaced file removed.

A reader therefore sees the old object or the new one, never a mix; a crash leaves at worst an
unreferenced file, which :meth:`LocalObjectStore.iter_blobs_in_use` lets start-up remove. Parts
are files plus rows too, so multipart uploads survive restarts and clients can resume them.

Parts written in place (:mod:`.assembly`) follow the same order: the body is written and
fdatasynced at its offset of the assembly before its row (with ``parts.offset``) is committed;
completing links the assembly into ``objects/`` before the object's row is committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from imageport.adapters.db.schema import buckets, objects, parts, uploads
from imageport.adapters.objectstore.assembly import (
    ASSEMBLY,
    MAX_ASSEMBLY_BYTES,
    MIN_PART_SIZE,
    Slots,
    assembly_misfits,
    copy_range,
    hash_range,
)
from imageport.adapters.objectstore.frontier import HashFrontier
from imageport.durable import fsync_dir
from imageport.service.clock import new_id, time_text, utc_now
from imageport.service.errors import Conflict, NotFound, RequestInvalid
from imageport.service.ports import (
    BucketInfo,
    ObjectInfo,
    PartInfo,
    PartTarget,
    StagedFile,
    UploadInfo,
)

MAX_PARTS = 10_000
"""Most parts one upload may be completed from (S3's rule)."""
MAX_LIST = 10_000
"""Most rows one list call returns."""
CONDITIONAL_DELETE_TRIES = 5
"""Times a conditional delete re-checks an object replaced between its check and its delete
before giving up with 409 ``ConditionalRequestConflict`` (S3's code for that race)."""


def strip_etag(etag: str) -> str:
    """An ETag as clients send it (quoted, unquoted, with surrounding spaces) without quotes."""
    return etag.strip().strip('"').strip()


def multipart_etag(md5_hexes: Sequence[str]) -> str:
    """S3's multipart ETag: ``"md5(concat(binary part md5s))-N"`` (quoted)."""
    joined = b"".join(bytes.fromhex(h) for h in md5_hexes)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(md5_hexes)}"'  # noqa: S324 - S3 format


def _no_such_upload(upload_id: str) -> NotFound:
    return NotFound("NoSuchUpload", f"upload {upload_id!r} does not exist (completed or aborted?)")


def _no_such_bucket(name: str) -> NotFound:
    return NotFound("NoSuchBucket", f"bucket {name!r} does not exist")


class LocalObjectStore:
    """:class:`~imageport.service.ports.ObjectStore` on local files and the service database."""

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

    # -- scratch -----------------------------------------------------------------------------

    def staging_path(self) -> Path:
        return self._tmp / f"stage-{new_id()}"

    @staticmethod
    def _now() -> str:
        return time_text(utc_now())

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
                    raise _no_such_bucket(name)
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

    def _place(self, source: Path) -> str:
        """Rename ``source`` to a fresh blob in ``objects/`` durably; its name."""
        blob = new_id()
        os.replace(source, self._objects / blob)
        fsync_dir(self._objects)
        return blob

    def _publish(self, conn: Any, info: ObjectInfo, blob: str) -> str | None:
        """Insert the row of ``info`` (replacing any), inside ``conn``'s transaction; the
        replaced object's blob name, if any. The DELETE comes first so that SQLite takes the
        write lock before anything is read."""
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
        return old  # type: ignore[no-any-return]

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
        blob = self._place(staged.path)
        try:
            with self._db.begin() as conn:
                old = self._publish(conn, info, blob)
        except IntegrityError as exc:
            (self._objects / blob).unlink(missing_ok=True)
            raise _no_such_bucket(bucket) from exc
        except BaseException:
            (self._objects / blob).unlink(missing_ok=True)
            raise
        if old:
            (self._objects / old).unlink(missing_ok=True)
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

    # -- multipart uploads -------------------------------------------------------------------

    @staticmethod
    def _upload_info(row: Any) -> UploadInfo:
        return UploadInfo(
            row.id,
            row.bucket,
            row.key,
            row.content_type,
            row.storage_class,
            row.created_at,
            dict(row.metadata or {}),
        )

    def create_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str,
        storage_class: str,
        metadata: Mapping[str, str],
    ) -> UploadInfo:
        info = UploadInfo(
            new_id(), bucket, key, content_type, storage_class, self._now(), dict(metadata)
        )
        folder = self._uploads / info.upload_id
        folder.mkdir()
        fsync_dir(self._uploads)
        try:
            with self._db.begin() as conn:
                conn.execute(
                    insert(uploads).values(
                        id=info.upload_id,
                        bucket=bucket,
                        key=key,
                        content_type=content_type,
                        storage_class=storage_class,
                        metadata=dict(metadata),
                        created_at=info.created_at,
                    )
                )
        except IntegrityError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise _no_such_bucket(bucket) from exc
        return info

    def get_upload(self, upload_id: str) -> UploadInfo | None:
        with self._db.connect() as conn:
            row = conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
        return None if row is None else self._upload_info(row)

    def list_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        limit: int = 1000,
    ) -> Sequence[UploadInfo]:
        query = select(uploads).where(uploads.c.bucket == bucket)
        if prefix:
            query = query.where(func.substr(uploads.c.key, 1, len(prefix)) == prefix)
        postgres = self._db.dialect.name == "postgresql"
        key = uploads.c.key.collate("C") if postgres else uploads.c.key
        upload_id = uploads.c.id.collate("C") if postgres else uploads.c.id
        if key_marker and upload_id_marker:
            query = query.where(
                (key > key_marker) | ((key == key_marker) & (upload_id > upload_id_marker))
            )
        elif key_marker:
            query = query.where(key > key_marker)
        query = query.order_by(key, upload_id).limit(max(0, min(limit, MAX_LIST)))
        with self._db.connect() as conn:
            return [self._upload_info(r) for r in conn.execute(query)]

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

    def count_uploads(self, project_id: str) -> int:
        query = (
            select(func.count())
            .select_from(uploads)
            .join(buckets, buckets.c.name == uploads.c.bucket)
            .where(buckets.c.project_id == project_id)
        )
        with self._db.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def count_parts(self, upload_id: str, *, smaller_than: int, except_number: int) -> int:
        query = (
            select(func.count())
            .select_from(parts)
            .where(
                (parts.c.upload_id == upload_id)
                & (parts.c.size < smaller_than)
                & (parts.c.number != except_number)
            )
        )
        with self._db.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _stride(self, upload_id: str, number: int, declared_length: int) -> int | None:
        """The upload's stride, fixed now if part ``number``'s length is known to be it:
        part 1's, or one that another part (in flight, or committed) declared too."""
        query = select(uploads.c.id, uploads.c.stride).where(uploads.c.id == upload_id)
        with self._db.connect() as conn:
            row = conn.execute(query).first()
            if row is None:
                raise _no_such_upload(upload_id)
            if row.stride is not None or declared_length < MIN_PART_SIZE:
                return row.stride  # type: ignore[no-any-return]
            twin = conn.execute(
                select(parts.c.number)
                .where(
                    (parts.c.upload_id == upload_id)
                    & (parts.c.number != number)
                    & (parts.c.size == declared_length)
                )
                .limit(1)
            ).first()
        known = self._slots.propose(upload_id, number, declared_length)
        if number != 1 and twin is None and not known:
            return None
        self._slots.forget(upload_id)
        with self._db.begin() as conn:  # the first to know wins, even among concurrent parts
            conn.execute(
                update(uploads)
                .where((uploads.c.id == upload_id) & uploads.c.stride.is_(None))
                .values(stride=declared_length)
            )
            return conn.execute(query).first().stride  # type: ignore[union-attr,no-any-return]

    def _assembly(self, upload_id: str) -> Path:
        """The upload's assembly file, created (durably) on first use."""
        folder = self._uploads / upload_id
        path = folder / ASSEMBLY
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return path
        except FileNotFoundError as exc:  # the upload's folder is gone: aborted or completed
            raise _no_such_upload(upload_id) from exc
        fsync_dir(folder)
        return path

    def part_target(self, upload_id: str, number: int, declared_length: int | None) -> PartTarget:
        own = PartTarget(upload_id, number, self.staging_path())
        if declared_length is None or not 1 <= number <= MAX_PARTS:
            return own
        stride = self._stride(upload_id, number, declared_length)
        if stride is None or declared_length > stride:
            return own
        offset = (number - 1) * stride
        if offset + stride > MAX_ASSEMBLY_BYTES or not self._slots.claim(upload_id, number):
            return own
        try:
            with self._db.connect() as conn:
                committed = conn.execute(
                    select(parts.c.offset).where(
                        (parts.c.upload_id == upload_id) & (parts.c.number == number)
                    )
                ).first()
            if committed is not None and committed.offset is not None:
                self._slots.release(upload_id, number)  # never overwrite committed bytes
                return own
            return PartTarget(upload_id, number, self._assembly(upload_id), offset, True, stride)
        except BaseException:
            self._slots.release(upload_id, number)
            raise

    def release_part_target(self, target: PartTarget) -> None:
        if target.in_place:
            self._slots.release(target.upload_id, target.number)
        else:
            target.path.unlink(missing_ok=True)

    def commit_part(self, upload_id: str, number: int, staged: StagedFile) -> PartInfo:
        folder = self._uploads / upload_id
        if staged.offset is not None:
            if staged.path != folder / ASSEMBLY or not self._slots.held(upload_id, number):
                raise RuntimeError(f"part {number} was not written to a target of this store")
            blob = ASSEMBLY
        else:
            blob = new_id()
            try:
                os.replace(staged.path, folder / blob)
            except FileNotFoundError as exc:  # the upload's folder is gone: aborted or completed
                raise _no_such_upload(upload_id) from exc
            fsync_dir(folder)
        info = PartInfo(number, staged.size, f'"{staged.md5_hex}"', self._now())
        try:
            with self._db.begin() as conn:
                old = conn.execute(
                    delete(parts)
                    .where((parts.c.upload_id == upload_id) & (parts.c.number == number))
                    .returning(parts.c.blob, parts.c.offset)
                ).first()
                conn.execute(
                    insert(parts).values(
                        upload_id=upload_id,
                        number=number,
                        size=info.size,
                        etag=info.etag,
                        blob=blob,
                        offset=staged.offset,
                        created_at=info.created_at,
                    )
                )
        except IntegrityError as exc:
            if staged.offset is None:
                (folder / blob).unlink(missing_ok=True)
            raise _no_such_upload(upload_id) from exc
        except BaseException:
            if staged.offset is None:
                (folder / blob).unlink(missing_ok=True)
            raise
        if old is not None and old.offset is None:
            (folder / old.blob).unlink(missing_ok=True)
        self._frontier.committed(
            upload_id, number, (info.etag, info.created_at, blob, staged.offset)
        )
        return info

    def _part_rows(self, upload_id: str) -> list[Any]:
        with self._db.connect() as conn:
            return list(
                conn.execute(
                    select(parts).where(parts.c.upload_id == upload_id).order_by(parts.c.number)
                )
            )

    def list_parts(self, upload_id: str) -> Sequence[PartInfo]:
        return [
            PartInfo(r.number, r.size, r.etag, r.created_at) for r in self._part_rows(upload_id)
        ]

    @staticmethod
    def _chosen_parts(stored_rows: list[Any], wanted: Sequence[tuple[int, str]]) -> list[Any]:
        """The stored rows named by the client's ``(number, etag)`` list, checked as S3 does."""
        if not wanted:
            raise RequestInvalid("MalformedXML", "the Complete request names no parts")
        if len(wanted) > MAX_PARTS:
            raise RequestInvalid("MalformedXML", f"more than {MAX_PARTS} parts")
        stored = {r.number: r for r in stored_rows}
        chosen: list[Any] = []
        previous = 0
        for number, etag in wanted:
            if number <= previous:
                raise RequestInvalid(
                    "InvalidPartOrder", "parts must be listed in ascending order of part number"
                )
            previous = number
            row = stored.get(number)
            if row is None or strip_etag(row.etag) != strip_etag(etag):
                raise RequestInvalid(
                    "InvalidPart", f"part {number} was not uploaded or its ETag differs"
                )
            chosen.append(row)
        for row in chosen[:-1]:
            if row.size < MIN_PART_SIZE:
                raise RequestInvalid(
                    "EntityTooSmall",
                    f"part {row.number} is {row.size} bytes; every part but "
                    f"the last must be at least {MIN_PART_SIZE}",
                )
        return chosen

    @staticmethod
    def _open_part(folder: Path, row: Any) -> int:
        try:
            return os.open(folder / row.blob, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise RequestInvalid(
                "InvalidPart",
                f"part {row.number} was replaced or removed; list the parts and complete again",
            ) from exc

    def _join_parts(self, upload_id: str, chosen: Sequence[Any], target: Path) -> str:
        """Write the parts one after another into ``target`` (fsynced); the sha256 hex of the
        whole. Each part (its own file, or its range of the assembly) is copied in the kernel
        while a second thread hashes the same bytes."""
        folder = self._uploads / upload_id
        digest = hashlib.sha256()
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="imageport-hash") as hasher:
                for row in chosen:
                    src = self._open_part(folder, row)
                    start = row.offset or 0
                    try:
                        hashed = hasher.submit(hash_range, src, start, row.size, digest)
                        try:
                            copy_range(src, start, out, row.size)
                        finally:
                            hashed.result()
                    finally:
                        os.close(src)
            os.fsync(out)
        finally:
            os.close(out)
        return digest.hexdigest()

    def _adopt_assembly(
        self, upload_id: str, stride: int, chosen: list[Any], misfits: Sequence[Any], size: int
    ) -> tuple[str, str]:
        """Copy the ``misfits`` (parts in files of their own) into their slots, cut the
        assembly to the object's ``size``, make it durable, hash what the frontier has not
        and hard-link it into ``objects/``: the new blob's name and the sha256 hex. The
        assembly stays until the upload's folder is removed: a failure loses nothing."""
        folder = self._uploads / upload_id
        assembly = self._assembly(upload_id)
        fd = os.open(assembly, os.O_RDWR)
        try:
            for row in misfits:
                src = self._open_part(folder, row)
                try:
                    os.lseek(fd, (row.number - 1) * stride, os.SEEK_SET)
                    copy_range(src, 0, fd, row.size)
                finally:
                    os.close(src)
            os.ftruncate(fd, size)
            os.fsync(fd)
            digest, start = self._frontier.take(upload_id, chosen)
            hash_range(fd, start, size - start, digest)
        finally:
            os.close(fd)
        blob = new_id()
        os.link(assembly, self._objects / blob)
        fsync_dir(self._objects)
        return blob, digest.hexdigest()

    def _joined_object(self, upload_id: str, chosen: list[Any]) -> tuple[str, str]:
        """The parts copied one after another into a new blob in ``objects/``; its name and
        sha256."""
        staged = self.staging_path()
        try:
            sha256 = self._join_parts(upload_id, chosen, staged)
            return self._place(staged), sha256
        finally:
            staged.unlink(missing_ok=True)

    def complete_upload(
        self, upload_id: str, parts_wanted: Sequence[tuple[int, str]]
    ) -> ObjectInfo:
        with self._db.connect() as conn:
            row = conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
        if row is None:
            raise _no_such_upload(upload_id)
        upload = self._upload_info(row)
        stored = self._part_rows(upload_id)
        chosen = self._chosen_parts(stored, parts_wanted)
        size = sum(r.size for r in chosen)
        # In place: no part may be written into the assembly (now also the object's file)
        # from here until the upload's folder is gone.
        misfits = assembly_misfits(chosen, stored, row.stride)
        adopt = misfits is not None and self._slots.start_complete(upload_id)
        try:
            blob, sha256 = (
                self._adopt_assembly(upload_id, row.stride, chosen, misfits or [], size)
                if adopt
                else self._joined_object(upload_id, chosen)
            )
            info = ObjectInfo(
                upload.bucket,
                upload.key,
                size,
                multipart_etag([strip_etag(r.etag) for r in chosen]),
                sha256,
                upload.content_type,
                upload.storage_class,
                self._now(),
                dict(upload.metadata),
            )
            try:
                with self._db.begin() as conn:
                    old = self._publish(conn, info, blob)
                    conn.execute(delete(parts).where(parts.c.upload_id == upload_id))
                    if not conn.execute(delete(uploads).where(uploads.c.id == upload_id)).rowcount:
                        raise _no_such_upload(upload_id)  # completed or aborted meanwhile
            except IntegrityError as exc:
                (self._objects / blob).unlink(missing_ok=True)
                raise _no_such_bucket(upload.bucket) from exc
            except BaseException:
                (self._objects / blob).unlink(missing_ok=True)
                raise
            if old:
                (self._objects / old).unlink(missing_ok=True)
            shutil.rmtree(self._uploads / upload_id, ignore_errors=True)
            self._slots.forget(upload_id)
            self._frontier.forget(upload_id)
        finally:
            if adopt:
                self._slots.end_complete(upload_id)
        return info

    def abort_upload(self, upload_id: str) -> None:
        with self._db.begin() as conn:
            conn.execute(delete(parts).where(parts.c.upload_id == upload_id))
            if not conn.execute(delete(uploads).where(uploads.c.id == upload_id)).rowcount:
                raise _no_such_upload(upload_id)
        shutil.rmtree(self._uploads / upload_id, ignore_errors=True)
        self._slots.forget(upload_id)
        self._frontier.forget(upload_id)

    # -- housekeeping ------------------------------------------------------------------------

    def iter_blobs_in_use(self) -> Iterator[Path]:
        with self._db.connect() as conn:
            for blob in conn.execute(select(objects.c.blob)).scalars():
                yield self._objects / blob
            for upload_id in conn.execute(select(uploads.c.id)).scalars():
                yield self._uploads / upload_id / ASSEMBLY  # parts written in place
            for upload_id, blob in conn.execute(select(parts.c.upload_id, parts.c.blob)):
                yield self._uploads / upload_id / blob


__all__ = ["MIN_PART_SIZE", "LocalObjectStore", "multipart_etag", "strip_etag"]
