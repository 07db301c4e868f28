"""The image API's error body, in both shapes the vendor's clients read.

``{"error": {"code": CODE, "message": MSG}, "error_code": CODE, "error_msg": MSG}``: the first
is the one the vendor documents, the second the one its SDK parses into
``exc.error_code``/``exc.error_msg``. The HTTP status comes from the
:class:`~imageport.service.errors.ServiceError` class (400 for ``IMG.xxxx`` codes). The
``X-Request-Id`` header is added by the request middleware on every response.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from imageport.service.errors import ServiceError


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """A vendor-shaped error response."""
    return JSONResponse({"error": {"code": code, "message": message},
                         "error_code": code, "error_msg": message}, status_code=status)


def service_error(error: ServiceError) -> JSONResponse:
    """The response for a refused request."""
    return error_response(error.status, error.code, error.message)


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes (404) and methods (405) in the same JSON shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return error_response(404, "IMG.NOT_FOUND", f"no such API: {request.url.path[:200]}")
    if status == 405:
        return error_response(405, "IMG.METHOD", f"{request.method} is not allowed on "
                              f"{request.url.path[:200]}")
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return error_response(status, f"IMG.HTTP{status}", str(detail))
