"""What the images pages show, computed from the API's documents: pure functions, no service.

* :class:`ListQuery`: the list page's query (filters, search, paging), every value checked;
* :func:`search_page`: a page of the images whose name holds the search text;
* :func:`job_view`: a job's progress as the page and its script show it;
* :func:`property_rows`: the image document as labelled rows;
* :func:`configuration_view`: the change record of automatic configuration;
* :func:`boot_view`: the boot-test verdicts of the report;
* :func:`field_of`: which field of a form a refusal's code is about.

The scripts of the pages (``static/images.js``) format progress the same way
(:func:`human_bytes`, the ``images.progress`` text), so a row does not change its look when
the script takes over from the server's first rendering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imageport.console.fields import only_fields
from imageport.console.i18n import Language
from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.errors import RequestInvalid
from imageport.service.images.records import ImageRecord
from imageport.service.statuses import ImageStatus

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
"""Most images on one page of the list."""
LIMITS = (10, 25, 50, 100)
MAX_SEARCH = 128
"""Longest search text."""
MAX_SEARCHED = 1000
"""Most images a search looks through (the newest first): the list route's largest page."""

STATUSES = tuple(ImageStatus)
OS_TYPES = ("Linux", "Windows", "Other")
DISK_FORMATS = ("qcow2", "raw", "zvhd2", "vhd", "vmdk", "iso")
IMAGE_TYPES = ("private", "shared")
#: the page's query name -> the list route's filter
FILTERS = {
    "status": ("status", STATUSES),
    "os_type": ("__os_type", OS_TYPES),
    "disk_format": ("disk_format", DISK_FORMATS),
    "type": ("__imagetype", IMAGE_TYPES),
}
LIST_ARGS = frozenset({*FILTERS, "q", "marker", "limit"})


def refuse(name: str, why: str) -> RequestInvalid:
    return RequestInvalid(codes.BAD_REQUEST, f"{name[:40]}: {why}")


def only_args(query: Sequence[tuple[str, str]], allowed: frozenset[str]) -> dict[str, str]:
    """The query as a mapping; a parameter not in ``allowed``, or given twice, is refused
    (:func:`~imageport.console.fields.only_fields`: a filter the page silently dropped would
    show images the user excluded)."""
    only_fields(query, allowed)
    return dict(query)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The list page's query, checked."""

    #: the page's own names and values (for the form and the paging links)
    chosen: Mapping[str, str] = field(default_factory=dict)
    #: the list route's filters
    filters: tuple[tuple[str, str], ...] = ()
    search: str = ""
    marker: str = ""
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, query: Sequence[tuple[str, str]]) -> ListQuery:
        args = only_args(query, LIST_ARGS)
        chosen: dict[str, str] = {}
        filters: list[tuple[str, str]] = []
        for name, (route_name, choices) in FILTERS.items():
            value = args.get(name, "")
            if not value:
                continue
            if value not in choices:
                raise refuse(name, f"must be one of {', '.join(choices)}")
            chosen[name] = value
            filters.append((route_name, value))
        search = args.get("q", "").strip()
        if len(search) > MAX_SEARCH:
            raise refuse("q", f"at most {MAX_SEARCH} characters")
        marker = args.get("marker", "")
        if len(marker) > 64:
            raise refuse("marker", "not an image id")
        limit = DEFAULT_LIMIT
        if args.get("limit"):
            number = whole_number(args["limit"])
            if number is None or not 1 <= number <= MAX_LIMIT:
                raise refuse("limit", f"must be a whole number 1-{MAX_LIMIT}")
            limit = number
        return cls(chosen, tuple(filters), search, marker, limit)

    def link_query(self, **changes: object) -> dict[str, object]:
        """The query of a link to another page of the same list."""
        base: dict[str, object] = {**self.chosen, "q": self.search or None}
        if self.limit != DEFAULT_LIMIT:
            base["limit"] = self.limit
        return {**base, **changes}


