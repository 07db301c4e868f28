"""Image routes: each view parses, calls one service function and renders the result."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.api.ims.render import glance_images_document, image_document, images_document
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.images import lifecycle as images
from imageport.service.images import queries as image_queries
from imageport.service.images import server_images
from imageport.service.images import updates as image_updates
from imageport.service.images.os_versions import os_version_document
from imageport.service.jobs import copy_job

PATCH_TYPES = frozenset(
    {
        "application/json",
        "application/openstack-images-v2.1-json-patch",
        "application/json-patch+json",
    }
)
"""Content types a PATCH body may have (the SDK's UpdateImage sends the first, its
GlanceUpdateImage the second)."""


def create_image(services: Services, call: Call) -> Response:
    """Register a file ``{"name", "image_url": "bucket:key", "min_disk", ...}``: ``{"job_id"}`` of
    an ``imsImportImageJob`` job (with ``"is_config": true`` it fixes the guest before storing
    it, the changes in the report's ``configuration`` section, ``__is_config_init`` true when
    the initialization rules then pass; refused with a quick import); or make an image from a
    server ``{"name", "instance_id", ...}`` (ACTIVE or SHUTOFF, its system disk 40-1024 GiB):
    ``{"job_id"}`` of an ``imsCreateImageByInstance`` job, which copies the server's disk (a
    point-in-time copy of a running server), flattens it into one standalone image, checks it
    with every rule and stores it (``__data_origin`` ``instance,<server id>``;
    ``__is_config_init`` true when the initialization rules pass)."""
    return JSONResponse(
        {"job_id": server_images.create_image(services, call.project_id, call.json())}
    )


def create_data_image(services: Services, call: Call) -> Response:
    """Register a data-disk file ``{"name", "image_url", "min_disk" 40-2048, "os_type", ...}``
    as a data image: ``{"job_id"}`` of an ``imsImportDataImageJob`` job."""
    return JSONResponse(
        {"job_id": images.create_data_image(services, call.project_id, call.json())}
    )


def quick_import(services: Services, call: Call) -> Response:
    """Fast import of a RAW (with its bitmap file) or ZVHD2 file of up to 1 TiB, stored without
    conversion: ``{"job_id"}`` (also ``"is_quick_import": true`` on a registration)."""
    return JSONResponse({"job_id": images.quick_import(services, call.project_id, call.json())})


def list_cloudimages(services: Services, call: Call) -> Response:
    """The project's images ``{"images": [...]}``, with the vendor's filters, ``marker``/``limit``
    paging and ``sort_key``/``sort_dir``."""
    return JSONResponse(
        images_document(image_queries.list_images(services, call.project_id, call.query))
    )


def update_cloudimage(services: Services, call: Call) -> Response:
    """JSON patch of an active image (``application/json`` or
    ``application/openstack-images-v2.1-json-patch``): the image."""
    return JSONResponse(
        image_document(
            image_updates.update_image(
                services, call.project_id, call.path_params["image_id"], _patch_body(call)
            )
        )
    )


def create_glance_image(services: Services, call: Call) -> Response:
    """Glance create: a ``queued`` image with metadata only (201)."""
    return JSONResponse(
        image_document(images.create_glance_image(services, call.project_id, call.json())),
        status_code=201,
    )


def list_glance_images(services: Services, call: Call) -> Response:
    """Glance list: 25 images a page by default, with ``first``/``next`` links."""
    page = image_queries.list_images(
        services, call.project_id, call.query, default_limit=image_queries.GLANCE_LIMIT
    )
    return JSONResponse(glance_images_document(page, call.query))


def show_glance_image(services: Services, call: Call) -> Response:
    """One image, as Glance shows it."""
    return JSONResponse(
        image_document(
            image_queries.get_image(services, call.project_id, call.path_params["image_id"])
        )
    )


def update_glance_image(services: Services, call: Call) -> Response:
    """Glance JSON patch of a queued or active image: the image."""
    return JSONResponse(
        image_document(
            image_updates.update_image(
                services,
                call.project_id,
                call.path_params["image_id"],
                _patch_body(call),
                glance=True,
            )
        )
    )


def delete_glance_image(services: Services, call: Call) -> Response:
    """Delete an image and its stored file (204), also with a ``{"delete_backup": false}`` body."""
    images.delete_image(
        services, call.project_id, call.path_params["image_id"], call.json(required=False)
    )
    return Response(status_code=204)


def register_image(services: Services, call: Call) -> Response:
    """Give a ``queued`` image its file ``{"image_url": "bucket:key"}`` as an *uninitialized* image:
    ``{"job_id"}`` of an ``imsNativeImportImageJob`` job."""
    return JSONResponse(
        {
            "job_id": images.register_image_file(
                services, call.project_id, call.path_params["image_id"], call.json()
            )
        }
    )


def show_image_quota(services: Services, call: Call) -> Response:
    """The project's image quota and how much of it is used (``quota`` -1: no limit)."""
    return JSONResponse(image_queries.image_quota_document(services, call.project_id))


def list_os_versions(services: Services, call: Call) -> Response:
    """The ``__os_version`` values a registration may name, by platform."""
    return JSONResponse(os_version_document())


def copy_image(services: Services, call: Call) -> Response:
    """Copy an active image in the region ``{"name", "description"?, "enterprise_project_id"?}``:
    ``{"job_id"}`` of an ``imsCopyImageInRegionJob`` job."""
    return JSONResponse(
        {
            "job_id": copy_job.copy_image(
                services, call.project_id, call.path_params["image_id"], call.json()
            )
        }
    )


def _patch_body(call: Call) -> object:
    media = call.content_type.split(";", 1)[0].strip().lower()
    if media not in PATCH_TYPES:
        raise RequestInvalid(
            codes.BAD_REQUEST,
            f"a PATCH body must be one of {', '.join(sorted(PATCH_TYPES))}, not {media[:80]!r}",
            status=415,
        )
    return call.json()
