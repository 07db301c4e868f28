"""The buckets area: the project's buckets, their objects, and uploads from the browser.

Pages call the bucket API's service functions (:mod:`imageport.service.buckets`) for the
session's project, so another project's bucket is "not found" here as it is there.

Uploads: the file never passes through the console. The upload page's script
(``static/upload.js``) asks the console's JSON routes to start a multipart upload, for a
presigned URL per part (:func:`~imageport.service.buckets.browser_uploads.presign_parts`: the
session's key signs, its secret stays in the service), for the parts already on the server (to
resume) and to complete it; the browser sends each part straight to the bucket API, which lets
the console's origin do so (:mod:`imageport.api.s3.cors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.responses import JSONResponse, Response

from imageport.console.fields import only_fields
from imageport.console.pages import PageCall, PageRoute, redirect, render, segment, url
from imageport.fastimport.naming import bitmap_key_for
from imageport.numbers import whole_number
from imageport.service.buckets import browser_uploads, multipart, objects
from imageport.service.buckets import buckets as bucket_cases
from imageport.service.buckets.checks import STORAGE_CLASSES
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid, ServiceError
from imageport.service.ports import BucketInfo

PAGE_SIZE = 50
"""Objects (and folders) a bucket page shows unless it asks for another number."""
MAX_PAGE_SIZE = 200
"""Most objects one bucket page shows (``?max=`` is capped to it)."""
BUCKETS_PAGE = 100
"""Buckets the buckets page lists before offering the next page."""
UPLOADS_LISTED = 50
"""Unfinished uploads the upload page lists."""
MAX_PART_MIB = 5 * 1024
"""Largest part size the upload page offers, in MiB (S3's 5 GiB)."""
DEFAULT_CLASS = "STANDARD"
"""The class a new bucket gets unless another is chosen: the only one images are imported from."""
_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def human_size(size: int) -> str:
    """``size`` bytes as people read it: ``512 bytes``, ``1.5 MiB``, ``40.0 GiB``."""
    value = float(size)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{size} bytes" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def shown_time(text: str) -> str:
    """A stored time (``2024-11-06T06:21:08.769Z``) as ``2024-11-06 06:21:08 UTC``."""
    if len(text) >= 19 and text[10] == "T":
        return f"{text[:10]} {text[11:19]} UTC"
    return text


def _size_arg(call: PageCall) -> int:
    """``?max=``: 1..:data:`MAX_PAGE_SIZE` (default :data:`PAGE_SIZE`; beyond: capped)."""
    number = whole_number(call.arg("max"))
    if number is None or number < 1:
        return PAGE_SIZE
    return min(number, MAX_PAGE_SIZE)


# -- the buckets page --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused request as a page shows it: the form field it is about (empty: the whole
    request), the service's code and a text in the page's language."""

    code: str
    text: str
    field: str = ""


EXPLAINED = frozenset(
    {
        "BucketAlreadyExists",
        "BucketAlreadyOwnedByYou",
        "BucketNotEmpty",
        "InvalidBucketName",
        "InvalidStorageClass",
    }
)
"""Codes the console explains in the page's language (others show the service's message)."""


def refusal(call: PageCall, error: ServiceError, field: str = "") -> Refusal:
    """``error`` as the page shows it (see :class:`Refusal`)."""
    if error.code in EXPLAINED:
        return Refusal(error.code, call.lang(f"refused.{error.code}"), field)
    return Refusal(error.code, error.message, field)


def _buckets_page(
    services: Services,
    call: PageCall,
    *,
    status: int = 200,
    error: Refusal | None = None,
    alert: Refusal | None = None,
    form: Mapping[str, str] | None = None,
) -> Response:
    marker = call.arg("marker")[:64]
    page = bucket_cases.list_bucket_page(
        services,
        call.project_id,
        bucket_cases.BucketsQuery(marker=marker, max_buckets=BUCKETS_PAGE),
    )
    return render(
        call,
        "buckets_list.html",
        status=status,
        nav="buckets",
        buckets=page.buckets,
        next_marker=page.next_marker,
        marker=marker,
        classes=STORAGE_CLASSES,
        default_class=DEFAULT_CLASS,
        error=error,
        alert=alert,
        form=form or {"name": "", "storage_class": DEFAULT_CLASS},
        notice=_notice(call),
        shown_time=shown_time,
    )


def _notice(call: PageCall) -> str:
    if call.arg("deleted"):
        return call.lang("buckets.deleted", name=call.arg("deleted")[:64])
    if call.arg("object_deleted"):
        return call.lang("objects.deleted", key=call.arg("object_deleted")[:1024])
    return ""


def list_buckets(services: Services, call: PageCall) -> Response:
    """The project's buckets (name, storage class, creation time) and the form that creates
    one."""
    return _buckets_page(services, call)


def create_bucket(services: Services, call: PageCall) -> Response:
    """Create a bucket with the form's name and storage class (refusals shown at the field,
    with the bucket API's code)."""
    only_fields(call.form, ("csrf", "name", "storage_class"))
    name = call.field("name").strip()
    storage_class = call.field("storage_class", DEFAULT_CLASS)
    form = {"name": name[:80], "storage_class": storage_class[:20]}
    try:
        if storage_class not in STORAGE_CLASSES:
            raise RequestInvalid(
                "InvalidStorageClass", f"storage class {storage_class[:20]!r} is not offered"
            )
        bucket_cases.create_bucket(services, call.project_id, name, storage_class)
    except ServiceError as exc:
        field = "storage_class" if exc.code == "InvalidStorageClass" else "name"
        return _buckets_page(
            services,
            call,
            status=exc.status,
            error=refusal(call, exc, field),
            form=form,
        )
    return redirect(url(f"/buckets/{segment(name)}", created=1))


