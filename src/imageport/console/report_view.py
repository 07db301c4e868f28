"""A check report (the ``imageport.check/1`` document) arranged for a page.

:func:`report_view` is what ``templates/_report.html`` shows, wherever a report appears (the
check page, the image page): the verdict and counts, the findings grouped by severity (errors,
warnings, notes), each with its rule's title and default advice in both languages from the
catalogue, the guest summary and the file's facts. It reads the document defensively (a key
missing from a document an older checker stored reads as absent) and never trusts it to size
anything: the document is already bounded by its writer (:mod:`imageport.reports.json_report`).

:func:`register_hints` reads from a report what the register form can be pre-filled with.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from imageport.limits import GiB
from imageport.rules.base import Rule
from imageport.rules.catalogue import rule_by_id
from imageport.service.images import os_versions

#: Severities in the order a page lists them (the document's ``severity`` values).
SEVERITIES = ("error", "warning", "info")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
#: The smallest system disk a registration takes (GiB), and the largest.
MIN_SYSTEM_DISK_GIB = 40
MAX_SYSTEM_DISK_GIB = 1024
_ARCHITECTURES = {"x86_64": "x86", "aarch64": "arm"}
_CODE_SPAN = re.compile(r"``(.+?)``|`([^`]+)`", re.DOTALL)


def inline_code(text: str) -> Markup:
    """``text`` escaped, with its ````code```` and ```code``` spans (commands and paths in
    the rules' texts and the findings' advice) as ``<code>``."""
    out = Markup()
    last = 0
    for match in _CODE_SPAN.finditer(text):
        out += escape(text[last : match.start()])
        out += Markup("<code>{}</code>").format(match.group(1) or match.group(2))
        last = match.end()
    return out + escape(text[last:])


def size_text(value: object) -> str:
    """A byte count as people read it (``128 MiB``), or ``""`` when it is not a count."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return ""
    amount, unit = float(value), 0
    while amount >= 1024 and unit < len(_UNITS) - 1:
        amount /= 1024
        unit += 1
    if unit == 0:
        return f"{value} B"
    shown = f"{amount:.1f}".removesuffix(".0")
    return f"{shown} {_UNITS[unit]}"


def rule_of(rule_id: str) -> Rule | None:
    """The catalogue's rule ``rule_id``, None for an ID it does not have (a report written by
    another version)."""
    try:
        return rule_by_id(rule_id)
    except KeyError:
        return None


@dataclass(frozen=True, slots=True)
class FindingView:
    """One finding, with what the catalogue says about its rule."""

    rule_id: str
    severity: str
    message: str
    evidence: tuple[str, ...]
    advice: str
    #: the rule's title in English and Chinese ("" for a rule the catalogue does not have)
    title: str
    title_zh: str
    #: the Chinese advice when the finding gives the rule's default advice, else None (a
    #: finding's own advice quotes the image, in English)
    advice_zh: str | None
    #: whether the catalogue has the rule (its documentation page exists)
    documented: bool

    @property
    def message_html(self) -> Markup:
        return inline_code(self.message)

    @property
    def advice_html(self) -> Markup:
        return inline_code(self.advice)

    @property
    def advice_zh_html(self) -> Markup:
        return inline_code(self.advice_zh or "")


@dataclass(frozen=True, slots=True)
class SeverityGroup:
    severity: str
    findings: tuple[FindingView, ...]


@dataclass(frozen=True, slots=True)
class VolumeView:
    name: str
    size: str
    kind: str
    label: str
    partition_type: str
    uuid: str


@dataclass(frozen=True, slots=True)
class MountView:
    mountpoint: str
    volume: str
    fstype: str


@dataclass(frozen=True, slots=True)
class GuestView:
    """The ``guest`` member: what is installed on the disk ("" where the check did not tell)."""

    os_name: str
    #: (version, whether it is the boot loader's default)
    kernels: tuple[tuple[str, bool], ...]
    boot_modes: tuple[str, ...]
    partition_table: str
    root: str
    architecture: str
    hostname: str
    cloud_init: str
    volumes: tuple[VolumeView, ...]
    mounts: tuple[MountView, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BitmapView:
    path: str
    matches: bool


@dataclass(frozen=True, slots=True)
class ReportView:
    verdict: str
    errors: int
    warnings: int
    info: int
    #: the severities that have findings, in :data:`SEVERITIES` order
    groups: tuple[SeverityGroup, ...]
    #: findings the document left out, by rule ID (it lists at most 50 of one rule)
    left_out: tuple[tuple[str, int], ...]
    #: the file: format (and variant), sizes as text, encryption, damage, hazards
    file_name: str
    format: str
    virtual_size: str
    file_size: str
    allocated: str
    encryption: str
    damage: str
    hazards: tuple[str, ...]
    #: what is installed on the disk; None when no guest was read
    guest: GuestView | None
    #: a RAW image's bitmap file, checked for fast import
    bitmap: BitmapView | None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _finding(doc: Mapping[str, Any]) -> FindingView:
    rule_id = _text(doc.get("rule_id"))
    rule = rule_of(rule_id)
    evidence = doc.get("evidence")
    advice = _text(doc.get("advice"))
    return FindingView(
        rule_id=rule_id,
        severity=_text(doc.get("severity")),
        message=_text(doc.get("message")),
        evidence=tuple(_text(e) for e in evidence) if isinstance(evidence, list) else (),
        advice=advice,
        title=rule.title if rule else "",
        title_zh=rule.title_zh if rule else "",
        advice_zh=rule.advice_zh if rule and advice == rule.advice else None,
        documented=rule is not None,
    )


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, dict) else None


