"""Image routes: each view parses, calls one service function and renders the result."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.api.ims.render import glance_images_document, image_document, images_document
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.images import lifecycle as images
from imageport.service.images import queries as image_queries
from imageport.service.images import updates as image_updates
from imageport.service.images.os_versions import os_version_document
from imageport.service.jobs import copy_job as image_copy

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
    """POST /v2/cloudimages/action (and /v2.1/): register a file; ``{"job_id"}``."""
    return JSONResponse(
        {"job_id": images.create_image_from_file(services, call.project_id, call.json())}
    )


def quick_import(services: Services, call: Call) -> Response:
    """POST /v2/cloudimages/quickimport/action (and /v2.1/); ``{"job_id"}``."""
    return JSONResponse({"job_id": images.quick_import(services, call.project_id, call.json())})


def list_cloudimages(services: Services, call: Call) -> Response:
    """GET /v2/cloudimages: ``{"images": [...]}`` (filters, marker/limit, sort_key/sort_dir)."""
    return JSONResponse(
        images_document(image_queries.list_images(services, call.project_id, call.query))
    )


def update_cloudimage(services: Services, call: Call) -> Response:
    """PATCH /v2/cloudimages/{image_id}: JSON patch of an active image; the image."""
    return JSONResponse(
        image_document(
            image_updates.update_image(
                services, call.project_id, call.path_params["image_id"], _patch_body(call)
            )
        )
    )


def create_glance_image(services: Services, call: Call) -> Response:
    """POST /v2/images: a queued image (201)."""
    return JSONResponse(
        image_document(images.create_glance_image(services, call.project_id, call.json())),
        status_code=201,
    )


def list_glance_images(services: Services, call: Call) -> Response:
    """GET /v2/images: 25 per page by default, with ``first``/``next`` links."""
    page = image_queries.list_images(
        services, call.project_id, call.query, default_limit=image_queries.GLANCE_LIMIT
    )
    return JSONResponse(glance_images_document(page, call.query))


def show_glance_image(services: Services, call: Call) -> Response:
    """GET /v2/images/{image_id}."""
    return JSONResponse(
        image_document(
            image_queries.get_image(services, call.project_id, call.path_params["image_id"])
        )
    )


def update_glance_image(services: Services, call: Call) -> Response:
    """PATCH /v2/images/{image_id}: JSON patch of a queued or active image; the image."""
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
    """DELETE /v2/images/{image_id} (optional JSON body): 204."""
    images.delete_image(
        services, call.project_id, call.path_params["image_id"], call.json(required=False)
    )
    return Response(status_code=204)


def register_image(services: Services, call: Call) -> Response:
    """PUT /v1/cloudimages/{image_id}/upload ``{"image_url"}``: ``{"job_id"}``."""
    return JSONResponse(
        {
            "job_id": images.register_image_file(
                services, call.project_id, call.path_params["image_id"], call.json()
            )
        }
    )


def show_image_quota(services: Services, call: Call) -> Response:
    """GET /v1/cloudimages/quota: the project's image quota and how much of it is used."""
    return JSONResponse(image_queries.image_quota_document(services, call.project_id))


def list_os_versions(services: Services, call: Call) -> Response:
    """GET /v1/cloudimages/os_version: the ``__os_version`` list by platform."""
    return JSONResponse(os_version_document())


def copy_image(services: Services, call: Call) -> Response:
    """POST /v1/cloudimages/{image_id}/copy ``{"name", "description"?, ...}``: ``{"job_id"}``
    (job ``imsCopyImageInRegionJob``)."""
    return JSONResponse(
        {
            "job_id": image_copy.copy_image(
                services, call.project_id, call.path_params["image_id"], call.json()
            )
        }
    )


def _patch_body(call: Call) -> object:
    media = call.content_type.split(";", 1)[0].strip().lower()
    if media not in PATCH_TYPES:
        raise RequestInvalid(
            "IMG.0001",
            f"a PATCH body must be one of {', '.join(sorted(PATCH_TYPES))}, not {media[:80]!r}",
            status=415,
        )
    return call.json()
