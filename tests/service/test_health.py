"""The figures behind ``/health`` and ``/metrics``: jobs and images by status, and a database
that does not answer reported as such instead of raising."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from imageport.adapters.db.engine import open_database
from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.health import Health, health, status_counts
from imageport.settings import load_settings
from support import import_fixtures as fx


def _services(data_dir: Path, database_url: str | None = None) -> Services:
    """Services with a real database; the figures never touch the store or the worker."""
    settings = load_settings({}, data_dir=data_dir, database_url=database_url, workers=3)
    db = open_database(settings.db_url) if database_url is None else create_engine(database_url)
    unused: Any = None
    return Services(settings, db, store=unused, worker=unused)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = _services(tmp_path / "data")
    yield made
    made.db.dispose()


def test_counts_every_status_even_when_none(services: Services) -> None:
    project = create_project(services, "figures")
    fx.add_job_and_image(services, project.id, "INIT", "queued")
    fx.add_job_and_image(services, project.id, "FAIL", "killed")
    fx.add_job_and_image(services, project.id, "FAIL", "killed")
    counts = status_counts(services)
    assert counts is not None
    assert counts.jobs == {"INIT": 1, "RUNNING": 0, "SUCCESS": 0, "FAIL": 2}
    assert counts.images == {"queued": 1, "saving": 0, "active": 0, "killed": 2}


def test_health_counts_waiting_and_running_jobs(services: Services) -> None:
    project = create_project(services, "health")
    fx.add_job_and_image(services, project.id, "INIT", "queued")
    fx.add_job_and_image(services, project.id, "RUNNING", "saving")
    fx.add_job_and_image(services, project.id, "RUNNING", "saving")
    fx.add_job_and_image(services, project.id, "SUCCESS", "active")
    assert health(services) == Health(
        workers=3, database_error=None, queue_running=False, jobs_waiting=1, jobs_running=2
    )


def test_a_database_that_does_not_answer_is_reported_not_raised(tmp_path: Path) -> None:
    services = _services(tmp_path / "data", f"sqlite:///{tmp_path}/missing/dir/x.db")
    try:
        found = health(services)
        assert found.workers == 3
        assert found.database_error == "OperationalError"
        assert status_counts(services) is None
    finally:
        services.db.dispose()
