"""Shared fixtures: the test cache and the qemu-made pattern images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.service.context import Services
from support import builders, service_fixtures

# postgres_server (session), database_url [sqlite|postgresql], backend_services, db_services
pytest_plugins = ["support.db_backends"]


@pytest.fixture(scope="session")
def pattern_raw() -> Path:
    return builders.pattern_raw()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Services on a fresh SQLite database and data dir in ``tmp_path`` (no job queue)."""
    made = service_fixtures.make_services(tmp_path / "data")
    yield made
    made.db.dispose()
