"""Reading images: one image, and filtered, sorted, paged lists (the vendor's IMS API
reference, "Querying Images").

``GET /v2/cloudimages`` and ``GET /v2/images`` take the same filters; they differ in the page
size (500 and 25 by default; never more than :data:`MAX_LIMIT`) and in how the next page is
announced (Glance gives a ``next`` link, which the API layer builds from
:attr:`ImagePage.next_marker`).

Filters (all must hold):

* columns, exact: ``id``, ``name``, ``status``, ``visibility``, ``disk_format``,
  ``container_format``, ``min_disk``, ``min_ram``, ``protected`` (``true``/``false``);
* properties, exact: ``__imagetype``, ``__isregistered``, ``__os_type``, ``__os_version``,
  ``__os_bit``, ``__platform``, any ``__support_*``, ``virtual_env_type``,
  ``enterprise_project_id``, ``architecture`` (``x86``/``arm`` or ``x86_64``/``aarch64``);
* ``owner`` (the owner's project: the caller's, or the owner of an image shared with it),
  ``tag=k=v`` (the image has that tag);
* ``member_status`` (``pending``/``accepted``/``rejected``): the images shared with the caller
  whose share is in that status, instead of the default, which is the caller's own images and
  the images shared with it and ``accepted`` (:mod:`imageport.service.images.members`: shared
  images are listed with ``visibility`` and ``__imagetype`` ``shared``, so those filters pick
  them too);
* ``os_hidden`` (Glance): no image is hidden here, so ``true`` matches none, ``false`` all;
* ``created_at`` / ``updated_at`` = ``gt|gte|lt|lte|eq|neq:<time>``.

An unknown or unsupported parameter is refused (``IMG.0001``) rather than ignored: a filter
that silently does nothing would return images the caller asked to exclude. A project's images
are filtered in memory after one query on the project and one on the shares (projects hold
tens to hundreds of images, an image at most 256 members; the row's large ``report`` is never
loaded).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.clock import parse_time_text, time_text
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.images import validation as v
from imageport.service.images.members import shared_images, visible_image
from imageport.service.images.records import IMAGE_COLUMNS, ImageRecord
from imageport.service.statuses import MemberStatus
from imageport.service.tables import images

MAX_LIMIT = 1000
MAX_FILTER_NUMBER = 999_999_999
"""Largest value of a whole-number filter (``min_disk``, ``min_ram``, ``size``...)."""
"""Most images one page holds."""
CLOUDIMAGES_LIMIT = 500
GLANCE_LIMIT = 25
MAX_PARAMS = 64
"""Most query parameters read."""
MAX_VALUE = 1024
"""Longest query parameter value accepted."""

SORT_KEYS = frozenset(
    {
        "created_at",
        "updated_at",
        "name",
        "id",
        "status",
        "min_disk",
        "min_ram",
        "size",
        "disk_format",
        "container_format",
        "__os_version",
        "__platform",
        "__os_type",
    }
)

_COLUMNS_EXACT = ("id", "name", "status", "visibility", "disk_format", "container_format")
_COLUMNS_INT = ("min_disk", "min_ram")
_PROPERTIES = frozenset(
    {
        "__imagetype",
        "__isregistered",
        "__os_type",
        "__os_version",
        "__os_bit",
        "__platform",
        "virtual_env_type",
        "enterprise_project_id",
        "__image_source_type",
        "hw_firmware_type",
    }
)
_SUPPORT = re.compile(r"__support_[a-z0-9_]{1,40}")
_ARCH = {"x86": "x86_64", "arm": "aarch64"}
_TIME_OPS: dict[str, Callable[[str, str], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "neq": operator.ne,
}
_PAGING = frozenset({"limit", "marker", "sort_key", "sort_dir"})

Predicate = Callable[[ImageRecord], bool]


@dataclass(frozen=True, slots=True)
class ImagePage:
    """One page of a listing; ``next_marker`` is set when more images follow."""

    images: Sequence[ImageRecord]
    limit: int
    next_marker: str | None


def get_image(services: Services, project_id: str, image_id: str) -> ImageRecord:
    """The caller's image, or one shared with it (pending or accepted: shown ``shared``);
    NotFound (``IMG.NOT_FOUND``) for a missing or foreign one."""
    with services.db.connect() as conn:
        return visible_image(conn, project_id, image_id)


def list_images(
    services: Services,
    project_id: str,
    query: Sequence[tuple[str, str]],
    *,
    default_limit: int = CLOUDIMAGES_LIMIT,
) -> ImagePage:
    """The caller's images matching ``query`` (the request's parameters, in order)."""
    if len(query) > MAX_PARAMS:
        raise RequestInvalid(codes.BAD_REQUEST, f"at most {MAX_PARAMS} query parameters")
    params: dict[str, str] = {}
    predicates: list[Predicate] = []
    member_status: str | None = None
    for name, value in query:
        if len(value) > MAX_VALUE or len(name) > 64:
            raise RequestInvalid(codes.BAD_REQUEST, f"query parameter {name[:64]!r} is too long")
        if name in _PAGING:
            params[name] = value
        elif name == "member_status":
            if value not in tuple(MemberStatus) or member_status not in (None, value):
                raise RequestInvalid(
                    codes.BAD_REQUEST,
                    f"member_status must be one of {', '.join(MemberStatus)} (once)",
                )
            member_status = value
        else:
            predicates.append(_predicate(name, value))
    limit = _limit(params.get("limit"), default_limit)
    sort_key = params.get("sort_key", "created_at")
    if sort_key not in SORT_KEYS:
        raise RequestInvalid(
            codes.BAD_REQUEST, f"sort_key must be one of {', '.join(sorted(SORT_KEYS))}"
        )
    sort_dir = params.get("sort_dir", "desc")
    if sort_dir not in ("asc", "desc"):
        raise RequestInvalid(codes.BAD_REQUEST, "sort_dir must be asc or desc")
    with services.db.connect() as conn:
        if member_status is None:
            rows = conn.execute(
                select(*IMAGE_COLUMNS).where(images.c.project_id == project_id)
            ).all()
            records = [*map(ImageRecord.from_row, rows)]
            records += shared_images(conn, project_id, [MemberStatus.ACCEPTED])
        else:
            records = shared_images(conn, project_id, [member_status])
    found = [r for r in records if all(p(r) for p in predicates)]
    found.sort(key=lambda r: r.id)
    found.sort(key=lambda r: _sort_value(r, sort_key), reverse=sort_dir == "desc")
    start = 0
    marker = params.get("marker")
    if marker:
        index = next((i for i, r in enumerate(found) if r.id == marker), None)
        if index is None:
            raise RequestInvalid(
                codes.BAD_REQUEST, f"marker {marker[:64]!r} is not an image of this listing"
            )
        start = index + 1
    page = found[start : start + limit]
    more = start + limit < len(found)
    return ImagePage(page, limit, page[-1].id if more and page else None)


def _limit(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    number = whole_number(raw)  # not int(raw[:6]): "000010000" is 10000, not 10
    if number is None or not 1 <= number <= MAX_LIMIT:
        raise RequestInvalid(codes.BAD_REQUEST, f"limit must be 1-{MAX_LIMIT}")
    return number


def _sort_value(record: ImageRecord, key: str) -> tuple[int, object]:
    if key.startswith("__"):
        return (0, record.properties.get(key, ""))
    value = getattr(record, key)
    return (0, value) if value is not None else (-1, 0)


def _predicate(name: str, value: str) -> Predicate:
    """The test one filter parameter makes; IMG.0001 for an unknown or malformed one."""
    if name in _COLUMNS_EXACT:
        return lambda r: getattr(r, name) == value
    if name in _COLUMNS_INT:
        number = whole_number(value)
        if number is None or number > MAX_FILTER_NUMBER:
            raise RequestInvalid(codes.BAD_REQUEST, f"{name} must be a whole number")
        return lambda r: getattr(r, name) == number
    if name == "protected":
        if value not in ("true", "false", "True", "False"):
            raise RequestInvalid(codes.BAD_REQUEST, "protected must be true or false")
        flag = value.lower() == "true"
        return lambda r: r.protected == flag
    if name == "os_hidden":  # Glance's hidden images (openstacksdk asks); none is hidden here
        if value not in ("true", "false", "True", "False"):
            raise RequestInvalid(codes.BAD_REQUEST, "os_hidden must be true or false")
        hidden = value.lower() == "true"
        return lambda r: not hidden
    if name == "owner":
        return lambda r: r.project_id == value
    if name == "tag":
        return lambda r: value in r.tags
    if name == "architecture":
        wanted = _ARCH.get(value, value)
        return lambda r: r.properties.get("architecture") == wanted
    if name in _PROPERTIES or _SUPPORT.fullmatch(name):
        return lambda r: r.properties.get(name) == value
    if name in ("created_at", "updated_at"):
        return _time_predicate(name, value)
    raise RequestInvalid(codes.BAD_REQUEST, f"query parameter {name[:64]!r} is not supported")


def _time_predicate(name: str, value: str) -> Predicate:
    op, sep, when = value.partition(":")
    compare = _TIME_OPS.get(op)
    if not sep or compare is None:
        raise RequestInvalid(codes.BAD_REQUEST, f"{name} must be gt|gte|lt|lte|eq|neq:<time>")
    try:
        bound = time_text(parse_time_text(when))
    except ValueError as exc:
        raise RequestInvalid(codes.BAD_REQUEST, f"{name}: {when[:40]!r} is not a time") from exc
    return lambda r: compare(getattr(r, name), bound)


UNLIMITED = -1
"""How the quota document spells "no limit" (``image_quota`` 0), as OpenStack quotas do."""


def image_quota_document(services: Services, project_id: str) -> dict[str, object]:
    """``GET /v1/cloudimages/quota`` (the SDK's ShowImageQuota): the project's image quota and
    use, ``{"quotas": {"resources": [{"type": "image", "used", "quota", "min", "max"}]}}``;
    ``min``/``max`` bound what an operator may set (``serve --image-quota``; -1: no bound)."""
    quota = services.settings.image_quota
    with services.db.connect() as conn:
        used = v.images_held(conn, project_id)
    return {
        "quotas": {
            "resources": [
                {
                    "type": "image",
                    "used": used,
                    "quota": quota if quota > 0 else UNLIMITED,
                    "min": 0,
                    "max": UNLIMITED,
                }
            ]
        }
    }
