"""Server routes: each view checks the path's project, calls one service function and renders.

The ``{project_id}`` in every path must be the caller's (``Ecs.0023``, 400, as the vendor
answers a token's project that is not the URL's). Errors are the vendor's ECS body
``{"error": {"code": "Ecs.xxxx", "message"}}`` with ``error_code``/``error_msg`` beside it
(:mod:`imageport.api.ims.errors`), which the SDK reads into ``exc.error_code``.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ecs.render import (
    nova_server_document,
    server_document,
    servers_document,
)
from imageport.api.ims.incoming import Call
from imageport.service.context import Services
from imageport.service.servers import actions, create, queries
from imageport.service.servers.create_request import Version
from imageport.service.servers.ecs_requests import json_body, require_own_project


def check_project(call: Call) -> None:
    """``Ecs.0023`` unless the path's ``{project_id}`` is the caller's project."""
    require_own_project(call.project_id, call.path_params.get("project_id", ""))


def _create(services: Services, call: Call, version: Version) -> Response:
    check_project(call)
    created = create.create_servers(
        services,
        call.project_id,
        json_body(call.body),
        version=version,
        client_token=call.headers.get("x-client-token"),
    )
    if created.job_id is None:
        return Response(status_code=202)
    return JSONResponse({"job_id": created.job_id, "serverIds": list(created.server_ids)})


def create_post_paid_servers(services: Services, call: Call) -> Response:
    """Create servers from a private image ``{"server": {"imageRef", "flavorRef", "name",
    "root_volume", "key_name", "adminPass", "user_data", "count", ...}}``: ``{"job_id",
    "serverIds"}`` of a ``createServer`` job (``dry_run``: 202, nothing made;
    ``X-Client-Token``: the same token answers the same job)."""
    return _create(services, call, "v1")


def create_servers(services: Services, call: Call) -> Response:
    """The v1.1 create (``extendparam.chargingMode`` ``postPaid`` only): as the v1 create."""
    return _create(services, call, "v1.1")


def show_server(services: Services, call: Call) -> Response:
    """A server ``{"server": {...}}`` (the vendor's ServerDetail, and ``OS-EXT-IMAGEPORT:ssh``,
    the loopback address forwarded to its SSH port); ``Ecs.0114`` (404) once deleted."""
    check_project(call)
    server = queries.show_server(services, call.project_id, call.path_params["server_id"])
    return JSONResponse({"server": server_document(server)})


def nova_show_server(services: Services, call: Call) -> Response:
    """A server as Nova shows it ``{"server": {...}}`` (flavor numbers as integers)."""
    check_project(call)
    server = queries.show_server(services, call.project_id, call.path_params["server_id"])
    return JSONResponse({"server": nova_server_document(server)})


def list_servers_details(services: Services, call: Call) -> Response:
    """The project's servers ``{"count", "servers"}``, filtered by ``name``, ``status``,
    ``flavor``, ``ip``, ``ip_eq``, ``server_id``..., paged by ``limit`` and ``offset`` (a page
    number) or ``marker``; ``status=DELETED`` lists deleted servers."""
    check_project(call)
    return JSONResponse(
        servers_document(queries.list_servers(services, call.project_id, call.query))
    )


def delete_servers(services: Services, call: Call) -> Response:
    """Delete servers ``{"servers": [{"id"}], "delete_publicip", "delete_volume"}``:
    ``{"job_id"}`` of a ``deleteServer`` job."""
    check_project(call)
    job_id = actions.delete_servers(services, call.project_id, json_body(call.body))
    return JSONResponse({"job_id": job_id})


def server_action(services: Services, call: Call) -> Response:
    """Start, stop or reboot servers ``{"os-start" | "os-stop" | "reboot": {"servers": [{"id"}],
    "type": "SOFT" | "HARD"}}``: ``{"job_id"}``; ``Ecs.0100`` when a server's status does not
    allow it."""
    check_project(call)
    job_id = actions.server_action(services, call.project_id, json_body(call.body))
    return JSONResponse({"job_id": job_id})


def show_console_output(services: Services, call: Call) -> Response:
    """The last ``length`` lines (50; ``-1``: all that is kept) of the server's serial console
    ``{"output"}``; ``Ecs.0321`` when it cannot be read."""
    check_project(call)
    output = queries.console_output(
        services, call.project_id, call.path_params["server_id"], call.query
    )
    return JSONResponse({"output": output})


__all__ = [
    "check_project",
    "create_post_paid_servers",
    "create_servers",
    "delete_servers",
    "list_servers_details",
    "nova_show_server",
    "server_action",
    "show_console_output",
    "show_server",
]
