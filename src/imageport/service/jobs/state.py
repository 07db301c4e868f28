"""Every job's row: claiming a job, reporting its progress, ending it (and its image with it).

Every transition is one conditional UPDATE, so concurrent workers and a restarted server agree:
a job is claimed only ``WHERE status = 'INIT'`` (two workers never run one job), progress and
endings are written only ``WHERE status = 'RUNNING'``, and the image moves with its job in the
same transaction (``queued -> saving -> active | killed``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from imageport.rules.base import DiskKind
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.jobs.fail_reason import stored_reason
from imageport.service.statuses import IMAGE_IN_PROGRESS, ImageStatus, JobStatus
from imageport.service.tables import images, jobs

#: Phases of the import job and the share of ``percent`` each covers.
PHASES: Mapping[str, tuple[float, float]] = {
    "fetch": (0.0, 1.0),
    "probe": (1.0, 2.0),
    "check": (2.0, 10.0),
    "convert": (10.0, 90.0),
    "verify": (90.0, 99.0),
    "store": (99.0, 100.0),
}
#: The quick-import job's phases: no conversion; the check is nearly all the work (the file is
#: stored by a hard link, then re-probed).
QUICK_PHASES: Mapping[str, tuple[float, float]] = {
    "fetch": (0.0, 1.0),
    "check": (1.0, 90.0),
    "store": (90.0, 98.0),
    "verify": (98.0, 100.0),
}
#: The import job's phases when it ends with a boot test (``params.boot_test``): booting
#: takes minutes, more than the rest together.
BOOT_PHASES: Mapping[str, tuple[float, float]] = {
    "fetch": (0.0, 1.0),
    "probe": (1.0, 2.0),
    "check": (2.0, 5.0),
    "convert": (5.0, 40.0),
    "verify": (40.0, 45.0),
    "boot": (45.0, 99.0),
    "store": (99.0, 100.0),
}
#: The quick-import job's phases with a boot test.
QUICK_BOOT_PHASES: Mapping[str, tuple[float, float]] = {
    "fetch": (0.0, 1.0),
    "check": (1.0, 40.0),
    "store": (40.0, 43.0),
    "verify": (43.0, 45.0),
    "boot": (45.0, 100.0),
}
#: The import job's phases with automatic configuration (``params.is_config``): the
#: ``configure`` phase copies the checked disk to raw, plans the fixes in a worker and applies
#: them in the editing appliance (a minute under TCG); ``recheck`` judges the result.
CONFIG_PHASES: Mapping[str, tuple[float, float]] = {
    "fetch": (0.0, 1.0),
    "probe": (1.0, 2.0),
    "check": (2.0, 5.0),
    "configure": (5.0, 50.0),
    "convert": (50.0, 85.0),
    "recheck": (85.0, 90.0),
    "verify": (90.0, 99.0),
    "store": (99.0, 100.0),
}
#: The same with a boot test at the end.
CONFIG_BOOT_PHASES: Mapping[str, tuple[float, float]] = {
    "fetch": (0.0, 1.0),
    "probe": (1.0, 2.0),
    "check": (2.0, 4.0),
    "configure": (4.0, 30.0),
    "convert": (30.0, 40.0),
    "recheck": (40.0, 42.0),
    "verify": (42.0, 45.0),
    "boot": (45.0, 99.0),
    "store": (99.0, 100.0),
}
#: Seconds between progress writes (and between reads of ``cancel_requested``).
PROGRESS_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class JobParams:
    """The job's ``params`` document, read defensively (written by
    :func:`imageport.service.images.import_request.job_params`)."""

    bucket: str
    key: str
    object_size: int
    object_etag: str
    quick_import: bool
    uninitialized: bool
    min_disk: int | None
    hw_firmware_type: str | None
    stored_format: str | None
    #: Data received on the Glance routes: the staged file's name (the image id), read from
    #: :func:`imageport.service.images.staging.staged_path`; None when the source is an object.
    staged: str | None = None
    #: The image's Glance ``disk_format`` when it declared one: the file must be of it.
    declared_format: str | None = None
    #: The architecture the image is registered with (``x86`` or ``arm``, as the request named
    #: it), checked against the guest's by IMG-ARCH; None in a document without it.
    architecture: str | None = None
    #: What the file is checked and stored as: ``system`` (a document without it), ``data``
    #: (a data image: no guest rules) or ``iso`` (an ISO image: stored as it is).
    disk_kind: DiskKind = "system"
    #: End the import with a boot test (:mod:`imageport.service.jobs.import_boot`).
    boot_test: bool = False
    #: Run automatic configuration before storing (:mod:`imageport.service.jobs.import_configure`;
    #: never for a quick import, a data image or an ISO).
    is_config: bool = False

    @classmethod
    def from_document(cls, doc: object) -> JobParams:
        d: Mapping[str, Any] = doc if isinstance(doc, dict) else {}

        def text(name: str) -> str:
            value = d.get(name)
            return value if isinstance(value, str) else ""

        def number(name: str) -> int | None:
            value = d.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        stored = d.get("stored_format")
        firmware = d.get("hw_firmware_type")
        staged = d.get("staged")
        declared = d.get("declared_format")
        architecture = d.get("architecture")
        kind = d.get("disk_kind")
        return cls(
            bucket=text("bucket"),
            key=text("key"),
            object_size=number("object_size") or 0,
            object_etag=text("object_etag"),
            quick_import=d.get("quick_import") is True,
            uninitialized=d.get("uninitialized") is True,
            min_disk=number("min_disk"),
            hw_firmware_type=firmware if isinstance(firmware, str) else None,
            stored_format=stored if isinstance(stored, str) and stored else None,
            staged=staged if isinstance(staged, str) and staged else None,
            declared_format=declared if isinstance(declared, str) and declared else None,
            architecture=architecture if architecture in ("x86", "arm") else None,
            disk_kind=kind if kind in ("data", "iso") else "system",
            boot_test=d.get("boot_test") is True and kind not in ("data", "iso"),
            is_config=d.get("is_config") is True
            and d.get("quick_import") is not True
            and kind not in ("data", "iso"),
        )


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: str
    job_type: str
    image_id: str
    params: JobParams
    attempts: int
    cancel_requested: bool
    project_id: str = ""


def now_text(services: Services) -> str:
    return time_text(services.clock())


def succeed_with_result(
    services: Services, job_id: str, result: Mapping[str, object], phase: str
) -> bool:
    """End the RUNNING job ``job_id`` SUCCESS in ``phase``, keeping ``result`` in its params
    (a job that makes no image: an export, a boot test); False when it was no longer
    RUNNING."""
    with services.db.begin() as conn:
        params = conn.execute(select(jobs.c.params).where(jobs.c.id == job_id)).scalar()
        doc = {**(params if isinstance(params, dict) else {}), "result": dict(result)}
        done = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING)
            .values(
                status=JobStatus.SUCCESS,
                percent=100.0,
                phase=phase,
                params=doc,
                end_time=now_text(services),
            )
        )
    return done.rowcount == 1


def claim(services: Services, job_id: str) -> ClaimedJob | None:
    """Move the job INIT -> RUNNING (attempts + 1) and its image to ``saving``; None when the
    job is not INIT (already claimed, ended, or unknown)."""
    with services.db.begin() as conn:
        done = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.INIT)
            .values(
                status=JobStatus.RUNNING,
                attempts=jobs.c.attempts + 1,
                phase="fetch",
                percent=0.0,
                bytes_done=0,
                bytes_total=0,
                error_code=None,
                fail_reason=None,
            )
        )
        if done.rowcount != 1:
            return None
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
        if row.image_id is not None:
            conn.execute(
                update(images)
                .where(images.c.id == row.image_id, images.c.status.in_(IMAGE_IN_PROGRESS))
                .values(status=ImageStatus.SAVING, updated_at=now_text(services))
            )
    return ClaimedJob(
        row.id,
        row.job_type,
        row.image_id or "",
        JobParams.from_document(row.params),
        row.attempts,
        bool(row.cancel_requested),
        row.project_id,
    )


def image_row(services: Services, image_id: str) -> Any:
    """The image row (None when it no longer exists)."""
    with services.db.connect() as conn:
        return conn.execute(select(images).where(images.c.id == image_id)).first()


def cancel_requested(services: Services, job_id: str) -> bool:
    with services.db.connect() as conn:
        value = conn.execute(select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar()
    return bool(value)


class Progress:
    """Writes the job's phase, percent and bytes, at most every :data:`PROGRESS_INTERVAL`
    seconds, and answers "was the job cancelled?" (also read at most that often)."""

    def __init__(
        self, services: Services, job_id: str, phases: Mapping[str, tuple[float, float]] = PHASES
    ) -> None:
        """``phases``: the share of ``percent`` of each phase (:data:`PHASES`, or
        :data:`QUICK_PHASES` for quick import)."""
        self.services = services
        self.job_id = job_id
        self.phases = phases
        self.phase_name = "fetch"
        self._range = phases["fetch"]
        self._total = 0
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False
        self._aborted = False

    def cancel_now(self) -> None:
        """Make :meth:`cancelled` true from now on (stops workers when the job is failing)."""
        self._aborted = True

    def phase(self, name: str, bytes_total: int = 0) -> None:
        """Enter phase ``name`` (written at once)."""
        self.phase_name = name
        self._range = self.phases[name]
        self._total = bytes_total
        self._write(self._range[0], 0, bytes_total, phase=name)

    def phase_done(self) -> None:
        """The current phase is done: its share of ``percent`` and all its bytes (written at
        once; a phase whose work reports no progress, such as a check in a worker or a hard
        link, would otherwise end showing 0 bytes done)."""
        self._write(self._range[1], self._total, self._total)

    def update(self, fraction: float, bytes_done: int, bytes_total: int) -> None:
        """``fraction`` (0..1) of the current phase is done (written if due)."""
        now = time.monotonic()
        if now - self._last_write < PROGRESS_INTERVAL:
            return
        lo, hi = self._range
        self._write(lo + (hi - lo) * max(0.0, min(1.0, fraction)), bytes_done, bytes_total)

    def _write(self, percent: float, done: int, total: int, *, phase: str | None = None) -> None:
        self._last_write = time.monotonic()
        values: dict[str, object] = {
            "percent": round(percent, 2),
            "bytes_done": done,
            "bytes_total": total,
        }
        if phase is not None:
            values["phase"] = phase
        with self.services.db.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == self.job_id, jobs.c.status == JobStatus.RUNNING)
                .values(**values)
            )

    def cancelled(self) -> bool:
        """Whether a cancel was requested (re-read from the database when due)."""
        if self._aborted:
            return True
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check >= PROGRESS_INTERVAL:
            self._last_cancel_check = now
            self._cancelled = cancel_requested(self.services, self.job_id)
        return self._cancelled


def fail(
    services: Services,
    job_id: str,
    image_id: str,
    code: str,
    reason: str,
    report: Mapping[str, Any] | None = None,
) -> bool:
    """End the job FAIL with ``code``/``reason`` and kill its image (keeping ``report``).
    False when the job was not RUNNING."""
    with services.db.begin() as conn:
        return fail_in(conn, job_id, image_id, code, reason, now_text(services), report=report)


def fail_in(
    conn: Connection,
    job_id: str,
    image_id: str | None,
    code: str,
    reason: str,
    now: str,
    *,
    report: Mapping[str, Any] | None = None,
    was: JobStatus = JobStatus.RUNNING,
) -> bool:
    """In the transaction ``conn``: end the job FAIL with ``code``/``reason`` if it is still
    ``was``, and kill its image ``image_id`` if that is still queued or saving (keeping
    ``report``). False, and nothing changed, when the job was no longer ``was``. The one way
    every job ends failed: its job, start-up recovery, and a job no runner can run. The
    reason may quote an image or a crashed worker: it is stored cleaned and capped
    (:func:`~imageport.service.jobs.fail_reason.stored_reason`)."""
    reason = stored_reason(reason)
    done = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == was)
        .values(status=JobStatus.FAIL, error_code=code, fail_reason=reason, end_time=now)
    )
    if done.rowcount != 1:
        return False
    if image_id is None:
        return True
    values: dict[str, object] = {
        "status": ImageStatus.KILLED,
        "error_code": code,
        "fail_reason": reason,
        "updated_at": now,
    }
    if report is not None:
        values["report"] = dict(report)
    conn.execute(
        update(images)
        .where(images.c.id == image_id, images.c.status.in_(IMAGE_IN_PROGRESS))
        .values(**values)
    )
    return True


def succeed(
    services: Services, job_id: str, image_id: str, image_values: Mapping[str, object]
) -> bool:
    """Make the image active with ``image_values`` and end the job SUCCESS, together; False
    (nothing changed) when the job is no longer RUNNING or the image no longer saving."""
    now = now_text(services)
    with services.db.connect() as conn, conn.begin() as transaction:
        image_done = conn.execute(
            update(images)
            .where(images.c.id == image_id, images.c.status == ImageStatus.SAVING)
            .values(
                status=ImageStatus.ACTIVE,
                active_at=now,
                updated_at=now,
                error_code=None,
                fail_reason=None,
                **image_values,
            )
        )
        done = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING)
            .values(
                status=JobStatus.SUCCESS,
                percent=100.0,
                phase="store",
                bytes_done=jobs.c.bytes_total,  # done: all of the last phase's bytes
                end_time=now,
            )
        )
        if image_done.rowcount != 1 or done.rowcount != 1:
            transaction.rollback()
            return False
    return True
