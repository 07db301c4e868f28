"""Fixtures of the console tests: one real ``imageport serve`` per module (projects ``alpha`` and
``beta``), one Chromium per module, and a fresh browser context per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from support import console_browser
from support.server_process import ServeProcess, serve_process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("console")) as started:
        yield started


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    console_browser.require_chromium()
    with console_browser.chromium() as started:
        yield started


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with console_browser.new_page(browser) as opened:
        yield opened


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return tmp_path
