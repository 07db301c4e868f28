"""The server API's route table; :func:`imageport.api.ims.app.build_ims_app` mounts it.

Views follow the image API's pattern (:mod:`imageport.api.ims.incoming`): each is a plain
``(services, call) -> Response`` whose docstring begins with what a client sees, and every route
is authenticated like the image API's."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from imageport.api.ims.incoming import View, endpoint
from imageport.service.context import Services

_TABLE: list[tuple[str, str, View]] = []


def ecs_routes(services: Services) -> list[BaseRoute]:
    """The server API's routes."""
    return [
        Route(path, endpoint(services, view), methods=[method], name=view.__name__)
        for path, method, view in _TABLE
    ]
