"""Worker entry point: check (or only probe) one image file and print one JSON document.

``python -m imageport.worker.inspect_image PATH [--options JSON] [--probe-only]``
``python -m imageport.worker.inspect_image WINDOW --header-window FILE_SIZE,HEAD_BYTES
[--options JSON]`` (judge a file's header window: the first ``HEAD_BYTES`` of ``WINDOW`` are
the file's first bytes, the rest its last, the file ``FILE_SIZE`` bytes long)

Run only under :mod:`imageport.worker.launcher` (memory, CPU and file-size limits, own
session): this is where untrusted image bytes are parsed, never in the server process. The
document on stdout is described in :mod:`imageport.worker.document`; ``--options`` is a
JSON object of :class:`~imageport.rules.base.CheckOptions` fields (``fast_import``,
``min_disk_gib``, ``uefi``, ``uninitialized``, ``bitmap_path``: the RAW image's bitmap file
for fast import, a path the job chose, compared with the image for IMG-FAST-RAW).

Exit status: 0 with the document on stdout; 3 when memory ran out (the limit was hit); 2 for
bad arguments; 1 when the file cannot be read at all (the reason on stderr).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from imageport.worker.protocol import run_main

#: The largest header window the worker reads (the service sends at most 5 MiB).
MAX_HEADER_WINDOW_BYTES = 8 << 20
_64_BIT = {"x86_64", "aarch64", "ppc64", "ppc64le", "s390x", "riscv64", "loongarch64", "mips64"}


def _options(raw: str) -> Any:
    from imageport.rules.base import DISK_KINDS, CheckOptions

    given = json.loads(raw)
    if not isinstance(given, dict):
        raise ValueError("--options must be a JSON object")
    allowed = {
        "fast_import",
        "min_disk_gib",
        "uefi",
        "uninitialized",
        "bitmap_path",
        "declared_format",
        "architecture",
        "disk_kind",
    }
    unknown = set(given) - allowed
    if unknown:
        raise ValueError(f"unknown options: {', '.join(sorted(unknown))}")
    bitmap = given.get("bitmap_path")
    if bitmap is not None and not isinstance(bitmap, str):
        raise ValueError("bitmap_path must be a string or null")
    declared = given.get("declared_format")
    if declared is not None and not isinstance(declared, str):
        raise ValueError("declared_format must be a string or null")
    if given.get("architecture") not in (None, "x86", "arm"):
        raise ValueError("architecture must be x86, arm or null")
    if given.get("disk_kind", "system") not in DISK_KINDS:
        raise ValueError(f"disk_kind must be one of {', '.join(DISK_KINDS)}")
    return CheckOptions(**given)


def _container_facts(container: Any) -> dict[str, Any]:
    return {
        "format": container.format,
        "variant": container.variant,
        "file_size": container.file_size,
        "virtual_size": container.virtual_size,
        "readable": container.readable,
        "hazards": [f"{h.kind}: {h.detail}" for h in container.hazards],
        "damage": container.damage,
        "encryption": container.encryption,
    }


def probe_document(path: str) -> dict[str, Any]:
    """The worker document for a probe of ``path`` (container facts, no rules)."""
    from imageport.formats import registry
    from imageport.source import FileSource
    from imageport.worker.document import SCHEMA

    with FileSource(path) as source:
        container = registry.probe(source)
    return {"schema": SCHEMA, "facts": _container_facts(container), "report": None}


def header_document(path: str, file_size: int, head_bytes: int, options: Any) -> dict[str, Any]:
    """The worker document for a header window (``--header-window``): ``path`` holds the
    first ``head_bytes`` bytes of a file of ``file_size`` bytes followed by its last bytes. The
    container facts and the header rules' error findings
    (:func:`imageport.service.tools.header.judge_header`); ``facts`` null when the header
    alone does not tell."""
    from imageport.formats.window import HeaderWindow
    from imageport.reports.json_report import finding_document
    from imageport.service.tools.header import judge_header
    from imageport.worker.document import HEADER_REPORT_SCHEMA, SCHEMA

    with open(path, "rb") as f:
        data = f.read(MAX_HEADER_WINDOW_BYTES + 1)
    if len(data) > MAX_HEADER_WINDOW_BYTES or not 0 <= head_bytes <= len(data):
        raise ValueError("the header window is larger than the worker takes")
    window = HeaderWindow(file_size, data[:head_bytes], data[head_bytes:])
    judged = judge_header(window, options)
    if judged is None:
        return {"schema": SCHEMA, "facts": None, "report": None}
    return {
        "schema": SCHEMA,
        "facts": _container_facts(judged.container),
        "report": {
            "schema": HEADER_REPORT_SCHEMA,
            "findings": [finding_document(f) for f in judged.findings],
        },
    }


def check_document(path: str, options: Any) -> dict[str, Any]:
    """The worker document for a full check of ``path``: container, guest facts and report."""
    from imageport.reports.json_report import report_document
    from imageport.service.tools.check import check_image
    from imageport.worker.document import SCHEMA

    report = check_image(path, options)
    facts = _container_facts(report.container)
    facts["allocated_bytes"] = report.allocated_bytes
    facts["data_extents"] = report.data_extents
    guest = report.guest
    os_info = guest.os if guest is not None and guest.layout.root is not None else None
    facts["os"] = (
        None
        if os_info is None
        else {
            "id": os_info.id,
            "version_id": os_info.version_id,
            "pretty_name": os_info.pretty_name,
        }
    )
    summary = report.guest_summary
    arch = summary.architecture.split(" (", 1)[0] if summary and summary.architecture else None
    facts["arch"] = arch
    facts["bits"] = None if arch is None else 64 if arch in _64_BIT else 32
    facts["boot_modes"] = list(summary.boot_modes) if summary else []
    return {"schema": SCHEMA, "facts": facts, "report": report_document(report)}


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="imageport.worker.inspect_image")
    parser.add_argument("path")
    parser.add_argument("--options", default="{}")
    parser.add_argument("--probe-only", action="store_true")
    parser.add_argument("--header-window", metavar="FILE_SIZE,HEAD_BYTES")
    args = parser.parse_args(argv)
    from imageport.errors import SourceError

    try:
        if args.header_window is not None:
            file_size, head_bytes = (int(n) for n in args.header_window.split(","))
            doc = header_document(args.path, file_size, head_bytes, _options(args.options))
        elif args.probe_only:
            doc = probe_document(args.path)
        else:
            doc = check_document(args.path, _options(args.options))
    except SourceError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except (ValueError, TypeError) as exc:
        sys.stderr.write(f"bad arguments: {exc}\n")
        return 2
    sys.stdout.write(json.dumps(doc, separators=(",", ":")))
    sys.stdout.flush()
    return 0


def run() -> None:
    """Run :func:`main`, turning an exhausted address space into exit status 3."""
    run_main(main)


if __name__ == "__main__":
    run()