def search_page(
    images: Sequence[ImageRecord], search: str, marker: str, limit: int
) -> tuple[list[ImageRecord], str | None]:
    """The images whose name holds ``search`` (ignoring case), the page after ``marker`` (an
    image id of the result), and the marker of the next page (None on the last)."""
    wanted = search.casefold()
    found = [image for image in images if wanted in image.name.casefold()]
    start = 0
    if marker:
        index = next((i for i, image in enumerate(found) if image.id == marker), None)
        if index is None:
            raise refuse("marker", "not an image of this search")
        start = index + 1
    page = found[start : start + limit]
    more = start + limit < len(found)
    return page, (page[-1].id if more and page else None)


# -- numbers and jobs -------------------------------------------------------------------------


def human_bytes(count: object) -> str:
    """``count`` bytes in binary units, as ``imageport.bytes`` in console.js writes them."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return ""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value = float(count)
    unit = 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{count} B" if unit == 0 else f"{value:.1f} {units[unit]}"


ENDED = ("SUCCESS", "FAIL")
#: Milliseconds between two reads of a job's progress by the pages' script (it waits longer
#: after a failed read, up to ten times this; ``static/images.js`` keeps it within 1-10 s).
POLL_MS = 1500


@dataclass(frozen=True, slots=True)
class JobView:
    """One job as a page shows it (from the job document of ``GET
    /v1/cloudimages/job/{job_id}``)."""

    id: str
    job_type: str
    type_label: str
    status: str
    status_label: str
    percent: int
    text: str
    ended: bool
    begin_time: str
    end_time: str
    error_code: str
    fail_reason: str
    #: ``bucket:key`` of an export
    bucket_url: str


def _entities(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    entities = doc.get("entities")
    return entities if isinstance(entities, Mapping) else {}


def percent_of(doc: Mapping[str, Any]) -> int:
    """The job's percent as a whole number 0-100 (``process_percent`` is a fraction)."""
    value = _entities(doc).get("process_percent")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, min(100, int(value * 100)))


def progress_text(lang: Language, doc: Mapping[str, Any]) -> str:
    """``convert: 42 % (3.0 MiB of 14.0 MiB)``: the phase, the percent and the bytes (the bytes
    left out while the phase counts none)."""
    entities = _entities(doc)
    phase = phase_label(lang, entities.get("current_task"))
    percent = percent_of(doc)
    done, total = entities.get("bytes_done"), entities.get("bytes_total")
    if isinstance(total, int) and total > 0 and isinstance(done, int):
        return lang(
            "images.progress.bytes",
            phase=phase,
            percent=percent,
            done=human_bytes(done),
            total=human_bytes(total),
        )
    return lang("images.progress.percent", phase=phase, percent=percent)


def phase_label(lang: Language, phase: object) -> str:
    if not isinstance(phase, str) or not phase:
        return lang("images.phase.none")
    key = f"images.phase.{phase}"
    return lang(key) if key in PHASE_KEYS else phase[:40]


PHASES = (
    "waiting",
    "fetch",
    "probe",
    "check",
    "configure",
    "convert",
    "recheck",
    "verify",
    "boot",
    "upload",
    "report",
    "store",
)
PHASE_KEYS = frozenset(f"images.phase.{p}" for p in PHASES)
JOB_TYPES = (
    "imsImportImageJob",
    "imsImportDataImageJob",
    "imsNativeImportImageJob",
    "imsCopyImageInRegionJob",
    "imsNativeExportImageJob",
    "imsBootTestJob",
    "imsCreateImageByInstance",
)
JOB_STATUSES = ("INIT", "RUNNING", "SUCCESS", "FAIL")


def job_type_label(lang: Language, job_type: str) -> str:
    return lang(f"images.job.{job_type}") if job_type in JOB_TYPES else job_type[:64]


def job_view(lang: Language, doc: Mapping[str, Any]) -> JobView:
    """The job document ``doc`` (``job_document(record, progress=True)``) as a page shows it."""
    status = str(doc.get("status") or "")
    entities = _entities(doc)
    job_type = str(doc.get("job_type") or "")
    return JobView(
        id=str(doc.get("job_id") or ""),
        job_type=job_type,
        type_label=job_type_label(lang, job_type),
        status=status,
        status_label=lang(f"images.job_status.{status}") if status in JOB_STATUSES else status,
        percent=percent_of(doc),
        text=progress_text(lang, doc),
        ended=status in ENDED,
        begin_time=str(doc.get("begin_time") or ""),
        end_time=str(doc.get("end_time") or ""),
        error_code=str(doc.get("error_code") or ""),
        fail_reason=str(doc.get("fail_reason") or ""),
        bucket_url=str(entities.get("bucket_url") or ""),
    )


