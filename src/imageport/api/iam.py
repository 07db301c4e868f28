"""Token endpoint (``POST /v3/auth/tokens``), mounted on the image API.

The vendor's IAM answers ``201 Created`` with the token in the ``X-Subject-Token`` header and a
description of it in the body; clients then send it as ``X-Auth-Token``. The view reads the body (at
most :data:`~imageport.service.access.tokens.MAX_BODY` bytes), hands it with the request's signature
facts (:func:`imageport.api.ims.incoming.signed_request`, as every image API call) to
:func:`~imageport.service.access.tokens.create_token`, and renders the result, or the error in the
image API's error shape (:mod:`imageport.api.ims.errors`)::

    {"error": {"code": CODE, "message": MSG}, "error_code": CODE, "error_msg": MSG}

The app that mounts :data:`ROUTES` must set ``app.state.services`` to its
:class:`~imageport.service.context.Services`.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from imageport.api.ims.errors import service_error
from imageport.api.ims.incoming import read_body, signed_request
from imageport.service.access.tokens import MAX_BODY, IssuedToken, create_token
from imageport.service.context import Services
from imageport.service.errors import ServiceError


def _token_document(issued: IssuedToken) -> dict[str, object]:
    return {
        "token": {
            "expires_at": issued.expires_at,
            "issued_at": issued.issued_at,
            "methods": list(issued.methods),
            "project": {"id": issued.project_id, "name": issued.project_name},
            "catalog": [],
            "roles": [],
        }
    }


async def create_token_view(request: Request) -> Response:
    """A token for the image API, for an SDK-HMAC-signed request or the IAM body with a key and its
    secret: 201 with ``X-Subject-Token`` (24 h by default)."""
    services: Services = request.app.state.services
    try:
        body = await read_body(request, MAX_BODY, "RequestBodyTooLarge")
        issued = await run_in_threadpool(
            create_token, services, signed_request(request, body), body
        )
    except ServiceError as exc:
        return service_error(exc)
    return JSONResponse(
        _token_document(issued), status_code=201, headers={"X-Subject-Token": issued.token}
    )


ROUTES: list[BaseRoute] = [
    Route("/v3/auth/tokens", create_token_view, methods=["POST"]),
]