def _items(value: object) -> list[Mapping[str, Any]]:
    """The objects of a list member (nothing when it is not a list)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _guest(doc: Mapping[str, Any]) -> GuestView:
    os_info = _mapping(doc.get("os")) or {}
    modes = doc.get("boot_modes")
    problems = doc.get("problems")
    return GuestView(
        os_name=_text(os_info.get("pretty_name")) or _text(os_info.get("id")),
        kernels=tuple(
            (_text(k.get("version")), k.get("default") is True) for k in _items(doc.get("kernels"))
        ),
        boot_modes=tuple(m.upper() for m in modes if isinstance(m, str))
        if isinstance(modes, list)
        else (),
        partition_table=_text(doc.get("partition_table")).upper(),
        root=_text(doc.get("root")),
        architecture=_text(doc.get("architecture")),
        hostname=_text(doc.get("hostname")),
        cloud_init=_text(doc.get("cloud_init")),
        volumes=tuple(
            VolumeView(
                name=_text(v.get("name")),
                size=size_text(v.get("size")),
                kind=_text(v.get("kind")),
                label=_text(v.get("label")),
                partition_type=_text(v.get("partition_type")),
                uuid=_text(v.get("uuid")),
            )
            for v in _items(doc.get("volumes"))
        ),
        mounts=tuple(
            MountView(_text(m.get("mountpoint")), _text(m.get("volume")), _text(m.get("fstype")))
            for m in _items(doc.get("mounts"))
        ),
        problems=tuple(_text(p) for p in problems) if isinstance(problems, list) else (),
    )


def report_view(report: Mapping[str, Any]) -> ReportView:
    """``report`` (an ``imageport.check/1`` document) arranged for a page."""
    findings = [_finding(doc) for doc in _items(report.get("findings"))]
    groups = tuple(
        SeverityGroup(severity, tuple(f for f in findings if f.severity == severity))
        for severity in SEVERITIES
        if any(f.severity == severity for f in findings)
    )
    summary = _mapping(report.get("summary")) or {}
    left_out = _mapping(report.get("findings_left_out")) or {}
    variant = _text(report.get("variant"))
    guest = _mapping(report.get("guest"))
    bitmap = _mapping(report.get("bitmap"))
    return ReportView(
        verdict="pass" if summary.get("verdict") == "pass" else "fail",
        errors=_count(summary.get("errors")),
        warnings=_count(summary.get("warnings")),
        info=_count(summary.get("info")),
        groups=groups,
        left_out=tuple((str(rule), _count(n)) for rule, n in left_out.items() if _count(n)),
        file_name=_text(report.get("file")),
        format=_text(report.get("format")) + (f" ({variant})" if variant else ""),
        virtual_size=size_text(report.get("virtual_size")),
        file_size=size_text(report.get("file_size")),
        allocated=size_text(report.get("allocated_bytes")),
        encryption=_text(report.get("encryption")),
        damage=_text(report.get("damage")),
        hazards=tuple(
            f"{_text(h.get('kind'))}: {_text(h.get('detail'))}"
            for h in _items(report.get("hazards"))
        ),
        guest=None if guest is None else _guest(guest),
        bitmap=None
        if bitmap is None
        else BitmapView(_text(bitmap.get("path")), bitmap.get("matches") is True),
    )


@dataclass(frozen=True, slots=True)
class RegisterHints:
    """What a check report tells the register form (None: it does not tell)."""

    os_version: str | None
    #: the smallest ``min_disk`` the file fits in, at least the system disk's 40 GiB
    min_disk: int | None
    architecture: str | None
    #: ``uefi`` when the guest boots with UEFI only, ``bios`` when it boots with BIOS
    firmware: str | None


def register_hints(report: Mapping[str, Any], *, data_disk: bool = False) -> RegisterHints:
    """The register form's pre-filled values from ``report``: the ``__os_version`` of the
    guest's OS (:func:`~imageport.service.images.os_versions.os_version_for`, as the import
    job names it), the virtual size in whole GiB (at least 40 for a system disk, 1 for a data
    disk), the guest's architecture and boot mode."""
    guest = _mapping(report.get("guest")) or {}
    os_info = _mapping(guest.get("os")) or {}
    machine = _text(guest.get("architecture")).split(" ", 1)[0]  # "x86_64 (/bin/sh)"
    architecture = _ARCHITECTURES.get(machine)
    os_version = None
    if os_info:
        bits = 32 if machine in ("i386", "x32", "arm") else 64
        os_version = os_versions.os_version_for(
            _text(os_info.get("id")), _text(os_info.get("version_id")), bits
        )
    size = report.get("virtual_size")
    min_disk = None
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        low = 1 if data_disk else MIN_SYSTEM_DISK_GIB
        min_disk = max(low, math.ceil(size / GiB))
    modes: Sequence[object] = guest.get("boot_modes") or ()
    firmware = None
    if "bios" in modes:
        firmware = "bios"
    elif "uefi" in modes:
        firmware = "uefi"
    return RegisterHints(os_version, min_disk, architecture, firmware)
