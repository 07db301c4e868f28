"""Verdicts a registration can give at once, from the image file's header alone.

Some of the import job's refusals need nothing but the file's header: the format (IMG-FORMAT),
a header that names another file or hides a second format (IMG-SAFE), header encryption
(IMG-QCOW2-ENCRYPTED), the virtual size against ``min_disk`` (IMG-DISK-SIZE, rounded up to
whole GiB), and for fast import the format and the bitmap file beside a RAW file
(IMG-FAST-RAW). Without this module those refusals came minutes later, in a failed job;
:func:`check_header` gives them synchronously, as HTTP 400 with the vendor's code:

=================== ========= ============================================================
rule                code      when
=================== ========= ============================================================
IMG-DISK-SIZE       IMG.0055  ``min_disk`` is smaller than the virtual disk (or the disk is
                              over 1024 GiB): "memory/disk size invalid"
IMG-FORMAT          IMG.0072  a format the platform does not accept, or a variant no reader
                              here reads: "format not supported"
IMG-FORMAT          IMG.0057  the header's structures are invalid: "wrong format"
IMG-SAFE            IMG.0057  a backing or data file, external extents, a polyglot ...
IMG-QCOW2-ENCRYPTED IMG.0057  the header says the file is encrypted
IMG-FAST-RAW        IMG.0072  fast import of a file that is neither RAW nor ZVHD2
IMG-FAST-RAW        IMG.0057  fast import of a RAW file without ``<base>.mf`` beside it
=================== ========= ============================================================

The verdicts are the job's own: the catalogue's rules judge the container that the job's first
step (:func:`imageport.formats.registry.probe`) finds, and the message is the job's
``fail_reason`` for them (:func:`~imageport.service.jobs.fail_reason.failure_reason`: rule ID,
message, first evidence line, fix). The job still runs every check (defence in depth): this
module only refuses earlier what it would refuse.

Bounded reading. Only the first :data:`HEAD_BYTES` and the last :data:`TAIL_BYTES` of the object
are read, through the :class:`~imageport.service.ports.ObjectStore` port, into memory; the
probe then reads through a :class:`HeaderWindow` that answers only from those bytes. A format
whose probe needs anything else (a table far into the file) stops with :class:`OutsideHeader`,
and then no verdict is given here: the job decides, as before. The readers cap every number
they read before it sizes a buffer or bounds a loop (:mod:`imageport.limits`), and a hostile
header can make them read no more than this window, so the API process holds at most
:data:`HEAD_BYTES` + :data:`TAIL_BYTES` of the file and parses no more than that. (Everything
past the header, the guest included, is read only by the job's limited worker processes.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from imageport.errors import SourceError
from imageport.fastimport.naming import bitmap_key_for
from imageport.findings import Finding, Severity
from imageport.formats import registry
from imageport.formats.base import UNSUPPORTED_PREFIX, Container
from imageport.limits import MiB
from imageport.rules.base import CheckOptions, ImageFacts
from imageport.rules.catalogue import rule_by_id
from imageport.rules.engine import run_rules
from imageport.rules.fastimport import FastRawRule
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid
from imageport.service.images.validation import ImageUrl
from imageport.service.jobs.fail_reason import failure_reason
from imageport.service.ports import FailedRule, ObjectInfo

#: Bytes read from the start of the object: every accepted format's header and, for the
#: files qemu-img and hypervisors write, the tables the probe reads (a 1 TiB VHD's BAT is 2 MiB).
HEAD_BYTES = 4 * MiB
#: Bytes read from the end of the object (VHD footers, VMDK stream footers, probe tails).
TAIL_BYTES = 1 * MiB
#: The rules judged here, in the order the job's report lists them.
HEADER_RULE_IDS = ("IMG-FORMAT", "IMG-SAFE", "IMG-QCOW2-ENCRYPTED", "IMG-DISK-SIZE")


class OutsideHeader(SourceError):
    """The probe asked for bytes beyond the header window: no verdict from the header alone.
    (A :class:`SourceError`, so that the probe passes it on instead of calling the file
    damaged.)"""


class HeaderWindow:
    """A read-only :class:`~imageport.source.ByteSource` of the object's true size that holds
    only its first and last bytes; any other read raises :class:`OutsideHeader`."""

    def __init__(self, size: int, head: bytes, tail_start: int, tail: bytes) -> None:
        self._size = size
        self._head = head
        self._tail_start = tail_start
        self._tail = tail
        self.bytes_read = 0

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise SourceError(f"negative read at {offset} length {length}")
        end = min(offset + length, self._size)
        if offset >= end:
            return b""
        if end <= len(self._head):
            data = self._head[offset:end]
        elif offset >= self._tail_start and end <= self._tail_start + len(self._tail):
            data = self._tail[offset - self._tail_start : end - self._tail_start]
        else:
            raise OutsideHeader(f"{end - offset} bytes at offset {offset} lie past the header")
        self.bytes_read += len(data)
        return data

    def data_segments(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """Unknown past the header: the whole range may hold data."""
        end = min(end, self._size)
        if end > start:
            yield start, end


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    """What the header told: the container the job's probe would find (None: the header
    alone does not tell), and the object it was read from."""

    container: Container | None
    info: ObjectInfo


def read_window(services: Services, url: ImageUrl) -> tuple[ObjectInfo, HeaderWindow]:
    """The object's record and a :class:`HeaderWindow` over its first and last bytes (at most
    :data:`HEAD_BYTES` + :data:`TAIL_BYTES` read), of the same version."""
    info, stream = services.store.open_object_with_info(url.bucket, url.key)
    with stream:
        size = info.size
        head = stream.read(min(size, HEAD_BYTES))
        tail_start = max(len(head), size - TAIL_BYTES)
        stream.seek(tail_start)
        tail = stream.read(min(TAIL_BYTES, size - tail_start))
    return info, HeaderWindow(size, head, tail_start, tail)


def probe_header(services: Services, url: ImageUrl) -> HeaderFacts | None:
    """The container the header shows; None when the object is gone. ``container`` is None when
    the probe needs more than the header (the job then decides)."""
    try:
        info, window = read_window(services, url)
    except NotFound:
        return None
    try:
        return HeaderFacts(registry.probe(window), info)
    except SourceError:  # OutsideHeader, or the store could not be read: the job decides
        return HeaderFacts(None, info)


def header_findings(
    container: Container, *, min_disk: int, quick: bool, bitmap_found: bool | None
) -> list[Finding]:
    """The error findings of the header rules on ``container`` (what the job's check would
    report for them); for ``quick`` import also IMG-FAST-RAW's format and, when
    ``bitmap_found`` is False for a RAW file, its missing bitmap."""
    facts = ImageFacts(
        container=container,
        allocated_bytes=None,
        options=CheckOptions(fast_import=quick, min_disk_gib=min_disk),
    )
    rules = [rule_by_id(rule_id) for rule_id in HEADER_RULE_IDS]
    found = [f for f in run_rules(rules, facts) if f.severity is Severity.ERROR]
    if quick and container.accepted:
        fast = FastRawRule()
        wrong = list(fast.format_findings(container))
        found.extend(wrong)
        if not wrong and container.format == "raw" and bitmap_found is False:
            found.extend(fast.bitmap_findings(None))
    return found


def vendor_code(finding: Finding, container: Container) -> str:
    """The vendor's IMG code for a header finding (see the module's table)."""
    if finding.rule_id == "IMG-DISK-SIZE":
        return codes.DISK_OR_RAM_INVALID
    if finding.rule_id == "IMG-FORMAT":
        unsupported = container.damage is not None and container.damage.startswith(
            UNSUPPORTED_PREFIX
        )
        if not container.accepted or unsupported:
            return codes.FORMAT_NOT_SUPPORTED
        return codes.SOURCE_FILE_UNUSABLE
    if finding.rule_id == "IMG-FAST-RAW" and container.format not in ("raw", "zvhd2"):
        return codes.FORMAT_NOT_SUPPORTED
    return codes.SOURCE_FILE_UNUSABLE


def refusal(
    findings: Sequence[Finding], container: Container, notes: dict[str, str]
) -> RequestInvalid:
    """IMG.xxxx of the first finding, with the job's ``fail_reason`` for all of them."""
    failed = [
        FailedRule(
            rule_id=f.rule_id,
            message=f.message,
            evidence=f.evidence[0] if f.evidence else None,
            more_evidence=max(0, len(f.evidence) - 1),
            advice=f.advice,
        )
        for f in findings
    ]
    return RequestInvalid(vendor_code(findings[0], container), failure_reason(failed, notes))


