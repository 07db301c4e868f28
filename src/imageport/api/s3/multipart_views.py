"""Views of multipart uploads: initiate, upload part (streamed, or copied from an object),
complete, abort, list parts."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from imageport import metrics
from imageport.api.s3 import xml
from imageport.api.s3.body import declared_length, read_small, receive_to_file
from imageport.api.s3.bucket_views import owner
from imageport.api.s3.object_views import class_header, copy_source, new_object
from imageport.api.s3.request import Ctx
from imageport.api.s3.responses import empty_response, xml_response
from imageport.api.s3.xml import Child
from imageport.limits import MiB
from imageport.service import part_copy, storage
from imageport.service.errors import NotFound

MAX_COMPLETE_BODY = 2 * MiB
"""Largest CompleteMultipartUpload document (10000 parts with checksums fit)."""
MAX_PARTS_LISTED = 1000


async def initiate(ctx: Ctx) -> Response:
    upload = await run_in_threadpool(storage.create_upload, ctx.services, ctx.project_id,
                                     ctx.call.bucket, ctx.call.key, new_object(ctx))
    return xml_response(ctx.request, "InitiateMultipartUploadResult", [
        ("Bucket", upload.bucket), ("Key", upload.key), ("UploadId", upload.upload_id)],
        headers=class_header(ctx, upload.storage_class))


async def upload_part(ctx: Ctx) -> Response:
    call = ctx.call
    headers = ctx.request.headers
    if "x-amz-copy-source" in headers or "x-obs-copy-source" in headers:
        return await copy_part(ctx)
    number = storage.parse_part_number(call.query.get("partNumber"))
    upload_id = call.query["uploadId"]
    target = await run_in_threadpool(storage.part_target, ctx.services, ctx.project_id,
                                     call.bucket, call.key, upload_id, number,
                                     declared_length(ctx.request))
    try:
        limit = min(storage.MAX_PUT_BYTES, target.capacity or storage.MAX_PUT_BYTES)
        try:
            staged = await receive_to_file(ctx.request, target.path, limit=limit, sha256=False,
                                          offset=target.offset if target.in_place else None)
        except FileNotFoundError as exc:
            if not target.in_place:
                raise
            # the assembly is gone: the upload was aborted meanwhile
            raise NotFound("NoSuchUpload", f"upload {upload_id[:64]!r} does not exist") from exc
        part = await run_in_threadpool(storage.upload_part, ctx.services, ctx.project_id,
                                       call.bucket, call.key, upload_id, number, staged,
                                       ctx.request.headers.get("content-md5"))
    finally:  # quick (a set update or an unlink), and must run even if the task is cancelled
        ctx.services.store.release_part_target(target)
    metrics.BYTES_UPLOADED.inc(staged.size)
    return empty_response(ctx.request, headers={"ETag": part.etag})


async def copy_part(ctx: Ctx) -> Response:
    """UploadPartCopy: the part comes from a stored object (``x-amz-copy-source``), or the
    ``x-amz-copy-source-range`` of it."""
    call, headers = ctx.call, ctx.request.headers
    source = copy_source(headers.get("x-amz-copy-source") or headers["x-obs-copy-source"])
    part = await run_in_threadpool(
        part_copy.copy_part, ctx.services, ctx.project_id, call.bucket, call.key,
        call.query["uploadId"], storage.parse_part_number(call.query.get("partNumber")), source,
        headers.get("x-amz-copy-source-range") or headers.get("x-obs-copy-source-range"))
    return xml_response(ctx.request, "CopyPartResult", [
        ("LastModified", part.created_at), ("ETag", part.etag)])


async def complete(ctx: Ctx) -> Response:
    call = ctx.call
    body = await read_small(ctx.request, MAX_COMPLETE_BODY)
    parts = xml.complete_parts(body)
    info = await run_in_threadpool(storage.complete_upload, ctx.services, ctx.project_id,
                                   call.bucket, call.key, call.query["uploadId"], parts)
    return xml_response(ctx.request, "CompleteMultipartUploadResult", [
        ("Location", f"/{call.bucket}/{call.key}"), ("Bucket", call.bucket),
        ("Key", call.key), ("ETag", info.etag)])


async def abort(ctx: Ctx) -> Response:
    call = ctx.call
    await run_in_threadpool(storage.abort_upload, ctx.services, ctx.project_id, call.bucket,
                            call.key, call.query["uploadId"])
    return empty_response(ctx.request, status=204)


async def list_parts(ctx: Ctx) -> Response:
    call = ctx.call
    upload, parts = await run_in_threadpool(storage.list_parts, ctx.services, ctx.project_id,
                                            call.bucket, call.key, call.query["uploadId"])
    marker_text = call.query.get("part-number-marker", "0") or "0"
    marker = int(marker_text) if marker_text.isascii() and marker_text.isdigit() else 0
    max_text = call.query.get("max-parts", "") or str(MAX_PARTS_LISTED)
    max_parts = min(int(max_text), MAX_PARTS_LISTED) if max_text.isdigit() else MAX_PARTS_LISTED
    after = [p for p in parts if p.number > marker]
    shown, truncated = after[:max_parts], len(after) > max_parts
    items: list[Child] = [
        ("Bucket", call.bucket), ("Key", call.key), ("UploadId", upload.upload_id),
        ("Initiator", owner(ctx.project_id)), ("Owner", owner(ctx.project_id)),
        ("StorageClass", storage.storage_class_name(upload.storage_class, call.dialect)),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", shown[-1].number if shown else marker),
        ("MaxParts", max_parts), ("IsTruncated", truncated),
    ]
    items += [("Part", [("PartNumber", p.number), ("LastModified", p.created_at),
                        ("ETag", p.etag), ("Size", p.size)]) for p in shown]
    return xml_response(ctx.request, "ListPartsResult", items)
