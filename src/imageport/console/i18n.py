"""The console's two languages and how a page picks one.

A page is in the language of the ``lang`` cookie (set by the switch in every page's header), else
the first of the browser's ``Accept-Language`` that the console speaks, else English.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from imageport.console.messages import catalogue

Code = Literal["en", "zh-CN"]
LANGUAGES: tuple[Code, ...] = ("en", "zh-CN")
COOKIE = "imageport_lang"
MAX_ACCEPT_LANGUAGE = 512
"""Longest ``Accept-Language`` value read."""


@functools.cache
def _texts() -> dict[str, tuple[str, str]]:
    return catalogue()


@dataclass(frozen=True, slots=True)
class Language:
    """The texts of one language: ``t(key, **fields)``."""

    code: Code

    @property
    def index(self) -> int:
        return LANGUAGES.index(self.code)

    def __call__(self, key: str, /, **fields: object) -> str:
        texts = _texts().get(key)
        if texts is None:
            raise KeyError(f"no console message {key!r}")
        text = texts[self.index] or texts[0]
        return text.format(**fields) if fields else text

    def pick(self, english: str, chinese: str | None) -> str:
        """``chinese`` on a Chinese page when there is one, else ``english`` (texts that come
        with the data, such as a rule's title)."""
        return chinese if self.code == "zh-CN" and chinese else english


def choose(cookie: str | None, accept_language: str | None) -> Language:
    """The language of a page (see the module docstring)."""
    for code in LANGUAGES:
        if cookie == code:
            return Language(code)
    for part in (accept_language or "")[:MAX_ACCEPT_LANGUAGE].split(",")[:20]:
        tag = part.split(";", 1)[0].strip().lower()
        if tag.startswith("zh"):
            return Language("zh-CN")
        if tag.startswith("en"):
            return Language("en")
    return Language("en")
