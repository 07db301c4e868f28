"""Operations endpoints: ``GET /health`` and ``GET /metrics``, unauthenticated.

Both are served on the image API port (``server.py`` puts :func:`ops_routes` in front of the
image API). ``/health`` answers 200 ``{"status": "ok", "database": "ok", "queue": {...}}`` when
the database answers a query, 503 with ``"status": "unavailable"`` when it does not; ``queue``
gives the worker count and how many jobs wait (INIT) and run (RUNNING).

``/metrics`` is Prometheus text from :data:`imageport.metrics.REGISTRY`. The counters there are
updated where the work happens; the gauges ``imageport_jobs{status}`` and
``imageport_images{status}`` are a view of the database, computed at scrape time by
:class:`DatabaseCollector` (plus ``imageport_database_up``, 0 when the database did not answer:
a scrape never fails because the database is down).

On the bucket API port, ``/health`` would be the bucket named "health": :func:`with_s3_health`
answers it there only for a ``GET`` or ``HEAD`` with no query string and no ``Authorization``
header, which S3 would refuse anyway (every bucket request here must be signed); a signed or
presigned request for bucket "health" reaches the bucket API as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from imageport import metrics
from imageport.service.context import Services
from imageport.service.health import health, status_counts


class DatabaseCollector(Collector):
    """Gauges read from the database when Prometheus scrapes.

    Registered once per process in :data:`~imageport.metrics.REGISTRY`; :func:`ops_routes`
    points it at the current services (a process serves one database).
    """

    def __init__(self) -> None:
        self.services: Services | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without describe(), an auto-describing registry would call collect() (and query the
        # database) at registration time.
        yield from self._families({}, {}, up=0)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.services is None:
            return
        counts = status_counts(self.services)
        if counts is None:
            yield from self._families({}, {}, up=0)
            return
        yield from self._families(counts.jobs, counts.images, up=1)

    @staticmethod
    def _families(
        job_counts: Mapping[str, int], image_counts: Mapping[str, int], up: int
    ) -> Iterator[GaugeMetricFamily]:
        job_family = GaugeMetricFamily("imageport_jobs", "jobs by status", labels=["status"])
        for status, count in job_counts.items():
            job_family.add_metric([status], count)
        image_family = GaugeMetricFamily("imageport_images", "images by status", labels=["status"])
        for status, count in image_counts.items():
            image_family.add_metric([status], count)
        yield job_family
        yield image_family
        yield GaugeMetricFamily(
            "imageport_database_up", "1 when the database answered the last scrape", value=up
        )


_COLLECTOR = DatabaseCollector()
_REGISTERED = threading.Lock()
_registered = False


def _collector_for(services: Services) -> DatabaseCollector:
    global _registered
    with _REGISTERED:
        if not _registered:
            metrics.REGISTRY.register(_COLLECTOR)
            _registered = True
        _COLLECTOR.services = services
    return _COLLECTOR


def health_document(services: Services) -> tuple[int, dict[str, object]]:
    """The /health answer (status code, JSON document); blocking (runs in a thread)."""
    found = health(services)
    if found.database_error is not None:
        return 503, {
            "status": "unavailable",
            "database": f"error: {found.database_error}",
            "queue": {"workers": found.workers},
        }
    queue = {
        "running": found.queue_running,
        "workers": found.workers,
        "jobs_waiting": found.jobs_waiting,
        "jobs_running": found.jobs_running,
    }
    return 200, {"status": "ok", "database": "ok", "queue": queue}


def _health_route(services: Services) -> Route:
    async def health(_request: Request) -> Response:
        """Health: 200 ``{"status": "ok", ...}``, or 503 when the database does not answer;
        unauthenticated."""
        status, doc = await run_in_threadpool(health_document, services)
        return JSONResponse(doc, status_code=status, headers={"Cache-Control": "no-store"})

    return Route("/health", health, methods=["GET"])


def ops_routes(services: Services) -> list[BaseRoute]:
    """``/health`` and ``/metrics`` for ``services`` (unauthenticated, GET and HEAD)."""
    _collector_for(services)

    async def prometheus(request: Request) -> Response:
        """Prometheus metrics (counters of requests, jobs and bytes; no ids, names or keys);
        unauthenticated."""
        # text format 0.0.4 unless the scraper asks for OpenMetrics or text 1.0.0
        encode, content_type = choose_encoder(request.headers.get("accept", "")[:1024])
        body = await run_in_threadpool(encode, metrics.REGISTRY)
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    return [_health_route(services), Route("/metrics", prometheus, methods=["GET"])]


def with_s3_health(app: ASGIApp, services: Services) -> ASGIApp:
    """``app`` (the bucket API) answering an unsigned ``GET /health`` itself (see the module
    docstring for why this cannot shadow a bucket called "health")."""
    health_route = _health_route(services)

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("path") == "/health"
            and scope.get("method") in ("GET", "HEAD")
            and not scope.get("query_string")
            and not any(name == b"authorization" for name, _ in scope.get("headers", ()))
        ):
            await health_route.handle(scope, receive, send)
            return
        await app(scope, receive, send)

    return asgi
