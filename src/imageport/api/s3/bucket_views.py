"""Views on the service and on buckets: ListAllMyBuckets, create/head/delete bucket, list
objects (v1 and v2), location, multi-object delete, list multipart uploads, and the small
answers ``s3cmd info`` needs (ACL, no policy, no CORS)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from imageport.api.s3 import xml
from imageport.api.s3.body import read_small
from imageport.api.s3.checksum_headers import trailer_checksums, verify_bytes
from imageport.api.s3.request import Ctx
from imageport.api.s3.responses import XML_TYPE, base_headers, empty_response, xml_response
from imageport.api.s3.xml import Child
from imageport.limits import KiB, MiB
from imageport.service import storage
from imageport.service.errors import ServiceError

MAX_CREATE_BODY = 64 * KiB
MAX_DELETE_BODY = 2 * MiB


def owner(project_id: str) -> list[Child]:
    return [("ID", project_id), ("DisplayName", project_id)]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def acl_response(ctx: Ctx) -> Response:
    """A private AccessControlPolicy: the owning project has FULL_CONTROL."""
    pid = _escape(ctx.project_id)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<AccessControlPolicy xmlns="{xml.NS}"><Owner><ID>{pid}</ID>'
        f"<DisplayName>{pid}</DisplayName></Owner><AccessControlList><Grant>"
        '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:type="CanonicalUser"><ID>{pid}</ID><DisplayName>{pid}</DisplayName></Grantee>'
        "<Permission>FULL_CONTROL</Permission></Grant></AccessControlList>"
        "</AccessControlPolicy>"
    ).encode()
    return Response(body, headers=base_headers(ctx.request), media_type=XML_TYPE)


async def list_all_buckets(ctx: Ctx) -> Response:
    found = await run_in_threadpool(storage.list_buckets, ctx.services, ctx.project_id)
    items: list[Child] = [
        ("Owner", owner(ctx.project_id)),
        ("Buckets", [("Bucket", [("Name", b.name), ("CreationDate", b.created_at)])
                     for b in found]),
    ]
    return xml_response(ctx.request, "ListAllMyBucketsResult", items)


def _class_header(ctx: Ctx, *names: str) -> str | None:
    for name in names:
        value = ctx.request.headers.get(name)
        if value is not None:
            return value
    return None


async def create_bucket(ctx: Ctx) -> Response:
    body = await read_small(ctx.request, MAX_CREATE_BODY)
    verify_bytes(ctx.request.headers, body, trailer_checksums(ctx.request))
    xml.location_constraint(body)  # validated; buckets live in this service's region
    storage_class = _class_header(ctx, "x-default-storage-class", "x-obs-storage-class",
                                  "x-amz-storage-class")
    await run_in_threadpool(storage.create_bucket, ctx.services, ctx.project_id,
                            ctx.call.bucket, storage_class)
    return empty_response(ctx.request, headers={"Location": f"/{ctx.call.bucket}"})


async def head_bucket(ctx: Ctx) -> Response:
    bucket = await run_in_threadpool(storage.owned_bucket, ctx.services, ctx.project_id,
                                     ctx.call.bucket)
    headers = {"x-amz-bucket-region": bucket.location}
    if ctx.call.dialect == "obs":
        headers["x-obs-bucket-location"] = bucket.location
        headers["x-obs-storage-class"] = bucket.storage_class
    else:
        headers["x-default-storage-class"] = storage.storage_class_name(
            bucket.storage_class, "amz")
    return empty_response(ctx.request, headers=headers)


async def delete_bucket(ctx: Ctx) -> Response:
    await run_in_threadpool(storage.delete_bucket, ctx.services, ctx.project_id,
                            ctx.call.bucket)
    return empty_response(ctx.request, status=204)


async def get_location(ctx: Ctx) -> Response:
    bucket = await run_in_threadpool(storage.owned_bucket, ctx.services, ctx.project_id,
                                     ctx.call.bucket)
    body = (f'<?xml version="1.0" encoding="UTF-8"?><LocationConstraint xmlns="{xml.NS}">'
            f"{_escape(bucket.location)}</LocationConstraint>").encode()
    return Response(body, headers=base_headers(ctx.request), media_type=XML_TYPE)


async def bucket_acl(ctx: Ctx) -> Response:
    await run_in_threadpool(storage.owned_bucket, ctx.services, ctx.project_id, ctx.call.bucket)
    return acl_response(ctx)


async def no_configuration(ctx: Ctx, code: str, what: str) -> Response:
    """404 for bucket configurations this service never has (policy, CORS, lifecycle...)."""
    await run_in_threadpool(storage.owned_bucket, ctx.services, ctx.project_id, ctx.call.bucket)
    raise ServiceError(code, f"the bucket has no {what}", status=404)


async def get_versioning(ctx: Ctx) -> Response:
    await run_in_threadpool(storage.owned_bucket, ctx.services, ctx.project_id, ctx.call.bucket)
    return xml_response(ctx.request, "VersioningConfiguration", [])


async def list_objects(ctx: Ctx) -> Response:
    q = ctx.call.query
    v2 = q.get("list-type") == "2"
    url = q.get("encoding-type", "").lower() == "url"
    max_keys = storage.parse_max_keys(q.get("max-keys"))
    query = storage.ListQuery(
        prefix=q.get("prefix", ""), delimiter=q.get("delimiter", ""),
        marker=q.get("start-after", "") if v2 else q.get("marker", ""), max_keys=max_keys,
        token=q.get("continuation-token") if v2 else None)
    page = await run_in_threadpool(storage.list_objects, ctx.services, ctx.project_id,
                                   ctx.call.bucket, query)

    def enc(text: str) -> str:
        return quote(text, safe="/") if url else text

    contents: list[Child] = []
    for info in page.contents:
        entry: list[Child] = [
            ("Key", enc(info.key)), ("LastModified", info.created_at), ("ETag", info.etag),
            ("Size", info.size),
            ("StorageClass", storage.storage_class_name(info.storage_class, ctx.call.dialect)),
        ]
        if not v2 or q.get("fetch-owner") == "true":
            entry.append(("Owner", owner(ctx.project_id)))
        contents.append(("Contents", entry))
    prefixes: list[Child] = [("CommonPrefixes", [("Prefix", enc(p))])
                             for p in page.common_prefixes]
    items: list[Child] = [("Name", ctx.call.bucket), ("Prefix", enc(query.prefix))]
    if v2:
        items += [("KeyCount", len(page.contents) + len(page.common_prefixes)),
                  ("MaxKeys", max_keys),
                  ("Delimiter", enc(query.delimiter) if query.delimiter else None),
                  ("IsTruncated", page.is_truncated),
                  ("ContinuationToken", query.token),
                  ("NextContinuationToken", page.next_token or None),
                  ("StartAfter", enc(query.marker) if query.marker else None)]
    else:
        items += [("Marker", enc(query.marker)), ("MaxKeys", max_keys),
                  ("Delimiter", enc(query.delimiter) if query.delimiter else None),
                  ("IsTruncated", page.is_truncated),
                  ("NextMarker", enc(page.next_marker) if page.is_truncated else None)]
    if url:
        items.append(("EncodingType", "url"))
    return xml_response(ctx.request, "ListBucketResult", items + contents + prefixes)


async def delete_objects(ctx: Ctx) -> Response:
    body = await read_small(ctx.request, MAX_DELETE_BODY)  # Content-MD5 checked there
    verify_bytes(ctx.request.headers, body, trailer_checksums(ctx.request))
    keys, quiet = xml.delete_keys(body)
    result = await run_in_threadpool(storage.delete_objects, ctx.services, ctx.project_id,
                                     ctx.call.bucket, keys)
    items: list[Child] = []
    if not quiet:
        items += [("Deleted", [("Key", key)]) for key in result.deleted]
    items += [("Error", [("Key", key), ("Code", code), ("Message", message)])
              for key, code, message in result.errors]
    return xml_response(ctx.request, "DeleteResult", items)


async def list_uploads(ctx: Ctx) -> Response:
    q = ctx.call.query
    query = storage.UploadsQuery(
        prefix=q.get("prefix", ""), key_marker=q.get("key-marker", ""),
        upload_id_marker=q.get("upload-id-marker", ""),
        max_uploads=storage.parse_max_keys(q.get("max-uploads"), "max-uploads"))
    page = await run_in_threadpool(storage.list_uploads, ctx.services, ctx.project_id,
                                   ctx.call.bucket, query)
    items: list[Child] = [
        ("Bucket", ctx.call.bucket), ("KeyMarker", query.key_marker),
        ("UploadIdMarker", query.upload_id_marker),
        ("NextKeyMarker", page.next_key_marker),
        ("NextUploadIdMarker", page.next_upload_id_marker), ("Prefix", query.prefix),
        ("MaxUploads", query.max_uploads), ("IsTruncated", page.is_truncated),
    ]
    for upload in page.uploads:
        items.append(("Upload", [
            ("Key", upload.key), ("UploadId", upload.upload_id),
            ("Initiator", owner(ctx.project_id)), ("Owner", owner(ctx.project_id)),
            ("StorageClass", storage.storage_class_name(upload.storage_class,
                                                        ctx.call.dialect)),
            ("Initiated", upload.created_at),
        ]))
    return xml_response(ctx.request, "ListMultipartUploadsResult", items)
