"""Views on objects: PUT (streamed, or a copy with ``x-amz-copy-source``; conditional with
``If-None-Match: *`` or ``If-Match``; declared ``x-amz-checksum-*`` verified), GET with Range,
``If-Range``, ``partNumber``, conditions and ``response-*`` header overrides, HEAD, DELETE
(conditional with ``If-Match``, ``x-amz-if-match-size`` and
``x-amz-if-match-last-modified-time``), and the object ACL ``s3cmd info`` reads."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from imageport import metrics
from imageport.api.s3.body import declared_length, receive_to_file
from imageport.api.s3.bucket_views import acl_response
from imageport.api.s3.checksum_headers import (
    body_hashers,
    declared_checksums,
    trailer_checksums,
    verify_digests,
)
from imageport.api.s3.ranges import parse_range
from imageport.api.s3.request import Ctx
from imageport.api.s3.responses import (
    FileSliceResponse,
    base_headers,
    empty_response,
    http_date,
    object_headers,
    xml_response,
)
from imageport.numbers import whole_number
from imageport.service.buckets import checks, multipart, objects
from imageport.service.clock import parse_time_text
from imageport.service.errors import NotFound, RequestInvalid, ServiceError
from imageport.service.ports import ObjectInfo

_META_PREFIXES = ("x-amz-meta-", "x-obs-meta-")
_DIRECTIVES = frozenset({"COPY", "REPLACE"})
_MULTIPART_ETAG = re.compile(r'^"[0-9a-f]{32}-([0-9]{1,5})"$', re.ASCII)


def new_object(ctx: Ctx) -> objects.NewObject:
    """Content type, storage class and user metadata from the request headers."""
    headers = ctx.request.headers
    pairs = [
        (name[len(prefix) :], value)
        for name, value in headers.items()
        for prefix in _META_PREFIXES
        if name.startswith(prefix)
    ]
    return objects.NewObject(
        content_type=headers.get("content-type") or "binary/octet-stream",
        storage_class=headers.get("x-amz-storage-class") or headers.get("x-obs-storage-class"),
        metadata=checks.user_metadata(pairs),
    )


def class_header(ctx: Ctx, canonical: str) -> dict[str, str]:
    prefix = "x-obs-" if ctx.call.dialect == "obs" else "x-amz-"
    return {f"{prefix}storage-class": checks.storage_class_name(canonical, ctx.call.dialect)}


async def put_object(ctx: Ctx) -> Response:
    """PutObject, or CopyObject when ``x-amz-copy-source`` is sent."""
    if "x-amz-copy-source" in ctx.request.headers or "x-obs-copy-source" in ctx.request.headers:
        return await copy_object(ctx)
    services, call = ctx.services, ctx.call
    new = new_object(ctx)
    checksums = declared_checksums(ctx.request.headers)
    declared = declared_length(ctx.request)
    await run_in_threadpool(
        objects.prepare_put, services, ctx.project_id, call.bucket, call.key, declared
    )
    await run_in_threadpool(check_write_conditions, ctx, call.bucket, call.key)
    limit = await run_in_threadpool(objects.put_limit, services, ctx.project_id, declared)
    path = objects.staging_path(services)
    hashers = body_hashers(ctx.request.headers)
    staged = await receive_to_file(ctx.request, path, limit=limit, hashers=hashers)
    try:
        verify_digests([*checksums, *trailer_checksums(ctx.request)], hashers)
        await run_in_threadpool(check_write_conditions, ctx, call.bucket, call.key)
        info = await run_in_threadpool(
            objects.put_object,
            services,
            ctx.project_id,
            call.bucket,
            call.key,
            staged,
            new,
            ctx.request.headers.get("content-md5"),
        )
    finally:
        path.unlink(missing_ok=True)
    metrics.BYTES_UPLOADED.inc(staged.size)
    return empty_response(
        ctx.request, headers={"ETag": info.etag, **class_header(ctx, info.storage_class)}
    )


def copy_source(value: str) -> tuple[str, str]:
    """``(bucket, key)`` of an ``x-amz-copy-source`` header (``[/]bucket/key[?versionId=..]``)."""
    source = unquote(value.split("?", 1)[0]).lstrip("/")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise RequestInvalid("InvalidArgument", "x-amz-copy-source must be /bucket/key")
    return bucket, key


def _precondition_failed() -> ServiceError:
    return checks.precondition_failed()


def http_time(name: str, value: str) -> datetime:
    """A header's HTTP date (``Wed, 21 Oct 2015 07:28:00 GMT``) as an aware datetime; 400
    ``InvalidArgument`` when it is not one."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError) as exc:
        raise RequestInvalid("InvalidArgument", f"{name} is not an HTTP date") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def source_conditions(ctx: Ctx) -> Callable[[ObjectInfo], None]:
    """The check of ``x-amz-copy-source-if-match`` / ``-if-none-match`` /
    ``-if-modified-since`` / ``-if-unmodified-since`` (``x-obs-`` too) against the version
    being copied: 412 ``PreconditionFailed`` when one does not hold, as S3 answers."""
    prefix = (
        "x-obs-copy-source-" if "x-obs-copy-source" in ctx.request.headers else "x-amz-copy-source-"
    )

    def check(info: ObjectInfo) -> None:
        if check_conditions(ctx, info, prefix) is not None:
            raise _precondition_failed()

    return check


