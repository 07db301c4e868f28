"""Verdicts a registration gives at once, from the image file's header alone.

Some of the import job's refusals need nothing but the file's header: the format (IMG-FORMAT),
a header that names another file or hides a second format (IMG-SAFE), header encryption
(IMG-QCOW2-ENCRYPTED), the virtual size against ``min_disk`` (IMG-DISK-SIZE, rounded up to
whole GiB), and for fast import the format and the bitmap file beside a RAW file
(IMG-FAST-RAW). Without this module those refusals came minutes later, in a failed job;
:func:`check_header` gives them synchronously, as HTTP 400 with the vendor's code, and nothing
is created:

=================== ========= ============================================================
rule                code      when
=================== ========= ============================================================
IMG-DISK-SIZE       IMG.0055  ``min_disk`` is smaller than the virtual disk (or the disk is
                              over 1024 GiB): "memory/disk size invalid"
IMG-FORMAT          IMG.0072  a format the platform does not accept, or a variant no reader
                              here reads, or for an ``IsoImage`` a file that is not ISO 9660
                              (and an ISO registered as a disk): "format not supported"
IMG-FORMAT          IMG.0057  the header's structures are invalid: "wrong format"
IMG-SAFE            IMG.0057  a backing or data file, external extents, a polyglot ...
IMG-QCOW2-ENCRYPTED IMG.0057  the header says the file is encrypted
IMG-FAST-RAW        IMG.0072  fast import of a file that is neither RAW nor ZVHD2
IMG-FAST-RAW        IMG.0057  fast import of a RAW file without ``<base>.mf`` beside it
=================== ========= ============================================================

The verdicts are the job's own: the catalogue's rules judge the container the job's probe
finds (:mod:`imageport.service.tools.header`), and the message is what the job's
``fail_reason`` says of them (:func:`~imageport.service.jobs.fail_reason.failure_reason`: rule
ID, message, first evidence line, fix). The job still runs every check (defence in depth): this
module only refuses earlier what it would refuse.

Bounded, and never parsed here. Only the first :data:`HEAD_BYTES` and the last
:data:`TAIL_BYTES` of the object are read, through the
:class:`~imageport.service.ports.ObjectStore` port, into one scratch file under ``tmp/``; a
worker process judges it (:meth:`~imageport.service.ports.ImageWorker.check_header`, within
tight CPU, memory and wall-clock limits), as untrusted image bytes are never parsed in the
server process. A format whose probe needs more than that window (a table far into the file),
a worker that fails or hits a limit: no verdict here, and the job decides as before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from imageport.fastimport.naming import bitmap_key_for
from imageport.findings import Finding
from imageport.formats.base import UNSUPPORTED_PREFIX
from imageport.formats.registry import ACCEPTED_FORMATS
from imageport.limits import MiB
from imageport.rules.base import CheckOptions, DiskKind
from imageport.rules.container import ISO_FORMAT
from imageport.rules.fastimport import FAST_FORMATS, FastRawRule
from imageport.service import codes
from imageport.service.clock import new_id
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid
from imageport.service.images.validation import ImageUrl
from imageport.service.jobs.fail_reason import failure_reason
from imageport.service.ports import FailedRule, ImageInspection, ObjectInfo, WorkerError

log = logging.getLogger(__name__)

#: Bytes read from the start of the object: every accepted format's header and, for the
#: files qemu-img and hypervisors write, the tables the probe reads (a 1 TiB VHD's BAT is 2 MiB).
HEAD_BYTES = 4 * MiB
#: Bytes read from the end of the object (VHD footers, VMDK stream footers, probe tails).
TAIL_BYTES = 1 * MiB
#: The request field a refusal is about (``RequestInvalid.field``), by the rule that refused:
#: the file itself (``image_url``) unless another field could change the verdict.
_FIELD_OF_RULE = {
    "IMG-DISK-SIZE": "min_disk",
    "IMG-FAST-RAW": "is_quick_import",
    "IMG-FAST-ZVHD2": "is_quick_import",
}


@contextlib.contextmanager
def header_window(services: Services, url: ImageUrl) -> Iterator[tuple[ObjectInfo, Path, int]]:
    """The object's record and a scratch file holding its first bytes followed by its last (at
    most :data:`HEAD_BYTES` + :data:`TAIL_BYTES`, the whole object when it is that small), with
    how many of them are the first; removed when the context ends."""
    tmp = services.settings.tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"header-{new_id()}.win"
    try:
        info, stream = services.store.open_object_with_info(url.bucket, url.key)
        with stream, open(path, "xb") as out:
            size = info.size
            whole = size <= HEAD_BYTES + TAIL_BYTES
            head = stream.read(size if whole else HEAD_BYTES)
            out.write(head)
            if not whole:
                stream.seek(size - TAIL_BYTES)
                out.write(stream.read(TAIL_BYTES))
        yield info, path, len(head)
    finally:
        path.unlink(missing_ok=True)


def judge(
    services: Services, url: ImageUrl, registered: ObjectInfo, options: CheckOptions
) -> ImageInspection | None:
    """What a worker finds judging the header window of the object ``registered`` (None: the
    header does not tell, the object is gone or was replaced meanwhile, or the worker failed:
    the job decides, and refuses a replaced object anyway)."""
    try:
        with header_window(services, url) as (info, path, head_bytes):
            if info.etag != registered.etag:
                return None
            return services.worker.check_header(path, info.size, head_bytes, options)
    except NotFound:
        return None
    except WorkerError as exc:  # the job's check, with its own limits, decides
        log.warning("header check of %s:%s gave no verdict: %s", url.bucket, url.key, exc.reason)
        return None


def vendor_code(rule: FailedRule, found: ImageInspection, disk_kind: DiskKind = "system") -> str:
    """The vendor's IMG code for a header finding (see the module's table); for an ISO
    image, every format but ISO 9660 is one the platform does not take (IMG.0072)."""
    if rule.rule_id == "IMG-DISK-SIZE":
        return codes.DISK_OR_RAM_INVALID
    unsupported = found.damage is not None and found.damage.startswith(UNSUPPORTED_PREFIX)
    accepted = (ISO_FORMAT,) if disk_kind == "iso" else ACCEPTED_FORMATS
    if rule.rule_id == "IMG-FORMAT" and (found.format not in accepted or unsupported):
        return codes.FORMAT_NOT_SUPPORTED
    if rule.rule_id == "IMG-FAST-RAW" and found.format not in FAST_FORMATS:
        return codes.FORMAT_NOT_SUPPORTED
    return codes.SOURCE_FILE_UNUSABLE


def check_header(
    services: Services,
    url: ImageUrl,
    registered: ObjectInfo,
    *,
    min_disk: int,
    quick: bool,
    disk_kind: DiskKind = "system",
) -> None:
    """Refuse at once (RequestInvalid: the vendor's code, the job's words) a file the import
    job would refuse from its header alone; nothing when the header passes or does not tell.
    ``registered`` is the object the source checks accepted; ``disk_kind`` what the file is
    registered as (a system disk, a data disk or an ISO), judged as the job will judge it."""
    options = CheckOptions(fast_import=quick, min_disk_gib=min_disk, disk_kind=disk_kind)
    found = judge(services, url, registered, options)
    if found is None:
        return
    failed = list(found.failed_rules)
    notes: dict[str, str] = {}
    if quick and found.format == "raw" and not failed:
        mf_key = bitmap_key_for(url.key)
        if mf_key is None or services.store.get_object(url.bucket, mf_key) is None:
            failed.extend(_as_failed(FastRawRule().bitmap_findings(None)))
            if mf_key is not None:
                notes["IMG-FAST-RAW"] = (
                    f"looked for the bitmap file {url.bucket}:{mf_key} beside "
                    f"{url.bucket}:{url.key}; there is none"
                )
    if not failed:
        return
    raise RequestInvalid(
        vendor_code(failed[0], found, disk_kind),
        failure_reason(failed, notes),
        field=_FIELD_OF_RULE.get(failed[0].rule_id, "image_url"),
    )


def _as_failed(findings: Iterable[Finding]) -> list[FailedRule]:
    """Findings of a rule as the job's failure reason lists them."""
    return [
        FailedRule(
            rule_id=f.rule_id,
            message=f.message,
            evidence=f.evidence[0] if f.evidence else None,
            more_evidence=max(0, len(f.evidence) - 1),
            advice=f.advice,
        )
        for f in findings
    ]


__all__ = ["HEAD_BYTES", "TAIL_BYTES", "check_header", "header_window", "judge", "vendor_code"]