def delete_bucket(services: Services, call: PageCall) -> Response:
    """Delete an empty bucket (the page asks for confirmation first); one that holds objects
    is refused with ``BucketNotEmpty``."""
    name = call.path_params["bucket"]
    only_fields(call.form, ("csrf",))
    try:
        bucket_cases.delete_bucket(services, call.project_id, name)
    except ServiceError as exc:
        if exc.status == 404:
            raise
        return _buckets_page(services, call, status=exc.status, alert=refusal(call, exc))
    return redirect(url("/buckets", deleted=name))


# -- a bucket's objects ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Crumb:
    """One step of the folder path above a listing: its label and the prefix it opens."""

    label: str
    prefix: str


def crumbs(prefix: str) -> list[Crumb]:
    """The folders of ``prefix`` (``a/b/`` -> ``a/``, ``a/b/``), each with the prefix it
    lists."""
    steps: list[Crumb] = []
    start = 0
    while (cut := prefix.find("/", start)) >= 0:
        steps.append(Crumb(prefix[start:cut], prefix[: cut + 1]))
        start = cut + 1
    return steps


def _bucket_page(
    services: Services,
    call: PageCall,
    bucket: BucketInfo,
    *,
    status: int = 200,
    alert: Refusal | None = None,
) -> Response:
    prefix = call.arg("prefix")[:1024]
    marker = call.arg("marker")[:1024]
    size = _size_arg(call)
    listing = objects.list_objects(
        services,
        call.project_id,
        bucket.name,
        objects.ListQuery(prefix=prefix, delimiter="/", marker=marker, max_keys=size),
    )
    return render(
        call,
        "buckets_bucket.html",
        status=status,
        nav="buckets",
        bucket=bucket,
        prefix=prefix,
        marker=marker,
        page_size=size if call.arg("max") else None,
        listing=listing,
        crumbs=crumbs(prefix),
        human_size=human_size,
        shown_time=shown_time,
        alert=alert,
        notice=_notice(call),
        created=bool(call.arg("created")),
    )


def show_bucket(services: Services, call: PageCall) -> Response:
    """A bucket's objects (key, size, storage class, last modified) by folder, a page at a
    time, each linked to the check page and the import form."""
    bucket = bucket_cases.owned_bucket(services, call.project_id, call.path_params["bucket"])
    return _bucket_page(services, call, bucket)


