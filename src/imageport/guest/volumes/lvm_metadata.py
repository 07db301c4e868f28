"""A bounded parser for LVM2's text metadata (its "config" language).

Learned from the LVM2 documentation (``lvm.conf(5)``, "lvmcache"/metadata examples in the
LVM2 source tree's ``doc/``) and from real metadata written by ``vgcreate``/``lvcreate``
2.03: the text is a sequence of ``key = value`` assignments and ``name { ... }`` sections;
values are double-quoted strings (``\\"`` and ``\\\\`` escapes), integers, floats, or
``[ ... ]`` lists of those, separated by commas; ``#`` starts a comment. A volume group's
metadata is one top-level section named after the VG, next to a few top-level assignments
(``contents``, ``version``, ``description`` ...).

The text comes from the image, so the parser caps its size (:data:`MAX_TEXT_BYTES`), the
nesting depth of sections (:data:`MAX_DEPTH`), the number of keys and values
(:data:`MAX_ITEMS`) and the length of numbers, and raises only :class:`CorruptImageError` /
:class:`LimitExceededError`. It is iterative over tokens and recursive only over sections,
whose depth is capped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from imageport.errors import CorruptImageError, LimitExceededError

#: Largest metadata text parsed (LVM's own default metadata area is 1 MiB).
MAX_TEXT_BYTES = 1 << 20
#: Deepest section nesting (real metadata nests 4 deep: VG, logical_volumes, LV, segment).
MAX_DEPTH = 16
#: Keys, sections and list values in one text.
MAX_ITEMS = 200_000
#: Digits in one number (keeps ``int()`` cheap; LVM numbers are 64-bit).
MAX_NUMBER_CHARS = 24

Scalar = int | float | str
Value = Scalar | list[Scalar]

_TOKEN = re.compile(
    r"""(?P<skip>\s+|\#[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<punct>[{}\[\]=,])
      | (?P<word>[^\s{}\[\]=,"\#]+)""",
    re.VERBOSE | re.DOTALL,
)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?\d+\.\d*")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


class ConfigSection:
    """One ``name { ... }`` section: an ordered mapping of keys to values and subsections."""

    __slots__ = ("items", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.items: dict[str, Value | ConfigSection] = {}

    def get(self, key: str) -> Value | ConfigSection | None:
        return self.items.get(key)

    def has(self, key: str) -> bool:
        return key in self.items

    def section(self, key: str) -> ConfigSection:
        value = self.items.get(key)
        if not isinstance(value, ConfigSection):
            raise CorruptImageError(f"LVM metadata: {self.path}/{key} is not a section")
        return value

    def sections(self) -> list[tuple[str, ConfigSection]]:
        """The subsections, in the order they were written."""
        return [(k, v) for k, v in self.items.items() if isinstance(v, ConfigSection)]

    def get_int(self, key: str, default: int | None = None) -> int:
        value = self.items.get(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, int):
            raise CorruptImageError(f"LVM metadata: {self.path}/{key} is not an integer")
        return value

    def get_str(self, key: str, default: str | None = None) -> str:
        value = self.items.get(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise CorruptImageError(f"LVM metadata: {self.path}/{key} is not a string")
        return value

    def get_list(self, key: str, default: list[Scalar] | None = None) -> list[Scalar]:
        value = self.items.get(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, list):
            raise CorruptImageError(f"LVM metadata: {self.path}/{key} is not a list")
        return value

    def get_strings(self, key: str) -> tuple[str, ...]:
        """A list of strings (``status``, ``flags``); absent means empty."""
        return tuple(str(v) for v in self.get_list(key, []))


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    """(kind, text, offset) of each token; raises on a character no token can start with."""
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() != pos:
            break
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "skip":
            yield kind, m.group(), m.start()
    if pos != len(text):
        raise CorruptImageError(f"LVM metadata: unexpected character at offset {pos}")


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _tokens(text)
        self._items = 0
        self._peeked: tuple[str, str, int] | None = None

    def _next(self) -> tuple[str, str, int] | None:
        if self._peeked is not None:
            tok, self._peeked = self._peeked, None
            return tok
        return next(self._tokens, None)

    def _expect(self) -> tuple[str, str, int]:
        tok = self._next()
        if tok is None:
            raise CorruptImageError("LVM metadata: unexpected end of text")
        return tok

    def _count(self) -> None:
        self._items += 1
        if self._items > MAX_ITEMS:
            raise LimitExceededError(f"LVM metadata has more than {MAX_ITEMS} items")

    def body(self, section: ConfigSection, depth: int, top: bool) -> None:
        while True:
            tok = self._next()
            if tok is None:
                if top:
                    return
                raise CorruptImageError(f"LVM metadata: section {section.path} is not closed")
            kind, word, pos = tok
            if kind == "punct" and word == "}" and not top:
                return
            if kind not in ("word", "string"):
                raise CorruptImageError(f"LVM metadata: unexpected {word!r} at offset {pos}")
            key = _unquote(word) if kind == "string" else word
            if key in section.items:
                raise CorruptImageError(f"LVM metadata: {section.path}/{key} appears twice")
            self._count()
            kind, op, pos = self._expect()
            if op == "{":
                if depth >= MAX_DEPTH:
                    raise LimitExceededError(
                        f"LVM metadata sections nest deeper than {MAX_DEPTH} levels"
                    )
                child = ConfigSection(f"{section.path}/{key}")
                section.items[key] = child
                self.body(child, depth + 1, top=False)
            elif op == "=":
                section.items[key] = self.value()
            else:
                raise CorruptImageError(f"LVM metadata: expected = or {{ at offset {pos}")

    def value(self) -> Value:
        kind, word, pos = self._expect()
        if word == "[" and kind == "punct":
            out: list[Scalar] = []
            while True:
                kind, word, pos = self._expect()
                if kind == "punct" and word == "]":
                    return out
                if kind == "punct" and word == ",":
                    continue
                self._count()
                out.append(_scalar(kind, word, pos))
        return _scalar(kind, word, pos)


def _unquote(token: str) -> str:
    return _ESCAPE.sub(r"\1", token[1:-1])


def _scalar(kind: str, word: str, pos: int) -> Scalar:
    if kind == "string":
        return _unquote(word)
    if kind == "word" and len(word) <= MAX_NUMBER_CHARS:
        if _INT.fullmatch(word):
            return int(word)
        if _FLOAT.fullmatch(word):
            return float(word)
    raise CorruptImageError(f"LVM metadata: bad value {word[:40]!r} at offset {pos}")


def parse_metadata(data: bytes) -> ConfigSection:
    """Parse LVM2 text metadata into its top-level section (named ``""``).

    The text ends at the first NUL byte (metadata areas are zero-padded).
    """
    if len(data) > MAX_TEXT_BYTES:
        raise LimitExceededError(
            f"LVM metadata text is {len(data)} bytes, more than {MAX_TEXT_BYTES}"
        )
    text = data.split(b"\0", 1)[0].decode("utf-8", "replace")
    root = ConfigSection("")
    _Parser(text).body(root, 0, top=True)
    return root
