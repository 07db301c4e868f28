"""/health and /metrics on a real uvicorn server over a real SQLite database, and /health on
the bucket API port (which must not hide a signed request for a bucket named "health")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from imageport.adapters.db.engine import open_database
from imageport.api.middleware import RequestContext
from imageport.api.ops import ops_routes, with_s3_health
from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.settings import load_settings
from support import import_fixtures as fx
from support.server_process import running_app


def _services(data_dir: Path, database_url: str | None = None) -> Services:
    """Services with a real database; ops never touch the store or the image worker."""
    settings = load_settings({}, data_dir=data_dir, database_url=database_url, workers=3)
    db = open_database(settings.db_url) if database_url is None else create_engine(database_url)
    unused: Any = None
    return Services(settings, db, store=unused, worker=unused)


async def _bucket_api(request: Request) -> Response:
    return PlainTextResponse(f"bucket API saw {request.url.path}")


def _ims_root(services: Services) -> RequestContext:
    stand_in = Starlette(routes=[Route("/{rest:path}", _bucket_api)])
    return RequestContext(
        Starlette(routes=[*ops_routes(services), Mount("/", app=stand_in)]), api="ims"
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Services, str]]:
    services = _services(tmp_path / "data")
    with running_app(_ims_root(services)) as url:
        yield services, url
    services.db.dispose()


def test_health_reports_the_database_and_the_queue(served: tuple[Services, str]) -> None:
    services, url = served
    project = create_project(services, "ops")
    fx.add_job_and_image(services, project.id, "INIT", "queued")
    fx.add_job_and_image(services, project.id, "RUNNING", "saving")
    fx.add_job_and_image(services, project.id, "SUCCESS", "active")
    answer = httpx.get(f"{url}/health")
    assert answer.status_code == 200
    assert answer.headers["x-request-id"]
    assert answer.json() == {
        "status": "ok",
        "database": "ok",
        "queue": {"running": False, "workers": 3, "jobs_waiting": 1, "jobs_running": 1},
    }
    # everything else goes to the image API
    assert httpx.get(f"{url}/v2/cloudimages").text == "bucket API saw /v2/cloudimages"


def test_health_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    services = _services(tmp_path / "data", f"sqlite:///{tmp_path}/missing/dir/x.db")
    with running_app(_ims_root(services)) as url:
        answer = httpx.get(f"{url}/health")
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable"
        assert answer.json()["database"].startswith("error: ")
        scrape = httpx.get(f"{url}/metrics")
    # a scrape still works, and says the database is down
    assert scrape.status_code == 200
    assert "imageport_database_up 0.0" in scrape.text


def test_metrics_show_requests_and_jobs_and_images_by_state(served: tuple[Services, str]) -> None:
    services, url = served
    project = create_project(services, "metrics")
    for _ in range(2):
        fx.add_job_and_image(services, project.id, "FAIL", "killed")
    fx.add_job_and_image(services, project.id, "SUCCESS", "active")
    httpx.get(f"{url}/health")
    scrape = httpx.get(f"{url}/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = scrape.text
    assert 'imageport_jobs{status="FAIL"} 2.0' in text
    assert 'imageport_jobs{status="SUCCESS"} 1.0' in text
    assert 'imageport_jobs{status="RUNNING"} 0.0' in text  # every state, even when none
    assert 'imageport_images{status="killed"} 2.0' in text
    assert 'imageport_images{status="saving"} 0.0' in text
    assert "imageport_database_up 1.0" in text
    assert 'imageport_http_requests_total{api="ims",method="GET",status="200"}' in text
    assert 'imageport_http_request_duration_seconds_bucket{api="ims",le="0.005"}' in text
    openmetrics = httpx.get(
        f"{url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_health_on_the_bucket_port_only_for_unsigned_plain_get(tmp_path: Path) -> None:
    services = _services(tmp_path / "data")
    bucket_api = Starlette(routes=[Route("/{rest:path}", _bucket_api, methods=["GET", "HEAD"])])
    with running_app(RequestContext(with_s3_health(bucket_api, services), api="s3")) as url:
        health = httpx.get(f"{url}/health")
        signed = httpx.get(f"{url}/health", headers={"Authorization": "AWS4-HMAC-SHA256 ..."})
        presigned = httpx.get(f"{url}/health?X-Amz-Signature=abc")
        other = httpx.get(f"{url}/healthy")
    assert health.json()["status"] == "ok"
    assert health.headers["x-request-id"]
    assert signed.text == "bucket API saw /health"  # the bucket named "health"
    assert presigned.text == "bucket API saw /health"
    assert other.text == "bucket API saw /healthy"
    services.db.dispose()
