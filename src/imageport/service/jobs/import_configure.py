"""The import job's automatic configuration (``is_config: true``): fix the checked file's guest
offline, then judge the result with every rule.

Between the check and the conversion to the stored format (:mod:`.import_job`)::

    check      as without configuration, except that errors of the rules a fix serves
               (:data:`FIXABLE_RULES`) do not fail the job yet: the fixes may clear them
    configure  the checked file copied to a raw scratch file (the worker's conversion,
               within the bound the check measured, which must fit in the quota and the
               free disk space); the fixes planned from that copy in a limited worker
               (:meth:`ImageWorker.plan_configuration`: the change record and the file
               operations); the operations applied inside the editing appliance
               (:class:`GuestEditor`: the host never mounts the guest), each file checked
               against what the plan read before anything is written
    convert    the configured raw copy to the stored format
    recheck    every rule on the result, in a worker: any error left FAILs the job (the
               report, with its ``configuration`` section, kept); ``__is_config_init``
               becomes "true" only when the initialization rules pass
               (:func:`~imageport.service.images.properties.initialization_done`)

The image's report is the check of the configured result with the change record as its
``configuration`` section (:func:`~imageport.configure.record.plan_document`, ``applied``
true, and the first check's summary as ``before``). An appliance that cannot start or a file
that is not what the plan was made from fails the job (``IMG.1075``, saying so); nothing of a
half-configured image is ever stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from pathlib import Path

from imageport.configure.fixes import FIXES
from imageport.configure.plan import Plan
from imageport.configure.record import plan_document
from imageport.rules.base import CheckOptions
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.images.properties import initialization_done
from imageport.service.jobs import state, steps
from imageport.service.jobs.errors import JobCancelledError, JobFailedError
from imageport.service.ports import GuestEditError, ImageInspection, WorkerError
from imageport.service.quotas import output_bound, room_for

#: The rules whose errors automatic configuration may clear: the first check tolerates them,
#: the check of the result does not.
FIXABLE_RULES: frozenset[str] = frozenset(rule for fix in FIXES for rule in fix.rules)
#: Share of the ``configure`` phase the copy to raw takes (planning and the appliance the rest).
_COPY_SHARE = 0.4


@dataclasses.dataclass(frozen=True, slots=True)
class Configured:
    """The configured raw copy and what was done to it."""

    raw: Path
    plan: Plan
    #: the most disk the copy's data may take now (its allocation after the edits)
    allocated_bytes: int
    #: a bound on its separate data extents (the checked file's, and a few per written file)
    data_extents: int


def ready(services: Services) -> None:
    """FAIL the job when automatic configuration cannot run here (no editor, or one missing
    what it needs), before anything is copied."""
    editor = services.editor
    if editor is None:
        raise JobFailedError(codes.INTERNAL, "this service does not offer automatic configuration")
    try:
        editor.ready()
    except GuestEditError as exc:
        raise JobFailedError(
            codes.INTERNAL, f"automatic configuration cannot run on this service: {exc}"
        ) from exc


def configure(
    services: Services,
    job: state.ClaimedJob,
    source: Path,
    inspection: ImageInspection,
    progress: state.Progress,
    scratch: list[Path],
    room: contextlib.ExitStack,
) -> Configured:
    """Copy the checked file ``source`` to raw, plan its configuration in a worker and apply
    it in the appliance (the ``configure`` phase); the room for the copy is held in ``room``."""
    ready(services)
    worker = services.worker
    virtual = inspection.virtual_size or 0
    allocated = inspection.allocated_bytes
    extents = inspection.data_extents
    if allocated is None or extents is None:
        allocated, extents = virtual, 1
    raw_bound = output_bound(allocated, extents, virtual, "raw")
    raw = steps.scratch_file(services, scratch, "raw")
    room.enter_context(
        room_for(
            services,
            job.project_id,
            disk=worker.disk_needed(inspection.format, raw_bound),
            writing=raw,
        )
    )
    progress.phase("configure", virtual)
    steps.convert_bounded(
        worker,
        source,
        inspection.format,
        raw,
        "raw",
        raw_bound,
        inspection,
        progress,
        share=_COPY_SHARE,
    )
    if progress.cancelled():
        raise JobCancelledError
    folder = raw.with_name(raw.name + ".plan")
    folder.mkdir(mode=0o700)
    try:
        plan = worker.plan_configuration(
            raw, folder, when=state.now_text(services), cancelled=progress.cancelled
        )
    except WorkerError as exc:
        raise JobFailedError(
            codes.INTERNAL,
            f"automatic configuration could not be planned, nothing was stored: {exc.reason}",
            inspection.report,
        ) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    progress.update(_COPY_SHARE + 0.1, virtual, virtual)
    if plan.operations:
        if progress.cancelled():
            raise JobCancelledError
        assert services.editor is not None  # ready() said so
        try:
            services.editor.apply(raw, plan.mounts, plan.operations)
        except GuestEditError as exc:
            raise JobFailedError(
                codes.INTERNAL,
                f"automatic configuration failed, nothing was stored: {exc}",
                inspection.report,
            ) from exc
    progress.phase_done()
    written = sum(len(op.data or b"") for op in plan.operations)
    return Configured(
        raw,
        plan,
        allocated_bytes=min(virtual, raw.stat().st_blocks * 512) + written,
        data_extents=extents + 4 * len(plan.operations) + 16,
    )


def recheck(
    services: Services,
    output: Path,
    before: ImageInspection,
    configured: Configured,
    options: CheckOptions,
    shown_as: str,
    progress: state.Progress,
) -> ImageInspection:
    """Every rule on the configured ``output`` (the ``recheck`` phase) with the import's
    ``options``, its report carrying the change record and naming the file ``shown_as`` (the
    name a user knows); FAIL when any rule still errs."""
    progress.phase("recheck", output.stat().st_size)
    after = steps.inspect_file(services.worker, output, options, progress)
    report = steps.renamed(dict(after.report or {}), {str(output): shown_as})
    section = plan_document(configured.plan.changes, configured.plan.notes, applied=True)
    section["before"] = (before.report or {}).get("summary")
    if isinstance(report, dict):
        report["configuration"] = section
    after = dataclasses.replace(after, report=report if isinstance(report, dict) else None)
    left = {f.rule_id for f in after.failed_rules} & FIXABLE_RULES
    steps.refuse_failed(after, dict.fromkeys(left, "still reported after automatic configuration"))
    if not after.readable or after.virtual_size != before.virtual_size:
        raise JobFailedError(
            codes.INTERNAL,
            "the configured image is not the checked disk's size or cannot be read safely",
            after.report,
        )
    progress.phase_done()
    return after


def config_init(after: ImageInspection) -> str:
    """``__is_config_init`` of a configured image: "true" when the initialization rules pass
    on the result."""
    return "true" if initialization_done(after) else "false"


def stored_bound(configured: Configured, inspection: ImageInspection, fmt: str) -> int:
    """The most disk the conversion of the configured copy to ``fmt`` may take."""
    return output_bound(
        configured.allocated_bytes,
        configured.data_extents,
        inspection.virtual_size or 0,
        fmt,
    )


__all__ = ["FIXABLE_RULES", "Configured", "config_init", "configure", "ready", "recheck"]
