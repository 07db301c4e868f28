"""Bucket use cases of the S3-compatible bucket API (no HTTP here): create, list, page, delete.

Another project's bucket is reported exactly like a missing one (``NoSuchBucket``), for every
operation, so names of other projects' buckets leak only through creation
(``BucketAlreadyExists``, as S3 does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imageport.numbers import whole_number
from imageport.service.buckets.checks import (
    MAX_BUCKETS_LISTED,
    decode_token,
    encode_token,
    parse_storage_class,
    validate_bucket_name,
)
from imageport.service.context import Services
from imageport.service.errors import Conflict, NotFound, RequestInvalid
from imageport.service.ports import (
    BucketInfo,
)

# -- buckets -----------------------------------------------------------------------------------


def owned_bucket(services: Services, project_id: str, name: str) -> BucketInfo:
    """The bucket ``name`` if ``project_id`` owns it; NoSuchBucket otherwise (even if it exists
    in another project)."""
    bucket = services.store.get_bucket(name) if len(name) <= 63 else None
    if bucket is None or bucket.project_id != project_id:
        raise NotFound("NoSuchBucket", f"bucket {name[:80]!r} does not exist")
    return bucket


def create_bucket(
    services: Services,
    project_id: str,
    name: str,
    storage_class: str | None = None,
    location: str | None = None,
) -> BucketInfo:
    """A new bucket; 409 ``BucketAlreadyOwnedByYou`` or ``BucketAlreadyExists`` if taken."""
    validate_bucket_name(name)
    canonical = parse_storage_class(storage_class)
    existing = services.store.get_bucket(name)
    if existing is None:
        try:
            return services.store.create_bucket(
                name, project_id, canonical, location or services.settings.region
            )
        except Conflict:
            existing = services.store.get_bucket(name)  # lost a race: say who has it
    if existing is not None and existing.project_id == project_id:
        raise Conflict("BucketAlreadyOwnedByYou", f"you already own bucket {name!r}")
    raise Conflict(
        "BucketAlreadyExists",
        f"bucket name {name!r} is taken; bucket names are shared by all projects",
    )


def list_buckets(services: Services, project_id: str) -> Sequence[BucketInfo]:
    return services.store.list_buckets(project_id)


@dataclass(frozen=True, slots=True)
class BucketsQuery:
    """A ListBuckets request: ``prefix``, ``bucket-region``, ``max-buckets`` and the
    ``continuation-token`` of the page before (S3), or the ``marker`` (the last name of the
    page before) and ``max-keys`` of OBS's paging; None: all, from the first."""

    prefix: str = ""
    region: str | None = None
    max_buckets: int | None = None
    token: str | None = None
    marker: str = ""


@dataclass(frozen=True, slots=True)
class BucketsPage:
    buckets: Sequence[BucketInfo]
    #: where the next page starts (opaque), empty on the last page
    next_token: str
    #: the same as OBS's NextMarker: the last name listed, empty on the last page
    next_marker: str = ""


def parse_max_buckets(value: str | None) -> int | None:
    """``max-buckets``: 1-10000 (400 ``InvalidArgument`` otherwise, as S3); None when absent."""
    if value is None:
        return None
    number = whole_number(value)
    if number is None or not 1 <= number <= MAX_BUCKETS_LISTED:
        raise RequestInvalid(
            "InvalidArgument", f"max-buckets must be an integer 1-{MAX_BUCKETS_LISTED}"
        )
    return number


def list_bucket_page(services: Services, project_id: str, query: BucketsQuery) -> BucketsPage:
    """The project's buckets whose names start with ``prefix`` (in ``region`` when one is
    named), in name order, after the page ``token`` ends, at most ``max_buckets``."""
    after = decode_token(query.token) if query.token else query.marker
    found = [
        b
        for b in services.store.list_buckets(project_id)
        if b.name.startswith(query.prefix)
        and b.name > after
        and (query.region is None or b.location == query.region)
    ]
    found.sort(key=lambda b: b.name)
    limit = query.max_buckets
    if limit is None or len(found) <= limit:
        return BucketsPage(found, "")
    return BucketsPage(
        found[:limit],
        encode_token(found[limit - 1].name) if limit else "",
        found[limit - 1].name if limit else "",
    )


def delete_bucket(services: Services, project_id: str, name: str) -> None:
    owned_bucket(services, project_id, name)
    services.store.delete_bucket(name)