def check_write_conditions(ctx: Ctx, bucket: str, key: str) -> None:
    """Conditional writes, as S3 has them: ``If-None-Match: *`` (412 when the key exists) and
    ``If-Match: <etag>`` (412 unless the object has that ETag; 404 when there is none).
    Checked before the body is read and again before the commit; a write racing another to the
    same key may still win between the two (S3 decides atomically)."""
    headers = ctx.request.headers
    if_none, if_match = headers.get("if-none-match"), headers.get("if-match")
    if if_none is None and if_match is None:
        return
    current = objects.current_object(ctx.services, bucket, key)
    if if_none is not None and current is not None:  # only "*" gets here (request_features)
        raise _precondition_failed()
    if if_match is not None:
        if current is None:
            raise NotFound("NoSuchKey", f"object {key[:200]!r} does not exist")
        if not checks.etag_matches(if_match, current.etag):
            raise _precondition_failed()


_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
"""GetObject query parameters that set a header of the reply (S3 honours them on signed
requests, and every request here is signed)."""


def response_overrides(ctx: Ctx) -> dict[str, str]:
    """The reply headers a GET asks for with ``response-*`` parameters (400
    ``InvalidArgument`` for a value with control characters: no header injection)."""
    out = {}
    for name, header in _OVERRIDES.items():
        value = ctx.call.query.get(name)
        if value is None:
            continue
        if any(ord(c) < 32 or ord(c) == 127 for c in value) or len(value) > 1024:
            raise RequestInvalid("InvalidArgument", f"{name} is not a valid header value")
        out[header] = value
    return out


def _directive(ctx: Ctx, *names: str) -> str:
    """A copy's ``x-amz-metadata-directive`` or ``x-amz-tagging-directive``: COPY (the
    default) or REPLACE; anything else is 400 ``InvalidArgument``, as S3 answers."""
    headers = ctx.request.headers
    value = next((headers[name] for name in names if name in headers), "COPY")
    directive = value.strip().upper()
    if directive not in _DIRECTIVES:
        raise RequestInvalid(
            "InvalidArgument", f"unknown {names[0]} {value[:40]!r}: use COPY or REPLACE"
        )
    return directive


async def copy_object(ctx: Ctx) -> Response:
    """CopyObject. COPY keeps the source's content type and metadata, REPLACE takes the
    request's; ``x-amz-storage-class`` applies with either. Tags are never kept, so both
    tagging directives give a copy without tags (``x-amz-tagging`` itself is refused)."""
    headers = ctx.request.headers
    source = copy_source(headers.get("x-amz-copy-source") or headers["x-obs-copy-source"])
    directive = _directive(ctx, "x-amz-metadata-directive", "x-obs-metadata-directive")
    _directive(ctx, "x-amz-tagging-directive")
    new = new_object(ctx) if directive == "REPLACE" else None
    storage_class = headers.get("x-amz-storage-class") or headers.get("x-obs-storage-class")
    await run_in_threadpool(check_write_conditions, ctx, ctx.call.bucket, ctx.call.key)
    info = await run_in_threadpool(
        objects.copy_object,
        ctx.services,
        ctx.project_id,
        source,
        ctx.call.bucket,
        ctx.call.key,
        new,
        source_conditions(ctx),
        storage_class,
    )
    return xml_response(
        ctx.request, "CopyObjectResult", [("LastModified", info.created_at), ("ETag", info.etag)]
    )


def check_conditions(ctx: Ctx, info: ObjectInfo, prefix: str = "") -> int | None:
    """412 or 304 per If-Match / If-Unmodified-Since / If-None-Match / If-Modified-Since
    (with ``prefix`` ``x-amz-copy-source-``: the copy source's conditions)."""
    headers = ctx.request.headers
    modified = parse_time_text(info.created_at).replace(microsecond=0)

    def since(name: str) -> bool | None:
        value = headers.get(prefix + name)
        if value is None:
            return None
        try:
            return modified > parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None

    if_match = headers.get(prefix + "if-match")
    if if_match is not None and not checks.etag_matches(if_match, info.etag):
        return 412
    if if_match is None and since("if-unmodified-since") is True:
        return 412
    if_none = headers.get(prefix + "if-none-match")
    if if_none is not None and checks.etag_matches(if_none, info.etag):
        return 304
    if if_none is None and since("if-modified-since") is False:
        return 304
    return None


