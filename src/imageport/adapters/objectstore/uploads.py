"""Multipart uploads in the local object store: uploads, parts and their completion.

Parts are files plus rows (the ``uploads`` and ``parts`` tables), so multipart uploads survive
restarts and clients can resume them. A part is either a file of its own in
``uploads/<upload_id>/`` or written in place into the upload's assembly file
(:mod:`.assembly`); both follow the store's order (:mod:`.object_files`): the body is written
and synced before its row (with ``parts.offset`` for an in-place part) is committed, and
completing places the object's file (the assembly linked into ``objects/``, or the parts joined
by :mod:`.part_joining`) before the object's row is committed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from imageport.adapters.objectstore.assembly import (
    ASSEMBLY,
    MAX_ASSEMBLY_BYTES,
    MIN_PART_SIZE,
    assembly_misfits,
    copy_range,
    hash_range,
)
from imageport.adapters.objectstore.object_files import MAX_LIST, ObjectFiles, no_such_bucket
from imageport.adapters.objectstore.part_joining import (
    MAX_PARTS,
    chosen_parts,
    join_parts,
    multipart_etag,
    open_part,
    strip_etag,
)
from imageport.durable import fsync_dir
from imageport.service.clock import new_id
from imageport.service.errors import NotFound
from imageport.service.ports import ObjectInfo, PartInfo, PartTarget, StagedFile, UploadInfo
from imageport.service.tables import buckets, parts, uploads


def _no_such_upload(upload_id: str) -> NotFound:
    return NotFound("NoSuchUpload", f"upload {upload_id!r} does not exist (completed or aborted?)")


def _drop_upload_rows(conn: Any, upload_id: str) -> None:
    """Delete the rows of an upload and its parts in ``conn``'s transaction (NoSuchUpload when
    it is gone already: completed or aborted)."""
    conn.execute(delete(parts).where(parts.c.upload_id == upload_id))
    if not conn.execute(delete(uploads).where(uploads.c.id == upload_id)).rowcount:
        raise _no_such_upload(upload_id)


class LocalUploads(ObjectFiles):
    """The multipart uploads of the local store (the rest of the port is
    :class:`~imageport.adapters.objectstore.local.LocalObjectStore`, built on this class)."""

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
            raise no_such_bucket(bucket) from exc
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
                src = open_part(folder, row)
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
            sha256 = join_parts(self._uploads / upload_id, chosen, staged)
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
        chosen = chosen_parts(stored, parts_wanted)
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
            # the upload's rows go with the object's commit (completed or aborted meanwhile:
            # NoSuchUpload, and no object)
            self._publish(info, blob, also=lambda conn: _drop_upload_rows(conn, upload_id))
            self._forget_upload(upload_id)
        finally:
            if adopt:
                self._slots.end_complete(upload_id)
        return info

    def abort_upload(self, upload_id: str) -> None:
        with self._db.begin() as conn:
            _drop_upload_rows(conn, upload_id)
        self._forget_upload(upload_id)

    def _forget_upload(self, upload_id: str) -> None:
        """Remove the folder and the in-memory state of an upload whose rows are gone."""
        shutil.rmtree(self._uploads / upload_id, ignore_errors=True)
        self._slots.forget(upload_id)
        self._frontier.forget(upload_id)
