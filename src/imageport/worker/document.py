"""The document the inspect worker prints, and its reading by the job's side.

:mod:`imageport.worker.inspect_image` (run in a limited process) prints one JSON document; the
image worker adapter (:mod:`imageport.adapters.image_worker`) reads it back with
:func:`inspection_from_document` into the :class:`~imageport.service.ports.ImageInspection`
the service receives. The document is still treated as untrusted input: its size was capped by
the reader and every field is type-checked here before the job believes it.

Worker document (``imageport.worker/1``)::

    {"schema": "imageport.worker/1",
     "facts": {"format", "variant", "file_size", "virtual_size", "readable", "hazards": [str],
               "damage", "encryption", "allocated_bytes", "data_extents",
               "os": {"id", "version_id",
               "pretty_name"} | null, "arch", "bits", "boot_modes": [str]},
     "report": <imageport.check/1 document> | null}

A header window's document (``--header-window``) has the same shape, with ``facts`` null when
the header alone does not tell and ``report`` ``{"schema": "imageport.header/1",
"findings": [...]}`` (:func:`header_inspection_from_document`).
"""

from __future__ import annotations

from typing import Any

from imageport.service.ports import GuestOs, ImageInspection, WorkerError

SCHEMA = "imageport.worker/1"
#: The ``report`` of a header window's document: ``{"schema", "findings": [...]}`` (the
#: findings as a check report has them); the document's ``facts`` are null when the header
#: alone does not tell.
HEADER_REPORT_SCHEMA = "imageport.header/1"


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


def header_inspection_from_document(raw: object) -> ImageInspection | None:
    """A header window's document (:data:`HEADER_REPORT_SCHEMA`): None when the header did not
    tell, else the container facts with the findings as the report."""
    doc: dict[str, Any] = _typed(raw, dict, "not an object")
    if doc.get("schema") == SCHEMA and doc.get("facts") is None:
        return None
    found = inspection_from_document(doc)
    report = _typed(found.report, dict, "report")
    if report.get("schema") != HEADER_REPORT_SCHEMA:
        raise WorkerError("the image worker answered an invalid document (header report)")
    _typed(report.get("findings"), list, "findings")
    return found