def script_texts(lang: Language) -> dict[str, object]:
    """The texts the progress script needs, in the page's language."""
    return {
        "bytes": lang("images.progress.bytes"),
        "percent": lang("images.progress.percent"),
        "phases": {p: lang(f"images.phase.{p}") for p in PHASES},
        "none": lang("images.phase.none"),
        "statuses": {s: lang(f"images.status.{s}") for s in STATUSES},
        "job_statuses": {s: lang(f"images.job_status.{s}") for s in JOB_STATUSES},
        "now": lang("images.progress.now"),
        "ended": lang("images.progress.ended"),
        "lost": lang("images.progress.lost"),
    }


# -- the image document -----------------------------------------------------------------------

#: the image document's keys in the order the page lists them, with their labels' keys
KNOWN_PROPERTIES = (
    "id",
    "name",
    "status",
    "__description",
    "__os_version",
    "__os_type",
    "__os_bit",
    "__platform",
    "architecture",
    "hw_firmware_type",
    "__imagetype",
    "visibility",
    "owner",
    "virtual_env_type",
    "disk_format",
    "container_format",
    "size",
    "virtual_size",
    "__image_size",
    "min_disk",
    "min_ram",
    "max_ram",
    "checksum",
    "__is_config_init",
    "__isregistered",
    "__image_source_type",
    "__data_origin",
    "__originalimagename",
    "__bitmap_file",
    "__root_origin",
    "__lazyloading",
    "__support_kvm",
    "__support_arm",
    "__os_feature_list",
    "protected",
    "created_at",
    "updated_at",
    "active_at",
    "__error_code",
    "__fail_reason",
)
#: keys the page does not list as properties (links of the API, tags shown on their own)
HIDDEN = frozenset({"self", "file", "schema", "tags", "os_hash_algo", "os_hash_value"})
_BYTES = frozenset({"size", "virtual_size", "__image_size"})
_GIB = frozenset({"min_disk"})
_MIB = frozenset({"min_ram", "max_ram"})


@dataclass(frozen=True, slots=True)
class PropertyRow:
    key: str
    label: str
    value: str


def property_rows(lang: Language, doc: Mapping[str, Any]) -> list[PropertyRow]:
    """The image document's fields as labelled rows: the known ones in a reading order (those
    the image has), then the others by key with the key as their label."""
    rows = []
    keys = [k for k in KNOWN_PROPERTIES if k in doc]
    keys += sorted(k for k in doc if k not in KNOWN_PROPERTIES and k not in HIDDEN)
    for key in keys:
        value = _shown(lang, key, doc[key])
        if value == "":
            continue
        label = lang(f"images.prop.{key}") if key in KNOWN_PROPERTIES else key
        rows.append(PropertyRow(key, label, value))
    return rows