def check_header(
    services: Services, url: ImageUrl, registered: ObjectInfo, *, min_disk: int, quick: bool
) -> None:
    """Refuse at once (RequestInvalid, the vendor's code, the rule's message) a file the import
    job would refuse from its header alone; nothing when the header passes or does not tell
    (the job then checks the file as before). ``registered`` is the object the source checks
    accepted: a version replaced meanwhile is left to the job, which refuses it anyway."""
    facts = probe_header(services, url)
    if facts is None or facts.container is None or facts.info.etag != registered.etag:
        return
    container = facts.container
    mf_key = bitmap_key_for(url.key) if quick else None
    bitmap_found = None
    if quick and container.format == "raw":
        bitmap_found = mf_key is not None and (
            services.store.get_object(url.bucket, mf_key) is not None
        )
    findings = header_findings(container, min_disk=min_disk, quick=quick, bitmap_found=bitmap_found)
    if not findings:
        return
    notes = {}
    if bitmap_found is False and mf_key is not None:
        notes["IMG-FAST-RAW"] = (
            f"looked for the bitmap file {url.bucket}:{mf_key} beside {url.bucket}:{url.key}; "
            "there is none"
        )
    raise refusal(findings, container, notes)


__all__ = [
    "HEADER_RULE_IDS",
    "HEAD_BYTES",
    "TAIL_BYTES",
    "HeaderFacts",
    "HeaderWindow",
    "OutsideHeader",
    "check_header",
    "header_findings",
    "probe_header",
    "read_window",
    "vendor_code",
]
