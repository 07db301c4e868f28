"""Synchronous checks of image requests, answering with the vendor's ``IMG.xxxx`` codes.

Everything here runs before a job exists, in the API process, on the request's JSON and on the
records of the bucket and object it names; none of it reads image bytes (the job does that,
in a worker). Each check is one small function that returns the clean value or raises
:class:`~imageport.service.errors.RequestInvalid` (HTTP 400) with the vendor's code
(the vendor's IMS API reference, "Creating an Image" and "Error Codes") and a message naming
the value that was wrong, and as its ``field`` the request field that holds it (a form shows
the error at that input):

============ ======================================================================
code         raised when
============ ======================================================================
IMG.0001     the body is not JSON, not an object, too deep, or a field has the wrong JSON
             type (integers are JSON integers, flags JSON booleans, as the vendor's API
             types them: ``"40"``, ``40.0`` and ``true`` are not integers, ``"true"`` is not
             a boolean); an unknown field; a bad tag
IMG.0007     the body is empty (or ``{}``)
IMG.0013     ``name`` is missing
IMG.0002     ``name`` is longer than 128 characters
IMG.0003     ``name`` has a character other than letters, digits, ``-._`` and space, or
             starts/ends with a space
IMG.0004     ``description`` is longer than 1024 characters
IMG.0054     ``description`` contains CR, ``<`` or ``>``
IMG.0009     another image of the project already has this name
IMG.0015     the project holds ``image_quota`` images already (50 by default, as the vendor)
IMG.0017     ``image_url`` is missing or not ``bucket:key``
IMG.0109     the bucket part of ``image_url`` is not a valid bucket name
IMG.0175     a folder or file name in the object key contains a space
IMG.0055     ``min_disk`` (40-1024 GiB; a data image's 1-2048 in ``data_images``, 40-2048 on
             the data-image route) or ``min_ram``/``max_ram`` out of range
IMG.0056     ``os_version`` is not in the ``__os_version`` list, or missing for quick import
IMG.0122     ``os_type`` is not ``Linux`` (or disagrees with ``os_version``)
IMG.0212     ``architecture`` is not ``x86`` or ``arm``
IMG.0141     ``hw_firmware_type`` is not ``bios`` or ``uefi``, or ``bios`` with ``arm``
IMG.0024     ``type`` is not one the route offers (``ECS``, ``FusionCompute``; ``IsoImage``
             on a registration; ``DataImage`` on a quick import)
IMG.0166     ``type: IsoImage`` without ``os_version``
IMG.0167     ``type: IsoImage`` with a field an ISO image cannot have (``is_quick_import``,
             ``data_images``, ``is_config``)
IMG.0095     ``cmk_id`` given: no KMS key can be found (there is no KMS here)
IMG.SOURCE   ``volume_id`` (also in a ``data_images`` item): volumes do not exist on this
             platform (our code; the vendor has none); ``instance_id`` on a route other than
             ``POST /v2/cloudimages/action`` (:mod:`.server_images`), or where the service
             runs no servers
============ ======================================================================

The checks of the object to import (bucket access, storage class, size, region) are in
:mod:`imageport.service.images.source_checks`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.errors import RequestInvalid
from imageport.service.images import os_versions
from imageport.service.tables import images

MAX_JSON_BYTES = 64 * 1024
"""Largest JSON request body read (bytes). The image API reads a body before it can check the
signature over it, so this is what any client may make the server hold per connection; the
vendor's request bodies are a few hundred bytes (a Glance image with a hundred properties of
255 characters still fits)."""
MAX_JSON_DEPTH = 16
"""Deepest nesting of arrays/objects accepted in a JSON body."""
MAX_NAME = 128
MAX_DESCRIPTION = 1024
MAX_KEY = 1024
"""Longest object key accepted in ``image_url`` (as S3)."""
MIN_SYSTEM_DISK_GIB = 40
MAX_SYSTEM_DISK_GIB = 1024
MAX_DATA_DISK_GIB = 2048
"""Largest ``min_disk`` of a data image (the vendor's limit for data disks made from files)."""
MAX_RAM_MB = 1024 * 1024
"""Largest ``min_ram``/``max_ram`` (MB, 1 TiB)."""
MAX_TAGS = 10
"""Most tags an image may carry (the vendor's limit)."""
MAX_TAG_KEY = 36
MAX_TAG_VALUE = 43
MAX_GLANCE_TAG = 255

_NAME = re.compile(r"[A-Za-z0-9._\- ]+")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TAG_PART = re.compile(r"[A-Za-z0-9_-]+")
_EPS = re.compile(r"[A-Za-z0-9-]{1,36}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class ImageUrl:
    """``image_url`` split into the bucket and the object key."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{self.bucket}:{self.key}"


# -- the body -----------------------------------------------------------------------------------


def parse_json_body(raw: bytes, *, required: bool = True) -> object:
    """The JSON document in ``raw``: IMG.0007 if empty (and ``required``), IMG.0001 if it is not
    UTF-8 JSON, nests deeper than :data:`MAX_JSON_DEPTH`, uses NaN/Infinity, or names a field
    twice in one object (the first value would be silently ignored, and another reader of the
    same bytes may take the first)."""
    if not raw.strip():
        if required:
            raise RequestInvalid(codes.BODY_EMPTY, "the request body is empty")
        return None
    if len(raw) > MAX_JSON_BYTES:
        raise RequestInvalid(
            codes.BAD_REQUEST, f"the request body is larger than {MAX_JSON_BYTES} bytes"
        )
    if _depth(raw) > MAX_JSON_DEPTH:
        raise RequestInvalid(codes.BAD_REQUEST, f"the JSON body nests deeper than {MAX_JSON_DEPTH}")

    def refuse_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    def refuse_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        doc: dict[str, object] = {}
        for key, value in pairs:
            if key in doc:
                raise ValueError(f"the field {key[:100]!r} is given twice")
            doc[key] = value
        return doc

    try:
        return json.loads(
            raw.decode("utf-8"), parse_constant=refuse_constant, object_pairs_hook=refuse_duplicates
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestInvalid(
            codes.BAD_REQUEST, f"the request body is not valid JSON: {exc}"
        ) from exc


def _depth(raw: bytes) -> int:
    """Deepest ``[``/``{`` nesting of a JSON text, outside strings (counted without parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def require_object(body: object, allowed: frozenset[str]) -> Mapping[str, object]:
    """``body`` as a non-empty JSON object with only ``allowed`` fields (IMG.0007 / IMG.0001)."""
    if not isinstance(body, dict):
        raise RequestInvalid(codes.BAD_REQUEST, "the request body must be a JSON object")
    if not body:
        raise RequestInvalid(codes.BODY_EMPTY, "the request body is empty")
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise RequestInvalid(
            codes.BAD_REQUEST, f"unknown field {unknown[0][:64]!r}", field=unknown[0][:64]
        )
    return body


def check_bool(value: object, field: str, default: bool = False) -> bool:
    """A JSON boolean (absent or null gives ``default``); IMG.0001 otherwise."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestInvalid(codes.BAD_REQUEST, f"{field} must be true or false", field=field)
    return value


def check_int(
    value: object, field: str, code: str, low: int, high: int, *, text: bool = False
) -> int:
    """A whole number in ``low..high``; ``code`` otherwise. A JSON integer only (not ``true``,
    which Python counts as 1, not ``40.0``, not ``"40"``), as the vendor's API types it and
    every client we serve sends it; ``text`` also takes a string of ASCII digits, for the
    bodies whose values the vendor's SDK types as strings (JSON-patch ``value``, the tag
    query's ``limit``/``offset``)."""
    if text and isinstance(value, str):
        number = whole_number(value)
        if number is None:
            raise RequestInvalid(code, f"{field} must be a whole number", field=field)
        value = number
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestInvalid(
            code,
            f"{field} must be a whole number (a JSON integer), not {_json_type(value)}",
            field=field,
        )
    if not low <= value <= high:
        raise RequestInvalid(code, f"{field} must be {low}-{high}, not {value}", field=field)
    return value


def _json_type(value: object) -> str:
    """The JSON type of a parsed value, for messages (``a string``, ``true``...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    names = {str: "a string", float: "a fraction", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


# -- name and description -----------------------------------------------------------------------


def check_name(value: object) -> str:
    """The image name: 1-128 letters, digits, ``-._`` and spaces, no leading or trailing space."""
    if value is None or value == "":
        raise RequestInvalid(codes.NAME_REQUIRED, "name is required", field="name")
    if not isinstance(value, str):
        raise RequestInvalid(codes.NAME_INVALID, "name must be a string", field="name")
    if len(value) > MAX_NAME:
        raise RequestInvalid(
            codes.NAME_TOO_LONG, f"name is {len(value)} characters; at most 128", field="name"
        )
    if not _NAME.fullmatch(value) or value != value.strip(" "):
        raise RequestInvalid(
            codes.NAME_INVALID,
            f"name {value[:40]!r} may hold only letters, digits, '-', '.', '_' and "
            "spaces, and may not start or end with a space",
            field="name",
        )
    return value


def check_unique_name(
    conn: Connection, project_id: str, name: str, except_id: str | None = None
) -> None:
    """IMG.0009 if another image of the project is called ``name``."""
    query = select(images.c.id).where(images.c.project_id == project_id, images.c.name == name)
    if except_id is not None:
        query = query.where(images.c.id != except_id)
    if conn.execute(query).first() is not None:
        raise RequestInvalid(
            codes.NAME_TAKEN, f"an image named {name!r} already exists", field="name"
        )


def images_held(conn: Connection, project_id: str) -> int:
    """How many images (of any status) the project holds: what its quota counts."""
    held: int = conn.execute(
        select(func.count()).select_from(images).where(images.c.project_id == project_id)
    ).scalar_one()
    return held


def check_quota(conn: Connection, project_id: str, quota: int, adding: int = 1) -> None:
    """IMG.0015 when the project's images (of any status; ``quota`` 0 means no limit) and the
    ``adding`` new ones would be more than ``quota``. Checked when a request is accepted, in
    the transaction that adds the images."""
    if quota <= 0:
        return
    held = images_held(conn, project_id)
    if held + adding > quota:
        more = "" if adding == 1 else f", this request adds {adding}"
        raise RequestInvalid(
            codes.QUOTA_EXCEEDED,
            f"the project holds {held} images{more} and its quota is "
            f"{quota}: delete images first (the operator sets the quota with "
            "imageport serve --image-quota)",
        )


def check_description(value: object) -> str:
    """At most 1024 characters, without CR, ``<`` or ``>`` (absent gives ``""``)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RequestInvalid(
            codes.DESCRIPTION_INVALID, "description must be a string", field="description"
        )
    if len(value) > MAX_DESCRIPTION:
        raise RequestInvalid(
            codes.DESCRIPTION_TOO_LONG,
            f"description is {len(value)} characters; at most 1024",
            field="description",
        )
    bad = next((c for c in value if c in "\r<>"), None)
    if bad is not None:
        raise RequestInvalid(
            codes.DESCRIPTION_INVALID, f"description may not contain {bad!r}", field="description"
        )
    return value


# -- the file -------------------------------------------------------------------------------------


def check_image_url(value: object, field: str = "image_url") -> ImageUrl:
    """``"bucket:key"`` (IMG.0017), a valid bucket name (IMG.0109), a key naming a file whose
    folder and file names have no spaces (IMG.0175). ``field``: the body field messages name
    (``bucket_url`` for an export)."""
    if value is None or value == "":
        raise RequestInvalid(
            codes.BUCKET_URL_INVALID, f'{field} is required, as "bucket:key"', field=field
        )
    if not isinstance(value, str) or ":" not in value:
        raise RequestInvalid(codes.BUCKET_URL_INVALID, f'{field} must be "bucket:key"', field=field)
    bucket, _, key = value.partition(":")
    if not bucket or not key or key.endswith("/") or len(key) > MAX_KEY:
        raise RequestInvalid(
            codes.BUCKET_URL_INVALID,
            f"{field} {value[:80]!r} must name a bucket and a file in it",
            field=field,
        )
    if _CONTROL.search(key):
        raise RequestInvalid(
            codes.BUCKET_URL_INVALID, f"{field} contains a control character", field=field
        )
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise RequestInvalid(
            codes.BUCKET_NAME_INVALID, f"bucket name {bucket[:64]!r} is not valid", field=field
        )
    if " " in key:
        raise RequestInvalid(
            codes.SPACE_IN_FILE_NAME,
            f"the folder or file name in {key[:80]!r} contains a space",
            field=field,
        )
    return ImageUrl(bucket, key)


def check_min_disk(
    value: object,
    low: int = MIN_SYSTEM_DISK_GIB,
    high: int = MAX_SYSTEM_DISK_GIB,
    field: str = "min_disk",
) -> int:
    """The system disk of servers from the image, 40-1024 GiB (IMG-DISK-SIZE; the job checks
    that the image's virtual size fits); ``low``-``high`` for a data image's disk."""
    if value is None:
        raise RequestInvalid(
            codes.DISK_OR_RAM_INVALID, f"{field} is required ({low}-{high} GiB)", field=field
        )
    return check_int(value, field, codes.DISK_OR_RAM_INVALID, low, high)


def check_ram(min_ram: object, max_ram: object) -> tuple[int, int | None]:
    """``min_ram`` (default 0) and ``max_ram`` (MB, ``max_ram >= min_ram``), IMG.0055."""
    low = (
        0
        if min_ram is None
        else check_int(min_ram, "min_ram", codes.DISK_OR_RAM_INVALID, 0, MAX_RAM_MB)
    )
    if max_ram is None:
        return low, None
    high = check_int(max_ram, "max_ram", codes.DISK_OR_RAM_INVALID, 0, MAX_RAM_MB)
    if high and high < low:
        raise RequestInvalid(
            codes.DISK_OR_RAM_INVALID, f"max_ram {high} is below min_ram {low}", field="max_ram"
        )
    return low, high


# -- operating system and hardware ------------------------------------------------------------


def check_os_version(value: object, *, required: bool = False) -> str | None:
    """One of the ``__os_version`` list (IMG.0056); required for quick import."""
    if value is None or value == "":
        if required:
            raise RequestInvalid(
                codes.OS_VERSION_INVALID,
                "os_version is required for quick import",
                field="os_version",
            )
        return None
    if not isinstance(value, str) or os_versions.find(value) is None:
        shown = value[:80] if isinstance(value, str) else value
        raise RequestInvalid(
            codes.OS_VERSION_INVALID,
            f"os_version {shown!r} is not in the list of GET /v1/cloudimages/os_version",
            field="os_version",
        )
    return value


def check_os_type(value: object, os_version: str | None) -> str:
    """``Linux`` (absent gives Linux): this platform imports Linux images only (IMG.0122)."""
    if value is None:
        return "Linux"
    if value not in ("Linux", "Windows", "Other"):
        raise RequestInvalid(codes.OS_TYPE_INVALID, "os_type must be Linux", field="os_type")
    if value != "Linux":
        raise RequestInvalid(
            codes.OS_TYPE_INVALID,
            f"os_type {value}: only Linux images can be imported",
            field="os_type",
        )
    entry = os_versions.find(os_version) if os_version else None
    if entry is not None and entry.os_type != value:
        raise RequestInvalid(
            codes.OS_TYPE_INVALID, f"os_type {value} does not match {os_version}", field="os_type"
        )
    return value


def check_architecture(value: object) -> str:
    """``x86`` (default) or ``arm`` (IMG.0212)."""
    if value is None:
        return "x86"
    if value not in ("x86", "arm"):
        raise RequestInvalid(
            codes.ARCHITECTURE_INVALID, "architecture must be x86 or arm", field="architecture"
        )
    return str(value)


def check_firmware(value: object, architecture: str) -> str | None:
    """``bios`` or ``uefi`` (IMG.0141); arm boots only with UEFI, so arm implies ``uefi`` and
    refuses ``bios``. None when not given on x86 (the job then reads the image's boot mode)."""
    if value is None:
        return "uefi" if architecture == "arm" else None
    if value not in ("bios", "uefi"):
        raise RequestInvalid(
            codes.FIRMWARE_INVALID,
            "hw_firmware_type must be bios or uefi",
            field="hw_firmware_type",
        )
    if architecture == "arm" and value == "bios":
        raise RequestInvalid(
            codes.FIRMWARE_INVALID,
            "arm images boot with UEFI: hw_firmware_type must be uefi",
            field="hw_firmware_type",
        )
    return str(value)


def check_image_type(value: object, *, also: tuple[str, ...] = ()) -> str:
    """``ECS`` (default) or ``FusionCompute``, or one of ``also`` (the route's other types:
    ``IsoImage`` for a registration, ``DataImage`` for a quick import); the platform has no
    bare-metal import (IMG.0024)."""
    if value is None:
        return "ECS"
    if value in ("ECS", "FusionCompute", *also):
        return str(value)
    offered = ", ".join(("ECS", "FusionCompute", *also))
    if value in ("BMS", "Ironic", "IsoImage", "DataImage"):
        raise RequestInvalid(
            codes.TYPE_INVALID,
            f"type {value} images are not offered here; use one of {offered}",
            field="type",
        )
    raise RequestInvalid(codes.TYPE_INVALID, f"type must be one of {offered}", field="type")


def check_data_os_type(value: object) -> str:
    """A data image's ``os_type``: ``Linux`` (default) or ``Windows``, the system of the
    servers its disk is for (IMG.0122); nothing on the disk is judged by it."""
    if value is None:
        return "Linux"
    if value not in ("Linux", "Windows"):
        raise RequestInvalid(
            codes.OS_TYPE_INVALID, "os_type must be Linux or Windows", field="os_type"
        )
    return str(value)


def check_license_type(value: object) -> str | None:
    """``platform`` or ``byol`` (IMG.0001), or None when absent; the image keeps it as
    ``__license_type``."""
    if value is None:
        return None
    if value not in ("platform", "byol"):
        raise RequestInvalid(
            codes.BAD_REQUEST, "license_type must be platform or byol", field="license_type"
        )
    return str(value)


def check_enterprise_project(value: object) -> str | None:
    """``"0"`` (the default project) or an id of letters, digits and ``-`` (IMG.0001)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _EPS.fullmatch(value):
        raise RequestInvalid(
            codes.BAD_REQUEST, "enterprise_project_id is not valid", field="enterprise_project_id"
        )
    return value


def refuse_other_sources(body: Mapping[str, object]) -> None:
    """A route that imports files only: a server (``instance_id``: an image from a server is
    made with ``POST /v2/cloudimages/action``, :mod:`.server_images`) and a volume (volumes do
    not exist here) are ``IMG.SOURCE``; KMS does not exist either (``IMG.0095``, the vendor's
    "key not found")."""
    if body.get("instance_id") not in (None, "", []):
        raise RequestInvalid(
            codes.SOURCE_NOT_OFFERED,
            "this route registers files: an image is made from a server (instance_id) "
            "with POST /v2/cloudimages/action",
            field="instance_id",
        )
    if body.get("volume_id") not in (None, "", []):
        raise RequestInvalid(
            codes.SOURCE_NOT_OFFERED,
            "creating an image from a volume (volume_id) is not available: volumes do not "
            "exist on this platform; register a file with image_url",
            field="volume_id",
        )
    if body.get("cmk_id") not in (None, ""):
        raise RequestInvalid(
            codes.KMS_KEY_NOT_FOUND,
            "cmk_id: no KMS key can be found (encrypted images are not offered here)",
            field="cmk_id",
        )


# -- tags -----------------------------------------------------------------------------------------


def check_tags(tags: object, image_tags: object) -> list[str]:
    """``tags: ["key.value"]`` or ``image_tags: [{"key","value"}]`` (not both), as
    ``"key=value"`` strings: key 1-36, value 0-43 characters of ``A-Za-z0-9_-``, at most 10."""
    field = "image_tags" if tags in (None, []) and image_tags not in (None, []) else "tags"
    if tags not in (None, []) and image_tags not in (None, []):
        raise RequestInvalid(codes.BAD_REQUEST, "give tags or image_tags, not both", field=field)
    pairs: list[tuple[object, object]] = []
    if isinstance(tags, list):
        for tag in tags:
            if not isinstance(tag, str) or "." not in tag:
                raise RequestInvalid(codes.BAD_REQUEST, 'each tag must be "key.value"', field=field)
            head, _, tail = tag.partition(".")
            pairs.append((head, tail))
    elif tags is not None:
        raise RequestInvalid(
            codes.BAD_REQUEST, 'tags must be a list of "key.value" strings', field=field
        )
    if isinstance(image_tags, list):
        for tag in image_tags:
            if not isinstance(tag, dict) or set(tag) - {"key", "value"}:
                raise RequestInvalid(
                    codes.BAD_REQUEST, 'each image_tags item is {"key","value"}', field=field
                )
            pairs.append((tag.get("key"), tag.get("value", "")))
    elif image_tags is not None:
        raise RequestInvalid(
            codes.BAD_REQUEST, 'image_tags must be a list of {"key","value"}', field=field
        )
    if len(pairs) > MAX_TAGS:
        raise RequestInvalid(codes.BAD_REQUEST, f"at most {MAX_TAGS} tags", field=field)
    return [check_tag(key, val, field=field) for key, val in pairs]


def check_tag(key: object, value: object, *, field: str = "tags") -> str:
    """One key/value tag as the stored ``"key=value"`` string: key 1-36, value 0-43 characters
    of ``A-Za-z0-9_-`` (IMG.0001); ``field``: the request field it came from."""
    if not isinstance(key, str) or not _TAG_PART.fullmatch(key) or len(key) > MAX_TAG_KEY:
        raise RequestInvalid(
            codes.BAD_REQUEST, "a tag key is 1-36 letters, digits, '_' or '-'", field=field
        )
    if (
        not isinstance(value, str)
        or len(value) > MAX_TAG_VALUE
        or (value and not _TAG_PART.fullmatch(value))
    ):
        raise RequestInvalid(
            codes.BAD_REQUEST,
            f"tag {key!r}: a value is 0-43 letters, digits, '_' or '-'",
            field=field,
        )
    return f"{key}={value}"


def check_glance_tags(value: object) -> list[str]:
    """Glance tags: a list of at most 10 distinct strings of 1-255 printable characters."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise RequestInvalid(
            codes.BAD_REQUEST, f"tags must be a list of at most {MAX_TAGS} strings", field="tags"
        )
    out: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not tag or len(tag) > MAX_GLANCE_TAG or _CONTROL.search(tag):
            raise RequestInvalid(
                codes.BAD_REQUEST, "each tag is 1-255 printable characters", field="tags"
            )
        if tag not in out:
            out.append(tag)
    return out


def check_string_list(value: object, field: str) -> Sequence[str]:
    """A list of strings (IMG.0001)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestInvalid(codes.BAD_REQUEST, f"{field} must be a list of strings", field=field)
    return value