def delete_object(services: Services, call: PageCall) -> Response:
    """Delete the object ``?key=`` (the page asks for confirmation first) and go back to its
    folder (``?prefix=``)."""
    bucket = bucket_cases.owned_bucket(services, call.project_id, call.path_params["bucket"])
    only_fields(call.form, ("csrf",))
    only_fields(call.query, ("key", "prefix"))
    key = call.arg("key")  # from the URL: a form field's CR would arrive as CR LF
    try:
        if not key:
            raise RequestInvalid("InvalidArgument", "no object key given")
        objects.delete_object(services, call.project_id, bucket.name, key)
    except ServiceError as exc:
        return _bucket_page(services, call, bucket, status=exc.status, alert=refusal(call, exc))
    prefix = call.arg("prefix")[:1024]
    return redirect(url(f"/buckets/{segment(bucket.name)}", prefix=prefix, object_deleted=key))


# -- uploads -----------------------------------------------------------------------------------


def upload_page(services: Services, call: PageCall) -> Response:
    """The upload form: a file (and a RAW image's ``.mf`` bitmap) sent from the browser to the
    bucket in parallel parts, with progress, pause, resume and abort; and the bucket's
    unfinished uploads."""
    bucket = bucket_cases.owned_bucket(services, call.project_id, call.path_params["bucket"])
    unfinished = multipart.list_uploads(
        services,
        call.project_id,
        bucket.name,
        multipart.UploadsQuery(max_uploads=UPLOADS_LISTED),
    )
    return render(
        call,
        "buckets_upload.html",
        nav="buckets",
        bucket=bucket,
        prefix=call.arg("prefix")[:1024],
        uploads=unfinished.uploads,
        more_uploads=unfinished.is_truncated,
        part_mib=browser_uploads.DEFAULT_PART_SIZE // browser_uploads.MiB,
        max_part_mib=MAX_PART_MIB,
        notice=call.lang("upload.aborted_one") if call.arg("aborted") else "",
        shown_time=shown_time,
    )


def abort_listed_upload(services: Services, call: PageCall) -> Response:
    """Abort one of the bucket's unfinished uploads (``?key=&upload_id=``, from the upload
    page's list)."""
    bucket = call.path_params["bucket"]
    only_fields(call.form, ("csrf",))
    only_fields(call.query, ("key", "upload_id"))
    browser_uploads.abort_upload(
        services, call.project_id, bucket, call.arg("key"), call.arg("upload_id")
    )
    return redirect(url(f"/buckets/{segment(bucket)}/upload", aborted=1))


def _document(call: PageCall, *names: str) -> Mapping[str, object]:
    """The JSON object a script sent, holding no member but ``names`` (400 otherwise: a
    member the route does not read is refused, not ignored)."""
    if not isinstance(call.body, dict):
        raise RequestInvalid("InvalidArgument", "the body must be a JSON object")
    unknown = sorted(set(call.body) - set(names))
    if unknown:
        raise RequestInvalid("InvalidArgument", f"unknown member {unknown[0][:40]!r}")
    return call.body


