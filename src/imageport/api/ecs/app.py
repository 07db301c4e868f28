"""The server API's route table; :func:`imageport.api.ims.app.build_ims_app` mounts it.

Views follow the image API's pattern (:mod:`imageport.api.ims.incoming`): each is a plain
``(services, call) -> Response`` whose docstring begins with what a client sees, and every route
is authenticated like the image API's. The console WebSockets (and the display's page) are the
exception: their token is their credential (:mod:`imageport.api.ecs.console_sockets`)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from imageport.api.ecs import console_views as cv
from imageport.api.ecs import flavor_views as fv
from imageport.api.ecs import keypair_views as kv
from imageport.api.ecs import server_views as sv
from imageport.api.ecs.console_sockets import console_routes
from imageport.api.ims.incoming import View, endpoint
from imageport.service.context import Services

# the literal paths (detail, flavors, delete, action) before /cloudservers/{server_id}
_TABLE: list[tuple[str, str, View]] = [
    ("/v1/{project_id}/cloudservers", "POST", sv.create_post_paid_servers),
    ("/v1.1/{project_id}/cloudservers", "POST", sv.create_servers),
    ("/v1/{project_id}/cloudservers/detail", "GET", sv.list_servers_details),
    ("/v1/{project_id}/cloudservers/flavors", "GET", fv.list_flavors),
    ("/v1/{project_id}/cloudservers/delete", "POST", sv.delete_servers),
    ("/v1/{project_id}/cloudservers/action", "POST", sv.server_action),
    ("/v1/{project_id}/cloudservers/{server_id}", "GET", sv.show_server),
    ("/v1/{project_id}/cloudservers/{server_id}/console-output", "GET", sv.show_console_output),
    ("/v1/{project_id}/cloudservers/{server_id}/remote_console", "POST", cv.remote_console),
    (
        "/v1/{project_id}/cloudservers/{server_id}/actions/serial-console",
        "POST",
        cv.serial_console,
    ),
    ("/v2.1/{project_id}/servers/{server_id}", "GET", sv.nova_show_server),
    # key pairs (Nova os-keypairs)
    ("/v2.1/{project_id}/os-keypairs", "POST", kv.create_keypair),
    ("/v2.1/{project_id}/os-keypairs", "GET", kv.list_keypairs),
    ("/v2.1/{project_id}/os-keypairs/{keypair_name}", "GET", kv.show_keypair),
    ("/v2.1/{project_id}/os-keypairs/{keypair_name}", "DELETE", kv.delete_keypair),
]


def ecs_routes(services: Services) -> list[BaseRoute]:
    """The server API's routes."""
    return [
        *(
            Route(path, endpoint(services, view), methods=[method], name=view.__name__)
            for path, method, view in _TABLE
        ),
        *console_routes(services),
    ]
