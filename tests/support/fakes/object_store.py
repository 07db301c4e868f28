"""An object store in dictionaries (the ``ObjectStore`` port).

Records and bytes live in memory. Disk is touched only where the port itself speaks of files:
:meth:`FakeObjectStore.staging_path` hands out paths under ``scratch`` for request bodies
(committing one reads it into memory and removes it), and
:meth:`FakeObjectStore.local_path` writes a read-only copy there for the length of its
context. Part targets are always staged files of their own, never in place. S3's rules that the
port promises (ETags, part order and sizes, binary key order, errors) are the same as the local
store's; the contract tests hold both to them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imageport.adapters.objectstore.part_joining import chosen_parts, multipart_etag, strip_etag
from imageport.service.clock import new_id, time_text, utc_now
from imageport.service.errors import Conflict, NotFound
from imageport.service.ports import (
    BucketInfo,
    ObjectInfo,
    PartInfo,
    PartTarget,
    StagedFile,
    UploadInfo,
)

MAX_LIST = 10_000
CONDITIONAL_DELETE_TRIES = 5


@dataclass(frozen=True, slots=True)
class _Stored:
    info: ObjectInfo
    data: bytes


def _binary(key: str) -> bytes:
    """The sort key of S3's listing order (UTF-8 bytes)."""
    return key.encode("utf-8", "surrogatepass")


def _no_such_bucket(name: str) -> NotFound:
    return NotFound("NoSuchBucket", f"bucket {name!r} does not exist")


def _no_such_upload(upload_id: str) -> NotFound:
    return NotFound("NoSuchUpload", f"upload {upload_id!r} does not exist (completed or aborted?)")


def _no_such_key(bucket: str, key: str) -> NotFound:
    return NotFound("NoSuchKey", f"object {key!r} does not exist in bucket {bucket!r}")


