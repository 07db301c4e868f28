"""What a rule is, and the facts rules judge.

A rule is a class with its ID, severity and title as class attributes and its documentation
as its docstring, in four parts: what it checks, why it matters, how to fix, example. Its title
and default advice are also given in Simplified Chinese (``title_zh``, ``advice_zh``). The
rules page (``docs/rules.md``) and ``imageport rules`` are generated from these units.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from imageport.findings import Finding, Severity
from imageport.formats.base import Container
from imageport.guest.facts.inspect import GuestFacts

DiskKind = Literal["system", "data", "iso"]
"""What an image is registered as: a system disk (``ECS``/``FusionCompute``), a data disk
(``DataImage``: no operating system is judged) or an ISO file (``IsoImage``: stored as it is)."""
DISK_KINDS: tuple[DiskKind, ...] = ("system", "data", "iso")
ALL_KINDS: frozenset[DiskKind] = frozenset(DISK_KINDS)
"""The :attr:`Rule.kinds` of a rule about the file itself, which judges every kind of image."""


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """What the user told the check about the intended import."""

    #: The image is meant for fast import (RAW with a bitmap, or ZVHD2).
    fast_import: bool = False
    #: The ``min_disk`` (GiB) the user will register the image with, if known.
    min_disk_gib: int | None = None
    #: The platform boots UEFI-only images (IMG-BOOT-MODE then accepts them).
    uefi: bool = False
    #: The image will be registered as uninitialized (fixed at the console after boot).
    uninitialized: bool = False
    #: IMG-PASSWORD-STRENGTH audits stored hashes against the whole weak-password list, with
    #: no time budget (still within the audit's hard limits); only for a local check.
    all_passwords: bool = False
    #: The image's intended initial password, checked by IMG-PASSWORD-STRENGTH; never printed.
    password: str | None = field(default=None, repr=False)
    #: The bitmap file (``.mf``) that comes with a RAW image for fast import (IMG-FAST-RAW);
    #: a path the user or the import job chose, never one read from an image.
    bitmap_path: str | None = None
    #: The format the image was declared to be (a Glance image's ``disk_format``): IMG-FORMAT
    #: then refuses a file of any other format.
    declared_format: str | None = None
    #: The architecture the image will be registered with, as the vendor's API names it
    #: (``x86`` or ``arm``); None when not declared (IMG-ARCH then stays silent).
    architecture: str | None = None
    #: What the image is registered as (:data:`DiskKind`): only the rules whose
    #: :attr:`Rule.kinds` name it run (a data disk or an ISO has no system to judge).
    disk_kind: DiskKind = "system"


@dataclass(frozen=True, slots=True)
class BitmapCheck:
    """A RAW image's bitmap file (``.mf``) checked against the image for fast import.

    The check service reads both files (:func:`imageport.fastimport.bitmap.verify_bitmap`) and
    records the outcome here; IMG-FAST-RAW only judges it. ``problems`` is empty when the
    bitmap matches; a bitmap that cannot be opened or parsed is a problem, never a crash.
    """

    #: The bitmap file, as the user or the import job named it.
    path: str
    #: ``given`` (named by the user or the job) or ``beside`` (found next to the image).
    origin: str
    #: Why the bitmap does not match the image (or cannot be read); empty when it matches.
    problems: tuple[str, ...]
    #: Harmless differences: blocks marked as data that are all zero.
    warnings: tuple[str, ...] = ()
    #: From the bitmap file's header, when it could be parsed.
    block_size: int | None = None
    block_count: int | None = None
    #: Blocks the bitmap marks as holding data.
    blocks_marked: int | None = None
    #: Blocks of the image compared with their bit, and the image bytes read to do it.
    blocks_checked: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        """True when the bitmap matches the image."""
        return not self.problems


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """Everything the rules may look at."""

    container: Container
    #: Bytes of the virtual disk holding data; None when the disk could not be opened.
    allocated_bytes: int | None
    options: CheckOptions
    #: What is inside the disk; None when the disk could not be opened.
    guest: GuestFacts | None = None
    #: The bitmap file checked against a RAW image for fast import; None when none was given
    #: or it does not apply (no fast import, or the file is not RAW).
    bitmap: BitmapCheck | None = None

    @property
    def installed_guest(self) -> GuestFacts | None:
        """The guest when an installed system was found on it (guest rules judge only that;
        IMG-SYSTEM-DISK reports the rest)."""
        if self.guest is None or self.guest.layout.root is None:
            return None
        return self.guest


class Rule(abc.ABC):
    """Base of every rule. Subclasses set the class attributes and implement :meth:`check`."""

    id: ClassVar[str]
    severity: ClassVar[Severity]
    title: ClassVar[str]
    #: Default advice, used when a finding gives none of its own.
    advice: ClassVar[str]
    #: The title and the default advice in Simplified Chinese (the vendor's users read both;
    #: the web console shows them on its Chinese pages). A finding's own message, evidence and
    #: advice stay in English: they quote the image.
    title_zh: ClassVar[str]
    advice_zh: ClassVar[str]
    #: The kinds of image the rule judges (:data:`DiskKind`); a system disk by default, as
    #: every guest rule judges the system installed on it.
    kinds: ClassVar[frozenset[DiskKind]] = frozenset({"system"})

    @abc.abstractmethod
    def check(self, facts: ImageFacts) -> Iterable[Finding]:
        """The findings for ``facts``; nothing when the rule passes."""

    def found(
        self,
        message: str,
        *evidence: str,
        advice: str | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        """A finding of this rule, with its default severity and advice unless given."""
        return Finding(
            rule_id=self.id,
            severity=severity or self.severity,
            message=message,
            evidence=tuple(evidence),
            advice=self.advice if advice is None else advice,
        )

    @classmethod
    def docs(cls) -> str:
        """The rule's documentation (its docstring, dedented)."""
        return inspect.cleandoc(cls.__doc__ or "")
