"""HTTP ``Range: bytes=...`` for object downloads, as S3 reads it.

One range only (``a-b``, ``a-``, ``-n``); several ranges, other units or bad syntax are ignored
(the whole object is sent), as S3 does. A range that starts past the end is unsatisfiable.
"""

from __future__ import annotations

import re

from imageport.service.errors import ServiceError

_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, length)`` of the requested slice, None for the whole object; ServiceError
    ``InvalidRange`` (416) when it cannot be satisfied."""
    if header is None:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable(size)
        start = max(0, size - suffix)
        return start, size - start
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise unsatisfiable(size)
    end = min(end, size - 1)
    return start, end - start + 1


class RangeNotSatisfiable(ServiceError):
    """416 ``InvalidRange``; the reply names the object's size in ``Content-Range``."""

    status = 416

    def __init__(self, size: int) -> None:
        super().__init__("InvalidRange", "the requested range is not satisfiable")
        self.size = size


def unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(size)
