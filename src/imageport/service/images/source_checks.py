"""Checks of the object an import names, run when the image is registered (before the job).

In the order they run, each one small function over the records the object store keeps (no
image bytes are read here):

============ ======= ===================================================================
code         status  raised when
============ ======= ===================================================================
IMG.REGION   403     this region does not offer external image import
                     (``settings.import_enabled`` is false: ``serve --no-import``)
IMG.0069     400     the bucket does not exist or belongs to another project: both say
                     "not accessible", so a caller never learns another project's bucket
IMG.0058     400     bucket or object is not of the STANDARD storage class (the message
                     names rule IMG-STORAGE-CLASS)
IMG.0121     400     no such object in the bucket
IMG.0057     400     the object is empty
IMG.0059     400     the object is larger than ``settings.import_max_bytes`` (IMG-SIZE), or
                     larger than ``settings.normal_import_max_bytes`` on the normal path (the
                     message points at fast import, IMG-SIZE)
============ ======= ===================================================================

The vendor also answers IMG.0058 for a bucket in another region. Here every bucket lives in
this service's own store, whatever ``LocationConstraint`` its client sent (esdk-obs sends
"region", boto3 its own region name), so that check does not apply.
"""

from __future__ import annotations

from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import Forbidden, RequestInvalid
from imageport.service.images.validation import ImageUrl
from imageport.service.ports import BucketInfo, ObjectInfo
from imageport.settings import Settings

STANDARD = "STANDARD"


def check_import_offered(settings: Settings) -> None:
    """IMG.REGION (403) when the region refuses external image import."""
    if not settings.import_enabled:
        raise Forbidden(
            codes.REGION_REFUSES_IMPORT,
            f"external image import is not offered in region {settings.region}",
        )


def check_bucket_access(bucket: BucketInfo | None, name: str, project_id: str) -> BucketInfo:
    """The bucket if the caller's project owns it; IMG.0069 (the same answer whether it is
    missing or someone else's)."""
    if bucket is None or bucket.project_id != project_id:
        raise RequestInvalid(
            codes.BUCKET_UNAVAILABLE,
            f"bucket {name!r} does not exist or is not accessible",
            field="image_url",
        )
    return bucket


def check_object_exists(obj: ObjectInfo | None, url: ImageUrl) -> ObjectInfo:
    """The object; IMG.0121 when the bucket has no such key."""
    if obj is None:
        raise RequestInvalid(
            codes.FILE_NOT_IN_BUCKET,
            f"file {url.key!r} not found in bucket {url.bucket!r}",
            field="image_url",
        )
    return obj


def check_not_empty(obj: ObjectInfo) -> None:
    """IMG.0057 for a zero-byte file."""
    if obj.size <= 0:
        raise RequestInvalid(
            codes.SOURCE_FILE_UNUSABLE, f"file {obj.key!r} is empty", field="image_url"
        )


def check_storage_class(bucket: BucketInfo, obj: ObjectInfo) -> None:
    """IMG.0058 naming IMG-STORAGE-CLASS unless bucket and object are both STANDARD."""
    for what, value in (
        ("bucket " + repr(bucket.name), bucket.storage_class),
        ("file " + repr(obj.key), obj.storage_class),
    ):
        if value != STANDARD:
            raise RequestInvalid(
                codes.NOT_STANDARD_STORAGE,
                f"IMG-STORAGE-CLASS: {what} is of storage class {value}; only "
                "STANDARD can be imported (copy it to a STANDARD bucket/object)",
                field="image_url",
            )


def check_size(obj: ObjectInfo, settings: Settings, *, quick: bool) -> None:
    """IMG.0059 naming IMG-SIZE: over ``import_max_bytes`` always; over
    ``normal_import_max_bytes`` unless quick (fast) import is used."""
    if obj.size > settings.import_max_bytes:
        raise RequestInvalid(
            codes.FILE_TOO_LARGE,
            f"IMG-SIZE: file {obj.key!r} is {obj.size} bytes; "
            f"at most {settings.import_max_bytes} can be imported",
            field="image_url",
        )
    if not quick and obj.size > settings.normal_import_max_bytes:
        raise RequestInvalid(
            codes.FILE_TOO_LARGE,
            f"IMG-SIZE: file {obj.key!r} is {obj.size} bytes; files over "
            f"{settings.normal_import_max_bytes} bytes must use fast import "
            "(POST /v2/cloudimages/quickimport/action, RAW or ZVHD2)",
            field="image_url",
        )


def check_source(services: Services, project_id: str, url: ImageUrl, *, quick: bool) -> ObjectInfo:
    """Run every check above, in order; the object to import."""
    settings = services.settings
    check_import_offered(settings)
    bucket = check_bucket_access(services.store.get_bucket(url.bucket), url.bucket, project_id)
    obj = check_object_exists(services.store.get_object(url.bucket, url.key), url)
    check_not_empty(obj)
    check_storage_class(bucket, obj)
    check_size(obj, settings, quick=quick)
    return obj
