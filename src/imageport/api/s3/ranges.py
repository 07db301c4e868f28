"""HTTP ``Range: bytes=...`` for object downloads, as S3 reads it.

One range only (``a-b``, ``a-``, ``-n``); several ranges, other units or bad syntax are ignored
(the whole object is sent), as S3 does. A range that starts past the end is unsatisfiable
(416 ``InvalidRange``), however large its first byte: numbers are ASCII digits of any length
(:mod:`imageport.numbers`), so ``bytes=18446744073709551615-`` is a range past the end, not bad
syntax. Digits of other scripts (``int()`` reads ``٣`` as 3), signs and ``_`` are bad syntax.
"""

from __future__ import annotations

import re

from imageport.numbers import whole_number
from imageport.service.errors import ServiceError

_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$", re.ASCII)
MAX_RANGE_HEADER = 4096
"""Longest Range header parsed (a longer one is ignored, as bad syntax)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, length)`` of the requested slice, None for the whole object; ServiceError
    ``InvalidRange`` (416) when it cannot be satisfied."""
    if header is None or len(header) > MAX_RANGE_HEADER:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = whole_number(match.group(1)), whole_number(match.group(2))
    if first is None:  # suffix: the last n bytes (or no number at all: ignored)
        if last is None:
            return None
        if last == 0 or size == 0:
            raise unsatisfiable(size)
        start = max(0, size - last)
        return start, size - start
    if last is not None and last < first:
        return None  # syntactically invalid: ignored
    if first >= size:
        raise unsatisfiable(size)
    end = size - 1 if last is None else min(last, size - 1)
    return first, end - first + 1


class RangeNotSatisfiable(ServiceError):
    """416 ``InvalidRange``; the reply names the object's size in ``Content-Range``."""

    status = 416

    def __init__(self, size: int) -> None:
        super().__init__("InvalidRange", "the requested range is not satisfiable")
        self.size = size


def unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(size)
