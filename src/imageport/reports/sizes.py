"""Byte counts written for people (kept apart from the report renderers, which load the whole
check pipeline, so that quick commands can print sizes without it)."""

from __future__ import annotations

from imageport.limits import GiB, KiB, MiB, TiB


def human_size(n: int | None) -> str:
    """``n`` bytes as e.g. ``48.0 MiB (50331648 bytes)``; ``unknown`` for None."""
    if n is None:
        return "unknown"
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"
