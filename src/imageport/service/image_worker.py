"""What the import job asks of the processes that touch image bytes, and what they answer.

The job never parses an uploaded image itself: a limited worker process does (see
:mod:`imageport.worker`), and prints one JSON document. This module holds the interface the job
uses (:class:`ImageWorker`, implemented by :class:`imageport.adapters.qemu_img.QemuImgConverter`),
the record read back from a worker (:class:`ImageInspection`) and the two errors a worker run
ends with. The worker's document is still treated as untrusted input: its size was capped by
the reader and every field is type-checked here before the job believes it.

Worker document (``imageport.worker/1``)::

    {"schema": "imageport.worker/1",
     "facts": {"format", "variant", "file_size", "virtual_size", "readable", "hazards": [str],
               "damage", "encryption", "allocated_bytes", "data_extents",
               "os": {"id", "version_id",
               "pretty_name"} | null, "arch", "bits", "boot_modes": [str]},
     "report": <imageport.check/1 document> | null}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from imageport.rules.base import CheckOptions
from imageport.service.ports import ImageConverter

SCHEMA = "imageport.worker/1"


class WorkerError(Exception):
    """A worker process failed: crashed, hit a limit, or answered nonsense. ``reason`` says
    which, in words for the user (e.g. "the image worker exceeded its memory limit of 2 GiB");
    ``limit`` names the limit it hit, if one (``cpu``, ``memory``, ``wall``, ``file``,
    ``output``, or ``watch``: the caller's own watch stopped it)."""

    def __init__(self, reason: str, *, limit: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.limit = limit


class WorkerCancelledError(Exception):
    """The job was cancelled while a worker ran; the worker was killed."""


@dataclass(frozen=True, slots=True)
class GuestOs:
    id: str
    version_id: str
    pretty_name: str


@dataclass(frozen=True, slots=True)
class ImageInspection:
    """What a worker found in one file."""

    format: str
    variant: str
    file_size: int
    virtual_size: int | None
    #: True when the container is accepted, undamaged, unencrypted and has no hazards.
    readable: bool
    hazards: tuple[str, ...]
    damage: str | None
    encryption: str | None
    allocated_bytes: int | None = None
    #: how many separate extents of the virtual disk hold data (bounds a conversion's output)
    data_extents: int | None = None
    os: GuestOs | None = None
    #: ``uname -m`` name of the guest's userland (``x86_64``, ``aarch64`` ...), when found.
    arch: str | None = None
    bits: int | None = None
    boot_modes: tuple[str, ...] = ()
    #: The check report (``imageport.check/1``), None for a probe without rules.
    report: Mapping[str, Any] | None = None

    @property
    def failures(self) -> tuple[tuple[str, str], ...]:
        """``(rule_id, message)`` of every error finding in the report, in report order."""
        if self.report is None:
            return ()
        found = []
        for item in self.report.get("findings", ()):
            if isinstance(item, dict) and item.get("severity") == "error":
                found.append((str(item.get("rule_id", "?")), str(item.get("message", ""))))
        return tuple(found)


@runtime_checkable
class ImageWorker(ImageConverter, Protocol):
    """The converter, plus the two read-only looks at a file the job needs, all run in
    limited worker processes and cancellable (``cancelled()`` is polled while they run)."""

    def inspect(
        self, path: Path, options: CheckOptions, *, cancelled: Callable[[], bool]
    ) -> ImageInspection:
        """Probe, safety-check and guest-check ``path`` with every rule."""
        ...

    def probe(self, path: Path, *, cancelled: Callable[[], bool]) -> ImageInspection:
        """Probe the container of ``path`` only (re-probing a conversion's output)."""
        ...

    def disk_needed(self, source_format: str, output_bytes: int) -> int:
        """The disk a conversion from ``source_format`` takes at once when its output may
        take ``output_bytes`` (more where it writes an intermediate file too)."""
        ...


def _typed(value: object, kind: type, what: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WorkerError(f"the image worker answered an invalid document ({what})")
    return value


def inspection_from_document(raw: object) -> ImageInspection:
    """Validate a worker's document and turn it into an :class:`ImageInspection`."""
    doc: dict[str, Any] = _typed(raw, dict, "not an object")
    if doc.get("schema") != SCHEMA:
        raise WorkerError("the image worker answered an invalid document (schema)")
    facts = _typed(doc.get("facts"), dict, "facts")
    report = _typed(doc.get("report"), dict, "report", optional=True)
    os_doc = _typed(facts.get("os"), dict, "os", optional=True)
    guest_os = (
        None
        if os_doc is None
        else GuestOs(
            _typed(os_doc.get("id"), str, "os.id"),
            _typed(os_doc.get("version_id"), str, "os.version_id"),
            _typed(os_doc.get("pretty_name"), str, "os.pretty_name"),
        )
    )
    hazards = _typed(facts.get("hazards"), list, "hazards")
    modes = _typed(facts.get("boot_modes", []), list, "boot_modes")
    return ImageInspection(
        format=_typed(facts.get("format"), str, "format"),
        variant=_typed(facts.get("variant"), str, "variant"),
        file_size=_typed(facts.get("file_size"), int, "file_size"),
        virtual_size=_typed(facts.get("virtual_size"), int, "virtual_size", optional=True),
        readable=_typed(facts.get("readable"), bool, "readable"),
        hazards=tuple(_typed(h, str, "hazard") for h in hazards),
        damage=_typed(facts.get("damage"), str, "damage", optional=True),
        encryption=_typed(facts.get("encryption"), str, "encryption", optional=True),
        allocated_bytes=_typed(facts.get("allocated_bytes"), int, "allocated_bytes", optional=True),
        data_extents=_typed(facts.get("data_extents"), int, "data_extents", optional=True),
        os=guest_os,
        arch=_typed(facts.get("arch"), str, "arch", optional=True),
        bits=_typed(facts.get("bits"), int, "bits", optional=True),
        boot_modes=tuple(_typed(m, str, "boot mode") for m in modes),
        report=report,
    )
