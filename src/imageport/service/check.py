"""Check an image file: probe its container, open its disk when safe, and judge the rules.

The check reads headers and tables only (never the guest data), so it takes about the same
time for a 100 MiB and a 100 GiB image.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

from imageport.errors import ImageportError, SourceError
from imageport.findings import Finding, Severity
from imageport.formats import registry
from imageport.formats.base import Container
from imageport.guest.facts import GuestFacts, inspect_guest
from imageport.guest.summary import GuestSummary, summarize_guest
from imageport.rules.base import CheckOptions, ImageFacts
from imageport.rules.catalogue import RULES
from imageport.rules.engine import run_rules
from imageport.source import ByteSource, FileSource


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The result of checking one file."""

    path: str
    container: Container
    allocated_bytes: int | None
    guest: GuestFacts | None
    #: The guest facts every report shows, read while the file was open (None: no guest).
    guest_summary: GuestSummary | None
    findings: tuple[Finding, ...]
    bytes_read: int
    elapsed_seconds: float

    @property
    def error_count(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warning_count(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.WARNING)

    @property
    def passed(self) -> bool:
        """True when no rule reported an error."""
        return self.error_count == 0


@dataclass(frozen=True, slots=True)
class Inspection:
    """What reading a file found: its container, and when readable its allocation and guest."""

    container: Container
    allocated_bytes: int | None = None
    guest: GuestFacts | None = None


def inspect_source(source: ByteSource) -> Inspection:
    """Probe ``source`` and, when it is safe to read, measure its allocation and read its guest.

    A reader failing while walking its tables marks the container as damaged (fail closed).
    """
    container = registry.probe(source)
    if not container.readable or container.opener is None:
        return Inspection(container)
    try:
        disk = container.opener(source)
        allocated = disk.allocated_bytes()
        return Inspection(container, allocated, inspect_guest(disk))
    except SourceError:
        raise
    except ImageportError as exc:
        damage = str(exc)
    except Exception as exc:  # noqa: BLE001 - a reader bug must not pass a file
        damage = f"internal error while reading tables ({type(exc).__name__}: {exc})"
    return Inspection(dataclasses.replace(container, damage=damage, opener=None))


def check_image(path: str | os.PathLike[str], options: CheckOptions | None = None) -> CheckReport:
    """Check the image file at ``path``. Raises :class:`SourceError` if it cannot be read."""
    started = time.perf_counter()
    opts = options or CheckOptions()
    with FileSource(path) as source:
        found = inspect_source(source)
        # rules may read guest files, so they run while the source is open
        facts = ImageFacts(found.container, found.allocated_bytes, opts, found.guest)
        findings = run_rules(RULES, facts)
        summary = summarize_guest(found.guest) if found.guest is not None else None
        bytes_read = source.bytes_read
    return CheckReport(
        path=os.fspath(path),
        container=found.container,
        allocated_bytes=found.allocated_bytes,
        guest=found.guest,
        guest_summary=summary,
        findings=findings,
        bytes_read=bytes_read,
        elapsed_seconds=time.perf_counter() - started,
    )