class FakeObjectStore:
    """The :class:`~imageport.service.ports.ObjectStore` port in memory (see the module
    docstring); safe to call from several threads."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self._lock = threading.RLock()
        self._buckets: dict[str, BucketInfo] = {}
        self._objects: dict[tuple[str, str], _Stored] = {}
        self._uploads: dict[str, UploadInfo] = {}
        self._parts: dict[str, dict[int, tuple[PartInfo, bytes]]] = {}

    @staticmethod
    def _now() -> str:
        return time_text(utc_now())

    def staging_path(self) -> Path:
        self.scratch.mkdir(parents=True, exist_ok=True)
        return self.scratch / f"stage-{new_id()}"

    @staticmethod
    def _take(staged: StagedFile) -> bytes:
        """The staged bytes, read into memory; the file is gone afterwards (moved, as the
        local store moves it)."""
        if staged.offset is not None:
            raise RuntimeError("the fake store hands out no in-place part targets")
        data = staged.path.read_bytes()[: staged.size]
        staged.path.unlink()
        return data

    # -- buckets -------------------------------------------------------------------------

    def create_bucket(
        self, name: str, project_id: str, storage_class: str, location: str
    ) -> BucketInfo:
        with self._lock:
            if name in self._buckets:
                raise Conflict("BucketAlreadyExists", f"bucket {name!r} already exists")
            info = BucketInfo(name, project_id, storage_class, location, self._now())
            self._buckets[name] = info
            return info

    def get_bucket(self, name: str) -> BucketInfo | None:
        with self._lock:
            return self._buckets.get(name)

    def list_buckets(self, project_id: str) -> Sequence[BucketInfo]:
        with self._lock:
            found = [b for b in self._buckets.values() if b.project_id == project_id]
        return sorted(found, key=lambda b: b.name)

    def delete_bucket(self, name: str) -> None:
        with self._lock:
            if any(bucket == name for bucket, _ in self._objects):
                raise Conflict("BucketNotEmpty", f"bucket {name!r} is not empty")
            for upload_id in [u.upload_id for u in self._uploads.values() if u.bucket == name]:
                del self._uploads[upload_id]
                self._parts.pop(upload_id, None)
            if self._buckets.pop(name, None) is None:
                raise _no_such_bucket(name)

    # -- objects -------------------------------------------------------------------------

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
        with self._lock:
            data = self._take(staged)
            if bucket not in self._buckets:
                raise _no_such_bucket(bucket)
            self._objects[bucket, key] = _Stored(info, data)
        return info

    def get_object(self, bucket: str, key: str) -> ObjectInfo | None:
        with self._lock:
            found = self._objects.get((bucket, key))
        return None if found is None else found.info

    def _stored(self, bucket: str, key: str) -> _Stored:
        with self._lock:
            found = self._objects.get((bucket, key))
        if found is None:
            raise _no_such_key(bucket, key)
        return found

    def open_object(self, bucket: str, key: str) -> BinaryIO:
        return io.BytesIO(self._stored(bucket, key).data)

    def open_object_with_info(self, bucket: str, key: str) -> tuple[ObjectInfo, BinaryIO]:
        found = self._stored(bucket, key)
        return found.info, io.BytesIO(found.data)

    @contextlib.contextmanager
    def local_path(self, bucket: str, key: str) -> Iterator[Path]:
        """A read-only copy of the object's bytes, removed when the context ends."""
        found = self._stored(bucket, key)
        path = self.staging_path()
        path.write_bytes(found.data)
        path.chmod(0o400)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def delete_object(self, bucket: str, key: str) -> bool:
        with self._lock:
            return self._objects.pop((bucket, key), None) is not None

    def delete_object_if(
        self, bucket: str, key: str, check: Callable[[ObjectInfo | None], None]
    ) -> bool:
        for _ in range(CONDITIONAL_DELETE_TRIES):
            with self._lock:
                seen = self._objects.get((bucket, key))
            check(None if seen is None else seen.info)  # may call the store: no lock held
            if seen is None:
                return False
            with self._lock:
                if self._objects.get((bucket, key)) is seen:
                    del self._objects[bucket, key]
                    return True
        raise Conflict(
            "ConditionalRequestConflict",
            f"object {key!r} kept changing while its delete conditions were checked",
        )

    def list_objects(
        self, bucket: str, *, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> Sequence[ObjectInfo]:
        after = _binary(start_after)
        with self._lock:
            found = [
                s.info
                for (b, k), s in self._objects.items()
                if b == bucket and k.startswith(prefix) and (not start_after or _binary(k) > after)
            ]
        found.sort(key=lambda o: _binary(o.key))
        return found[: max(0, min(limit, MAX_LIST))]

    def project_bytes(self, project_id: str) -> int:
        with self._lock:
            owned = {n for n, b in self._buckets.items() if b.project_id == project_id}
            stored = sum(s.info.size for (b, _), s in self._objects.items() if b in owned)
            pending = sum(
                part.size
                for upload_id, parts in self._parts.items()
                if self._uploads[upload_id].bucket in owned
                for part, _ in parts.values()
            )
        return stored + pending

    # -- multipart uploads ---------------------------------------------------------------

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
        with self._lock:
            if bucket not in self._buckets:
                raise _no_such_bucket(bucket)
            self._uploads[info.upload_id] = info
            self._parts[info.upload_id] = {}
        return info

    def get_upload(self, upload_id: str) -> UploadInfo | None:
        with self._lock:
            return self._uploads.get(upload_id)

    def list_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        limit: int = 1000,
    ) -> Sequence[UploadInfo]:
        marker = (_binary(key_marker), _binary(upload_id_marker))

        def after(u: UploadInfo) -> bool:
            if not key_marker:
                return True
            if upload_id_marker:
                return (_binary(u.key), _binary(u.upload_id)) > marker
            return _binary(u.key) > marker[0]

        with self._lock:
            found = [
                u
                for u in self._uploads.values()
                if u.bucket == bucket and u.key.startswith(prefix) and after(u)
            ]
        found.sort(key=lambda u: (_binary(u.key), _binary(u.upload_id)))
        return found[: max(0, min(limit, MAX_LIST))]

    def count_uploads(self, project_id: str) -> int:
        with self._lock:
            return sum(
                1
                for u in self._uploads.values()
                if (b := self._buckets.get(u.bucket)) is not None and b.project_id == project_id
            )

    def count_parts(self, upload_id: str, *, smaller_than: int, except_number: int) -> int:
        with self._lock:
            parts = self._parts.get(upload_id, {})
            return sum(
                1 for n, (p, _) in parts.items() if p.size < smaller_than and n != except_number
            )

    def part_target(self, upload_id: str, number: int, declared_length: int | None) -> PartTarget:
        return PartTarget(upload_id, number, self.staging_path())

    def release_part_target(self, target: PartTarget) -> None:
        target.path.unlink(missing_ok=True)

    def commit_part(self, upload_id: str, number: int, staged: StagedFile) -> PartInfo:
        info = PartInfo(number, staged.size, f'"{staged.md5_hex}"', self._now())
        with self._lock:
            data = self._take(staged)
            parts = self._parts.get(upload_id)
            if parts is None:
                raise _no_such_upload(upload_id)
            parts[number] = (info, data)
        return info

    def list_parts(self, upload_id: str) -> Sequence[PartInfo]:
        with self._lock:
            parts = self._parts.get(upload_id, {})
            return [parts[n][0] for n in sorted(parts)]

    def complete_upload(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> ObjectInfo:
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None:
                raise _no_such_upload(upload_id)
            stored = self._parts[upload_id]
            # S3's rules on the Complete list and its ETag, as the local store applies them
            chosen = chosen_parts([part for part, _ in stored.values()], parts)
            data = b"".join(stored[part.number][1] for part in chosen)
            info = ObjectInfo(
                upload.bucket,
                upload.key,
                len(data),
                multipart_etag([strip_etag(part.etag) for part in chosen]),
                hashlib.sha256(data).hexdigest(),
                upload.content_type,
                upload.storage_class,
                self._now(),
                dict(upload.metadata),
            )
            if upload.bucket not in self._buckets:
                raise _no_such_bucket(upload.bucket)
            self._objects[upload.bucket, upload.key] = _Stored(info, data)
            del self._uploads[upload_id], self._parts[upload_id]
        return info

    def abort_upload(self, upload_id: str) -> None:
        with self._lock:
            if self._uploads.pop(upload_id, None) is None:
                raise _no_such_upload(upload_id)
            del self._parts[upload_id]

    def remove_orphans(self) -> int:
        """Nothing to remove: the fake keeps its objects and parts in memory, not in files."""
        return 0
