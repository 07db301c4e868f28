"""Shared fixtures: the test cache and the qemu-made pattern images."""

from __future__ import annotations

from pathlib import Path

import pytest

import builders


@pytest.fixture(scope="session")
def pattern_raw() -> Path:
    return builders.pattern_raw()
