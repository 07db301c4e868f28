"""Bucket and object use cases of the S3-compatible bucket API (no HTTP here).

Every function takes the caller's ``project_id`` and checks ownership first: another project's
bucket is reported exactly like a missing one (``NoSuchBucket``), for every operation, so names
of other projects' buckets leak only through creation (``BucketAlreadyExists``, as S3 does).

The API layer streams request bodies into :meth:`ObjectStore.staging_path` (a part's body into
the :class:`PartTarget` that :func:`part_target` returns: possibly in place in the upload's
assembly file) and passes the resulting :class:`StagedFile`; the functions here validate (names,
storage classes, metadata, Content-MD5, sizes) and then let the store make the data visible
atomically. A staged file that is refused is left in place for the caller to delete (or to give
back with :func:`~imageport.service.buckets.multipart.release_part_target`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from imageport.numbers import whole_number
from imageport.service.buckets.buckets import owned_bucket
from imageport.service.buckets.checks import (
    COPY_CHUNK,
    LAST_CHAR,
    MAX_COPY_BYTES,
    MAX_DELETE_KEYS,
    MAX_INT32,
    MAX_KEYS,
    MAX_PUT_BYTES,
    check_content_md5,
    check_put_size,
    decode_token,
    encode_token,
    etag_matches,
    parse_storage_class,
    precondition_failed,
    same_second,
    validate_key,
)
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid, ServiceError
from imageport.service.ports import (
    BucketInfo,
    ObjectInfo,
    StagedFile,
)
from imageport.service.quotas import write_room

# -- objects -----------------------------------------------------------------------------------


def staging_path(services: Services) -> Path:
    """A fresh path in the store's scratch space for a request body (the caller removes it
    once the object is committed or refused)."""
    return services.store.staging_path()


def current_object(services: Services, bucket: str, key: str) -> ObjectInfo | None:
    """The record of ``bucket/key`` now, None when there is none (for conditional writes,
    once :func:`prepare_put` has checked the bucket is the caller's)."""
    return services.store.get_object(bucket, key)


def _object(services: Services, bucket: str, key: str) -> ObjectInfo:
    info = services.store.get_object(bucket, key)
    if info is None:
        raise NotFound("NoSuchKey", f"object {key[:200]!r} does not exist")
    return info


def put_limit(services: Services, project_id: str, size: int | None) -> int:
    """The most bytes one PUT (or part) of ``project_id`` may bring now: S3's 5 GiB, or less
    where the project's object quota or the free disk space leaves less (a ``size`` declared
    beyond that is refused at once: :func:`~imageport.service.quotas.write_room`)."""
    return min(MAX_PUT_BYTES, write_room(services, project_id, size))


def prepare_put(
    services: Services, project_id: str, bucket: str, key: str, size: int | None
) -> BucketInfo:
    """Everything about a PUT that can be checked before its body is read."""
    found = owned_bucket(services, project_id, bucket)
    validate_key(key)
    check_put_size(size)
    return found


@dataclass(frozen=True, slots=True)
class NewObject:
    """What a client said about an object it is writing (PUT, copy, multipart initiate)."""

    content_type: str = "binary/octet-stream"
    storage_class: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def put_object(
    services: Services,
    project_id: str,
    bucket: str,
    key: str,
    staged: StagedFile,
    new: NewObject,
    content_md5: str | None = None,
) -> ObjectInfo:
    """Store ``staged`` as ``bucket/key`` after checking the digest the client declared."""
    found = prepare_put(services, project_id, bucket, key, staged.size)
    check_content_md5(content_md5, staged.md5_hex)
    return services.store.commit_object(
        bucket,
        key,
        staged,
        content_type=new.content_type[:255],
        storage_class=parse_storage_class(new.storage_class, found.storage_class),
        metadata=new.metadata,
    )


def head_object(services: Services, project_id: str, bucket: str, key: str) -> ObjectInfo:
    owned_bucket(services, project_id, bucket)
    return _object(services, bucket, key)


def open_object(
    services: Services, project_id: str, bucket: str, key: str
) -> tuple[ObjectInfo, BinaryIO]:
    """The caller's object's record and an open file of that same version (GetObject, and the
    source of UploadPartCopy): the caller closes the file."""
    owned_bucket(services, project_id, bucket)
    return services.store.open_object_with_info(bucket, key)


@dataclass(frozen=True, slots=True)
class DeleteCondition:
    """What a conditional delete requires of the object it deletes: S3's ``If-Match``,
    ``x-amz-if-match-size`` and ``x-amz-if-match-last-modified-time`` headers, or the
    ``<ETag>``, ``<Size>`` and ``<LastModifiedTime>`` of a DeleteObjects entry (None: not
    asked). An ETag condition on a missing key is 404 ``NoSuchKey``; the others let a missing
    key be "deleted" (204), as S3 answers."""

    etag: str | None = None
    size: int | None = None
    last_modified: datetime | None = None

    def check(self, current: ObjectInfo | None) -> None:
        """Raise 412 ``PreconditionFailed`` (404 ``NoSuchKey``) unless ``current`` (the
        object's record, None when there is none) meets every condition."""
        if current is None:
            if self.etag is not None:
                raise NotFound("NoSuchKey", "the object does not exist")
            return
        if self.etag is not None and not etag_matches(self.etag, current.etag):
            raise precondition_failed("If-Match")
        if self.size is not None and self.size != current.size:
            raise precondition_failed("the size")
        if self.last_modified is not None and not same_second(
            current.created_at, self.last_modified
        ):
            raise precondition_failed("the last-modified time")


def _delete(services: Services, bucket: str, key: str, condition: DeleteCondition | None) -> None:
    """Delete ``bucket/key`` (if ``condition`` holds for the version deleted: the store's
    ``delete_object_if`` checks and deletes that one version atomically)."""
    if condition is None:
        services.store.delete_object(bucket, key)
    else:
        services.store.delete_object_if(bucket, key, condition.check)


def delete_object(
    services: Services,
    project_id: str,
    bucket: str,
    key: str,
    condition: DeleteCondition | None = None,
) -> None:
    """Delete ``bucket/key`` if ``condition`` holds; deleting a missing key succeeds, as in S3
    (unless the condition names an ETag)."""
    owned_bucket(services, project_id, bucket)
    _delete(services, bucket, key, condition)


@dataclass(frozen=True, slots=True)
class DeleteEntry:
    """One ``<Object>`` of a DeleteObjects body."""

    key: str
    condition: DeleteCondition | None = None
    #: ``<VersionId>``: only ``null`` names an object in an unversioned bucket
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: Sequence[str]
    errors: Sequence[tuple[str, str, str]]
    """``(key, code, message)`` of each key that could not be deleted."""


def delete_objects(
    services: Services, project_id: str, bucket: str, entries: Sequence[DeleteEntry]
) -> DeleteResult:
    """S3 multi-object delete (``POST /b?delete``): each entry is deleted if its conditions
    hold; one that cannot be is an error of its own (``PreconditionFailed``, ``NoSuchKey``,
    ``InvalidArgument``), as S3 reports them."""
    owned_bucket(services, project_id, bucket)
    if len(entries) > MAX_DELETE_KEYS:
        raise RequestInvalid("MalformedXML", f"at most {MAX_DELETE_KEYS} keys per request")
    deleted: list[str] = []
    errors: list[tuple[str, str, str]] = []
    for entry in entries:
        try:
            validate_key(entry.key)
            if entry.version_id is not None and entry.version_id != "null":
                raise RequestInvalid(
                    "InvalidArgument",
                    "invalid version id specified (buckets here are not versioned)",
                )
            _delete(services, bucket, entry.key, entry.condition)
        except ServiceError as exc:
            errors.append((entry.key, exc.code, exc.message))
            continue
        deleted.append(entry.key)
    return DeleteResult(deleted, errors)


def copy_object(
    services: Services,
    project_id: str,
    source: tuple[str, str],
    bucket: str,
    key: str,
    new: NewObject | None,
    check_source: Callable[[ObjectInfo], None] | None = None,
    storage_class: str | None = None,
) -> ObjectInfo:
    """Copy ``source`` (bucket, key) to ``bucket/key``; ``new`` None keeps the source's type
    and metadata (``x-amz-metadata-directive: COPY``), and its class unless ``storage_class``
    names one (S3 applies ``x-amz-storage-class`` whatever the directive). The bytes are copied
    into a staged file (hashed on the way), so the copy is independent of later changes to the
    source. ``check_source`` judges the source's record first (the ``x-amz-copy-source-if-*``
    conditions). Copying an object onto itself must change something: the metadata (``new``)
    or the class (400 ``InvalidRequest`` otherwise, as S3 answers)."""
    src_bucket, src_key = source
    owned_bucket(services, project_id, src_bucket)
    found = prepare_put(services, project_id, bucket, key, None)
    store = services.store
    if storage_class is not None:
        parse_storage_class(storage_class)  # refused before a byte is copied
    origin = _object(services, src_bucket, src_key)
    if check_source is not None:
        check_source(origin)
    if new is None:
        new = NewObject(origin.content_type, storage_class or origin.storage_class, origin.metadata)
        if (src_bucket, src_key) == (bucket, key) and parse_storage_class(
            new.storage_class
        ) == origin.storage_class:
            raise RequestInvalid(
                "InvalidRequest",
                "this copy request is illegal because it "
                "is trying to copy an object to itself without changing the "
                "object's metadata or storage class",
            )
    if origin.size > MAX_COPY_BYTES:
        raise RequestInvalid(
            "InvalidRequest", f"the copy source is larger than {MAX_COPY_BYTES} bytes"
        )
    write_room(services, project_id, origin.size)  # a copy takes room as a PUT does
    staged_path = store.staging_path()
    md5 = hashlib.md5()  # noqa: S324 - the S3 ETag
    sha = hashlib.sha256()
    size = 0
    try:
        with store.open_object(src_bucket, src_key) as src, open(staged_path, "xb") as out:
            while chunk := src.read(COPY_CHUNK):
                md5.update(chunk)
                sha.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        staged = StagedFile(staged_path, size, md5.hexdigest(), sha.hexdigest())
        return store.commit_object(
            bucket,
            key,
            staged,
            content_type=new.content_type[:255],
            storage_class=parse_storage_class(new.storage_class, found.storage_class),
            metadata=new.metadata,
        )
    finally:
        staged_path.unlink(missing_ok=True)


# -- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A list request: v1 uses ``marker``, v2 ``start_after`` or a continuation ``token``."""

    prefix: str = ""
    delimiter: str = ""
    marker: str = ""
    max_keys: int = MAX_KEYS
    token: str | None = None


@dataclass(frozen=True, slots=True)
class ListPage:
    contents: Sequence[ObjectInfo]
    common_prefixes: Sequence[str]
    is_truncated: bool
    #: v1 NextMarker: the last key or common prefix returned
    next_marker: str
    #: v2 NextContinuationToken (opaque), set when truncated
    next_token: str


def parse_max_keys(value: str | None, name: str = "max-keys") -> int:
    """``max-keys`` (or ``max-uploads``) as an int in 0..1000 (larger values are capped, as
    S3 does; values past 2^31-1, signs and non-ASCII digits are 400 ``InvalidArgument``)."""
    if value is None or value == "":
        return MAX_KEYS
    number = whole_number(value)
    if number is None or number > MAX_INT32:
        raise RequestInvalid("InvalidArgument", f"{name} must be an integer 0-2147483647")
    return min(number, MAX_KEYS)


def list_objects(services: Services, project_id: str, bucket: str, query: ListQuery) -> ListPage:
    """One page of keys (and common prefixes when a delimiter is given), in binary key order.

    The resume point is the last key returned, or ``prefix + U+10FFFF`` after a common prefix
    so that the keys it rolls up are skipped in one step.
    """
    owned_bucket(services, project_id, bucket)
    store = services.store
    after = decode_token(query.token) if query.token is not None else query.marker
    marker = after
    contents: list[ObjectInfo] = []
    prefixes: list[str] = []
    last = ""
    exhausted = False
    page = MAX_KEYS
    while len(contents) + len(prefixes) < query.max_keys:
        batch = store.list_objects(bucket, prefix=query.prefix, start_after=after, limit=page)
        jumped = full = False
        for info in batch:
            if len(contents) + len(prefixes) >= query.max_keys:
                full = True
                break
            rest = info.key[len(query.prefix) :]
            cut = rest.find(query.delimiter) if query.delimiter else -1
            if cut < 0:
                contents.append(info)
                after = last = info.key
                continue
            common = query.prefix + rest[: cut + len(query.delimiter)]
            after = common + LAST_CHAR
            if common > marker or query.token is not None:
                prefixes.append(common)
                last = common
            jumped = True
            break
        if not jumped and not full and len(batch) < page:
            exhausted = True
            break
    truncated = not exhausted and bool(
        store.list_objects(bucket, prefix=query.prefix, start_after=after, limit=1)
    )
    return ListPage(
        contents,
        prefixes,
        truncated,
        last if truncated else "",
        encode_token(after) if truncated else "",
    )
