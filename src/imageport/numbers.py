"""Whole numbers written in request text (headers, query strings), read strictly.

Python's ``int()`` is far more lenient than HTTP or S3: it takes a sign (``+5``), surrounding
whitespace, ``_`` between digits (``1_000``) and the digits of every script (``int("٣") == 3``),
and ``str.isdigit()`` is true for characters ``int()`` then refuses (``"²"``), which turned
query values into 500 errors. Every number a client writes in a header or a query string is read
here instead: ASCII digits ``0-9`` only, nothing else, and never thousands of digits handed to
``int()``: a number longer than :data:`MAX_DIGITS` significant digits is reported as
:data:`HUGE`, larger than anything the service holds (callers compare, never store it).
"""

from __future__ import annotations

MAX_DIGITS = 19
"""Significant digits converted exactly (every 63-bit number fits)."""
HUGE: int = 10**MAX_DIGITS
"""What a number with more significant digits stands for: more than any size or count here."""
_DIGITS = frozenset("0123456789")


def is_digits(text: str) -> bool:
    """``text`` is one or more ASCII digits and nothing else."""
    return bool(text) and all(c in _DIGITS for c in text)


def whole_number(text: str | None) -> int | None:
    """``text`` as a non-negative whole number if it is ASCII digits only (leading zeros
    allowed), :data:`HUGE` for one of more than :data:`MAX_DIGITS` significant digits; None for
    anything else (empty, a sign, spaces, ``_``, other scripts' digits)."""
    if text is None or not is_digits(text):
        return None
    significant = text.lstrip("0") or "0"
    if len(significant) > MAX_DIGITS:
        return HUGE
    return int(significant)


__all__ = ["HUGE", "MAX_DIGITS", "is_digits", "whole_number"]
