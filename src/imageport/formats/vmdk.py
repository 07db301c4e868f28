"""Placeholder: filled in by the vmdk work."""

from __future__ import annotations

from imageport.formats.base import FormatSpec

SPECS: tuple[FormatSpec, ...] = ()
