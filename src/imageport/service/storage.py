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

from imageport.limits import GiB, MiB, TiB
from imageport.numbers import whole_number
from imageport.service.context import Services
from imageport.service.errors import Conflict, Forbidden, NotFound, RequestInvalid
from imageport.service.ports import (
    BucketInfo,
    ObjectInfo,
    PartInfo,
    PartTarget,
    StagedFile,
    UploadInfo,
)

MAX_KEY_BYTES = 1024
"""Longest object key (UTF-8 bytes), as S3."""
MAX_PUT_BYTES = 5 * GiB
"""Largest single PUT and largest part (S3's limits); bigger files use multipart."""
MAX_OBJECT_BYTES = 5 * TiB
"""Largest object a multipart upload may produce (S3's limit)."""
MAX_COPY_BYTES = 5 * GiB
"""Largest object copied by ``x-amz-copy-source`` (S3's limit)."""
MAX_PART_NUMBER = 10_000
MIN_PART_BYTES = 5 * MiB
"""Smallest part except the last one (S3's rule, enforced at completion)."""
MAX_SMALL_PARTS = 16
"""Parts under :data:`MIN_PART_BYTES` one upload may hold. Only the last part of an object may
be that small, so a client needs one (a few while retrying or uploading in parallel); each
costs a file of its own (a part's size is unknown until it is known to be the last), so
without a cap 10,000 one-byte parts made 10,000 files, an inode and a disk block each, per
upload. More is refused early with 400 ``EntityTooSmall``, the code S3 gives such parts at
completion."""
MAX_KEYS = 1000
"""Most keys + common prefixes in one list reply (the cap on ``max-keys``)."""
MAX_INT32 = 2**31 - 1
"""Largest ``max-keys``/``max-uploads``/``max-parts``/marker S3 accepts (larger: 400)."""
MAX_METADATA_BYTES = 2048
"""Total size of user metadata names and values (S3's limit)."""
MAX_METADATA_ITEMS = 64
MAX_DELETE_KEYS = 1000
"""Most keys in one multi-object delete (S3's limit)."""
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
_MAX_CHAR = "\U0010ffff"


# -- names, classes, metadata, digests (pure checks) -------------------------------------------

def validate_bucket_name(name: str) -> None:
    """S3's rules: 3-63 of ``a-z 0-9 . -``, starting and ending with a letter or digit, no
    ``..`` or ``.-``/``-.``, not an IPv4 address, no ``xn--`` prefix or ``-s3alias`` suffix."""
    if (not _BUCKET.match(name) or ".." in name or ".-" in name or "-." in name
            or _IPV4.match(name) or name.startswith(("xn--", "sthree-"))
            or name.endswith(("-s3alias", "--ol-s3"))):
        raise RequestInvalid("InvalidBucketName",
                             f"bucket name {name[:80]!r} is not valid: use 3-63 lower-case "
                             "letters, digits, '.' and '-', starting and ending with a letter "
                             "or digit")


