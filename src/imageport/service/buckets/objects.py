"""Bucket and object use cases of the S3-compatible bucket API (no HTTP here).

Every function takes the caller's ``project_id`` and checks ownership first: another project's
bucket is reported exactly like a missing one (``NoSuchBucket``), for every operation, so names
of other projects' buckets leak only through creation (``BucketAlreadyExists``, as S3 does).

The API layer streams request bodies into :meth:`ObjectStore.staging_path` (a part's body into
the :class:`PartTarget` that :func:`part_target` returns: possibly in place in the upload's
assembly file) and passes the resulting :class:`StagedFile`; the functions here validate (names,
storage classes, metadata, Content-MD5, sizes) and then let the store make the data visible
atomically. A staged file that is refused is left in place for the caller to delete (or to give
back with ``store.release_part_target``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from imageport.limits import GiB, MiB, TiB
from imageport.numbers import whole_number
from imageport.service.clock import parse_time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, NotFound, RequestInvalid, ServiceError
from imageport.service.jobs.quotas import write_room
from imageport.service.ports import (
    BucketInfo,
    ObjectInfo,
    StagedFile,
)

MAX_KEY_BYTES = 1024
"""Longest object key (UTF-8 bytes), as S3."""
MAX_PUT_BYTES = 5 * GiB
"""Largest single PUT and largest part (S3's limits); bigger files use multipart."""
MAX_OBJECT_BYTES = 5 * TiB
"""Largest object a multipart upload may produce (S3's limit)."""
MAX_COPY_BYTES = 5 * GiB
"""Largest object copied by ``x-amz-copy-source`` (S3's limit)."""
MAX_KEYS = 1000
"""Most keys + common prefixes in one list reply (the cap on ``max-keys``)."""
MAX_INT32 = 2**31 - 1
"""Largest ``max-keys``/``max-uploads``/``max-parts``/marker S3 accepts (larger: 400)."""
MAX_METADATA_BYTES = 2048
"""Total size of user metadata names and values (S3's limit)."""
MAX_METADATA_ITEMS = 64
MAX_DELETE_KEYS = 1000
"""Most keys in one multi-object delete (S3's limit)."""
MAX_BUCKETS_LISTED = 10_000
"""Most buckets in one ListBuckets reply (S3's cap on ``max-buckets``)."""
COPY_CHUNK = 8 * MiB

STORAGE_CLASSES = ("STANDARD", "WARM", "COLD")
"""Canonical storage classes (the OBS names), as stored in the database."""
_CLASS_ALIASES = {
    "STANDARD": "STANDARD",
    "WARM": "WARM",
    "STANDARD_IA": "WARM",
    "COLD": "COLD",
    "GLACIER": "COLD",
    "DEEP_ARCHIVE": "COLD",
}
_AMZ_NAMES = {"STANDARD": "STANDARD", "WARM": "STANDARD_IA", "COLD": "GLACIER"}

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_META_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
LAST_CHAR = "\U0010ffff"
"""The greatest character: ``prefix + LAST_CHAR`` sorts after every key under ``prefix``."""


# -- names, classes, metadata, digests (pure checks) -------------------------------------------


def validate_bucket_name(name: str) -> None:
    """S3's rules: 3-63 of ``a-z 0-9 . -``, starting and ending with a letter or digit, no
    ``..`` or ``.-``/``-.``, not an IPv4 address, no ``xn--`` prefix or ``-s3alias`` suffix."""
    if (
        not _BUCKET.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IPV4.match(name)
        or name.startswith(("xn--", "sthree-"))
        or name.endswith(("-s3alias", "--ol-s3"))
    ):
        raise RequestInvalid(
            "InvalidBucketName",
            f"bucket name {name[:80]!r} is not valid: use 3-63 lower-case "
            "letters, digits, '.' and '-', starting and ending with a letter "
            "or digit",
        )


def validate_key(key: str) -> None:
    """Non-empty, at most 1024 bytes of UTF-8, no NUL."""
    if not key:
        raise RequestInvalid("InvalidArgument", "the object key is empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise RequestInvalid("InvalidArgument", "the object key is not valid UTF-8") from exc
    if size > MAX_KEY_BYTES:
        raise RequestInvalid(
            "KeyTooLongError", f"the object key is {size} bytes; at most {MAX_KEY_BYTES}"
        )
    if "\x00" in key:
        raise RequestInvalid("InvalidArgument", "the object key contains a NUL character")


def parse_storage_class(value: str | None, default: str = "STANDARD") -> str:
    """The canonical class (STANDARD, WARM, COLD) for any accepted spelling; ``default`` when
    none is given."""
    if value is None or not value.strip():
        return default
    canonical = _CLASS_ALIASES.get(value.strip().upper())
    if canonical is None:
        raise RequestInvalid(
            "InvalidStorageClass",
            f"storage class {value[:40]!r} is not one of STANDARD, WARM "
            "(STANDARD_IA), COLD (GLACIER, DEEP_ARCHIVE)",
        )
    return canonical


def storage_class_name(canonical: str, dialect: str) -> str:
    """``canonical`` as the client's dialect spells it: ``amz`` (STANDARD_IA, GLACIER) or
    ``obs`` (WARM, COLD)."""
    return _AMZ_NAMES.get(canonical, canonical) if dialect == "amz" else canonical


def user_metadata(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """User metadata from ``(name, value)`` pairs whose names had the ``x-amz-meta-`` or
    ``x-obs-meta-`` prefix removed; names lower-cased, size and count capped."""
    out: dict[str, str] = {}
    total = 0
    for name, value in pairs:
        lowered = name.lower()
        if not _META_NAME.match(lowered):
            raise RequestInvalid("InvalidArgument", f"metadata name {name[:40]!r} is not valid")
        total += len(lowered.encode()) + len(value.encode("utf-8", "replace"))
        out[lowered] = f"{out[lowered]},{value}" if lowered in out else value
    if total > MAX_METADATA_BYTES or len(out) > MAX_METADATA_ITEMS:
        raise RequestInvalid(
            "MetadataTooLarge",
            f"user metadata is {total} bytes in {len(out)} items; at most "
            f"{MAX_METADATA_BYTES} bytes and {MAX_METADATA_ITEMS} items",
        )
    return out


def check_content_md5(content_md5: str | None, md5_hex: str) -> None:
    """Compare a ``Content-MD5`` header (base64 of the binary digest) with the body's md5."""
    if content_md5 is None:
        return
    try:
        given = base64.b64decode(content_md5.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestInvalid("InvalidDigest", "Content-MD5 is not base64") from exc
    if len(given) != 16:
        raise RequestInvalid("InvalidDigest", "Content-MD5 is not an MD5 digest")
    if given.hex() != md5_hex:
        raise RequestInvalid(
            "BadDigest", "the Content-MD5 you specified did not match what we received"
        )


def check_put_size(size: int | None) -> None:
    """Refuse a single PUT or part larger than S3 allows, before any byte is read."""
    if size is not None and size > MAX_PUT_BYTES:
        raise RequestInvalid(
            "EntityTooLarge",
            f"{size} bytes is more than {MAX_PUT_BYTES} in one request; use a multipart upload",
        )


def precondition_failed(what: str = "") -> ServiceError:
    """412 ``PreconditionFailed``, S3's answer when a condition the client set does not hold."""
    return ServiceError(
        "PreconditionFailed",
        "at least one of the preconditions you specified "
        f"did not hold{': ' + what if what else ''}",
        status=412,
    )


def etag_matches(wanted: str, etag: str) -> bool:
    """An ``If-Match``-style value (``*``, one ETag or a comma-separated list, quoted or not)
    against the object's ETag."""
    bare = etag.strip('"')
    return any(
        item.strip() in ("*", etag) or item.strip().strip('"') == bare for item in wanted.split(",")
    )


def same_second(time_text: str, when: datetime) -> bool:
    """The database time ``time_text`` and ``when`` name the same second (HTTP dates carry
    no fraction, listings show milliseconds: both are compared to the second)."""
    return parse_time_text(time_text).replace(microsecond=0) == when.replace(microsecond=0)


# -- buckets -----------------------------------------------------------------------------------


def owned_bucket(services: Services, project_id: str, name: str) -> BucketInfo:
    """The bucket ``name`` if ``project_id`` owns it; NoSuchBucket otherwise (even if it exists
    in another project)."""
    bucket = services.store.get_bucket(name) if len(name) <= 63 else None
    if bucket is None or bucket.project_id != project_id:
        raise NotFound("NoSuchBucket", f"bucket {name[:80]!r} does not exist")
    return bucket


def create_bucket(
    services: Services,
    project_id: str,
    name: str,
    storage_class: str | None = None,
    location: str | None = None,
) -> BucketInfo:
    """A new bucket; 409 ``BucketAlreadyOwnedByYou`` or ``BucketAlreadyExists`` if taken."""
    validate_bucket_name(name)
    canonical = parse_storage_class(storage_class)
    existing = services.store.get_bucket(name)
    if existing is None:
        try:
            return services.store.create_bucket(
                name, project_id, canonical, location or services.settings.region
            )
        except Conflict:
            existing = services.store.get_bucket(name)  # lost a race: say who has it
    if existing is not None and existing.project_id == project_id:
        raise Conflict("BucketAlreadyOwnedByYou", f"you already own bucket {name!r}")
    raise Conflict(
        "BucketAlreadyExists",
        f"bucket name {name!r} is taken; bucket names are shared by all projects",
    )


def list_buckets(services: Services, project_id: str) -> Sequence[BucketInfo]:
    return services.store.list_buckets(project_id)


@dataclass(frozen=True, slots=True)
class BucketsQuery:
    """A ListBuckets request: ``prefix``, ``bucket-region``, ``max-buckets`` and the
    ``continuation-token`` of the page before (S3), or the ``marker`` (the last name of the
    page before) and ``max-keys`` of OBS's paging; None: all, from the first."""

    prefix: str = ""
    region: str | None = None
    max_buckets: int | None = None
    token: str | None = None
    marker: str = ""


@dataclass(frozen=True, slots=True)
class BucketsPage:
    buckets: Sequence[BucketInfo]
    #: where the next page starts (opaque), empty on the last page
    next_token: str
    #: the same as OBS's NextMarker: the last name listed, empty on the last page
    next_marker: str = ""


def parse_max_buckets(value: str | None) -> int | None:
    """``max-buckets``: 1-10000 (400 ``InvalidArgument`` otherwise, as S3); None when absent."""
    if value is None:
        return None
    number = whole_number(value)
    if number is None or not 1 <= number <= MAX_BUCKETS_LISTED:
        raise RequestInvalid(
            "InvalidArgument", f"max-buckets must be an integer 1-{MAX_BUCKETS_LISTED}"
        )
    return number


def list_bucket_page(services: Services, project_id: str, query: BucketsQuery) -> BucketsPage:
    """The project's buckets whose names start with ``prefix`` (in ``region`` when one is
    named), in name order, after the page ``token`` ends, at most ``max_buckets``."""
    after = _decode_token(query.token) if query.token else query.marker
    found = [
        b
        for b in services.store.list_buckets(project_id)
        if b.name.startswith(query.prefix)
        and b.name > after
        and (query.region is None or b.location == query.region)
    ]
    found.sort(key=lambda b: b.name)
    limit = query.max_buckets
    if limit is None or len(found) <= limit:
        return BucketsPage(found, "")
    return BucketsPage(
        found[:limit],
        _encode_token(found[limit - 1].name) if limit else "",
        found[limit - 1].name if limit else "",
    )


def delete_bucket(services: Services, project_id: str, name: str) -> None:
    owned_bucket(services, project_id, name)
    services.store.delete_bucket(name)


# -- objects -----------------------------------------------------------------------------------


def _object(services: Services, bucket: str, key: str) -> ObjectInfo:
    info = services.store.get_object(bucket, key)
    if info is None:
        raise NotFound("NoSuchKey", f"object {key[:200]!r} does not exist")
    return info


def put_limit(services: Services, project_id: str, size: int | None) -> int:
    """The most bytes one PUT (or part) of ``project_id`` may bring now: S3's 5 GiB, or less
    where the project's object quota or the free disk space leaves less (a ``size`` declared
    beyond that is refused at once: :func:`~imageport.service.jobs.quotas.write_room`)."""
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


def _encode_token(resume_after: str) -> str:
    return base64.urlsafe_b64encode(resume_after.encode("utf-8", "surrogatepass")).decode()


def _decode_token(token: str) -> str:
    try:
        if len(token) > 4 * MAX_KEY_BYTES:
            raise ValueError(token)
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeError) as exc:
        raise RequestInvalid("InvalidArgument", "the continuation token is not valid") from exc


def list_objects(services: Services, project_id: str, bucket: str, query: ListQuery) -> ListPage:
    """One page of keys (and common prefixes when a delimiter is given), in binary key order.

    The resume point is the last key returned, or ``prefix + U+10FFFF`` after a common prefix
    so that the keys it rolls up are skipped in one step.
    """
    owned_bucket(services, project_id, bucket)
    store = services.store
    after = _decode_token(query.token) if query.token is not None else query.marker
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
        _encode_token(after) if truncated else "",
    )
