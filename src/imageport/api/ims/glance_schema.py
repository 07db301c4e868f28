"""Glance's documents that describe the API: the image schemas and the versions list.

python-glanceclient fetches ``GET /v2/schemas/image`` (and ``/v2/schemas/images`` to list) and
validates every image it sends or receives against it (a ``warlock`` model), so the schema must
admit every property our image documents emit. Modelled on Glance's own (``glance/api/v2/
images.py`` ``get_base_properties`` and ``glance/schema.py``'s permissive schema: extra
properties are strings, ``additionalProperties: {"type": "string"}``), written for this service:

* ``disk_format`` lists the formats this service takes and stores; ``container_format`` is
  ``bare`` only;
* ``checksum`` is the stored file's sha256 here (Glance's is an md5, at most 32 characters): it
  admits 64; ``os_hash_algo``/``os_hash_value`` carry the same sha256, so the clients verify
  downloads with it;
* our extensions that may be null (``max_ram``, ``active_at``) are declared; the vendor's
  ``__*`` properties are strings, admitted as extra properties.

openstacksdk discovers the API version from ``GET /`` before its first call; Glance answers 300
with the versions list there and 200 at ``/versions`` (``glance/api/versions.py``). The ``self``
links are built from the request's own URL, as Glance builds them.
"""

from __future__ import annotations

from typing import Any

from imageport.service.images.lifecycle import GLANCE_DISK_FORMATS
from imageport.service.statuses import ImageStatus

#: API versions listed by version discovery: v2 with import (2.6) is the newest we follow.
API_VERSIONS = ("2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0")


def _nullable(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": ["null", kind], "description": description, **extra}


def _read_only(kind: Any, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "readOnly": True, "description": description, **extra}


def image_schema() -> dict[str, Any]:
    """The ``image`` schema (``GET /v2/schemas/image``)."""
    properties: dict[str, Any] = {
        "id": {
            "type": "string",
            "description": "An identifier for the image",
            "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
            "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$",
        },
        "name": _nullable("string", "Descriptive name for the image", maxLength=255),
        "status": _read_only(
            "string",
            "Status of the image",
            # the statuses an image here has, then Glance's others (never set here)
            enum=[
                *ImageStatus,
                "deleted",
                "uploading",
                "importing",
                "pending_delete",
                "deactivated",
            ],
        ),
        "visibility": {
            "type": "string",
            "description": "Scope of image accessibility",
            "enum": ["community", "public", "private", "shared"],
        },
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {
            "type": "boolean",
            "description": "If true, image will not appear in default image list.",
        },
        "checksum": _read_only(
            ["null", "string"], "sha256 of the stored image file (Glance: md5)", maxLength=64
        ),
        "os_hash_algo": _read_only(["null", "string"], "Algorithm of os_hash_value", maxLength=64),
        "os_hash_value": _read_only(
            ["null", "string"], "Hex digest of the stored image file", maxLength=128
        ),
        "owner": _nullable("string", "Owner of the image", maxLength=255),
        "size": _read_only(["null", "integer"], "Size of the stored image file in bytes"),
        "virtual_size": _read_only(["null", "integer"], "Virtual size of the image in bytes"),
        "container_format": _nullable("string", "Format of the container", enum=[None, "bare"]),
        "disk_format": _nullable(
            "string", "Format of the disk", enum=[None, *sorted(GLANCE_DISK_FORMATS)]
        ),
        "created_at": _read_only("string", "Date and time of image registration"),
        "updated_at": _read_only("string", "Date and time of the last image modification"),
        "active_at": _read_only(["null", "string"], "Date and time the image became active"),
        "tags": {
            "type": "array",
            "description": "List of strings related to the image",
            "items": {"type": "string", "maxLength": 255},
        },
        "min_ram": {"type": "integer", "description": "Amount of RAM (MB) required to boot"},
        "min_disk": {"type": "integer", "description": "Amount of disk (GB) required to boot"},
        "max_ram": _nullable("string", "Most RAM (MB) the image supports"),
        "self": _read_only("string", "An image self url"),
        "file": _read_only("string", "An image file url"),
        "schema": _read_only("string", "An image schema url"),
    }
    return {
        "name": "image",
        "properties": properties,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema() -> dict[str, Any]:
    """The ``images`` collection schema (``GET /v2/schemas/images``)."""
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def versions_document(base_url: str) -> dict[str, Any]:
    """The versions list; ``base_url``: the service's root URL as the request reached it."""
    href = base_url.rstrip("/") + "/v2/"
    return {
        "versions": [
            {
                "id": f"v{version}",
                "status": "CURRENT" if n == 0 else "SUPPORTED",
                "links": [{"rel": "self", "href": href}],
            }
            for n, version in enumerate(API_VERSIONS)
        ]
    }