def validate_key(key: str) -> None:
    """Non-empty, at most 1024 bytes of UTF-8, no NUL."""
    if not key:
        raise RequestInvalid("InvalidArgument", "the object key is empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise RequestInvalid("InvalidArgument", "the object key is not valid UTF-8") from exc
    if size > MAX_KEY_BYTES:
        raise RequestInvalid("KeyTooLongError",
                             f"the object key is {size} bytes; at most {MAX_KEY_BYTES}")
    if "\x00" in key:
        raise RequestInvalid("InvalidArgument", "the object key contains a NUL character")


def parse_storage_class(value: str | None, default: str = "STANDARD") -> str:
    """The canonical class (STANDARD, WARM, COLD) for any accepted spelling; ``default`` when
    none is given."""
    if value is None or not value.strip():
        return default
    canonical = _CLASS_ALIASES.get(value.strip().upper())
    if canonical is None:
        raise RequestInvalid("InvalidStorageClass",
                             f"storage class {value[:40]!r} is not one of STANDARD, WARM "
                             "(STANDARD_IA), COLD (GLACIER, DEEP_ARCHIVE)")
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
        raise RequestInvalid("MetadataTooLarge",
                             f"user metadata is {total} bytes in {len(out)} items; at most "
                             f"{MAX_METADATA_BYTES} bytes and {MAX_METADATA_ITEMS} items")
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
        raise RequestInvalid("BadDigest",
                             "the Content-MD5 you specified did not match what we received")


def check_put_size(size: int | None) -> None:
    """Refuse a single PUT or part larger than S3 allows, before any byte is read."""
    if size is not None and size > MAX_PUT_BYTES:
        raise RequestInvalid("EntityTooLarge",
                             f"{size} bytes is more than {MAX_PUT_BYTES} in one request; "
                             "use a multipart upload")


# -- buckets -----------------------------------------------------------------------------------

def owned_bucket(services: Services, project_id: str, name: str) -> BucketInfo:
    """The bucket ``name`` if ``project_id`` owns it; NoSuchBucket otherwise (even if it exists
    in another project)."""
    bucket = services.store.get_bucket(name) if len(name) <= 63 else None
    if bucket is None or bucket.project_id != project_id:
        raise NotFound("NoSuchBucket", f"bucket {name[:80]!r} does not exist")
    return bucket


def create_bucket(services: Services, project_id: str, name: str,
                  storage_class: str | None = None, location: str | None = None) -> BucketInfo:
    """A new bucket; 409 ``BucketAlreadyOwnedByYou`` or ``BucketAlreadyExists`` if taken."""
    validate_bucket_name(name)
    canonical = parse_storage_class(storage_class)
    existing = services.store.get_bucket(name)
    if existing is None:
        try:
            return services.store.create_bucket(name, project_id, canonical,
                                                location or services.settings.region)
        except Conflict:
            existing = services.store.get_bucket(name)  # lost a race: say who has it
    if existing is not None and existing.project_id == project_id:
        raise Conflict("BucketAlreadyOwnedByYou", f"you already own bucket {name!r}")
    raise Conflict("BucketAlreadyExists",
                   f"bucket name {name!r} is taken; bucket names are shared by all projects")


def list_buckets(services: Services, project_id: str) -> Sequence[BucketInfo]:
    return services.store.list_buckets(project_id)


def delete_bucket(services: Services, project_id: str, name: str) -> None:
    owned_bucket(services, project_id, name)
    services.store.delete_bucket(name)


# -- objects -----------------------------------------------------------------------------------

def _object(services: Services, bucket: str, key: str) -> ObjectInfo:
    info = services.store.get_object(bucket, key)
    if info is None:
        raise NotFound("NoSuchKey", f"object {key[:200]!r} does not exist")
    return info


def prepare_put(services: Services, project_id: str, bucket: str, key: str,
                size: int | None) -> BucketInfo:
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


def put_object(services: Services, project_id: str, bucket: str, key: str,
               staged: StagedFile, new: NewObject, content_md5: str | None = None) -> ObjectInfo:
    """Store ``staged`` as ``bucket/key`` after checking the digest the client declared."""
    found = prepare_put(services, project_id, bucket, key, staged.size)
    check_content_md5(content_md5, staged.md5_hex)
    return services.store.commit_object(
        bucket, key, staged, content_type=new.content_type[:255],
        storage_class=parse_storage_class(new.storage_class, found.storage_class),
        metadata=new.metadata)


def head_object(services: Services, project_id: str, bucket: str, key: str) -> ObjectInfo:
    owned_bucket(services, project_id, bucket)
    return _object(services, bucket, key)


def delete_object(services: Services, project_id: str, bucket: str, key: str) -> None:
    """Delete ``bucket/key``; deleting a missing key succeeds, as in S3."""
    owned_bucket(services, project_id, bucket)
    services.store.delete_object(bucket, key)


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: Sequence[str]
    errors: Sequence[tuple[str, str, str]]
    """``(key, code, message)`` of each key that could not be deleted."""


def delete_objects(services: Services, project_id: str, bucket: str,
                   keys: Sequence[str]) -> DeleteResult:
    """S3 multi-object delete (``POST /b?delete``)."""
    owned_bucket(services, project_id, bucket)
    if len(keys) > MAX_DELETE_KEYS:
        raise RequestInvalid("MalformedXML", f"at most {MAX_DELETE_KEYS} keys per request")
    deleted: list[str] = []
    errors: list[tuple[str, str, str]] = []
    for key in keys:
        try:
            validate_key(key)
        except RequestInvalid as exc:
            errors.append((key, exc.code, exc.message))
            continue
        services.store.delete_object(bucket, key)
        deleted.append(key)
    return DeleteResult(deleted, errors)


def copy_object(services: Services, project_id: str, source: tuple[str, str],
                bucket: str, key: str, new: NewObject | None,
                check_source: Callable[[ObjectInfo], None] | None = None) -> ObjectInfo:
    """Copy ``source`` (bucket, key) to ``bucket/key``; ``new`` None keeps the source's type,
    class and metadata (``x-amz-metadata-directive: COPY``). The bytes are copied into a staged
    file (hashed on the way), so the copy is independent of later changes to the source.
    ``check_source`` judges the source's record first (the ``x-amz-copy-source-if-*``
    conditions)."""
    src_bucket, src_key = source
    owned_bucket(services, project_id, src_bucket)
    found = prepare_put(services, project_id, bucket, key, None)
    store = services.store
    origin = _object(services, src_bucket, src_key)
    if check_source is not None:
        check_source(origin)
    if origin.size > MAX_COPY_BYTES:
        raise RequestInvalid("InvalidRequest",
                             f"the copy source is larger than {MAX_COPY_BYTES} bytes")
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
        if new is None:
            new = NewObject(origin.content_type, origin.storage_class, origin.metadata)
        return store.commit_object(
            bucket, key, staged, content_type=new.content_type[:255],
            storage_class=parse_storage_class(new.storage_class, found.storage_class),
            metadata=new.metadata)
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


def list_objects(services: Services, project_id: str, bucket: str,
                 query: ListQuery) -> ListPage:
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
            rest = info.key[len(query.prefix):]
            cut = rest.find(query.delimiter) if query.delimiter else -1
            if cut < 0:
                contents.append(info)
                after = last = info.key
                continue
            common = query.prefix + rest[:cut + len(query.delimiter)]
            after = common + _MAX_CHAR
            if common > marker or query.token is not None:
                prefixes.append(common)
                last = common
            jumped = True
            break
        if not jumped and not full and len(batch) < page:
            exhausted = True
            break
    truncated = not exhausted and bool(
        store.list_objects(bucket, prefix=query.prefix, start_after=after, limit=1))
    return ListPage(contents, prefixes, truncated, last if truncated else "",
                    _encode_token(after) if truncated else "")


# -- multipart uploads -------------------------------------------------------------------------

def _owned_upload(services: Services, project_id: str, bucket: str, key: str,
                  upload_id: str) -> UploadInfo:
    owned_bucket(services, project_id, bucket)
    upload = services.store.get_upload(upload_id) if len(upload_id) <= 64 else None
    if upload is None or upload.bucket != bucket or upload.key != key:
        raise NotFound("NoSuchUpload", f"upload {upload_id[:64]!r} does not exist")
    return upload


def check_open_uploads(services: Services, project_id: str) -> None:
    """403 ``QuotaExceeded`` (Ceph RGW's code for a quota reached) when the project already
    has ``project_open_uploads`` unfinished multipart uploads; complete or abort some first.
    Two uploads started at the same instant may both pass: the cap is exact to within the
    requests in flight."""
    cap = services.settings.project_open_uploads
    if cap <= 0:
        return
    held = services.store.count_uploads(project_id)
    if held >= cap:
        raise Forbidden("QuotaExceeded",
                        f"the project has {held} unfinished multipart uploads, the most it may "
                        "have open: complete or abort some (ListMultipartUploads lists them; "
                        "the operator sets the cap with IMAGEPORT_PROJECT_OPEN_UPLOADS)")


def check_small_parts(services: Services, upload_id: str, number: int, size: int | None) -> None:
    """400 ``EntityTooSmall`` when part ``number`` is under :data:`MIN_PART_BYTES` and the
    upload already holds :data:`MAX_SMALL_PARTS` other such parts (see there)."""
    if size is None or size >= MIN_PART_BYTES:
        return
    held = services.store.count_parts(upload_id, smaller_than=MIN_PART_BYTES,
                                      except_number=number)
    if held >= MAX_SMALL_PARTS:
        raise RequestInvalid("EntityTooSmall",
                             f"the upload already has {held} parts under {MIN_PART_BYTES} bytes; "
                             "every part but the last must be at least that large")


def create_upload(services: Services, project_id: str, bucket: str, key: str,
                  new: NewObject) -> UploadInfo:
    found = prepare_put(services, project_id, bucket, key, None)
    check_open_uploads(services, project_id)
    return services.store.create_upload(
        bucket, key, content_type=new.content_type[:255],
        storage_class=parse_storage_class(new.storage_class, found.storage_class),
        metadata=new.metadata)


def parse_part_number(value: str | None) -> int:
    """``partNumber`` of an UploadPart: ASCII digits, 1-10000 (400 ``InvalidArgument``)."""
    number = whole_number(value)
    if number is None or not 1 <= number <= MAX_PART_NUMBER:
        raise RequestInvalid("InvalidArgument", "partNumber must be an integer 1-10000")
    return number


def prepare_part(services: Services, project_id: str, bucket: str, key: str,
                 upload_id: str, size: int | None) -> UploadInfo:
    """Checks of an UploadPart before its body is read (and again with its real size)."""
    upload = _owned_upload(services, project_id, bucket, key, upload_id)
    check_put_size(size)
    return upload


def part_target(services: Services, project_id: str, bucket: str, key: str, upload_id: str,
                number: int, size: int | None) -> PartTarget:
    """Checks of an UploadPart before its body is read, and where the body goes (in place in
    the upload's assembly file, or a staged file); the caller gives the target back with
    ``store.release_part_target`` whatever happens."""
    prepare_part(services, project_id, bucket, key, upload_id, size)
    check_small_parts(services, upload_id, number, size)
    return services.store.part_target(upload_id, number, size)


def upload_part(services: Services, project_id: str, bucket: str, key: str, upload_id: str,
                number: int, staged: StagedFile, content_md5: str | None = None) -> PartInfo:
    prepare_part(services, project_id, bucket, key, upload_id, staged.size)
    check_small_parts(services, upload_id, number, staged.size)
    check_content_md5(content_md5, staged.md5_hex)
    return services.store.commit_part(upload_id, number, staged)


def list_parts(services: Services, project_id: str, bucket: str, key: str,
               upload_id: str) -> tuple[UploadInfo, Sequence[PartInfo]]:
    upload = _owned_upload(services, project_id, bucket, key, upload_id)
    return upload, services.store.list_parts(upload_id)


def complete_upload(services: Services, project_id: str, bucket: str, key: str,
                    upload_id: str, parts: Sequence[tuple[int, str]]) -> ObjectInfo:
    _owned_upload(services, project_id, bucket, key, upload_id)
    stored = {p.number: p.size for p in services.store.list_parts(upload_id)}
    if sum(stored.get(n, 0) for n, _etag in parts) > MAX_OBJECT_BYTES:
        raise RequestInvalid("EntityTooLarge", f"objects are at most {MAX_OBJECT_BYTES} bytes")
    return services.store.complete_upload(upload_id, parts)


def abort_upload(services: Services, project_id: str, bucket: str, key: str,
                 upload_id: str) -> None:
    _owned_upload(services, project_id, bucket, key, upload_id)
    services.store.abort_upload(upload_id)


@dataclass(frozen=True, slots=True)
class UploadsQuery:
    """A ListMultipartUploads request: ``key-marker`` and ``upload-id-marker`` resume a
    listing after the upload they name (the id marker counts only with a key marker)."""

    prefix: str = ""
    key_marker: str = ""
    upload_id_marker: str = ""
    max_uploads: int = MAX_KEYS


@dataclass(frozen=True, slots=True)
class UploadsPage:
    uploads: Sequence[UploadInfo]
    is_truncated: bool
    #: where the next page starts: the last upload returned (empty when not truncated)
    next_key_marker: str
    next_upload_id_marker: str


def list_uploads(services: Services, project_id: str, bucket: str,
                 query: UploadsQuery) -> UploadsPage:
    """One page of the bucket's unfinished multipart uploads, in (key, upload id) order."""
    owned_bucket(services, project_id, bucket)
    id_marker = query.upload_id_marker if query.key_marker else ""
    found = services.store.list_uploads(bucket, prefix=query.prefix, key_marker=query.key_marker,
                                        upload_id_marker=id_marker,
                                        limit=query.max_uploads + 1)
    page = found[:query.max_uploads]
    if len(found) <= query.max_uploads or not page:
        return UploadsPage(page, len(found) > query.max_uploads, "", "")
    return UploadsPage(page, True, page[-1].key, page[-1].upload_id)
