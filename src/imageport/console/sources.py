"""The objects a user can check or register: the source picker of the check and register pages.

:func:`source_choices` lists the project's buckets and the objects in them with the bucket
API's own service functions (:func:`~imageport.service.buckets.buckets.list_buckets`,
:func:`~imageport.service.buckets.objects.list_objects`), so the picker shows exactly what a
bucket listing would. Bitmap files (``.mf``) are not offered as images: each RAW object says
instead whether its bitmap is beside it (:func:`~imageport.fastimport.naming.bitmap_key_for`,
the rule the import job follows). The listing is bounded (:data:`MAX_BUCKETS` buckets,
:data:`MAX_OBJECTS` objects each); a page given an object that is not listed still offers it
(the service checks it when the form is sent).
"""

from __future__ import annotations

from dataclasses import dataclass

from imageport.fastimport.naming import BITMAP_SUFFIX, bitmap_key_for
from imageport.service.buckets.buckets import list_buckets
from imageport.service.buckets.objects import ListQuery, list_objects
from imageport.service.context import Services
from imageport.service.images.validation import ImageUrl

MAX_BUCKETS = 50
"""Most buckets the picker lists."""
MAX_OBJECTS = 200
"""Most objects of one bucket the picker lists (bitmap files included in the count)."""
MAX_SOURCE = 1100
"""Longest ``bucket:key`` a page reads from its query or form (a key is at most 1024)."""


@dataclass(frozen=True, slots=True)
class ObjectChoice:
    """One object the picker offers."""

    bucket: str
    key: str
    size: int
    storage_class: str
    #: the key of the bitmap file a RAW object needs for fast import, None for no base name
    bitmap_key: str | None
    #: whether that bitmap file is in the bucket
    has_bitmap: bool

    @property
    def source(self) -> str:
        """The object as ``image_url`` names it: ``bucket:key``."""
        return f"{self.bucket}:{self.key}"


@dataclass(frozen=True, slots=True)
class BucketChoice:
    name: str
    storage_class: str
    objects: tuple[ObjectChoice, ...]
    #: the bucket holds more objects than are listed
    truncated: bool


def source_choices(services: Services, project_id: str) -> list[BucketChoice]:
    """The project's buckets (by name, at most :data:`MAX_BUCKETS`) and their objects."""
    buckets = sorted(list_buckets(services, project_id), key=lambda b: b.name)[:MAX_BUCKETS]
    found = []
    for bucket in buckets:
        page = list_objects(services, project_id, bucket.name, ListQuery(max_keys=MAX_OBJECTS))
        keys = {info.key for info in page.contents}
        objects = []
        for info in page.contents:
            if info.key.lower().endswith(BITMAP_SUFFIX):
                continue
            mf_key = bitmap_key_for(info.key)
            objects.append(
                ObjectChoice(
                    bucket=bucket.name,
                    key=info.key,
                    size=info.size,
                    storage_class=info.storage_class,
                    bitmap_key=mf_key,
                    has_bitmap=mf_key in keys,
                )
            )
        found.append(
            BucketChoice(bucket.name, bucket.storage_class, tuple(objects), page.is_truncated)
        )
    return found


def parse_source(text: str) -> ImageUrl | None:
    """``bucket:key`` split at its first colon (bucket names have none), or None when either
    part is empty or the text is longer than :data:`MAX_SOURCE`; the service checks the rest."""
    if len(text) > MAX_SOURCE:
        return None
    bucket, colon, key = text.partition(":")
    if not colon or not bucket or not key:
        return None
    return ImageUrl(bucket, key)
