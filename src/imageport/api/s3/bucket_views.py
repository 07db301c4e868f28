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
from imageport.service.buckets import buckets as bucket_cases
from imageport.service.buckets import checks, multipart, objects
from imageport.service.errors import RequestInvalid, ServiceError

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


def url_encoding(ctx: Ctx) -> bool:
    """``encoding-type``: ``url`` asks for keys and prefixes URL-encoded in the reply; any other
    value is 400 ``InvalidArgument``, as S3 answers (an empty one asks for nothing)."""
    value = ctx.call.query.get("encoding-type")
    if not value:
        return False
    if value.lower() != "url":
        raise RequestInvalid(
            "InvalidArgument", f"invalid encoding-type {value[:40]!r}: the only encoding is url"
        )
    return True


async def list_all_buckets(ctx: Ctx) -> Response:
    """ListBuckets: the caller's buckets, paged.

    With S3's ``prefix``, ``bucket-region``, ``max-buckets`` and
    ``continuation-token`` (the reply's ``ContinuationToken`` resumes), and OBS's ``marker``
    and ``max-keys`` paging, ``x-obs-location: true`` (each bucket's ``Location``, asked by the
    vendor SDK's ``listBuckets`` by default) and ``x-obs-bucket-type`` (every bucket here is an
    ``OBJECT`` bucket, none a ``POSIX`` file system)."""
    q, headers = ctx.call.query, ctx.request.headers
    obs_paging = "marker" in q or "max-keys" in q
    query = bucket_cases.BucketsQuery(
        prefix=q.get("prefix", ""),
        region=q.get("bucket-region"),
        max_buckets=(
            objects.parse_max_keys(q.get("max-keys"))
            if obs_paging
            else bucket_cases.parse_max_buckets(q.get("max-buckets"))
        ),
        token=q.get("continuation-token") or None,
        marker=q.get("marker", ""),
    )
    kind = headers.get("x-obs-bucket-type", "OBJECT").strip().upper()
    if kind not in ("OBJECT", "POSIX"):
        raise RequestInvalid("InvalidArgument", "x-obs-bucket-type must be OBJECT or POSIX")
    page = (
        bucket_cases.BucketsPage([], "")
        if kind == "POSIX"
        else await run_in_threadpool(
            bucket_cases.list_bucket_page, ctx.services, ctx.project_id, query
        )
    )
    location = any(
        headers.get(name, "").strip().lower() == "true"
        for name in ("x-amz-location", "x-obs-location")
    )
    items: list[Child] = [
        ("Owner", owner(ctx.project_id)),
        (
            "Buckets",
            [
                (
                    "Bucket",
                    [
                        ("Name", b.name),
                        ("CreationDate", b.created_at),
                        ("Location", b.location if location else None),
                    ],
                )
                for b in page.buckets
            ],
        ),
        ("ContinuationToken", None if obs_paging else page.next_token or None),
        ("Prefix", query.prefix if "prefix" in q else None),
    ]
    if obs_paging:
        items += [
            ("Marker", query.marker),
            ("MaxKeys", query.max_buckets),
            ("IsTruncated", bool(page.next_marker)),
            ("NextMarker", page.next_marker or None),
        ]
    return xml_response(ctx.request, "ListAllMyBucketsResult", items)


def _class_header(ctx: Ctx, *names: str) -> str | None:
    for name in names:
        value = ctx.request.headers.get(name)
        if value is not None:
            return value
    return None


async def create_bucket(ctx: Ctx) -> Response:
    """CreateBucket, in a storage class.

    Buckets live in this service's region: a ``LocationConstraint`` naming
    another is S3's 400 ``IllegalLocationConstraintException`` (not a bucket created here
    anyway); directory buckets and bucket tags are 501."""
    body = await read_small(ctx.request, MAX_CREATE_BODY)
    verify_bytes(ctx.request.headers, body, trailer_checksums(ctx.request))
    configuration = xml.bucket_configuration(body)
    if configuration.others:
        raise ServiceError(
            "NotImplemented",
            f"CreateBucketConfiguration element "
            f"{configuration.others[0][:40]!r} is not implemented (directory "
            "buckets and bucket tags are not offered here)",
            status=501,
        )
    region = ctx.services.settings.region
    if configuration.location is not None and configuration.location != region:
        raise RequestInvalid(
            "IllegalLocationConstraintException",
            f"the location constraint {configuration.location[:64]!r} is "
            f"incompatible with this endpoint's region {region!r}",
        )
    storage_class = _class_header(
        ctx, "x-default-storage-class", "x-obs-storage-class", "x-amz-storage-class"
    )
    await run_in_threadpool(
        bucket_cases.create_bucket, ctx.services, ctx.project_id, ctx.call.bucket, storage_class
    )
    return empty_response(ctx.request, headers={"Location": f"/{ctx.call.bucket}"})