def _text(document: Mapping[str, object], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise RequestInvalid("InvalidArgument", f"{name} must be a string")
    return value


def _number(document: Mapping[str, object], name: str, default: int | None = None) -> int:
    value = document.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestInvalid("InvalidArgument", f"{name} must be a whole number")
    return value


def start_upload(services: Services, call: PageCall) -> Response:
    """JSON: start a multipart upload of ``key`` for a file of ``size`` bytes (or of the
    bitmap that goes with the image ``for_image``); the upload id and part size."""
    document = _document(call, "key", "for_image", "size", "part_size")
    if "for_image" in document:
        if "key" in document:
            raise RequestInvalid("InvalidArgument", "give key or for_image, not both")
        key = bitmap_key_for(_text(document, "for_image")) or ""
        if not key:
            raise RequestInvalid("InvalidArgument", "that key has no bitmap (it is one itself)")
    else:
        key = _text(document, "key")
    requested = _number(document, "part_size", browser_uploads.DEFAULT_PART_SIZE)
    started = browser_uploads.start_upload(
        services,
        call.project_id,
        call.path_params["bucket"],
        key,
        _number(document, "size"),
        requested,
    )
    return JSONResponse(
        {
            "upload_id": started.upload_id,
            "key": started.key,
            "part_size": started.part_size,
            "parts": started.parts,
        }
    )


def upload_parts(services: Services, call: PageCall) -> Response:
    """JSON: the parts of the upload already on the server (number and size), to resume."""
    parts = browser_uploads.stored_parts(
        services,
        call.project_id,
        call.path_params["bucket"],
        call.arg("key"),
        call.path_params["upload_id"],
    )
    return JSONResponse({"parts": [{"number": p.number, "size": p.size} for p in parts]})


def part_urls(services: Services, call: PageCall) -> Response:
    """JSON: a presigned PUT URL for each part asked (number and base64 SHA-256), signed for
    the session's key, valid five minutes, for those bytes only."""
    document = _document(call, "key", "parts")
    asked = document.get("parts")
    if not isinstance(asked, list) or not asked:
        raise RequestInvalid("InvalidArgument", "parts must be a list of {number, sha256}")
    parts: list[tuple[int, str]] = []
    for entry in asked[: browser_uploads.MAX_URLS + 1]:
        if not isinstance(entry, dict):
            raise RequestInvalid("InvalidArgument", "parts must be a list of {number, sha256}")
        if set(entry) != {"number", "sha256"}:
            raise RequestInvalid("InvalidArgument", "each part is {number, sha256}")
        parts.append((_number(entry, "number"), _text(entry, "sha256")))
    urls = browser_uploads.presign_parts(
        services,
        call.principal,
        call.bucket_url,
        call.path_params["bucket"],
        _text(document, "key"),
        call.path_params["upload_id"],
        parts,
    )
    return JSONResponse(
        {
            "urls": {str(number): address for number, address in urls.items()},
            "expires_in": browser_uploads.PART_URL_SECONDS,
        }
    )


def complete_upload(services: Services, call: PageCall) -> Response:
    """JSON: complete the upload from the parts on the server once they are all there
    (``InvalidPart`` names one missing or of the wrong size)."""
    document = _document(call, "key", "size", "part_size")
    bucket, key = call.path_params["bucket"], _text(document, "key")
    info = browser_uploads.complete_from_server(
        services,
        call.project_id,
        bucket,
        key,
        call.path_params["upload_id"],
        _number(document, "size"),
        _number(document, "part_size"),
    )
    return JSONResponse(
        {
            "key": info.key,
            "size": info.size,
            "size_text": human_size(info.size),
            "etag": info.etag,
            "check": url("/check", bucket=bucket, key=key),
            "register": url("/register", bucket=bucket, key=key),
            "bucket": url(f"/buckets/{segment(bucket)}", prefix=key.rpartition("/")[0] + "/")
            if "/" in key
            else url(f"/buckets/{segment(bucket)}"),
        }
    )


def abort_upload(services: Services, call: PageCall) -> Response:
    """JSON: abort the upload; its parts are deleted."""
    document = _document(call, "key")
    browser_uploads.abort_upload(
        services,
        call.project_id,
        call.path_params["bucket"],
        _text(document, "key"),
        call.path_params["upload_id"],
    )
    return JSONResponse({"aborted": True})


PAGES = [
    PageRoute("/buckets", list_buckets),
    PageRoute("/buckets", create_bucket, ("POST",)),
    PageRoute("/buckets/{bucket}", show_bucket),
    PageRoute("/buckets/{bucket}/delete", delete_bucket, ("POST",)),
    PageRoute("/buckets/{bucket}/objects/delete", delete_object, ("POST",)),
    PageRoute("/buckets/{bucket}/upload", upload_page),
    PageRoute("/buckets/{bucket}/uploads/abort", abort_listed_upload, ("POST",)),
    PageRoute("/buckets/{bucket}/uploads", start_upload, ("POST",), as_json=True),
    PageRoute("/buckets/{bucket}/uploads/{upload_id}/parts", upload_parts, as_json=True),
    PageRoute("/buckets/{bucket}/uploads/{upload_id}/urls", part_urls, ("POST",), as_json=True),
    PageRoute(
        "/buckets/{bucket}/uploads/{upload_id}/complete",
        complete_upload,
        ("POST",),
        as_json=True,
    ),
    PageRoute("/buckets/{bucket}/uploads/{upload_id}/abort", abort_upload, ("POST",), as_json=True),
]