def _shown(lang: Language, key: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or value in ("true", "false"):
        return lang("common.yes") if value in (True, "true") else lang("common.no")
    number = value if isinstance(value, int) else whole_number(str(value))
    if key in _BYTES and number is not None:
        return f"{human_bytes(number)} ({number:,} B)" if number >= 1024 else f"{number} B"
    if key in _GIB and number is not None:
        return f"{number} GiB"
    if key in _MIB and number is not None:
        return f"{number} MiB"
    if key == "status" and value in STATUSES:
        return lang(f"images.status.{value}")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


# -- the report's sections ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffLine:
    #: "removed", "added" or "note" (a line that says how many more there were)
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class ChangeView:
    rule: str
    path: str
    action: str
    why: str
    lines: tuple[DiffLine, ...]


@dataclass(frozen=True, slots=True)
class ConfigurationView:
    applied: bool
    changes: tuple[ChangeView, ...]
    files: int
    #: ``(rule, why)`` of what was not changed
    notes: tuple[tuple[str, str], ...]
    #: the errors and warnings of the check before the changes, when the record says
    before: tuple[int, int] | None = None


def configuration_view(report: Mapping[str, Any]) -> ConfigurationView | None:
    """The report's ``configuration`` section (``configure.record.plan_document``), None when
    the import made no configuration."""
    section = report.get("configuration")
    if not isinstance(section, Mapping):
        return None
    changes = []
    for change in _dicts(section.get("changes")):
        lines = tuple(_diff_line(str(line)) for line in _list(change.get("diff")))
        changes.append(
            ChangeView(
                rule=str(change.get("rule") or ""),
                path=str(change.get("path") or ""),
                action=str(change.get("action") or ""),
                why=str(change.get("why") or ""),
                lines=lines,
            )
        )
    notes = tuple(
        (str(n.get("rule") or ""), str(n.get("note") or "")) for n in _dicts(section.get("notes"))
    )
    before = section.get("before")
    counts = None
    if isinstance(before, Mapping):
        errors, warnings = before.get("errors"), before.get("warnings")
        if isinstance(errors, int) and isinstance(warnings, int):
            counts = (errors, warnings)
    return ConfigurationView(
        applied=section.get("applied") is True,
        changes=tuple(changes),
        files=len({c.path for c in changes}),
        notes=notes,
        before=counts,
    )


def _diff_line(line: str) -> DiffLine:
    if line.startswith("-"):
        return DiffLine("removed", line[1:])
    if line.startswith("+"):
        return DiffLine("added", line[1:])
    return DiffLine("note", line)


@dataclass(frozen=True, slots=True)
class BootView:
    firmware: str
    passed: bool
    outcome: str
    summary: str
    seconds: str
    tested_at: str
    has_screenshot: bool
    why: tuple[str, ...]


def boot_view(report: Mapping[str, Any]) -> tuple[bool, list[BootView]] | None:
    """The report's ``boot`` member: whether every firmware passed, and each firmware's
    verdict (None when no boot test has run)."""
    section = report.get("boot")
    if not isinstance(section, Mapping):
        return None
    boots = []
    for entry in _dicts(section.get("boots")):
        firmware = str(entry.get("firmware") or "")
        if firmware not in ("bios", "uefi"):
            continue
        seconds = entry.get("seconds")
        boots.append(
            BootView(
                firmware=firmware,
                passed=entry.get("passed") is True,
                outcome=str(entry.get("outcome") or ""),
                summary=str(entry.get("summary") or ""),
                seconds=f"{seconds:.0f}"
                if isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
                else "",
                tested_at=str(entry.get("tested_at") or ""),
                has_screenshot=bool(entry.get("screenshot")),
                why=tuple(str(w) for w in _list(entry.get("why"))[:16]),
            )
        )
    return section.get("passed") is True, boots


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [item for item in _list(value) if isinstance(item, Mapping)]


# -- refusals ------------------------------------------------------------------------------------

#: form -> refusal code -> the field it is about
FIELDS: Mapping[str, Mapping[str, str]] = {
    "export": {
        codes.BUCKET_URL_INVALID: "bucket",
        codes.BUCKET_NAME_INVALID: "bucket",
        codes.BUCKET_UNAVAILABLE: "bucket",
        codes.NOT_STANDARD_STORAGE: "bucket",
        codes.SPACE_IN_FILE_NAME: "key",
        codes.FORMAT_NOT_SUPPORTED: "file_format",
    },
    "copy": {
        codes.NAME_TOO_LONG: "name",
        codes.NAME_INVALID: "name",
        codes.NAME_TAKEN: "name",
        codes.NAME_REQUIRED: "name",
        codes.DESCRIPTION_TOO_LONG: "description",
        codes.DESCRIPTION_INVALID: "description",
    },
    "member": {
        codes.BAD_REQUEST: "member",
        codes.PROJECT_UNKNOWN: "member",
        codes.MEMBER_EXISTS: "member",
    },
    "boot": {codes.BAD_REQUEST: "timeout"},
}


def field_of(form: str, code: str) -> str | None:
    """The field of ``form`` a refusal with ``code`` is about (None: the whole form)."""
    return FIELDS.get(form, {}).get(code)
