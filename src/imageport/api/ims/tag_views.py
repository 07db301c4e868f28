"""Image tag routes (``/v2/{project_id}/images/...``): each view parses, calls one function of
:mod:`imageport.service.images.tags` and renders the vendor's document (204 for the changes)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.service.context import Services
from imageport.service.images import tags as image_tags
from imageport.service.images.tags import Tag, TagQueryResult


def _pairs(tags: Sequence[Tag]) -> list[dict[str, str]]:
    return [{"key": t.key, "value": t.value} for t in tags]


def _query_document(result: TagQueryResult) -> dict[str, object]:
    doc: dict[str, object] = {"total_count": result.total_count}
    if result.images is not None:
        doc["resources"] = [
            {
                "resource_id": i.id,
                "resource_name": i.name,
                "resource_detail": {"status": i.status},
                "tags": _pairs(i.tags),
            }
            for i in result.images
        ]
    return doc


def add_image_tag(services: Services, call: Call) -> Response:
    """Add or replace one tag ``{"tag": {"key", "value"}}`` (204)."""
    image_tags.add_tag(
        services,
        call.project_id,
        call.path_params["project_id"],
        call.path_params["image_id"],
        call.json(),
    )
    return Response(status_code=204)


def list_image_tags(services: Services, call: Call) -> Response:
    """An image's tags: ``{"tags": [{"key", "value"}]}``."""
    return JSONResponse(
        {
            "tags": _pairs(
                image_tags.list_tags(
                    services,
                    call.project_id,
                    call.path_params["project_id"],
                    call.path_params["image_id"],
                )
            )
        }
    )


def delete_image_tag(services: Services, call: Call) -> Response:
    """Delete one tag (204; 404 when the image has no such key)."""
    image_tags.delete_tag(
        services,
        call.project_id,
        call.path_params["project_id"],
        call.path_params["image_id"],
        call.path_params["key"],
    )
    return Response(status_code=204)


def batch_image_tags(services: Services, call: Call) -> Response:
    """Add or delete tags: ``{"action": "create" | "delete", "tags": [{"key", "value"}]}`` (204)."""
    image_tags.batch_tags(
        services,
        call.project_id,
        call.path_params["project_id"],
        call.path_params["image_id"],
        call.json(),
    )
    return Response(status_code=204)


def list_images_by_tags(services: Services, call: Call) -> Response:
    """Filter images by tag (``resources``, ``total_count``) or count them (``total_count``)."""
    return JSONResponse(
        _query_document(
            image_tags.query_images(
                services, call.project_id, call.path_params["project_id"], call.json()
            )
        )
    )


def list_project_tags(services: Services, call: Call) -> Response:
    """Every tag key of the project with its values: ``{"tags": [{"key", "values"}]}``."""
    return JSONResponse(
        {
            "tags": [
                {"key": key, "values": values}
                for key, values in image_tags.project_tags(
                    services, call.project_id, call.path_params["project_id"]
                )
            ]
        }
    )
