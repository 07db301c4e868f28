"""The image API's error body, in both shapes the vendor's clients read.

``{"error": {"code": CODE, "message": MSG}, "error_code": CODE, "error_msg": MSG}``: the first
is the one the vendor documents, the second the one its SDK parses into
``exc.error_code``/``exc.error_msg``. The HTTP status comes from the
:class:`~imageport.service.errors.ServiceError` class (400 for ``IMG.xxxx`` codes). The
``X-Request-Id`` header is added by the request middleware on every response.

python-glanceclient cannot read that body: it takes ``.get("message")`` of *every* top-level
value (``glanceclient/exc.py`` ``from_response``), so a string there crashes it with an
``AttributeError`` instead of raising the HTTP error. Requests from it (its ``User-Agent`` is
``python-glanceclient``) get ``{"error": {"code", "message"}}`` only, the vendor's documented
shape; openstacksdk reads either.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from imageport.service import codes
from imageport.service.errors import ServiceError

GLANCECLIENT = "python-glanceclient"


def nested_only(headers: Mapping[str, str]) -> bool:
    """Whether the client needs the error body without top-level strings (glanceclient)."""
    return headers.get("user-agent", "").startswith(GLANCECLIENT)


def error_response(status: int, code: str, message: str, *, nested: bool = False) -> JSONResponse:
    """A vendor-shaped error response (``nested``: the ``error`` object only)."""
    doc: dict[str, object] = {"error": {"code": code, "message": message}}
    if not nested:
        doc.update(error_code=code, error_msg=message)
    return JSONResponse(doc, status_code=status)


def service_error(error: ServiceError, request: Request | None = None) -> JSONResponse:
    """The response for a refused request (shaped for the client that sent ``request``)."""
    return error_response(
        error.status,
        error.code,
        error.message,
        nested=request is not None and nested_only(request.headers),
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes (404) and methods (405) in the same JSON shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    nested = nested_only(request.headers)
    if status == 404:
        return error_response(
            404, codes.NOT_FOUND, f"no such API: {request.url.path[:200]}", nested=nested
        )
    if status == 405:
        return error_response(
            405,
            codes.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed on {request.url.path[:200]}",
            nested=nested,
        )
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return error_response(status, codes.http_status(status), str(detail), nested=nested)
