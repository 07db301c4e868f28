"""The console's texts: one module per area, each a ``MESSAGES`` mapping of a key to its
English and Simplified Chinese text (``{name}`` fields are filled by the page)."""

from __future__ import annotations

from collections.abc import Mapping

from imageport.console.messages import (
    buckets,
    checks,
    common,
    images,
    register,
    reports,
    servers,
    signin,
)

AREAS = (common, signin, buckets, images, reports, checks, register, servers)


def catalogue() -> dict[str, tuple[str, str]]:
    """Every key of every area; a key defined twice is an error (two areas would fight)."""
    merged: dict[str, tuple[str, str]] = {}
    for area in AREAS:
        table: Mapping[str, tuple[str, str]] = area.MESSAGES
        for key, texts in table.items():
            if key in merged:
                raise ValueError(f"console message {key!r} is defined twice")
            merged[key] = texts
    return merged