async def head_bucket(ctx: Ctx) -> Response:
    """HeadBucket: the bucket's region and default storage class in headers."""
    bucket = await run_in_threadpool(
        bucket_cases.owned_bucket, ctx.services, ctx.project_id, ctx.call.bucket
    )
    headers = {"x-amz-bucket-region": bucket.location}
    if ctx.call.dialect == "obs":
        headers["x-obs-bucket-location"] = bucket.location
        headers["x-obs-storage-class"] = bucket.storage_class
    else:
        headers["x-default-storage-class"] = checks.storage_class_name(bucket.storage_class, "amz")
    return empty_response(ctx.request, headers=headers)


async def delete_bucket(ctx: Ctx) -> Response:
    """DeleteBucket (204), aborting its unfinished uploads; one that holds objects is 409."""
    await run_in_threadpool(
        bucket_cases.delete_bucket, ctx.services, ctx.project_id, ctx.call.bucket
    )
    return empty_response(ctx.request, status=204)


async def get_location(ctx: Ctx) -> Response:
    """GetBucketLocation: the service's region."""
    bucket = await run_in_threadpool(
        bucket_cases.owned_bucket, ctx.services, ctx.project_id, ctx.call.bucket
    )
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><LocationConstraint xmlns="{xml.NS}">'
        f"{_escape(bucket.location)}</LocationConstraint>"
    ).encode()
    return Response(body, headers=base_headers(ctx.request), media_type=XML_TYPE)


async def bucket_acl(ctx: Ctx) -> Response:
    """GetBucketAcl: always private, the owning project has FULL_CONTROL."""
    await run_in_threadpool(
        bucket_cases.owned_bucket, ctx.services, ctx.project_id, ctx.call.bucket
    )
    return acl_response(ctx)


async def no_configuration(ctx: Ctx, code: str, what: str) -> Response:
    """404 for bucket configurations this service never has (policy, CORS, lifecycle...)."""
    await run_in_threadpool(
        bucket_cases.owned_bucket, ctx.services, ctx.project_id, ctx.call.bucket
    )
    raise ServiceError(code, f"the bucket has no {what}", status=404)


async def get_versioning(ctx: Ctx) -> Response:
    """GetBucketVersioning: never enabled (buckets are unversioned)."""
    await run_in_threadpool(
        bucket_cases.owned_bucket, ctx.services, ctx.project_id, ctx.call.bucket
    )
    return xml_response(ctx.request, "VersioningConfiguration", [])


