"""Check an image file: probe its container, open its disk when safe, and judge the rules.

The check reads headers and tables only (never the guest data), so it takes about the same
time for a 100 MiB and a 100 GiB image. For fast import of a RAW image with a bitmap file it
also compares the bitmap with the image (:func:`imageport.fastimport.bitmap.verify_bitmap`:
the bitmap's own checksums, the sizes, and a sample of at most about 130 blocks, each read
only where the file stores data), and records the outcome for IMG-FAST-RAW.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

from imageport.errors import ImageportError, SourceError, UnsafeImageError
from imageport.findings import Finding, Severity
from imageport.formats import registry
from imageport.formats.base import Container, Hazard
from imageport.guest.facts.inspect import GuestFacts, inspect_guest
from imageport.guest.facts.summary import GuestSummary, summarize_guest
from imageport.rules.base import BitmapCheck, CheckOptions, ImageFacts
from imageport.rules.catalogue import TOLERATED_WHEN_UNINITIALIZED, rules_for
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
    #: The bitmap file checked against a RAW image for fast import, when there was one.
    bitmap: BitmapCheck | None = None
    #: Maximal extents of the virtual disk that hold data (None when not measured); with
    #: ``allocated_bytes``, what bounds a conversion's output.
    data_extents: int | None = None

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
    data_extents: int | None = None


def inspect_source(source: ByteSource) -> Inspection:
    """Probe ``source`` and, when it is safe to read, measure its allocation and read its guest.

    A reader failing while walking its tables marks the container as damaged (fail closed);
    tables that would amplify the file (shared data, refcounts that disagree, absurd
    compression: :mod:`imageport.disk.audit`) add a hazard to it (IMG-SAFE).
    """
    container = registry.probe(source)
    if not container.readable or container.opener is None:
        return Inspection(container)
    try:
        disk = container.opener(source)
        storage = disk.audit()
        return Inspection(
            container, storage.allocated_bytes, inspect_guest(disk), storage.data_extents
        )
    except SourceError:
        raise
    except UnsafeImageError as exc:
        hazard = Hazard(exc.kind, exc.detail)
        unsafe = dataclasses.replace(container, hazards=(*container.hazards, hazard), opener=None)
        return Inspection(unsafe)
    except ImageportError as exc:
        damage = str(exc)
    except Exception as exc:  # noqa: BLE001 - a reader bug must not pass a file
        damage = f"internal error while reading tables ({type(exc).__name__}: {exc})"
    return Inspection(dataclasses.replace(container, damage=damage, opener=None))


def check_bitmap(image: str | os.PathLike[str], bitmap: str, origin: str = "given") -> BitmapCheck:
    """Compare the bitmap file ``bitmap`` with the RAW image ``image``. A bitmap that cannot
    be opened, read or parsed is a problem in the result, never an exception."""
    from imageport.fastimport.bitmap import verify_bitmap

    try:
        result = verify_bitmap(image, bitmap)
    except ImageportError as exc:
        return BitmapCheck(bitmap, origin, (f"the bitmap file cannot be checked: {exc}",))
    except Exception as exc:  # noqa: BLE001 - a verifier bug must not pass (or crash) a check
        return BitmapCheck(
            bitmap,
            origin,
            (f"the bitmap file cannot be checked: internal error ({type(exc).__name__}: {exc})",),
        )
    parsed = result.bitmap
    return BitmapCheck(
        path=bitmap,
        origin=origin,
        problems=result.problems,
        warnings=result.warnings,
        block_size=None if parsed is None else parsed.block_size,
        block_count=None if parsed is None else parsed.block_count,
        blocks_marked=None if parsed is None else parsed.set_bits,
        blocks_checked=result.blocks_checked,
        bytes_read=result.bytes_read,
    )


#: What a tolerated error's message says (an image registered uninitialized).
TOLERATED_NOTE = (
    " (a warning, not an error, for an image registered uninitialized: fix it in a server made "
    "from the image, then make an image from that server)"
)


def tolerated_when_uninitialized(findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """``findings`` of an image registered uninitialized: the errors of the
    :data:`~imageport.rules.catalogue.TOLERATED_WHEN_UNINITIALIZED` rules become warnings that
    say why, errors first again."""
    changed = [
        dataclasses.replace(f, severity=Severity.WARNING, message=f.message + TOLERATED_NOTE)
        if f.severity is Severity.ERROR and f.rule_id in TOLERATED_WHEN_UNINITIALIZED
        else f
        for f in findings
    ]
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return tuple(sorted(changed, key=lambda f: order[f.severity]))


def check_image(
    path: str | os.PathLike[str],
    options: CheckOptions | None = None,
    *,
    bitmap_origin: str = "given",
) -> CheckReport:
    """Check the image file at ``path``. Raises :class:`SourceError` if it cannot be read.

    With ``options.fast_import`` and ``options.bitmap_path`` set, a RAW image's bitmap file is
    compared with it; ``bitmap_origin`` says how that path was chosen (``given`` by the user
    or the job, or ``beside``: the caller found it next to the image).
    """
    with FileSource(path) as source:
        return check_source(path, source, options, bitmap_origin=bitmap_origin)


def check_source(
    path: str | os.PathLike[str],
    source: FileSource,
    options: CheckOptions | None = None,
    *,
    bitmap_origin: str = "given",
) -> CheckReport:
    """:func:`check_image` on ``source``, the open file at ``path``: while it stays open the
    report's guest can still be read (automatic configuration plans from it)."""
    started = time.perf_counter()
    opts = options or CheckOptions()
    found = inspect_source(source)
    bitmap = None
    if opts.fast_import and opts.bitmap_path is not None and found.container.format == "raw":
        bitmap = check_bitmap(path, opts.bitmap_path, bitmap_origin)
    # rules may read guest files, so they run while the source is open
    facts = ImageFacts(found.container, found.allocated_bytes, opts, found.guest, bitmap)
    findings = run_rules(rules_for(opts.disk_kind), facts)
    if opts.uninitialized:
        findings = tolerated_when_uninitialized(findings)
    summary = summarize_guest(found.guest) if found.guest is not None else None
    bytes_read = source.bytes_read + (bitmap.bytes_read if bitmap is not None else 0)
    return CheckReport(
        path=os.fspath(path),
        container=found.container,
        allocated_bytes=found.allocated_bytes,
        guest=found.guest,
        guest_summary=summary,
        findings=findings,
        bytes_read=bytes_read,
        elapsed_seconds=time.perf_counter() - started,
        bitmap=bitmap,
        data_extents=found.data_extents,
    )