async def get_object(ctx: Ctx, *, send_body: bool = True) -> Response:
    """GetObject, with Range, ``partNumber``, conditions and ``response-*`` overrides."""
    call = ctx.call
    info, file = await run_in_threadpool(
        objects.open_object, ctx.services, ctx.project_id, call.bucket, call.key
    )
    try:
        failed = check_conditions(ctx, info)
        if failed == 412:
            raise _precondition_failed()
        headers = {
            **base_headers(ctx.request),
            **object_headers(info, call.dialect),
            **response_overrides(ctx),
        }
        if failed == 304:
            file.close()
            return Response(
                b"",
                status_code=304,
                headers={
                    k: v
                    for k, v in headers.items()
                    if k in ("ETag", "Last-Modified", "x-amz-request-id")
                },
            )
        if "partNumber" in call.query:
            wanted = _part_slice(ctx, info, headers)
        elif _range_applies(ctx, info):
            wanted = parse_range(ctx.request.headers.get("range"), info.size)
        else:
            wanted = None
    except BaseException:
        file.close()
        raise
    if wanted is None:
        return FileSliceResponse(
            file, 0, info.size, status_code=200, headers=headers, send_body=send_body
        )
    start, length = wanted
    headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{info.size}"
    return FileSliceResponse(
        file, start, length, status_code=206, headers=headers, send_body=send_body
    )


def _range_applies(ctx: Ctx, info: ObjectInfo) -> bool:
    """``If-Range`` (RFC 9110 13.1.5): the Range is served only if the validator names the
    current object exactly (its strong ETag, or its Last-Modified time); otherwise the whole
    object is sent, so a client resuming a download never splices two versions."""
    value = ctx.request.headers.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(("W/", '"')):
        return value == info.etag
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    return checks.same_second(info.created_at, when if when.tzinfo else when.replace(tzinfo=UTC))


def _part_slice(ctx: Ctx, info: ObjectInfo, headers: dict[str, str]) -> tuple[int, int] | None:
    """The slice GET/HEAD ``?partNumber=N`` asks for. Part boundaries of a multipart object
    are not kept once it is complete, so only a one-part object is answered: part 1 is the
    whole object (206, as S3 answers, with ``x-amz-mp-parts-count`` when it was a multipart
    upload). A part of a multipart object of several parts is 501 ``NotImplemented`` (a Range
    reads any slice), a part past the last is 416 ``InvalidPartNumber``, and a Range with a
    part number is 400 ``InvalidRequest``, as S3 answers."""
    number = multipart.parse_part_number(ctx.call.query["partNumber"])
    if "range" in ctx.request.headers:
        raise RequestInvalid(
            "InvalidRequest", "cannot specify both a Range header and a partNumber"
        )
    match = _MULTIPART_ETAG.match(info.etag)
    count = whole_number(match.group(1)) if match else None
    if number > (count or 1):
        raise ServiceError(
            "InvalidPartNumber",
            f"the object has {count or 1} part(s); part {number} is not satisfiable",
            status=416,
        )
    if count is not None:
        headers["x-amz-mp-parts-count"] = str(count)
        if count > 1:
            raise ServiceError(
                "NotImplemented",
                f"reading part {number} of a {count}-part "
                "object is not implemented: part boundaries are not kept once "
                "an upload is complete; read it with a Range",
                status=501,
            )
    return (0, info.size) if info.size else None


async def head_object(ctx: Ctx) -> Response:
    """HeadObject: GetObject's headers without the body."""
    return await get_object(ctx, send_body=False)


def delete_condition(ctx: Ctx) -> objects.DeleteCondition | None:
    """The conditions of a DeleteObject: ``If-Match``, ``x-amz-if-match-size`` and
    ``x-amz-if-match-last-modified-time`` (400 ``InvalidArgument`` for a malformed value)."""
    headers = ctx.request.headers
    etag = headers.get("if-match")
    size_text = headers.get("x-amz-if-match-size")
    modified = headers.get("x-amz-if-match-last-modified-time")
    if etag is None and size_text is None and modified is None:
        return None
    size = whole_number(size_text.strip()) if size_text is not None else None
    if size_text is not None and size is None:
        raise RequestInvalid("InvalidArgument", "x-amz-if-match-size is not a whole number")
    return objects.DeleteCondition(
        etag=etag,
        size=size,
        last_modified=None
        if modified is None
        else http_time("x-amz-if-match-last-modified-time", modified),
    )


async def delete_object(ctx: Ctx) -> Response:
    """DeleteObject (204), with its conditions."""
    await run_in_threadpool(
        objects.delete_object,
        ctx.services,
        ctx.project_id,
        ctx.call.bucket,
        ctx.call.key,
        delete_condition(ctx),
    )
    return empty_response(ctx.request, status=204)


async def object_acl(ctx: Ctx) -> Response:
    """GetObjectAcl: always private, the owning project has FULL_CONTROL."""
    await run_in_threadpool(
        objects.head_object, ctx.services, ctx.project_id, ctx.call.bucket, ctx.call.key
    )
    return acl_response(ctx)


__all__ = [
    "check_write_conditions",
    "copy_object",
    "copy_source",
    "delete_condition",
    "delete_object",
    "get_object",
    "head_object",
    "http_date",
    "http_time",
    "object_acl",
    "put_object",
    "source_conditions",
]
