"""The route tables of ``docs/service.md``, generated from what the two APIs serve.

* The image API (:func:`ims_route_table`): every Starlette route of the application the server
  runs (``/health`` and ``/metrics``, the token endpoint, the IMS, Glance and ECS routes, the
  console WebSockets as ``WEBSOCKET``), one row per endpoint with its methods and paths.
* The bucket API (:func:`s3_route_table`): one catch-all route that
  :func:`imageport.api.s3.app.route` dispatches on the method, the path's depth (service,
  bucket, object) and the sub-resource; the table is what ``route`` answers for each method and
  depth, plain and with each query name it knows (none of which it ignores).

Each row says what the endpoint does in the first paragraph of its docstring, so an endpoint
without one fails the generation. ``scripts/docs`` writes the tables into the page; a test
fails when the committed copies differ.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from imageport.api.s3.app import QUERY_NAMES, route
from imageport.api.s3.request import S3Call
from imageport.service.errors import ServiceError

#: The order methods are listed in (``WEBSOCKET``: a WebSocket route, opened with ``GET``).
_METHODS = ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "WEBSOCKET")
#: The bucket API's path depths, as a row shows them, and the (bucket, key) that stands for each.
_DEPTHS = {"/": ("", ""), "/{bucket}": ("bucket", ""), "/{bucket}/{key}": ("bucket", "key")}


def summary(endpoint: Callable[..., Any]) -> str:
    """The first paragraph of ``endpoint``'s docstring as one line of Markdown."""
    if isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    doc = inspect.getdoc(endpoint)
    if not doc:
        raise ValueError(f"{endpoint.__qualname__} has no docstring to document its route by")
    text = " ".join(doc.split("\n\n", 1)[0].split())
    text = text.replace("``", "`")
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("|", "\\|")


def _routes(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[Route]:
    for r in routes:
        if isinstance(r, Mount):
            yield from _routes(r.routes, prefix + r.path)
        elif isinstance(r, Route):
            yield Route(prefix + r.path, r.endpoint, methods=r.methods, name=r.name)
        elif isinstance(r, WebSocketRoute):
            yield Route(prefix + r.path, r.endpoint, methods=["WEBSOCKET"], name=r.name)
        else:
            raise TypeError(f"{r!r}: only Route, WebSocketRoute and Mount are documented")


def _methods(route: Route) -> list[str]:
    methods = route.methods or {"GET"}
    if "GET" in methods:  # Starlette adds HEAD to every GET route
        methods = methods - {"HEAD"}
    return sorted(methods, key=_METHODS.index)


def _table(rows: Iterable[tuple[list[str], str]]) -> str:
    out = ["| route | what it does |", "| --- | --- |"]
    out += [f"| {', '.join(f'`{r}`' for r in requests)} | {text} |" for requests, text in rows]
    return "\n".join(out) + "\n"


def _path_order(row: tuple[list[str], str]) -> tuple[str, int]:
    method, path = row[0][0].split(" ", 1)
    return path, _METHODS.index(method)


CONSOLE = "/console"
"""Where the web console is mounted: its routes have a table of their own (``docs/console.md``)."""


def _endpoint_table(routes: Sequence[BaseRoute], keep: Callable[[str], bool]) -> str:
    rows: dict[str, tuple[list[str], str]] = {}
    for r in _routes(routes):
        if not keep(r.path):
            continue
        requests, text = rows.setdefault(r.name, ([], summary(r.endpoint)))
        if summary(r.endpoint) != text:
            raise ValueError(f"two endpoints are named {r.name}")
        requests += [f"{method} {r.path}" for method in _methods(r)]
    return _table(sorted(rows.values(), key=_path_order))


def _in_console(path: str) -> bool:
    return path == CONSOLE or path.startswith(CONSOLE + "/")


def ims_route_table(routes: Sequence[BaseRoute]) -> str:
    """The image API's table: one row per endpoint (routes of one view share it), sorted by
    path; the web console's routes are left to :func:`console_route_table`."""
    return _endpoint_table(routes, lambda path: not _in_console(path))


def console_route_table(routes: Sequence[BaseRoute]) -> str:
    """The web console's table (its pages and scripts' routes), as :func:`ims_route_table`."""
    return _endpoint_table(routes, _in_console)


def _view(method: str, depth: str, query: str | None) -> Callable[..., Any] | None:
    bucket, key = _DEPTHS[depth]
    call = S3Call(
        method=method,
        bucket=bucket,
        key=key,
        query={} if query is None else {query: ""},
        dialect="amz",
        raw_path=depth,
        raw_query="" if query is None else query,
    )
    try:
        return route(call)
    except ServiceError:  # 405 or 501: nothing serves it
        return None


def s3_route_table() -> str:
    """The bucket API's table: for each depth and method, the view that serves it plain and
    every view a query name leads to instead (501s and 405s are left out)."""
    rows: dict[str, tuple[list[str], str]] = {}
    for depth in _DEPTHS:
        for method in _METHODS:
            plain = _view(method, depth, None)
            found = [(f"{method} {depth}", plain)]
            for name in sorted(QUERY_NAMES):
                view = _view(method, depth, name)
                if view is not None and view != plain:
                    found.append((f"{method} {depth}?{name}", view))
            for request, view in found:
                if view is not None:
                    func = view.func if isinstance(view, functools.partial) else view
                    name = f"{func.__module__}.{func.__qualname__}"
                    rows.setdefault(name, ([], summary(view)))[0].append(request)
    return _table(rows.values())
