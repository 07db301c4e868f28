"""Fixtures of the server use-case tests: services with the in-memory server host
(:func:`~support.server_fixtures.server_services`) on SQLite and PostgreSQL, a project
(``alpha``) and an active image of it. A module that needs other services (one database
only, a host of its own) defines its own ``services``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from support.server_fixtures import server_services
from support.shared_images import active_image


@pytest.fixture
def services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    made = server_services(tmp_path / "data", database_url)
    yield made
    made.db.dispose()


@pytest.fixture
def project(services: Services) -> str:
    return create_project(services, "alpha").id


@pytest.fixture
def image(services: Services, project: str) -> str:
    return active_image(services, project, "debian")
