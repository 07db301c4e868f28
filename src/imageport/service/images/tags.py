"""Key/value image tags (the vendor's tag APIs under ``/v2/{project_id}/images/...``).

Tags live in the image's ``tags`` list, the same strings the create and Glance paths store and
every image document shows: ``"key=value"`` (split at the first ``=``; a Glance tag without
``=`` is the key with an empty value). A tag added here is always stored ``"key=value"``
(``"key="`` for an empty value), so the ``tag=k=v`` list filter finds it.

* :func:`add_tag` — add or replace one tag (the key's old tag, in any form, is replaced in
  place);
* :func:`list_tags` — an image's tags as key/value pairs, in stored order;
* :func:`delete_tag` — remove every tag with the key (``IMG.NOT_FOUND`` when there is none);
* :func:`batch_tags` — ``create`` (add or replace, keys unique in the request) or ``delete`` (by
  key, the value ignored; a missing key is no error, as the vendor documents);
* :func:`query_images` — ``filter`` (a page, ``limit`` 1-1000 default 10, ``offset``) or
  ``count`` the project's images by ``tags`` / ``tags_any`` / ``not_tags`` / ``not_tags_any``
  (each 1-10 ``{"key", "values"}``, an empty ``values`` matching any value),
  ``without_any_tag`` and ``matches`` (``resource_name`` substring, ``resource_id`` exact);
* :func:`project_tags` — every key in the project with its values.

Caps (the vendor's): key 1-36 and value 0-43 characters of ``A-Za-z0-9_-`` when adding, at most
10 tags on an image after the change (``IMG.0001``). Every function takes the caller's project
and the ``{project_id}`` of the path, which must be the same (else ``IMG.NOT_FOUND``, 404, as
``GET /v1/{project_id}/jobs/{job_id}``); another project's image is ``IMG.NOT_FOUND`` too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update

from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid
from imageport.service.images import validation as v
from imageport.service.images.records import IMAGE_COLUMNS, ImageRecord, image_row
from imageport.service.tables import images

MAX_QUERY_KEYS = 10
"""Most keys one ``tags``/``tags_any``/``not_tags``/``not_tags_any`` condition names."""
MAX_QUERY_VALUES = 10
MAX_QUERY_KEY = 127
MAX_QUERY_VALUE = 255
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
_CONDITIONS = ("tags", "tags_any", "not_tags", "not_tags_any")
_QUERY_FIELDS = frozenset({*_CONDITIONS, "action", "limit", "offset", "matches", "without_any_tag"})


@dataclass(frozen=True, slots=True)
class Tag:
    """One key/value tag."""

    key: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Tag:
        """A stored tag string: ``"k=v"``, or a Glance tag ``"k"`` (an empty value)."""
        key, _, value = text.partition("=")
        return cls(key, value)


@dataclass(frozen=True, slots=True)
class TaggedImage:
    """One image of a tag query."""

    id: str
    name: str
    status: str
    tags: Sequence[Tag]


@dataclass(frozen=True, slots=True)
class TagQueryResult:
    """A tag query's answer: the total matched, and the page (None for ``count``)."""

    total_count: int
    images: Sequence[TaggedImage] | None


def tags_of(stored: Sequence[str]) -> list[Tag]:
    """The image's stored tag strings as key/value tags."""
    return [Tag.parse(text) for text in stored]


def check_project(project_id: str, path_project_id: str) -> None:
    """The path's ``{project_id}`` must be the caller's project (else NotFound)."""
    if path_project_id != project_id:
        raise NotFound(codes.NOT_FOUND, f"project {path_project_id[:64]!r} not found")


# -- one image ------------------------------------------------------------------------------------


def list_tags(
    services: Services, project_id: str, path_project_id: str, image_id: str
) -> list[Tag]:
    """``GET /v2/{project_id}/images/{image_id}/tags``."""
    check_project(project_id, path_project_id)
    with services.db.connect() as conn:
        return tags_of(ImageRecord.from_row(image_row(conn, project_id, image_id)).tags)


def add_tag(
    services: Services, project_id: str, path_project_id: str, image_id: str, body: object
) -> None:
    """``POST /v2/{project_id}/images/{image_id}/tags {"tag": {"key", "value"}}``."""
    check_project(project_id, path_project_id)
    doc = v.require_object(body, frozenset({"tag"}))
    tag = _tag_object(doc.get("tag"), "tag")
    text = v.check_tag(tag.get("key"), tag.get("value"))
    _change_tags(services, project_id, image_id, lambda stored: _with_tag(stored, text))


def delete_tag(
    services: Services, project_id: str, path_project_id: str, image_id: str, key: str
) -> None:
    """``DELETE /v2/{project_id}/images/{image_id}/tags/{key}``: NotFound when the image has no
    tag with ``key``."""
    check_project(project_id, path_project_id)

    def without(stored: list[str]) -> list[str]:
        kept = [t for t in stored if Tag.parse(t).key != key]
        if len(kept) == len(stored):
            raise NotFound(codes.NOT_FOUND, f"image {image_id} has no tag {key[:64]!r}")
        return kept

    _change_tags(services, project_id, image_id, without)


