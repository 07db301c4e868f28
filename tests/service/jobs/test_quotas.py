"""What one project's jobs may take: admission (IMG.0194) under concurrency, on both databases,
and the room conversions hold against the storage quota and the free disk space."""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from imageport.service.access.projects import create_project
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.jobs.errors import JobFailedError
from imageport.service.jobs.manage import insert_job
from imageport.service.quotas import disk_room, output_bound, room_for
from imageport.service.tables import jobs

pytest_plugins = ["support.db_backends"]  # db_services: each test on both backends

LIMIT = 5
THREADS = 14


def _unfinished(services: Services) -> int:
    with services.db.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(jobs).where(jobs.c.status.in_(("INIT", "RUNNING")))
            ).scalar_one()
        )


def test_concurrent_admissions_never_exceed_the_limit(db_services: Services) -> None:
    """Review of issue 9, M5: 40 concurrent creates on PostgreSQL once left 24 unfinished jobs
    where 20 were allowed; the project's row is now locked while its jobs are counted."""
    services = dataclasses.replace(
        db_services, settings=dataclasses.replace(db_services.settings, project_job_limit=LIMIT)
    )
    project = create_project(services, "alpha").id
    refused: list[str] = []
    start = threading.Barrier(THREADS)

    def create(n: int) -> None:
        start.wait()
        try:
            with services.db.begin() as conn:
                insert_job(
                    conn,
                    services.settings,
                    project_id=project,
                    job_type="t",
                    image_id=f"image-{n}",
                    params={},
                    now=time_text(datetime.now(UTC)),
                )
        except RequestInvalid as exc:
            refused.append(exc.code)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert _unfinished(services) == LIMIT
    assert refused == ["IMG.0194"] * (THREADS - LIMIT)


def test_conversions_under_way_count_against_the_quota_and_the_disk(db_services: Services) -> None:
    """Review of issue 9, M4: two conversions running at once each passed a check that
    counted only stored images."""
    quota = 100 << 20
    services = dataclasses.replace(
        db_services,
        settings=dataclasses.replace(
            db_services.settings, project_storage_bytes=quota, free_space_reserve_bytes=0
        ),
    )
    with room_for(services, "alpha", stored=60 << 20):
        with pytest.raises(JobFailedError) as err, room_for(services, "alpha", stored=60 << 20):
            pass
        assert err.value.code == "IMG.0015"
        with room_for(services, "beta", stored=60 << 20):  # another project's own quota
            pass
    with room_for(services, "alpha", stored=60 << 20):  # released when the first ended
        pass
    free = shutil.disk_usage(services.settings.data_dir.parent).free
    with room_for(services, "alpha", disk=free // 2):
        with (
            pytest.raises(JobFailedError) as err,
            room_for(services, "beta", disk=free // 2 + (512 << 20)),
        ):
            pass
        assert err.value.code == "IMG.1075" and "nothing was written" in err.value.reason


def test_the_output_bound_covers_extents_and_metadata() -> None:
    # 10 extents holding 1 GiB of a 100 GiB disk, to qcow2: data, two partial clusters per
    # extent, an L2 entry per cluster of the disk, refcounts, and the slack
    bound = output_bound(1 << 30, 10, 100 << 30, "qcow2")
    assert (1 << 30) + 10 * 2 * 65536 + 8 * (100 << 30) // 65536 < bound < (1 << 30) + (40 << 20)
    assert output_bound(1 << 30, 10, 100 << 30, "raw") < bound


def test_what_a_job_has_written_is_not_counted_twice(
    db_services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 2 of the review: a job's whole reservation was taken off a free space that
    already lacked what it had written, so a legitimate import could be refused."""
    services = dataclasses.replace(
        db_services, settings=dataclasses.replace(db_services.settings, free_space_reserve_bytes=0)
    )
    target = tmp_path / "job-1.qcow2"
    free = 100 << 30

    def usage(path: object) -> shutil._ntuple_diskusage:
        """A disk of which only this job writes (the machine's own disk changes under other
        processes): its free space falls by the blocks the job's file takes."""
        written = target.stat().st_blocks * 512 if target.exists() else 0
        return shutil._ntuple_diskusage(2 * free, written, free - written)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    with room_for(services, "alpha", disk=free // 2, writing=target):
        before = disk_room(services)
        with target.open("wb") as out:  # the job writes 64 MiB of its reservation
            out.write(b"\1" * (64 << 20))
            out.flush()
            os.fsync(out.fileno())
        after = disk_room(services)
        # the free space fell by 64 MiB, and the job may still write 64 MiB less
        assert abs(after - before) < 16 << 20, (before, after)
