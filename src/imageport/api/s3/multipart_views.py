"""Views of multipart uploads: initiate, upload part (streamed, or copied from an object),
complete, abort, list parts."""

from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from imageport import metrics
from imageport.api.s3 import xml
from imageport.api.s3.body import declared_length, read_small, receive_to_file
from imageport.api.s3.bucket_views import owner, url_encoding
from imageport.api.s3.checksum_headers import (
    body_hashers,
    declared_checksums,
    trailer_checksums,
    verify_bytes,
    verify_digests,
)
from imageport.api.s3.object_views import (
    check_write_conditions,
    class_header,
    copy_source,
    http_time,
    new_object,
    source_conditions,
)
from imageport.api.s3.request import Ctx
from imageport.api.s3.responses import empty_response, xml_response
from imageport.api.s3.xml import Child
from imageport.limits import MiB
from imageport.numbers import whole_number
from imageport.service.buckets import checks, multipart, objects, part_copy
from imageport.service.errors import NotFound, RequestInvalid

MAX_COMPLETE_BODY = 2 * MiB
"""Largest CompleteMultipartUpload document (10000 parts with checksums fit)."""
MAX_PARTS_LISTED = 1000


async def initiate(ctx: Ctx) -> Response:
    """CreateMultipartUpload: the upload id."""
    upload = await run_in_threadpool(
        multipart.create_upload,
        ctx.services,
        ctx.project_id,
        ctx.call.bucket,
        ctx.call.key,
        new_object(ctx),
    )
    return xml_response(
        ctx.request,
        "InitiateMultipartUploadResult",
        [("Bucket", upload.bucket), ("Key", upload.key), ("UploadId", upload.upload_id)],
        headers=class_header(ctx, upload.storage_class),
    )


async def upload_part(ctx: Ctx) -> Response:
    """UploadPart, or UploadPartCopy when ``x-amz-copy-source`` is sent."""
    call = ctx.call
    headers = ctx.request.headers
    if "x-amz-copy-source" in headers or "x-obs-copy-source" in headers:
        return await copy_part(ctx)
    number = multipart.parse_part_number(call.query.get("partNumber"))
    upload_id = call.query["uploadId"]
    checksums = declared_checksums(headers)
    declared = declared_length(ctx.request)
    room = await run_in_threadpool(objects.put_limit, ctx.services, ctx.project_id, declared)
    target = await run_in_threadpool(
        multipart.part_target,
        ctx.services,
        ctx.project_id,
        call.bucket,
        call.key,
        upload_id,
        number,
        declared,
    )
    try:
        limit = min(room, target.capacity or checks.MAX_PUT_BYTES)
        hashers = body_hashers(headers)
        try:
            staged = await receive_to_file(
                ctx.request,
                target.path,
                limit=limit,
                sha256=False,
                offset=target.offset if target.in_place else None,
                hashers=hashers,
            )
        except FileNotFoundError as exc:
            if not target.in_place:
                raise
            # the assembly is gone: the upload was aborted meanwhile
            raise NotFound("NoSuchUpload", f"upload {upload_id[:64]!r} does not exist") from exc
        verify_digests([*checksums, *trailer_checksums(ctx.request)], hashers)
        part = await run_in_threadpool(
            multipart.upload_part,
            ctx.services,
            ctx.project_id,
            call.bucket,
            call.key,
            upload_id,
            number,
            staged,
            ctx.request.headers.get("content-md5"),
        )
    finally:  # quick (a set update or an unlink), and must run even if the task is cancelled
        multipart.release_part_target(ctx.services, target)
    metrics.BYTES_UPLOADED.inc(staged.size)
    return empty_response(ctx.request, headers={"ETag": part.etag})


async def copy_part(ctx: Ctx) -> Response:
    """UploadPartCopy: the part comes from a stored object (``x-amz-copy-source``), or the
    ``x-amz-copy-source-range`` of it."""
    call, headers = ctx.call, ctx.request.headers
    source = copy_source(headers.get("x-amz-copy-source") or headers["x-obs-copy-source"])
    part = await run_in_threadpool(
        part_copy.copy_part,
        ctx.services,
        ctx.project_id,
        call.bucket,
        call.key,
        call.query["uploadId"],
        multipart.parse_part_number(call.query.get("partNumber")),
        source,
        headers.get("x-amz-copy-source-range") or headers.get("x-obs-copy-source-range"),
        source_conditions(ctx),
    )
    return xml_response(
        ctx.request, "CopyPartResult", [("LastModified", part.created_at), ("ETag", part.etag)]
    )


