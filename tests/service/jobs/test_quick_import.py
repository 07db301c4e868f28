"""Quick (fast) import through the service: real SQLite, the local object store, the checker and
probe in limited worker processes, images built by the real tools.

A 200 GiB sparse RAW holding a small optimized guest is imported in seconds: stored by a hard
link of the object's file (no copy, still sparse), no hash pass (the checksum is the digest the
store recorded at upload: the tests give it a recognisable placeholder, which the store trusts).
Missing, stale or no bitmap, an unoptimized guest and a qcow2 fail with IMG-FAST-RAW; a ZVHD2
needs no bitmap; size limits are enforced when the image is registered.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from imageport.fastimport.bitmap import build_bitmap
from imageport.fastimport.naming import bitmap_key_for
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.images.lifecycle import create_image_from_file, delete_image, quick_import
from imageport.service.jobs import state
from imageport.service.jobs.file_links import copy_file
from imageport.service.jobs.import_job import run_job
from imageport.service.ports import ObjectInfo, StagedFile
from imageport.service.tables import objects
from support import fast_fixtures as ff
from support import import_fixtures as fx

BUCKET = fx.BUCKET
#: A quick import of a small guest, checked and stored, takes a few seconds (two workers).
JOB_SECONDS = 30.0


@pytest.fixture(scope="module")
def big_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 GiB apparent size, the optimized guest at the start, its bitmap beside it."""
    raw = ff.sparse_disk(ff.ready_raw(), tmp_path_factory.mktemp("big") / "disk.raw", 200 * ff.GiB)
    ff.with_bitmap(raw)
    return raw


def placeholder(key: str, kind: str = "sha256") -> str:
    """A digest the store is told (it trusts StagedFile): proves the job did not hash."""
    return hashlib.new(kind, f"placeholder {key}".encode()).hexdigest()


def commit(services: Services, key: str, path: Path) -> ObjectInfo:
    """Make ``path`` the object ``BUCKET/key`` without sending it through HTTP: a hard link
    into the store's staging area (no copy of a sparse 200 GiB file), placeholder digests."""
    store = services.store
    if store.get_bucket(BUCKET) is None:
        store.create_bucket(BUCKET, fx.project_id(services), "STANDARD", services.settings.region)
    staged = store.staging_path()
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, staged)
    except OSError as exc:  # the test cache is on another filesystem
        if exc.errno != errno.EXDEV:
            raise
        subprocess.run(["cp", "--sparse=always", str(path), str(staged)], check=True)
    return store.commit_object(
        BUCKET,
        key,
        StagedFile(staged, path.stat().st_size, placeholder(key, "md5"), placeholder(key)),
        content_type="application/octet-stream",
        storage_class="STANDARD",
        metadata={},
    )


def quick(
    services: Services, key: str, *, name: str = "fast", min_disk: int | None = 40, **body: object
) -> str:
    """Quick-import ``BUCKET:key`` (the API's body); the INIT job's id."""
    doc = {
        "name": name,
        "image_url": f"{BUCKET}:{key}",
        "min_disk": min_disk,
        "os_version": ff.OS_VERSION,
        **body,
    }
    return quick_import(services, fx.project_id(services), doc)


def run(services: Services, job_id: str) -> float:
    started = time.monotonic()
    run_job(services, job_id)
    return time.monotonic() - started


def object_blob(services: Services, key: str) -> Path:
    with services.db.connect() as conn:
        blob = conn.execute(
            select(objects.c.blob).where(objects.c.bucket == BUCKET, objects.c.key == key)
        ).scalar_one()
    return services.settings.objects_dir / str(blob)


def failed(services: Services, job_id: str, code: str) -> str:
    """Assert the job failed with ``code`` and left no image file; its reason."""
    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code) == ("FAIL", code), job.fail_reason
    image = fx.image_row(services, job_id)
    assert (image.status, image.blob, image.error_code) == ("killed", None, code)
    images_dir = services.settings.images_dir
    assert not images_dir.exists() or list(images_dir.iterdir()) == []
    return str(job.fail_reason)


def test_bitmap_key_is_the_sibling_mf() -> None:
    assert bitmap_key_for("dir/disk.raw") == "dir/disk.mf"
    assert bitmap_key_for("disk") == "disk.mf"
    assert bitmap_key_for("dir.v2/disk") == "dir.v2/disk.mf"
    assert bitmap_key_for("a/b.tar.raw") == "a/b.tar.mf"
    assert bitmap_key_for("disk.MF") is None and bitmap_key_for("dir/.mf") is None


