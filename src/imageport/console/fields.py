"""The console's pages take their own fields only.

A form field or query parameter a page does not read (a misspelt option, a field of the API the
form does not offer) would otherwise be dropped without a word, and of a field given twice one
value would be: :func:`only_fields` refuses both, naming the field (400 ``IMG.0001``), as the
service refuses a body member it does not implement.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from imageport.service import codes
from imageport.service.errors import RequestInvalid

MAX_FIELDS = 64
"""Most query parameters or form fields a page takes (the largest form has 16)."""


def only_fields(values: Sequence[tuple[str, str]], allowed: Collection[str]) -> None:
    """Refuse (400 ``IMG.0001`` naming it) a query parameter or form field not in ``allowed``,
    or one given twice, and more than :data:`MAX_FIELDS` of them."""
    seen: set[str] = set()
    for name, _value in values[: MAX_FIELDS + 1]:
        if name not in allowed or name in seen:
            raise RequestInvalid(
                codes.BAD_REQUEST,
                f"{name[:40]!r}: this page takes no such field, or it was given twice",
            )
        seen.add(name)
    if len(values) > MAX_FIELDS:
        raise RequestInvalid(codes.BAD_REQUEST, f"at most {MAX_FIELDS} fields")