def batch_tags(
    services: Services, project_id: str, path_project_id: str, image_id: str, body: object
) -> None:
    """``POST /v2/{project_id}/images/{image_id}/tags/action {"action", "tags"}``."""
    check_project(project_id, path_project_id)
    doc = v.require_object(body, frozenset({"action", "tags"}))
    action = doc.get("action")
    if action not in ("create", "delete"):
        raise RequestInvalid(codes.BAD_REQUEST, "action must be create or delete")
    items = doc.get("tags")
    if not isinstance(items, list) or not items:
        raise RequestInvalid(codes.BAD_REQUEST, 'tags must be a non-empty list of {"key","value"}')
    if len(items) > v.MAX_TAGS * 2:
        raise RequestInvalid(codes.BAD_REQUEST, f"at most {v.MAX_TAGS * 2} tags in one request")
    tags = [_tag_object(item, "each tags item") for item in items]
    keys = [t.get("key") for t in tags]
    if len(set(map(str, keys))) != len(keys):
        raise RequestInvalid(codes.BAD_REQUEST, "the keys of the tags must be unique")
    if action == "create":
        texts = [v.check_tag(t.get("key"), t.get("value")) for t in tags]

        def change(stored: list[str]) -> list[str]:
            for text in texts:
                stored = _with_tag(stored, text)
            return stored
    else:
        for key in keys:
            if not isinstance(key, str) or not key or len(key) > MAX_QUERY_KEY:
                raise RequestInvalid(
                    codes.BAD_REQUEST, f"a tag key to delete is 1-{MAX_QUERY_KEY} characters"
                )
        gone = set(map(str, keys))

        def change(stored: list[str]) -> list[str]:
            return [t for t in stored if Tag.parse(t).key not in gone]

    _change_tags(services, project_id, image_id, change)


def _tag_object(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, dict) or "key" not in value or set(value) - {"key", "value"}:
        raise RequestInvalid(codes.BAD_REQUEST, f'{what} must be {{"key", "value"}}')
    return value


def _with_tag(stored: list[str], text: str) -> list[str]:
    """``stored`` with ``text`` replacing the tags of its key (at the first one's place)."""
    key = Tag.parse(text).key
    out: list[str] = []
    placed = False
    for old in stored:
        if Tag.parse(old).key != key:
            out.append(old)
        elif not placed:
            out.append(text)
            placed = True
    return out if placed else [*out, text]


def _change_tags(
    services: Services, project_id: str, image_id: str, change: Callable[[list[str]], list[str]]
) -> None:
    """Apply ``change`` to the image's tags in one transaction; IMG.0001 beyond the cap."""
    with services.db.begin() as conn:
        row = image_row(conn, project_id, image_id)
        before = [str(t) for t in (row.tags or [])]
        after = change(list(before))
        if len(after) > v.MAX_TAGS and len(after) > len(before):
            raise RequestInvalid(
                codes.BAD_REQUEST,
                f"an image has at most {v.MAX_TAGS} tags; image {image_id} would have {len(after)}",
            )
        if after != before:
            conn.execute(
                update(images)
                .where(images.c.id == image_id)
                .values(tags=after, updated_at=time_text(services.clock()))
            )


# -- the project ----------------------------------------------------------------------------------


def project_tags(
    services: Services, project_id: str, path_project_id: str
) -> list[tuple[str, list[str]]]:
    """``GET /v2/{project_id}/images/tags``: every tag key of the project's images with its
    distinct values, keys and values sorted."""
    check_project(project_id, path_project_id)
    with services.db.connect() as conn:
        stored = (
            conn.execute(select(images.c.tags).where(images.c.project_id == project_id))
            .scalars()
            .all()
        )
    values: dict[str, set[str]] = {}
    for tags in stored:
        for tag in tags_of([str(t) for t in (tags or [])]):
            values.setdefault(tag.key, set()).add(tag.value)
    return [(key, sorted(values[key])) for key in sorted(values)]


Condition = list[tuple[str, frozenset[str]]]