def test_200_gib_sparse_raw_is_stored_by_a_hard_link_in_seconds(
    services: Services, big_raw: Path
) -> None:
    info = commit(services, "disk/big.raw", big_raw)
    commit(services, "disk/big.mf", big_raw.with_suffix(".mf"))
    job_id = quick(services, "disk/big.raw", name="big", min_disk=200)
    seconds = run(services, job_id)

    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code, job.fail_reason) == ("SUCCESS", None, None)
    assert (job.phase, job.percent) == ("store", 100.0)
    assert seconds < JOB_SECONDS
    image = fx.image_row(services, job_id)
    assert (image.status, image.disk_format) == ("active", "raw")
    assert image.virtual_size == image.size == 200 * ff.GiB
    assert image.checksum == info.sha256 == placeholder("disk/big.raw")  # no hash pass
    assert image.properties["__bitmap_file"] == f"{BUCKET}:disk/big.mf"
    assert image.properties["__image_size"] == str(200 * ff.GiB)
    stored = services.settings.images_dir / image.blob
    assert image.blob == f"{image.id}.raw"
    assert stored.stat().st_ino == object_blob(services, "disk/big.raw").stat().st_ino
    assert stored.stat().st_blocks * 512 < 16 << 20  # still sparse: nothing was copied
    findings = {f["rule_id"] for f in image.report["findings"]}
    assert "IMG-FAST-RAW" not in findings and "IMG-SIZE" not in findings

    # the image and the object are independent names of immutable bytes
    delete_image(services, fx.project_id(services), image.id, None)
    assert not stored.exists()
    assert services.store.get_object(BUCKET, "disk/big.raw") == info
    assert object_blob(services, "disk/big.raw").stat().st_size == 200 * ff.GiB


