"""Placeholder: filled in by the luks work."""

from __future__ import annotations

from imageport.formats.base import FormatSpec

SPECS: tuple[FormatSpec, ...] = ()