async def complete(ctx: Ctx) -> Response:
    """CompleteMultipartUpload: the object appears whole.

    With ``If-Match``/``If-None-Match: *`` and
    ``x-amz-mp-object-size`` honoured. A ``<ChecksumCRC32>`` (or other kind) of a ``<Part>``
    is not compared: part checksums are not kept, but the part's ETag (its MD5) is, and it
    must match; a checksum the part declared when it was uploaded was verified then."""
    call = ctx.call
    size_text = ctx.request.headers.get("x-amz-mp-object-size")
    expected = whole_number(size_text.strip()) if size_text is not None else None
    if size_text is not None and expected is None:
        raise RequestInvalid("InvalidArgument", "x-amz-mp-object-size is not a whole number")
    body = await read_small(ctx.request, MAX_COMPLETE_BODY)
    verify_bytes(ctx.request.headers, body, trailer_checksums(ctx.request))
    parts = xml.complete_parts(body)
    await run_in_threadpool(check_write_conditions, ctx, call.bucket, call.key)
    info = await run_in_threadpool(
        multipart.complete_upload,
        ctx.services,
        ctx.project_id,
        call.bucket,
        call.key,
        call.query["uploadId"],
        parts,
        expected,
    )
    return xml_response(
        ctx.request,
        "CompleteMultipartUploadResult",
        [
            ("Location", f"/{call.bucket}/{call.key}"),
            ("Bucket", call.bucket),
            ("Key", call.key),
            ("ETag", info.etag),
        ],
    )


async def abort(ctx: Ctx) -> Response:
    """AbortMultipartUpload; with ``x-amz-if-match-initiated-time`` only the upload started
    then (412 otherwise)."""
    call = ctx.call
    initiated = ctx.request.headers.get("x-amz-if-match-initiated-time")
    await run_in_threadpool(
        multipart.abort_upload,
        ctx.services,
        ctx.project_id,
        call.bucket,
        call.key,
        call.query["uploadId"],
        None if initiated is None else http_time("x-amz-if-match-initiated-time", initiated),
    )
    return empty_response(ctx.request, status=204)


def _list_number(value: str | None, name: str, default: int) -> int:
    """A ListParts paging number: ASCII digits up to 2^31-1 (400 ``InvalidArgument``, as S3;
    absent or empty gives ``default``)."""
    if not value:
        return default
    number = whole_number(value)
    if number is None or number > checks.MAX_INT32:
        raise RequestInvalid("InvalidArgument", f"{name} must be an integer 0-2147483647")
    return number


async def list_parts(ctx: Ctx) -> Response:
    """ListParts, paged by ``part-number-marker`` and ``max-parts`` (at most
    :data:`MAX_PARTS_LISTED`), the key URL-encoded with ``encoding-type=url``."""
    call = ctx.call
    url = url_encoding(ctx)
    upload, parts = await run_in_threadpool(
        multipart.list_parts,
        ctx.services,
        ctx.project_id,
        call.bucket,
        call.key,
        call.query["uploadId"],
    )
    marker = _list_number(call.query.get("part-number-marker"), "part-number-marker", 0)
    max_parts = min(
        _list_number(call.query.get("max-parts"), "max-parts", MAX_PARTS_LISTED), MAX_PARTS_LISTED
    )
    after = [p for p in parts if p.number > marker]
    shown, truncated = after[:max_parts], len(after) > max_parts
    items: list[Child] = [
        ("Bucket", call.bucket),
        ("Key", quote(call.key, safe="/") if url else call.key),
        ("UploadId", upload.upload_id),
        ("Initiator", owner(ctx.project_id)),
        ("Owner", owner(ctx.project_id)),
        ("StorageClass", checks.storage_class_name(upload.storage_class, call.dialect)),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", shown[-1].number if shown else marker),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
        ("EncodingType", "url" if url else None),
    ]
    items += [
        (
            "Part",
            [
                ("PartNumber", p.number),
                ("LastModified", p.created_at),
                ("ETag", p.etag),
                ("Size", p.size),
            ],
        )
        for p in shown
    ]
    return xml_response(ctx.request, "ListPartsResult", items)
