"""What every container format module provides, and the facts a probe produces.

A format module exposes one :class:`FormatSpec`. Probing is two steps:

1. ``matches(window)`` looks only at the first and last bytes of the file (a
   :class:`ProbeWindow`) for magic numbers; it never raises and never reads more.
2. ``inspect(source, window)`` parses the header, tables and footers into typed structures,
   capping every number first (see :mod:`imageport.limits`), and returns a :class:`Container`:
   the facts the rules judge, plus, for accepted formats, a way to open the virtual disk.

``inspect`` raises only :class:`~imageport.errors.ImageportError` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imageport import limits
from imageport.errors import CorruptImageError
from imageport.source import ByteSource

if TYPE_CHECKING:
    from imageport.disk.base import VirtualDisk


@dataclass(frozen=True, slots=True)
class ProbeWindow:
    """The bytes a probe may look at: the head and the tail of the file, and its size."""

    head: bytes
    tail: bytes
    file_size: int

    @classmethod
    def read(cls, source: ByteSource) -> ProbeWindow:
        head = source.read_at(0, limits.PROBE_HEAD_BYTES)
        tail_start = max(0, source.size - limits.PROBE_TAIL_BYTES)
        tail = source.read_at(tail_start, source.size - tail_start)
        return cls(head=head, tail=tail, file_size=source.size)

    def head_at(self, offset: int, length: int) -> bytes:
        """``length`` head bytes at ``offset`` (shorter when the file is)."""
        return self.head[offset : offset + length]

    def tail_last(self, length: int) -> bytes:
        """The last ``length`` bytes of the file (or all of it when shorter)."""
        return self.tail[-length:] if length <= len(self.tail) else self.tail


@dataclass(frozen=True, slots=True)
class Hazard:
    """Something in a file that could make a reader touch anything but this file (IMG-SAFE).

    ``kind`` is a stable slug (``backing-file``, ``data-file``, ``external-extent``,
    ``parent-locator``, ``feature-bit``, ``log-replay``, ``polyglot``); ``detail`` names what was
    found, quoting the path or the bit, for the user. The storage audit adds the tables that
    would make the file stand for more data than it holds (``shared-data``, ``refcount``,
    ``expansion``, ``fragmented``: :mod:`imageport.disk.audit`), found when the disk is walked.
    """

    kind: str
    detail: str


#: How ``Container.damage`` starts when the file is valid but uses a feature no reader here
#: implements (rather than being corrupt).
UNSUPPORTED_PREFIX = "unsupported: "

DiskOpener = Callable[[ByteSource], "VirtualDisk"]


@dataclass(frozen=True, slots=True)
class Container:
    """What probing learned about a file's container format."""

    format: str
    variant: str
    accepted: bool
    file_size: int
    virtual_size: int | None = None
    hazards: tuple[Hazard, ...] = ()
    #: Name of the encryption found (``"aes"``, ``"luks"``), or None.
    encryption: str | None = None
    #: Why the structures are invalid, when they are; such a file cannot be read. Starts with
    #: :data:`UNSUPPORTED_PREFIX` when the file is valid but uses a feature we cannot read.
    damage: str | None = None
    #: Extra facts worth showing (cluster size, compression, creator ...), as display strings.
    properties: Mapping[str, str] = field(default_factory=dict)
    #: Opens the virtual disk; None when the format is not accepted or the file cannot be read.
    opener: DiskOpener | None = None

    @property
    def readable(self) -> bool:
        """True when the virtual disk can be opened and read safely."""
        return (
            self.opener is not None
            and self.accepted
            and self.damage is None
            and not self.hazards
            and self.encryption is None
        )


#: ``FormatSpec.matches``: magic check on the probe window.
Matcher = Callable[[ProbeWindow], bool]
#: ``FormatSpec.inspect``: full parse of a file whose magic matched.
Inspector = Callable[[ByteSource, "ProbeWindow"], Container]


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """One container format: its name, whether the platform accepts it, and how to probe it."""

    name: str
    description: str
    accepted: bool
    matches: Matcher
    inspect: Inspector


def refused_spec(name: str, description: str, matches: Matcher, inspect: Inspector) -> FormatSpec:
    """A never-accepted format whose ``inspect`` refuses bytes its ``matches`` rejects.

    Used by formats that are only named (ISO, LUKS, foreign and wrapper formats), whose parsers
    assume their signature is present.
    """

    def guarded(source: ByteSource, window: ProbeWindow) -> Container:
        if not matches(window):
            raise CorruptImageError(f"{name}: the file does not carry the {name} signature")
        return inspect(source, window)

    return FormatSpec(name, description, False, matches, guarded)
