"""What one project's jobs may take from the service: how many, how much disk, how much work.

* **Admission** (:func:`admit`, when a job is created): a project may have at most
  ``project_job_limit`` unfinished (INIT or RUNNING) jobs; one more is refused with the vendor's
  ``IMG.0194`` ("too many concurrent imports"). The project's row is locked while it counts, so
  concurrent requests cannot all pass. How many of them *run* at once, and in which order
  against other projects' jobs, is the job queue's fairness
  (:mod:`imageport.adapters.job_queue`, ``project_running_jobs``).
* **Output bound** (:func:`output_bound`): before a conversion starts, the checker has measured
  the guest bytes that hold data, refusing files whose tables share or over-compress data
  (IMG-SAFE), so what qemu-img may honestly write is known: those bytes, each data extent
  rounded out to whole target clusters, plus the target's metadata. The conversion is stopped
  once its output takes more disk than that (:func:`imageport.adapters.image_worker.output_watch`).
* **Room** (:func:`room_for`): the bound must fit in the project's image storage quota
  (``project_storage_bytes``: the stored images it holds, the conversions of its own under way,
  plus this one; ``IMG.0015``) and in the data dir's free space less what the other
  conversions under way may still write, leaving ``free_space_reserve_bytes`` (``IMG.1075``:
  the service is short of disk; nothing was written). The room is held until the job's output
  is stored. Reservations are kept in this process, which runs every job of its database.
* **Data received** (:func:`write_room`: objects, parts, copies, Glance uploads): a project's
  objects, unfinished parts and staged data may take ``project_object_bytes`` (IMG/S3
  ``QuotaExceeded``), and what any project writes must leave ``free_space_reserve_bytes`` free
  beside the jobs' reservations (507 ``InsufficientStorage``): one project cannot fill the disk
  the others' imports need.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, func, select, update

from imageport.limits import GiB, KiB, MiB
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import Forbidden, RequestInvalid, ServiceError
from imageport.service.images import staging
from imageport.service.jobs.errors import JobFailedError
from imageport.service.statuses import IMAGE_IN_PROGRESS, UNFINISHED_JOB, ImageStatus
from imageport.service.tables import images, jobs, projects
from imageport.settings import Settings

log = logging.getLogger(__name__)

#: The cluster size qemu-img gives the qcow2 files it writes, and the block size of a raw one.
TARGET_UNIT = {"qcow2": 64 * KiB, "raw": 4 * KiB}
#: Headers, L1 table, first refcount blocks, and qemu's own alignment: room beyond the data.
METADATA_SLACK = 16 * MiB


def admit(conn: Connection, settings: Settings, project_id: str) -> None:
    """Refuse a new job when ``project_id`` already has ``project_job_limit`` unfinished jobs
    (inside the transaction that would insert it; the project's row stays locked until that
    transaction ends, so concurrent admissions count one after the other)."""
    # a write to the project's row: PostgreSQL locks the row, SQLite takes its write lock and
    # the latest snapshot (a SELECT ... FOR UPDATE would do neither on SQLite)
    conn.execute(update(projects).where(projects.c.id == project_id).values(name=projects.c.name))
    count = conn.execute(
        select(func.count())
        .select_from(jobs)
        .where(jobs.c.project_id == project_id, jobs.c.status.in_(UNFINISHED_JOB))
    ).scalar_one()
    if count >= settings.project_job_limit:
        raise RequestInvalid(
            codes.TOO_MANY_JOBS,
            f"the project has {count} unfinished jobs, the most "
            f"it may have at once ({settings.project_job_limit}); wait for "
            "one to end",
        )


def project_of(services: Services, job_id: str) -> str:
    """The project job ``job_id`` belongs to ("" when there is no such job): the job queue's
    fairness key."""
    with services.db.connect() as conn:
        owner = conn.execute(select(jobs.c.project_id).where(jobs.c.id == job_id)).scalar()
    return str(owner or "")


def output_bound(
    allocated_bytes: int, data_extents: int, virtual_size: int, target_format: str
) -> int:
    """The most disk a conversion to ``target_format`` may honestly take for a disk whose
    ``data_extents`` extents hold ``allocated_bytes`` of its ``virtual_size``: each extent may
    touch two partial target clusters, qcow2 adds an 8-byte L2 entry per cluster of the
    virtual disk and a 2-byte refcount per cluster of the file."""
    unit = TARGET_UNIT.get(target_format, 64 * KiB)
    data = allocated_bytes + 2 * unit * data_extents
    metadata = 0
    if target_format == "qcow2":
        clusters = -(-virtual_size // unit)
        metadata = 8 * clusters + 2 * (-(-data // unit))
    return data + metadata + METADATA_SLACK


def stored_bytes(services: Services, project_id: str) -> int:
    """Bytes of the stored images ``project_id`` holds now."""
    with services.db.connect() as conn:
        total = conn.execute(
            select(func.coalesce(func.sum(images.c.size), 0)).where(
                images.c.project_id == project_id, images.c.status == ImageStatus.ACTIVE
            )
        ).scalar_one()
    return int(total)


def _text(size: int) -> str:
    return f"{size / GiB:.2f} GiB" if size >= GiB else f"{size / MiB:.1f} MiB"


@dataclass(eq=False)
class _Hold:
    """The room one job holds: ``stored`` bytes of its project's quota, and ``disk`` bytes of
    free space less what it has written so far into files named ``writing*``."""

    project_id: str
    stored: int
    disk: int
    writing: Path | None

    def disk_left(self) -> int:
        if self.writing is None or not self.disk:
            return self.disk
        folder, name = self.writing.parent, self.writing.name
        try:
            written = sum(
                entry.stat().st_blocks * 512
                for entry in folder.iterdir()
                if entry.name.startswith(name)
            )
        except OSError:  # a file removed while measured: count none of it as written
            written = 0
        return max(0, self.disk - written)


class _Reservations:
    """The room the jobs under way in this process hold."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holds: list[_Hold] = []

    def stored(self, project_id: str) -> int:
        return sum(h.stored for h in self.holds if h.project_id == project_id)

    def disk(self) -> int:
        """What the jobs under way may still write (their written bytes are already out of
        the free space: counting their whole reservation would count those twice)."""
        return sum(h.disk_left() for h in self.holds)


