"""Checking an object, and the rules' documentation pages.

``GET /console/check?bucket=B&key=K`` runs the check of ``POST /v1/cloudimages/check``
(:func:`~imageport.service.images.object_check.check_object`, the same service call with the
same options: ``type``, ``is_quick_import``, ``min_disk``, ``architecture``,
``hw_firmware_type``, ``uninitialized``, given as query fields of those names) and shows its
report (``_report.html``), with a link to the register form pre-filled from what the report
found (:func:`~.report_view.register_hints`). Without an object it shows the picker. The check
stores nothing, so it is a ``GET``: a page that can be reloaded and linked to. Another
project's object is "not found", as on the API.

``GET /console/rules`` and ``GET /console/rules/{rule_id}`` document the rule catalogue
(:mod:`imageport.rules.catalogue`): what each rule checks, why, how to fix, an example, with
its title and default fix in the page's language.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from starlette.responses import Response

from imageport.console.fields import only_fields
from imageport.console.pages import PageCall, PageRoute, render, url
from imageport.console.report_view import inline_code, register_hints, rule_of
from imageport.console.sources import MAX_SOURCE, parse_source, source_choices
from imageport.numbers import whole_number
from imageport.rules.base import DISK_KINDS, Rule
from imageport.rules.catalogue import INITIALIZATION_RULES, RULES, TOLERATED_WHEN_UNINITIALIZED
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid
from imageport.service.images import object_check

#: The check route's option fields, as the page's query names them.
OPTIONS = ("type", "is_quick_import", "min_disk", "architecture", "hw_firmware_type")
#: Its flags: a checked box sends ``on``.
FLAGS = ("is_quick_import", "uninitialized")
#: Every query parameter the check page reads (anything else is refused, not dropped).
QUERY = frozenset({"source", "bucket", "key", *OPTIONS, *FLAGS})
#: The image types a check judges a file as (``type``): the register form's two, and an ISO.
CHECK_TYPES = ("ECS", "DataImage", "IsoImage")
MAX_NUMBER_TEXT = 20
"""Longest text passed on for a number that is not one (``min_disk``), for the service to
refuse; a number is judged whole (a long one is too large, never cut into a smaller one)."""
MAX_OPTION_TEXT = 64
_DOC_SECTIONS = {
    "What it checks": "rule.what",
    "Why it matters": "rule.why",
    "How to fix": "rule.fix",
    "Example": "rule.example",
}


def check_body(source: str, query: Sequence[tuple[str, str]]) -> dict[str, object]:
    """The ``POST /v1/cloudimages/check`` body for ``source`` (``bucket:key``) and the page's
    query: each option given is passed on as the route's field, typed as the route types it
    (a whole number, a flag), or as it was written when it is not one, for the service to
    refuse naming the field."""
    given = {name: value for name, value in reversed(query)}  # the first value of each
    body: dict[str, object] = {"image_url": source}
    for name in ("type", "architecture", "hw_firmware_type"):
        if given.get(name):
            body[name] = given[name][:MAX_OPTION_TEXT]
    disk = given.get("min_disk", "").strip()
    if disk:
        number = whole_number(disk)  # judged whole: a long number is HUGE, never cut short
        body["min_disk"] = disk[:MAX_NUMBER_TEXT] if number is None else number
    for name in FLAGS:
        value = given.get(name, "")
        if value in ("on", "1", "true"):
            body[name] = True
        elif value:
            body[name] = value[:MAX_OPTION_TEXT]
    return body


def _source_of(call: PageCall) -> str:
    """The object the page is about: ``bucket`` and ``key``, or ``source`` (``bucket:key``,
    what the picker sends); ``""`` for none."""
    bucket, key = call.arg("bucket"), call.arg("key")
    if bucket and key:
        return f"{bucket}:{key}"[: MAX_SOURCE + 1]
    return call.arg("source")[: MAX_SOURCE + 1]


@dataclass(frozen=True, slots=True)
class FieldError:
    code: str
    message: str


def register_link(source: str, body: Mapping[str, object], report: Mapping[str, object]) -> str:
    """The register form's URL, pre-filled from the check: the object, the image type and fast
    import as checked, and what the report found (OS version, disk size, architecture, boot
    mode); the options the user gave to the check win over what the report suggests."""
    data = body.get("type") == "DataImage"
    hints = register_hints(report, data_disk=data)
    given_disk = body.get("min_disk")
    return url(
        "/register",
        source=source,
        image_type="data" if data else "system",
        is_quick_import="on" if body.get("is_quick_import") is True else None,
        os_version=None if data else hints.os_version,
        min_disk=given_disk if isinstance(given_disk, int) else hints.min_disk,
        architecture=body.get("architecture") or hints.architecture,
        hw_firmware_type=body.get("hw_firmware_type") or hints.firmware,
    )


def check_page(services: Services, call: PageCall) -> Response:
    """Check an object (``?bucket=&key=`` and the check route's options) and show its report;
    without one, the picker."""
    only_fields(call.query, QUERY)
    source = _source_of(call)
    body = check_body(source, call.query) if source else {}
    context: dict[str, Any] = {
        "nav": "buckets",
        "source": source,
        "options": {name: body.get(name) for name in (*OPTIONS, "uninitialized")},
        "choices": source_choices(services, call.project_id),
        "types": CHECK_TYPES,
        "errors": {},
        "failure": None,
        "report": None,
        "register": "",
        "seconds": None,
    }
    if not source:
        return render(call, "check.html", **context)
    if parse_source(source) is None:
        context["errors"] = {
            "source": FieldError(codes.BUCKET_URL_INVALID, call.lang("check.source_invalid"))
        }
        return render(call, "check.html", status=400, **context)
    started = time.monotonic()
    try:
        report = object_check.check_object(services, call.project_id, body)
    except NotFound:
        raise  # another project's object, or none: the "not found" page
    except RequestInvalid as refused:
        error = FieldError(refused.code, refused.message)
        if refused.field is None:  # IMG.0194 (checks running), IMG-SAFE (a checker limit)
            context["failure"] = error
        else:
            field = "source" if refused.field == "image_url" else refused.field
            context["errors"] = {field: error}
        return render(call, "check.html", status=refused.status, **context)
    context.update(
        report=report,
        seconds=f"{time.monotonic() - started:.1f}",
        register=register_link(source, body, report) if body.get("type") != "IsoImage" else "",
    )
    return render(call, "check.html", **context)


# -- the rules' pages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocSection:
    """A part of a rule's documentation: its heading's message key (None for the text before
    the first) and its paragraphs (a list item's paragraphs are lists of lines)."""

    heading: str | None
    paragraphs: tuple[Markup, ...]


def rule_sections(rule: Rule) -> tuple[DocSection, ...]:
    """The rule's docstring in its parts (what it checks, why it matters, how to fix, example),
    each paragraph joined into one line with its code spans marked."""
    sections: list[DocSection] = []
    heading: str | None = None
    paragraphs: list[Markup] = []
    for paragraph in rule.docs().split("\n\n"):
        head, sep, rest = paragraph.partition(":")
        if sep and head in _DOC_SECTIONS:
            if paragraphs:
                sections.append(DocSection(heading, tuple(paragraphs)))
            heading, paragraphs = _DOC_SECTIONS[head], []
            paragraph = rest.strip()
        text = " ".join(line.strip() for line in paragraph.splitlines())
        paragraphs.append(inline_code(text[:1].upper() + text[1:]))
    if paragraphs:
        sections.append(DocSection(heading, tuple(paragraphs)))
    return tuple(sections)


def rules_index(services: Services, call: PageCall) -> Response:
    """The rule catalogue: every rule's ID, severity and title."""
    return render(call, "rules.html", rules=RULES)


def rule_page(services: Services, call: PageCall) -> Response:
    """One rule's documentation: what it checks, why it matters, how to fix, an example."""
    rule_id = call.path_params["rule_id"][:64]
    rule = rule_of(rule_id)
    if rule is None:
        raise NotFound(codes.NOT_FOUND, f"there is no rule {rule_id!r}")
    return render(
        call,
        "rule.html",
        rule=rule,
        sections=rule_sections(rule),
        kinds=[kind for kind in DISK_KINDS if kind in rule.kinds],
        inline_code=inline_code,
        initialization=rule.id in INITIALIZATION_RULES,
        tolerated=rule.id in TOLERATED_WHEN_UNINITIALIZED,
    )


PAGES = [
    PageRoute("/check", check_page),
    PageRoute("/rules", rules_index),
    PageRoute("/rules/{rule_id}", rule_page),
]
