"""Multipart-upload use cases of the S3-compatible bucket API (no HTTP here): initiate, parts
(streamed by the API layer into the :class:`PartTarget` :func:`part_target` gives), complete,
abort, list parts and list uploads, each checking the caller's ownership first, as
:mod:`imageport.service.buckets.objects` does for buckets and objects.

What one project may hold is capped: ``project_open_uploads`` unfinished uploads
(:func:`check_open_uploads`) and :data:`MAX_SMALL_PARTS` parts under :data:`MIN_PART_BYTES`
in one upload (:func:`check_small_parts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from imageport.limits import MiB
from imageport.numbers import whole_number
from imageport.service.buckets.buckets import owned_bucket
from imageport.service.buckets.checks import (
    LAST_CHAR,
    MAX_KEYS,
    MAX_OBJECT_BYTES,
    check_content_md5,
    check_put_size,
    etag_matches,
    parse_storage_class,
    precondition_failed,
    same_second,
)
from imageport.service.buckets.objects import NewObject, prepare_put
from imageport.service.context import Services
from imageport.service.errors import Forbidden, NotFound, RequestInvalid
from imageport.service.ports import ObjectInfo, PartInfo, PartTarget, StagedFile, UploadInfo

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


def _owned_upload(
    services: Services, project_id: str, bucket: str, key: str, upload_id: str
) -> UploadInfo:
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
        raise Forbidden(
            "QuotaExceeded",
            f"the project has {held} unfinished multipart uploads, the most it may "
            "have open: complete or abort some (ListMultipartUploads lists them; "
            "the operator sets the cap with IMAGEPORT_PROJECT_OPEN_UPLOADS)",
        )


def check_small_parts(services: Services, upload_id: str, number: int, size: int | None) -> None:
    """400 ``EntityTooSmall`` when part ``number`` is under :data:`MIN_PART_BYTES` and the
    upload already holds :data:`MAX_SMALL_PARTS` other such parts (see there)."""
    if size is None or size >= MIN_PART_BYTES:
        return
    held = services.store.count_parts(upload_id, smaller_than=MIN_PART_BYTES, except_number=number)
    if held >= MAX_SMALL_PARTS:
        raise RequestInvalid(
            "EntityTooSmall",
            f"the upload already has {held} parts under {MIN_PART_BYTES} bytes; "
            "every part but the last must be at least that large",
        )


def create_upload(
    services: Services, project_id: str, bucket: str, key: str, new: NewObject
) -> UploadInfo:
    found = prepare_put(services, project_id, bucket, key, None)
    check_open_uploads(services, project_id)
    return services.store.create_upload(
        bucket,
        key,
        content_type=new.content_type[:255],
        storage_class=parse_storage_class(new.storage_class, found.storage_class),
        metadata=new.metadata,
    )


def parse_part_number(value: str | None) -> int:
    """``partNumber`` of an UploadPart: ASCII digits, 1-10000 (400 ``InvalidArgument``)."""
    number = whole_number(value)
    if number is None or not 1 <= number <= MAX_PART_NUMBER:
        raise RequestInvalid("InvalidArgument", "partNumber must be an integer 1-10000")
    return number


def prepare_part(
    services: Services, project_id: str, bucket: str, key: str, upload_id: str, size: int | None
) -> UploadInfo:
    """Checks of an UploadPart before its body is read (and again with its real size)."""
    upload = _owned_upload(services, project_id, bucket, key, upload_id)
    check_put_size(size)
    return upload


def part_target(
    services: Services,
    project_id: str,
    bucket: str,
    key: str,
    upload_id: str,
    number: int,
    size: int | None,
) -> PartTarget:
    """Checks of an UploadPart before its body is read, and where the body goes (in place in
    the upload's assembly file, or a staged file); the caller gives the target back with
    :func:`release_part_target` whatever happens."""
    prepare_part(services, project_id, bucket, key, upload_id, size)
    check_small_parts(services, upload_id, number, size)
    return services.store.part_target(upload_id, number, size)


def release_part_target(services: Services, target: PartTarget) -> None:
    """Give back a target :func:`part_target` handed out (after the part was committed, or
    its body failed); quick, and idempotent."""
    services.store.release_part_target(target)


def upload_part(
    services: Services,
    project_id: str,
    bucket: str,
    key: str,
    upload_id: str,
    number: int,
    staged: StagedFile,
    content_md5: str | None = None,
) -> PartInfo:
    prepare_part(services, project_id, bucket, key, upload_id, staged.size)
    check_small_parts(services, upload_id, number, staged.size)
    check_content_md5(content_md5, staged.md5_hex)
    return services.store.commit_part(upload_id, number, staged)


def list_parts(
    services: Services, project_id: str, bucket: str, key: str, upload_id: str
) -> tuple[UploadInfo, Sequence[PartInfo]]:
    upload = _owned_upload(services, project_id, bucket, key, upload_id)
    return upload, services.store.list_parts(upload_id)


def complete_upload(
    services: Services,
    project_id: str,
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[tuple[int, str]],
    expected_size: int | None = None,
) -> ObjectInfo:
    """Join ``parts`` into the object. ``expected_size`` (``x-amz-mp-object-size``) must be
    the size of the parts named (400 ``InvalidRequest`` otherwise, as S3); a part is named by
    number and ETag, so the size of the stored parts with those ETags is the object's."""
    _owned_upload(services, project_id, bucket, key, upload_id)
    stored = {p.number: p for p in services.store.list_parts(upload_id)}
    named = [stored.get(n) for n, _etag in parts]
    total = sum(p.size for p in named if p is not None)
    if total > MAX_OBJECT_BYTES:
        raise RequestInvalid("EntityTooLarge", f"objects are at most {MAX_OBJECT_BYTES} bytes")
    exact = all(
        p is not None and etag_matches(etag, p.etag)
        for p, (_n, etag) in zip(named, parts, strict=True)
    )
    if expected_size is not None and exact and expected_size != total:
        raise RequestInvalid(
            "InvalidRequest",
            f"x-amz-mp-object-size is {expected_size} but the parts named make {total} bytes",
        )
    return services.store.complete_upload(upload_id, parts)


def abort_upload(
    services: Services,
    project_id: str,
    bucket: str,
    key: str,
    upload_id: str,
    initiated: datetime | None = None,
) -> None:
    """Abort the upload; with ``initiated`` (``x-amz-if-match-initiated-time``) only if it was
    started in that second (412 ``PreconditionFailed`` otherwise, as S3)."""
    upload = _owned_upload(services, project_id, bucket, key, upload_id)
    if initiated is not None and not same_second(upload.created_at, initiated):
        raise precondition_failed("the upload's initiation time")
    services.store.abort_upload(upload_id)


@dataclass(frozen=True, slots=True)
class UploadsQuery:
    """A ListMultipartUploads request: ``key-marker`` and ``upload-id-marker`` resume a
    listing after the upload they name (the id marker counts only with a key marker); with a
    ``delimiter``, keys that contain it after the prefix are rolled up into common prefixes."""

    prefix: str = ""
    key_marker: str = ""
    upload_id_marker: str = ""
    max_uploads: int = MAX_KEYS
    delimiter: str = ""


@dataclass(frozen=True, slots=True)
class UploadsPage:
    uploads: Sequence[UploadInfo]
    is_truncated: bool
    #: where the next page starts: the last upload or common prefix returned (empty when not
    #: truncated; the id marker is empty after a common prefix)
    next_key_marker: str
    next_upload_id_marker: str
    common_prefixes: Sequence[str] = ()


def list_uploads(
    services: Services, project_id: str, bucket: str, query: UploadsQuery
) -> UploadsPage:
    """One page of the bucket's unfinished multipart uploads, in (key, upload id) order, with
    common prefixes in key order among them when a delimiter is given (each counts as one
    entry of ``max_uploads``, as in S3)."""
    owned_bucket(services, project_id, bucket)
    store = services.store
    key_marker = query.key_marker
    id_marker = query.upload_id_marker if key_marker else ""
    uploads: list[UploadInfo] = []
    prefixes: list[str] = []
    last_key, last_id = "", ""
    while True:
        room = query.max_uploads - len(uploads) - len(prefixes)
        found = store.list_uploads(
            bucket,
            prefix=query.prefix,
            key_marker=key_marker,
            upload_id_marker=id_marker,
            limit=min(room, MAX_KEYS) + 1,
        )
        rolled = False
        for upload in found[: room + 1]:
            if len(uploads) + len(prefixes) >= query.max_uploads:
                return UploadsPage(uploads, True, last_key, last_id, prefixes)
            rest = upload.key[len(query.prefix) :]
            cut = rest.find(query.delimiter) if query.delimiter else -1
            if cut < 0:
                uploads.append(upload)
                last_key, last_id = upload.key, upload.upload_id
                key_marker, id_marker = upload.key, upload.upload_id
                continue
            common = query.prefix + rest[: cut + len(query.delimiter)]
            if common > query.key_marker:  # else the page before ended with this prefix
                prefixes.append(common)
                last_key, last_id = common, ""
            key_marker, id_marker = common + LAST_CHAR, ""
            rolled = True
            break
        if not rolled and len(found) <= room:
            return UploadsPage(uploads, False, "", "", prefixes)