def query_images(
    services: Services, project_id: str, path_project_id: str, body: object
) -> TagQueryResult:
    """``POST /v2/{project_id}/images/resource_instances/action``: filter or count."""
    check_project(project_id, path_project_id)
    doc = v.require_object(body, _QUERY_FIELDS)
    action = doc.get("action")
    if action not in ("filter", "count"):
        raise RequestInvalid(codes.BAD_REQUEST, "action must be filter or count")
    conditions = {name: _condition(doc.get(name), name) for name in _CONDITIONS}
    untagged = v.check_bool(doc.get("without_any_tag"), "without_any_tag")
    matches = _matches(doc.get("matches"))
    limit = _number(doc.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _number(doc.get("offset"), "offset", 0, 0, 1 << 31)
    with services.db.connect() as conn:
        rows = conn.execute(select(*IMAGE_COLUMNS).where(images.c.project_id == project_id)).all()
    found = []
    for record in map(ImageRecord.from_row, rows):
        tags = tags_of(record.tags)
        if untagged:
            if tags:
                continue
        elif not _tags_match(tags, conditions):
            continue
        if all(test(record) for test in matches):
            found.append(TaggedImage(record.id, record.name, record.status, tags))
    if action == "count":
        return TagQueryResult(len(found), None)
    found.sort(key=lambda i: i.id)
    by_created = {r.id: r.created_at for r in rows}
    found.sort(key=lambda i: by_created[i.id], reverse=True)
    return TagQueryResult(len(found), found[offset : offset + limit])


def _tags_match(tags: Sequence[Tag], conditions: Mapping[str, Condition | None]) -> bool:
    def has(key: str, values: frozenset[str]) -> bool:
        return any(t.key == key and (not values or t.value in values) for t in tags)

    every = conditions["tags"]
    anyof = conditions["tags_any"]
    not_every = conditions["not_tags"]
    not_any = conditions["not_tags_any"]
    return (
        (every is None or all(has(k, vals) for k, vals in every))
        and (anyof is None or any(has(k, vals) for k, vals in anyof))
        and (not_every is None or not all(has(k, vals) for k, vals in not_every))
        and (not_any is None or not any(has(k, vals) for k, vals in not_any))
    )


def _condition(value: object, name: str) -> Condition | None:
    """One of the four tag conditions: 1-10 ``{"key", "values"}`` with unique keys."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_QUERY_KEYS:
        raise RequestInvalid(
            codes.BAD_REQUEST, f'{name} must be a list of 1-{MAX_QUERY_KEYS} {{"key", "values"}}'
        )
    out: Condition = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"key", "values"}:
            raise RequestInvalid(codes.BAD_REQUEST, f'each {name} item is {{"key", "values"}}')
        key, values = item.get("key"), item.get("values", [])
        if not isinstance(key, str) or not key or len(key) > MAX_QUERY_KEY:
            raise RequestInvalid(
                codes.BAD_REQUEST, f"{name}: a key is 1-{MAX_QUERY_KEY} characters"
            )
        if (
            not isinstance(values, list)
            or len(values) > MAX_QUERY_VALUES
            or not all(isinstance(x, str) and len(x) <= MAX_QUERY_VALUE for x in values)
            or len(set(values)) != len(values)
        ):
            raise RequestInvalid(
                codes.BAD_REQUEST,
                f"{name}: values are at most {MAX_QUERY_VALUES} "
                f"distinct strings of at most {MAX_QUERY_VALUE} characters",
            )
        if any(key == k for k, _ in out):
            raise RequestInvalid(codes.BAD_REQUEST, f"{name}: key {key[:64]!r} is repeated")
        out.append((key, frozenset(values)))
    return out


def _matches(value: object) -> list[Callable[[ImageRecord], bool]]:
    """``matches``: ``resource_name`` (a part of the name) and ``resource_id`` (exact)."""
    if value is None:
        return []
    if not isinstance(value, list) or not value or len(value) > 2:
        raise RequestInvalid(codes.BAD_REQUEST, 'matches must be a list of 1-2 {"key", "value"}')
    tests: dict[str, Callable[[ImageRecord], bool]] = {}
    for item in value:
        if not isinstance(item, dict) or set(item) != {"key", "value"}:
            raise RequestInvalid(codes.BAD_REQUEST, 'each matches item is {"key", "value"}')
        key, wanted = item["key"], item["value"]
        if key not in ("resource_name", "resource_id") or key in tests:
            raise RequestInvalid(
                codes.BAD_REQUEST,
                "matches keys are resource_name and resource_id, each at most once",
            )
        if not isinstance(wanted, str) or not wanted or len(wanted) > MAX_QUERY_VALUE:
            raise RequestInvalid(
                codes.BAD_REQUEST, f"a matches value is 1-{MAX_QUERY_VALUE} characters"
            )
        tests[key] = _name_contains(wanted) if key == "resource_name" else _id_is(wanted)
    return list(tests.values())


def _name_contains(part: str) -> Callable[[ImageRecord], bool]:
    return lambda record: part in record.name


def _id_is(image_id: str) -> Callable[[ImageRecord], bool]:
    return lambda record: record.id == image_id


def _number(value: object, name: str, default: int, low: int, high: int) -> int:
    """``limit``/``offset``: a string of digits (as the SDK sends) or a number."""
    if value is None:
        return default
    return v.check_int(value, name, codes.BAD_REQUEST, low, high, text=True)
