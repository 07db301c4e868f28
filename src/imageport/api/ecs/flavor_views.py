"""Flavor routes."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ecs.render import flavors_document
from imageport.api.ecs.server_views import check_project
from imageport.api.ims.incoming import Call
from imageport.service.context import Services
from imageport.service.servers.flavors import list_flavors as offered_flavors


def list_flavors(services: Services, call: Call) -> Response:
    """The flavors a server can have ``{"flavors": [{"id", "vcpus", "ram", ...}]}``, filtered by
    ``availability_zone`` and ``flavor_id``, paged by ``limit`` and ``marker``."""
    check_project(call)
    return JSONResponse(flavors_document(offered_flavors(services.settings, call.query)))


__all__ = ["list_flavors"]
