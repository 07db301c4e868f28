"""The server API's route table; :func:`imageport.api.ims.app.build_ims_app` mounts it.

Views follow the image API's pattern (:mod:`imageport.api.ims.incoming`): each is a plain
``(services, call) -> Response`` whose docstring begins with what a client sees, and every route
is authenticated like the image API's."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from imageport.api.ecs import keypair_views as kv
from imageport.api.ims.incoming import View, endpoint
from imageport.service.context import Services

_TABLE: list[tuple[str, str, View]] = [
    # key pairs (Nova os-keypairs)
    ("/v2.1/{project_id}/os-keypairs", "POST", kv.create_keypair),
    ("/v2.1/{project_id}/os-keypairs", "GET", kv.list_keypairs),
    ("/v2.1/{project_id}/os-keypairs/{keypair_name}", "GET", kv.show_keypair),
    ("/v2.1/{project_id}/os-keypairs/{keypair_name}", "DELETE", kv.delete_keypair),
]


def ecs_routes(services: Services) -> list[BaseRoute]:
    """The server API's routes."""
    return [
        Route(path, endpoint(services, view), methods=[method], name=view.__name__)
        for path, method, view in _TABLE
    ]
