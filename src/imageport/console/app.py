"""The console application: every area's pages, the static files, and a not-found page.

:func:`build_console_app` is mounted at ``/console`` on the image API's listener
(:func:`imageport.server.build_apps`). Each area module lists its routes in ``PAGES``
(:class:`~.pages.PageRoute`); :data:`AREAS` is the one place they are gathered.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from imageport.console import (
    buckets,
    checks,
    i18n,
    images,
    register,
    server_page,
    servers,
    signin,
)
from imageport.console.pages import PageCall, Site, page, render, secure
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import NotFound

AREAS = (signin, buckets, images, checks, register, servers, server_page)
STATIC = Path(__file__).parent / "static"


def console_routes(services: Services, site: Site) -> list[BaseRoute]:
    """Every area's routes (one Route per path and method set) and ``/static``."""
    routes: list[BaseRoute] = [
        Route(
            entry.path,
            page(services, site, entry.view, public=entry.public, as_json=entry.as_json),
            methods=list(entry.methods),
            name=f"console.{entry.view.__name__}",
        )
        for area in AREAS
        for entry in area.PAGES
    ]
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC), name="static"))
    return routes


def build_console_app(services: Services, site: Site | None = None) -> Starlette:
    """The console over ``services``; ``site``: where the bucket API is (uploads)."""

    async def missing(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        lang = i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))
        call = PageCall(
            lang=lang, session=None, method=request.method, here="", path_params={}, query=()
        )
        if status == 404:
            return secure(
                render(
                    call, "not_found.html", status=404, error=NotFound(codes.NOT_FOUND, "no page")
                )
            )
        return secure(Response(status_code=status))

    return Starlette(
        routes=console_routes(services, site or Site()),
        exception_handlers={HTTPException: missing},
    )
