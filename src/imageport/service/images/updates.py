"""Updating an image with a JSON patch (``PATCH /v2/cloudimages/{id}`` and ``/v2/images/{id}``).

The body is an array of at most :data:`MAX_OPS` ``{"op": "add"|"replace"|"remove", "path":
"/<attribute>", "value": ...}``. Patchable attributes (the vendor's IMS API reference,
"Updating Image Information"): ``name``, ``__description``, ``__support_*``,
``__is_config_init``, ``min_ram``, ``max_ram``, ``hw_firmware_type``,
``hw_vif_multiqueue_enabled``, ``enterprise_project_id``; the Glance path
also takes ``protected`` (so a protected image can be made deletable again). Values may be JSON
strings, as the vendor SDK sends them (``"1024"``, ``"true"``).

The cloudimages path updates ``active`` images only (as the vendor); the Glance path also
``queued`` ones (metadata before the file). Otherwise ``IMG.STATE`` (409). All operations are
applied in one transaction, or none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from sqlalchemy import update

from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, RequestInvalid
from imageport.service.images import validation as v
from imageport.service.images.records import ImageRecord, image_row
from imageport.service.statuses import ImageStatus
from imageport.service.tables import images

MAX_OPS = 50
"""Most operations one patch may hold."""
MAX_PROPERTY_VALUE = 255

_SUPPORT = re.compile(r"__support_[a-z0-9_]{1,40}")
_FLAG_PROPERTIES = frozenset({"__is_config_init", "hw_vif_multiqueue_enabled"})

Changes = dict[str, object]


def update_image(
    services: Services, project_id: str, image_id: str, ops: object, *, glance: bool = False
) -> ImageRecord:
    """Apply the patch ``ops`` to the caller's image; the updated image."""
    if not isinstance(ops, list) or not ops:
        raise RequestInvalid(codes.BAD_REQUEST, "the body must be a non-empty JSON-patch array")
    if len(ops) > MAX_OPS:
        raise RequestInvalid(codes.BAD_REQUEST, f"at most {MAX_OPS} patch operations")
    allowed = (ImageStatus.ACTIVE, ImageStatus.QUEUED) if glance else (ImageStatus.ACTIVE,)
    with services.db.begin() as conn:
        row = image_row(conn, project_id, image_id)
        if row.status not in allowed:
            raise Conflict(
                codes.STATE,
                f"image {image_id} is {row.status}; only "
                f"{' or '.join(allowed)} images can be updated",
            )
        props = dict(row.properties or {})
        columns: Changes = {}
        for op in ops:
            _apply(
                op, columns, props, glance=glance, architecture=props.get("architecture", "x86_64")
            )
        if "name" in columns:
            v.check_unique_name(conn, project_id, str(columns["name"]), except_id=image_id)
        conn.execute(
            update(images)
            .where(images.c.id == image_id)
            .values(**columns, properties=props, updated_at=time_text(services.clock()))
        )
        return ImageRecord.from_row(image_row(conn, project_id, image_id))


def _apply(
    op: object, columns: Changes, props: dict[str, str], *, glance: bool, architecture: str
) -> None:
    """Apply one operation to the pending column and property changes."""
    if not isinstance(op, Mapping):
        raise RequestInvalid(codes.BAD_REQUEST, "each patch operation is a JSON object")
    kind, path = op.get("op"), op.get("path")
    if kind not in ("add", "replace", "remove"):
        raise RequestInvalid(codes.BAD_REQUEST, "op must be add, replace or remove")
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 64:
        raise RequestInvalid(codes.BAD_REQUEST, 'path must be "/<attribute>"')
    attr = path[1:]
    remove = kind == "remove"
    if not remove and "value" not in op:
        raise RequestInvalid(codes.BAD_REQUEST, f"{kind} {path} needs a value")
    value = op.get("value")
    if attr == "name":
        if remove:
            raise RequestInvalid(codes.NAME_REQUIRED, "name cannot be removed")
        columns["name"] = v.check_name(value)
    elif attr in ("min_ram", "max_ram"):
        columns[attr] = (
            (0 if attr == "min_ram" else None)
            if remove
            else v.check_int(value, attr, codes.DISK_OR_RAM_INVALID, 0, v.MAX_RAM_MB, text=True)
        )
    elif attr == "protected" and glance:
        columns["protected"] = False if remove else _flag(value, attr) == "true"
    elif attr == "__description":
        props[attr] = "" if remove else v.check_description(value)
    elif attr == "hw_firmware_type":
        arch = "arm" if architecture == "aarch64" else "x86"
        props[attr] = (
            ("uefi" if arch == "arm" else "bios") if remove else str(v.check_firmware(value, arch))
        )
    else:
        setter = _property_setter(attr)
        if remove:
            props.pop(attr, None)
        else:
            props[attr] = setter(value)


def _property_setter(attr: str) -> Callable[[object], str]:
    if attr in _FLAG_PROPERTIES:
        return lambda value: _flag(value, attr)
    if _SUPPORT.fullmatch(attr):
        return lambda value: _text(value, attr)
    if attr == "enterprise_project_id":
        return lambda value: str(v.check_enterprise_project(value))
    raise RequestInvalid(codes.BAD_REQUEST, f"/{attr[:64]} cannot be updated")


def _flag(value: object, attr: str) -> str:
    if value in (True, "true", "True"):
        return "true"
    if value in (False, "false", "False"):
        return "false"
    raise RequestInvalid(codes.BAD_REQUEST, f"{attr} must be true or false")


def _text(value: object, attr: str) -> str:
    if (
        not isinstance(value, str)
        or len(value) > MAX_PROPERTY_VALUE
        or any(ord(c) < 32 for c in value)
    ):
        raise RequestInvalid(
            codes.BAD_REQUEST,
            f"{attr} must be a string of at most {MAX_PROPERTY_VALUE} printable characters",
        )
    return value
