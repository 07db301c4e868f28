"""The curated public API of the package."""

from __future__ import annotations

import types

import imageport


def test_public_api_is_exactly_the_curated_list() -> None:
    public = sorted(
        n
        for n in dir(imageport)
        if not n.startswith("_") and not isinstance(getattr(imageport, n), types.ModuleType)
    )
    assert sorted(imageport.__all__) == sorted([*public, "__version__"])