def test_no_bitmap_in_the_bucket_fails_img_fast_raw(
    services: Services, big_raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(services, "disk/big.raw", big_raw)
    with pytest.raises(RequestInvalid) as refused:  # at once, when registered
        quick(services, "disk/big.raw", min_disk=200)
    assert refused.value.code == "IMG.0057"
    assert refused.value.message.startswith("IMG-FAST-RAW: No bitmap file was given")
    assert f"looked for the bitmap file {BUCKET}:disk/big.mf beside" in refused.value.message
    fx.without_header_checks(monkeypatch)  # and the job's own check, should it get one
    job_id = quick(services, "disk/big.raw", min_disk=200)
    run(services, job_id)
    reason = failed(services, job_id, "IMG-FAST-RAW")
    assert f"looked for the bitmap file {BUCKET}:disk/big.mf beside" in reason


def test_disk_written_after_its_bitmap_fails_img_fast_raw(
    services: Services, big_raw: Path, tmp_path: Path
) -> None:
    """A block the bitmap marks empty now holds data: fast import would lose it."""
    stale = ff.sparse_disk(ff.ready_raw(), tmp_path / "stale.raw", 200 * ff.GiB)
    with open(stale, "r+b") as f:
        f.seek(100 * ff.GiB)
        f.write(b"written after the bitmap was made")
    commit(services, "disk/stale.raw", stale)
    commit(services, "disk/stale.mf", big_raw.with_suffix(".mf"))  # the bitmap of the old disk
    job_id = quick(services, "disk/stale.raw", min_disk=200)
    run(services, job_id)
    reason = failed(services, job_id, "IMG-FAST-RAW")
    assert f"{BUCKET}:disk/stale.mf" in reason  # named as uploaded, not by a server path
    assert str(services.settings.data_dir) not in reason
    assert f"block {100 * ff.GiB // (2 << 20)}" in reason


def test_unoptimized_guest_fails_naming_the_unmet_rule(services: Services, tmp_path: Path) -> None:
    raw = tmp_path / "netrules.raw"
    ff.sparse_disk(ff.unoptimized_raw(), raw, 128 << 20)
    commit(services, "netrules.raw", raw)
    commit(services, "netrules.mf", ff.with_bitmap(raw))
    job_id = quick(services, "netrules.raw")
    run(services, job_id)
    reason = failed(services, job_id, "IMG-FAST-RAW")
    assert reason.startswith("IMG-FAST-RAW: IMG-NET-RULES is not met")
    assert "70-persistent-net.rules" in reason


def test_zvhd2_needs_no_bitmap_and_is_stored_as_it_is(services: Services) -> None:
    zvhd2 = ff.ready_zvhd2()
    info = commit(services, "disk/guest.zvhd2", zvhd2)
    # is_quick_import on the normal create call takes the same path
    job_id = create_image_from_file(
        services,
        fx.project_id(services),
        {
            "name": "z2",
            "image_url": f"{BUCKET}:disk/guest.zvhd2",
            "min_disk": 40,
            "os_version": ff.OS_VERSION,
            "is_quick_import": True,
        },
    )
    run(services, job_id)
    job = fx.job_row(services, job_id)
    assert job.status == "SUCCESS", job.fail_reason
    image = fx.image_row(services, job_id)
    assert (image.status, image.disk_format, image.blob) == ("active", "zvhd2", f"{image.id}.zvhd2")
    assert (image.size, image.virtual_size) == (zvhd2.stat().st_size, 128 << 20)
    assert image.checksum == info.sha256
    assert "__bitmap_file" not in image.properties
    assert image.properties["__os_version"].startswith("Debian")
    stored = services.settings.images_dir / image.blob
    assert stored.stat().st_ino == object_blob(services, "disk/guest.zvhd2").stat().st_ino


def test_quick_import_reports_bytes_and_percent_as_it_goes(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every phase ends with all its bytes done and the percent at the phase's end, as the
    other jobs show it; the job ends at 100 % with every byte of the last phase done."""
    zvhd2 = ff.ready_zvhd2()
    size = zvhd2.stat().st_size
    commit(services, "disk/progress.zvhd2", zvhd2)
    writes: list[tuple[str, float, int, int]] = []
    original = state.Progress._write

    def recording(self: state.Progress, percent: float, done: int, total: int, **kw: Any) -> None:
        writes.append((self.phase_name, percent, done, total))
        original(self, percent, done, total, **kw)

    monkeypatch.setattr(state.Progress, "_write", recording)
    job_id = quick(services, "disk/progress.zvhd2", name="progress")
    run(services, job_id)
    job = fx.job_row(services, job_id)
    assert job.status == "SUCCESS", job.fail_reason
    ends = {phase: (percent, done, total) for phase, percent, done, total in writes}
    assert ends == {
        "fetch": (1.0, size, size),
        "check": (90.0, size, size),
        "store": (98.0, size, size),
        "verify": (100.0, size, size),
    }
    percents = [percent for _, percent, _, _ in writes]
    assert percents == sorted(percents)
    assert (job.percent, job.bytes_done, job.bytes_total) == (100.0, size, size)


def test_qcow2_fails_quick_import(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    commit(services, "guest.qcow2", fx.good_image("qcow2"))
    with pytest.raises(RequestInvalid) as refused:  # at once, when registered
        quick(services, "guest.qcow2")
    assert refused.value.code == "IMG.0072"
    assert "this file is qcow2" in refused.value.message
    fx.without_header_checks(monkeypatch)  # and the job's own check, should it get one
    job_id = quick(services, "guest.qcow2")
    run(services, job_id)
    reason = failed(services, job_id, "IMG-FAST-RAW")
    assert "this file is qcow2" in reason


def test_copy_when_no_link_can_be_made_keeps_the_holes(
    services: Services, big_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the images directory is on another filesystem (EXDEV), the job copies the file,
    reading and writing only its data extents."""
    copied = tmp_path / "copy.raw"
    copy_file(big_raw, copied, lambda _done: None, lambda: False)
    assert copied.stat().st_size == 200 * ff.GiB
    assert copied.stat().st_blocks * 512 < 16 << 20
    assert build_bitmap(copied).bits == build_bitmap(big_raw).bits
    with open(copied, "rb") as a, open(big_raw, "rb") as b:
        assert a.read(128 << 20) == b.read(128 << 20)

    real_link = os.link

    def no_link_into_images(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(str(dst)).parent == services.settings.images_dir:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", no_link_into_images)  # what import_job calls
    commit(services, "disk/big.raw", big_raw)
    commit(services, "disk/big.mf", big_raw.with_suffix(".mf"))
    job_id = quick(services, "disk/big.raw", min_disk=200)
    run(services, job_id)
    assert fx.job_row(services, job_id).status == "SUCCESS"
    image = fx.image_row(services, job_id)
    stored = services.settings.images_dir / image.blob
    assert stored.stat().st_ino != object_blob(services, "disk/big.raw").stat().st_ino
    assert stored.stat().st_blocks * 512 < 16 << 20
    assert image.checksum == placeholder("disk/big.raw")


def test_registration_limits(services: Services, big_raw: Path, tmp_path: Path) -> None:
    huge = tmp_path / "huge.raw"
    with open(huge, "wb") as f:
        f.truncate(3 * ff.TiB // 2)
    commit(services, "huge.raw", huge)
    with pytest.raises(RequestInvalid) as refused:
        quick(services, "huge.raw", min_disk=1024)
    assert refused.value.code == "IMG.0059"
    assert "IMG-SIZE" in refused.value.message

    commit(services, "disk/big.raw", big_raw)
    with pytest.raises(RequestInvalid) as normal:
        create_image_from_file(
            services,
            fx.project_id(services),
            {"name": "normal-big", "image_url": f"{BUCKET}:disk/big.raw", "min_disk": 200},
        )
    assert normal.value.code == "IMG.0059"
    assert "IMG-SIZE" in normal.value.message and "quickimport" in normal.value.message

    with pytest.raises(RequestInvalid) as no_os:
        quick(services, "disk/big.raw", min_disk=200, os_version=None)
    assert no_os.value.code == "IMG.0056"
    with pytest.raises(RequestInvalid) as no_disk:
        quick(services, "disk/big.raw", min_disk=None)
    assert no_disk.value.code == "IMG.0055"