_RESERVATIONS: dict[str, _Reservations] = {}
_REGISTRY_LOCK = threading.Lock()


def _reservations(services: Services) -> _Reservations:
    with _REGISTRY_LOCK:
        return _RESERVATIONS.setdefault(services.settings.db_url, _Reservations())


def _disk_room(services: Services, held: _Reservations) -> int:
    """The data dir's free space less the reserve and what the jobs of ``held`` may still
    write (called with ``held.lock`` held)."""
    settings = services.settings
    folder = next(f for f in (settings.tmp_dir, *settings.tmp_dir.parents) if f.exists())
    return shutil.disk_usage(folder).free - settings.free_space_reserve_bytes - held.disk()


@contextmanager
def room_for(
    services: Services,
    project_id: str,
    *,
    stored: int = 0,
    disk: int = 0,
    writing: Path | None = None,
) -> Iterator[None]:
    """Hold room for a job of ``project_id`` while the block runs: ``stored`` bytes of the
    project's image storage quota (the image it will store) and ``disk`` bytes of the data
    dir's free space (what it may write, into ``writing`` and files named after it); refuse it
    (:class:`JobFailedError`) when they do not fit, counting what the other jobs under way
    hold."""
    settings = services.settings
    held = _reservations(services)
    hold = _Hold(project_id, stored, disk, writing)
    with held.lock:
        limit = settings.project_storage_bytes
        if stored and limit:
            used = stored_bytes(services, project_id) + held.stored(project_id)
            if used + stored > limit:
                raise JobFailedError(
                    codes.QUOTA_EXCEEDED,
                    f"{codes.QUOTA_EXCEEDED}: this image may take up to "
                    f"{_text(stored)}; the project's images take "
                    f"{_text(used)} of its {_text(limit)} storage quota",
                )
        if disk:
            room = _disk_room(services, held)
            if room < disk:
                log.warning(
                    "refused a job of %s: %d bytes needed, %d free beside the "
                    "reserve and the jobs under way",
                    project_id,
                    disk,
                    room,
                )
                raise JobFailedError(
                    codes.INTERNAL,
                    f"{codes.INTERNAL}: the service is short "
                    f"of free disk space for this job (up to {_text(disk)}); "
                    "nothing was written, try again later",
                )
        held.holds.append(hold)
    try:
        yield
    finally:
        with held.lock:
            held.holds.remove(hold)


def disk_room(services: Services) -> int:
    """Bytes that may still be written into the data dir: its free space less the reserve and
    what the jobs under way may still write."""
    held = _reservations(services)
    with held.lock:
        return _disk_room(services, held)


def _staged(services: Services, project_id: str) -> int:
    """Disk the project's Glance data, staged or being received, takes."""
    with services.db.connect() as conn:
        ids = conn.execute(
            select(images.c.id).where(
                images.c.project_id == project_id, images.c.status.in_(IMAGE_IN_PROGRESS)
            )
        ).scalars()
        return staging.staged_bytes(services.settings, [str(i) for i in ids])


def write_room(services: Services, project_id: str, declared: int | None) -> int:
    """The most bytes ``project_id`` may write now into objects, parts or staged data: what its
    ``project_object_bytes`` quota leaves and what the disk can take (:func:`disk_room`).
    ``declared`` (the body's length, when known) beyond it is refused at once: 403
    ``QuotaExceeded`` or 507 ``InsufficientStorage`` (nothing is written); a body of unknown
    length is cut off at the figure returned."""
    room = disk_room(services)
    if declared is not None and declared > room:
        raise ServiceError(
            "InsufficientStorage",
            "the service is short of disk space for "
            "this upload now; nothing was written, try again later",
            status=507,
        )
    quota = services.settings.project_object_bytes
    if quota:
        left = quota - services.store.project_bytes(project_id) - _staged(services, project_id)
        if declared is not None and declared > left:
            raise Forbidden(
                "QuotaExceeded",
                f"the project's objects and uploads may take "
                f"{_text(quota)} in all and have {_text(max(0, left))} left; "
                "delete objects or abort uploads first",
            )
        room = min(room, left)
    return max(0, room)
