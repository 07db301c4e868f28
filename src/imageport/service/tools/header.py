"""Judge a file from its header window alone: the rules whose verdict needs nothing else.

Run by the inspect worker (``--header-window``, :mod:`imageport.worker.inspect_image`) for
:mod:`imageport.service.images.header_checks`, which refuses at registration what the import
job would refuse from the header. The container is the one the job's probe finds
(:func:`imageport.formats.registry.probe`, through a
:class:`~imageport.formats.window.HeaderWindow`), and the findings are the catalogue's rules on
it, so the verdicts and their words are the job's.
"""

from __future__ import annotations

from dataclasses import dataclass

from imageport.findings import Finding, Severity
from imageport.formats import registry
from imageport.formats.base import Container
from imageport.formats.window import OutsideHeader
from imageport.rules.base import CheckOptions, ImageFacts
from imageport.rules.catalogue import rule_by_id
from imageport.rules.engine import run_rules
from imageport.rules.fastimport import FastRawRule
from imageport.source import ByteSource

#: The rules judged from the header, in the order the job's report lists them. (For fast
#: import, IMG-FAST-RAW's format finding too; its bitmap is the caller's to look for.)
HEADER_RULE_IDS = ("IMG-FORMAT", "IMG-SAFE", "IMG-QCOW2-ENCRYPTED", "IMG-DISK-SIZE")


@dataclass(frozen=True, slots=True)
class HeaderJudgement:
    """The container the header shows, and the error findings of the header rules on it."""

    container: Container
    findings: tuple[Finding, ...]


def judge_header(window: ByteSource, options: CheckOptions) -> HeaderJudgement | None:
    """The header rules' error findings on ``window``; None when the probe needs bytes past
    the header (the job then decides). Uses ``options.min_disk_gib``, ``options.fast_import``
    and ``options.disk_kind`` (a rule that does not judge that kind of image is not run, as in
    the job: an ISO is judged as an ISO, a data disk's size against its own range)."""
    try:
        container = registry.probe(window)
    except OutsideHeader:
        return None
    facts = ImageFacts(container=container, allocated_bytes=None, options=options)
    judging = (rule_by_id(rule_id) for rule_id in HEADER_RULE_IDS)
    rules = [rule for rule in judging if options.disk_kind in rule.kinds]
    found = [f for f in run_rules(rules, facts) if f.severity is Severity.ERROR]
    if options.fast_import and container.accepted:
        found.extend(FastRawRule().format_findings(container))
    return HeaderJudgement(container, tuple(found))
