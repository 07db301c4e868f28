"""Placeholder: filled in by the vhd work."""

from __future__ import annotations

from imageport.formats.base import FormatSpec

SPECS: tuple[FormatSpec, ...] = ()
