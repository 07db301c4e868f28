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


def inspect_source(source: ByteSource) -> tuple[Container, int | None]:
    """Probe ``source`` and, when it is safe to read, measure its allocated bytes.

    A reader failing while walking its tables marks the container as damaged (fail closed).
    """
    container = registry.probe(source)
    if not container.readable or container.opener is None:
        return container, None
    try:
        disk = container.opener(source)
        return container, disk.allocated_bytes()
    except SourceError:
        raise
    except ImageportError as exc:
        damage = str(exc)
    except Exception as exc:  # noqa: BLE001 - a reader bug must not pass a file
        damage = f"internal error while reading tables ({type(exc).__name__}: {exc})"
    return dataclasses.replace(container, damage=damage, opener=None), None


def check_image(path: str | os.PathLike[str], options: CheckOptions | None = None) -> CheckReport:
    """Check the image file at ``path``. Raises :class:`SourceError` if it cannot be read."""
    started = time.perf_counter()
    opts = options or CheckOptions()
    with FileSource(path) as source:
        container, allocated = inspect_source(source)
        bytes_read = source.bytes_read
    findings = run_rules(RULES, ImageFacts(container, allocated, opts))
    return CheckReport(
        path=os.fspath(path),
        container=container,
        allocated_bytes=allocated,
        findings=findings,
        bytes_read=bytes_read,
        elapsed_seconds=time.perf_counter() - started,
    )
