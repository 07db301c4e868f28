"""Probe an image while any attempt to open a file fails the test."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from imageport.formats import registry
from imageport.formats.base import Container
from imageport.source import FileSource


def probe_refusing_opens(monkeypatch: pytest.MonkeyPatch, image: Path) -> Container:
    """``registry.probe`` of ``image`` with ``os.open`` and ``open`` made to fail: a parser
    that followed a path named inside the image (a backing file, say) fails the test."""
    with FileSource(image) as src:

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"something opened {args[0]!r}")

        monkeypatch.setattr(os, "open", refuse)
        monkeypatch.setattr(builtins, "open", refuse)
        try:
            return registry.probe(src)
        finally:
            monkeypatch.undo()
