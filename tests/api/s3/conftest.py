"""Fixtures of the bucket-API tests: a project's credentials and the API served by a real
uvicorn on loopback (``tests/support/s3_server.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imageport.service.context import Services
from support import s3_server


@pytest.fixture
def creds(services: Services) -> s3_server.Credentials:
    return s3_server.new_credentials(services, "alpha")


@pytest.fixture
def url(services: Services) -> Iterator[str]:
    with s3_server.running(services) as base:
        yield base