async def list_objects(ctx: Ctx) -> Response:
    """ListObjects, or ListObjectsV2 with ``list-type=2``."""
    q = ctx.call.query
    v2 = q.get("list-type") == "2"
    url = url_encoding(ctx)
    max_keys = objects.parse_max_keys(q.get("max-keys"))
    query = objects.ListQuery(
        prefix=q.get("prefix", ""),
        delimiter=q.get("delimiter", ""),
        marker=q.get("start-after", "") if v2 else q.get("marker", ""),
        max_keys=max_keys,
        token=q.get("continuation-token") if v2 else None,
    )
    page = await run_in_threadpool(
        objects.list_objects, ctx.services, ctx.project_id, ctx.call.bucket, query
    )

    def enc(text: str) -> str:
        return quote(text, safe="/") if url else text

    contents: list[Child] = []
    for info in page.contents:
        entry: list[Child] = [
            ("Key", enc(info.key)),
            ("LastModified", info.created_at),
            ("ETag", info.etag),
            ("Size", info.size),
            ("StorageClass", checks.storage_class_name(info.storage_class, ctx.call.dialect)),
        ]
        if not v2 or q.get("fetch-owner") == "true":
            entry.append(("Owner", owner(ctx.project_id)))
        contents.append(("Contents", entry))
    prefixes: list[Child] = [("CommonPrefixes", [("Prefix", enc(p))]) for p in page.common_prefixes]
    items: list[Child] = [("Name", ctx.call.bucket), ("Prefix", enc(query.prefix))]
    if v2:
        items += [
            ("KeyCount", len(page.contents) + len(page.common_prefixes)),
            ("MaxKeys", max_keys),
            ("Delimiter", enc(query.delimiter) if query.delimiter else None),
            ("IsTruncated", page.is_truncated),
            ("ContinuationToken", query.token),
            ("NextContinuationToken", page.next_token or None),
            ("StartAfter", enc(query.marker) if query.marker else None),
        ]
    else:
        items += [
            ("Marker", enc(query.marker)),
            ("MaxKeys", max_keys),
            ("Delimiter", enc(query.delimiter) if query.delimiter else None),
            ("IsTruncated", page.is_truncated),
            ("NextMarker", enc(page.next_marker) if page.is_truncated else None),
        ]
    if url:
        items.append(("EncodingType", "url"))
    return xml_response(ctx.request, "ListBucketResult", items + contents + prefixes)


async def delete_objects(ctx: Ctx) -> Response:
    """DeleteObjects; each ``<Object>``'s ``<ETag>``, ``<Size>`` and ``<LastModifiedTime>``
    are conditions on its delete (S3's conditional DeleteObjects)."""
    body = await read_small(ctx.request, MAX_DELETE_BODY)  # Content-MD5 checked there
    verify_bytes(ctx.request.headers, body, trailer_checksums(ctx.request))
    entries, quiet = xml.delete_entries(body)
    result = await run_in_threadpool(
        objects.delete_objects, ctx.services, ctx.project_id, ctx.call.bucket, entries
    )
    items: list[Child] = []
    if not quiet:
        items += [("Deleted", [("Key", key)]) for key in result.deleted]
    items += [
        ("Error", [("Key", key), ("Code", code), ("Message", message)])
        for key, code, message in result.errors
    ]
    return xml_response(ctx.request, "DeleteResult", items)


async def list_uploads(ctx: Ctx) -> Response:
    """ListMultipartUploads, with ``delimiter`` (common prefixes) and ``encoding-type``."""
    q = ctx.call.query
    url = url_encoding(ctx)
    query = multipart.UploadsQuery(
        prefix=q.get("prefix", ""),
        key_marker=q.get("key-marker", ""),
        upload_id_marker=q.get("upload-id-marker", ""),
        max_uploads=objects.parse_max_keys(q.get("max-uploads"), "max-uploads"),
        delimiter=q.get("delimiter", ""),
    )
    page = await run_in_threadpool(
        multipart.list_uploads, ctx.services, ctx.project_id, ctx.call.bucket, query
    )

    def enc(text: str) -> str:
        return quote(text, safe="/") if url else text

    items: list[Child] = [
        ("Bucket", ctx.call.bucket),
        ("KeyMarker", enc(query.key_marker)),
        ("UploadIdMarker", query.upload_id_marker),
        ("NextKeyMarker", enc(page.next_key_marker)),
        ("NextUploadIdMarker", page.next_upload_id_marker),
        ("Prefix", enc(query.prefix)),
        ("Delimiter", enc(query.delimiter) if query.delimiter else None),
        ("MaxUploads", query.max_uploads),
        ("IsTruncated", page.is_truncated),
    ]
    if url:
        items.append(("EncodingType", "url"))
    for upload in page.uploads:
        items.append(
            (
                "Upload",
                [
                    ("Key", enc(upload.key)),
                    ("UploadId", upload.upload_id),
                    ("Initiator", owner(ctx.project_id)),
                    ("Owner", owner(ctx.project_id)),
                    (
                        "StorageClass",
                        checks.storage_class_name(upload.storage_class, ctx.call.dialect),
                    ),
                    ("Initiated", upload.created_at),
                ],
            )
        )
    items += [("CommonPrefixes", [("Prefix", enc(p))]) for p in page.common_prefixes]
    return xml_response(ctx.request, "ListMultipartUploadsResult", items)
