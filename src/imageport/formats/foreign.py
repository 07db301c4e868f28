"""Placeholder: filled in by the foreign work."""

from __future__ import annotations

from imageport.formats.base import FormatSpec

SPECS: tuple[FormatSpec, ...] = ()
