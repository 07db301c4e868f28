"""UploadPartCopy: a part of a multipart upload filled from (a range of) a stored object.

boto3's managed ``copy()`` (for objects over its 8 MiB multipart threshold) and rclone (over its
copy cut-off) copy inside the store this way: ``PUT /bucket/key?partNumber=N&uploadId=U`` with
``x-amz-copy-source: /src-bucket/src-key`` and, for all but one-part copies,
``x-amz-copy-source-range: bytes=first-last`` (both ends, inclusive). Learned from the S3 API
reference (UploadPartCopy) and botocore's ``s3transfer/copies.py`` (Apache-2.0).

The bytes go where an uploaded part's body would go (in place in the upload's assembly file when
the sizes allow, else a staged file of their own), fsynced, and hashed for the part's md5 ETag on
the way; then the part is committed as any other. Both buckets must belong to the caller.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from typing import BinaryIO

from imageport.numbers import whole_number
from imageport.service.buckets import checks, multipart, objects
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid, ServiceError
from imageport.service.ports import ObjectInfo, PartInfo, PartTarget, StagedFile
from imageport.service.quotas import write_room

_RANGE = re.compile(r"^bytes=([0-9]+)-([0-9]+)$", re.ASCII)
MAX_RANGE_HEADER = 4096
"""Longest ``x-amz-copy-source-range`` read (longer: 400 ``InvalidArgument``)."""


def parse_copy_range(header: str | None, size: int) -> tuple[int, int]:
    """``(start, length)`` of the source slice: the whole object without a header;
    400 ``InvalidArgument`` when the header is not ``bytes=first-last``, 416 ``InvalidRange``
    when the slice is not inside the object (S3's answers)."""
    if header is None:
        return 0, size
    match = _RANGE.match(header.strip()) if len(header) <= MAX_RANGE_HEADER else None
    if match is None:
        raise RequestInvalid("InvalidArgument", "x-amz-copy-source-range must be bytes=first-last")
    first, last = whole_number(match.group(1)), whole_number(match.group(2))
    if first is None or last is None or last < first or last >= size:
        raise ServiceError(
            "InvalidRange",
            f"the range {first}-{last} is not inside the {size}-byte source object",
            status=416,
        )
    return first, last - first + 1


def copy_part(
    services: Services,
    project_id: str,
    bucket: str,
    key: str,
    upload_id: str,
    number: int,
    source: tuple[str, str],
    range_header: str | None,
    check_source: Callable[[ObjectInfo], None] | None = None,
) -> PartInfo:
    """Part ``number`` of the upload, copied from ``source`` (bucket, key) or a range of it;
    ``check_source`` judges the version being copied first (``x-amz-copy-source-if-*``)."""
    store = services.store
    # the record of the very version being copied: the range and conditions are checked on it
    origin, src = objects.open_object(services, project_id, *source)
    with src:
        if check_source is not None:
            check_source(origin)
        start, length = parse_copy_range(range_header, origin.size)
        write_room(services, project_id, length)  # a copied part takes room as an upload does
        target = multipart.part_target(services, project_id, bucket, key, upload_id, number, length)
        try:
            staged = _fill(target, src, start, length)
            return multipart.upload_part(
                services, project_id, bucket, key, upload_id, number, staged
            )
        finally:
            store.release_part_target(target)


def _fill(target: PartTarget, src: BinaryIO, start: int, length: int) -> StagedFile:
    """Copy ``length`` bytes of ``src`` from ``start`` to the target; fsynced, md5 computed.
    A staged file is removed on failure (an in-place slot is left to be overwritten)."""
    if target.in_place:
        fd = os.open(target.path, os.O_WRONLY)
    else:
        fd = os.open(target.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    md5 = hashlib.md5()  # noqa: S324 - the S3 ETag
    done = 0
    try:
        src.seek(start)
        while done < length:
            chunk = src.read(min(checks.COPY_CHUNK, length - done))
            if not chunk:
                raise ServiceError("InternalError", "the source object ended early", status=500)
            md5.update(chunk)
            view = memoryview(chunk)
            while view:
                written = os.pwrite(fd, view, target.offset + done if target.in_place else done)
                view = view[written:]
                done += written
        os.fsync(fd)
    except BaseException:
        if not target.in_place:
            target.path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return StagedFile(
        target.path, length, md5.hexdigest(), "", target.offset if target.in_place else None
    )
