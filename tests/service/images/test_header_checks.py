"""Registration refuses at once what the import job would refuse from the file's header alone
(:mod:`imageport.service.images.header_checks`), with the vendor's code and the job's rule
message, and creates nothing; a header that does not tell is left to the job. Real SQLite, the
local object store, files made by qemu-img."""

from __future__ import annotations

import gzip
import hashlib
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from imageport.rules.base import CheckOptions
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.images import header_checks
from imageport.service.images.lifecycle import (
    create_data_image,
    create_glance_image,
    create_image_from_file,
    quick_import,
    register_image_file,
)
from imageport.service.images.queries import get_image
from imageport.service.images.validation import ImageUrl
from imageport.service.ports import StagedFile, WorkerError
from imageport.service.tables import images, jobs
from support import import_fixtures as fx
from support.builders import qemu_img
from support.fuzz_seeds import minimal_iso

GiB = 1 << 30
BUCKET = fx.BUCKET


def put(services: Services, key: str, data: bytes) -> None:
    """``data`` as ``BUCKET/key`` (the bucket made on first use)."""
    if services.store.get_bucket(BUCKET) is None:
        services.store.create_bucket(
            BUCKET, fx.project_id(services), "STANDARD", services.settings.region
        )
    fx.store_bytes(services, BUCKET, key, data)


def put_sparse(services: Services, key: str, size: int, head: bytes = b"") -> None:
    """A sparse file of ``size`` bytes starting with ``head`` as ``BUCKET/key`` (placeholder
    digests: the store trusts a StagedFile's, and nothing here reads them)."""
    put(services, "seed", b"")  # the bucket
    staged = services.store.staging_path()
    staged.parent.mkdir(parents=True, exist_ok=True)
    with open(staged, "wb") as f:
        f.write(head)
        f.truncate(size)
    digest = hashlib.sha256(key.encode()).hexdigest()
    services.store.commit_object(
        BUCKET,
        key,
        StagedFile(staged, size, digest[:32], digest),
        content_type="application/octet-stream",
        storage_class="STANDARD",
        metadata={},
    )


def qcow2_of(tmp_path: Path, size: str, *extra: str) -> bytes:
    path = tmp_path / f"disk-{size}.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", *extra, str(path), size)
    return path.read_bytes()


def counts(services: Services) -> tuple[int, int]:
    with services.db.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(images)).scalar_one(),
            conn.execute(select(func.count()).select_from(jobs)).scalar_one(),
        )


def body(key: str, min_disk: int = 40, **extra: Any) -> dict[str, Any]:
    return {
        "name": "hdr",
        "image_url": f"{BUCKET}:{key}",
        "min_disk": min_disk,
        "os_version": "Ubuntu 22.04 server 64bit",
        **extra,
    }


def refused(call: Any) -> RequestInvalid:
    with pytest.raises(RequestInvalid) as info:
        call()
    return info.value


def test_min_disk_below_the_virtual_size_is_refused_at_once(
    services: Services, tmp_path: Path
) -> None:
    put(services, "big.qcow2", qcow2_of(tmp_path, "50G"))
    pid = fx.project_id(services)
    before = counts(services)
    err = refused(lambda: create_image_from_file(services, pid, body("big.qcow2")))
    assert (err.code, err.status, err.field) == ("IMG.0055", 400, "min_disk")
    assert err.message.splitlines() == [
        "IMG-DISK-SIZE: min_disk 40 GiB is smaller than the virtual disk (50 GiB).",
        f"  evidence: virtual size: {50 * GiB} bytes (50 GiB rounded up)",
        "  fix: Register the image with min_disk of at least 50.",
    ]
    put_sparse(services, "big.raw", 50 * GiB)  # fast import: a RAW with its bitmap beside it
    put(services, "big.mf", b"bitmap")
    err = refused(lambda: quick_import(services, pid, body("big.raw")))
    assert err.code == "IMG.0055" and err.message.startswith("IMG-DISK-SIZE: min_disk 40 GiB")
    assert counts(services) == before  # no image, no job
    job_id = create_image_from_file(services, pid, body("big.qcow2", 50))
    assert fx.job_row(services, job_id).status == "INIT"


def test_the_virtual_size_is_rounded_up_to_whole_gib(services: Services) -> None:
    """A RAW of 40 GiB and one byte needs 41, as the job's IMG-DISK-SIZE counts."""
    put_sparse(services, "odd.raw", 40 * GiB + 1)
    pid = fx.project_id(services)
    err = refused(lambda: create_image_from_file(services, pid, body("odd.raw", 40)))
    assert err.code == "IMG.0055"
    assert err.message.startswith("IMG-DISK-SIZE: min_disk 40 GiB is smaller than the virtual")
    assert "(41 GiB)" in err.message
    assert create_image_from_file(services, pid, body("odd.raw", 41))


def test_formats_the_platform_does_not_take(services: Services, tmp_path: Path) -> None:
    pid = fx.project_id(services)
    put(services, "disk.img.gz", gzip.compress(b"a disk" * 1000))
    err = refused(lambda: create_image_from_file(services, pid, body("disk.img.gz")))
    assert (err.code, err.field) == ("IMG.0072", "image_url")
    assert err.message.startswith("IMG-FORMAT: The file is gzip")

    put(services, "backing.qcow2", fx.backing_qcow2().read_bytes())
    err = refused(lambda: create_image_from_file(services, pid, body("backing.qcow2")))
    assert err.code == "IMG.0057"
    assert err.message.startswith("IMG-SAFE: ") and "/etc/passwd" in err.message

    put(services, "qcow2-as-is.qcow2", qcow2_of(tmp_path, "1G"))
    err = refused(lambda: quick_import(services, pid, body("qcow2-as-is.qcow2")))
    assert err.code == "IMG.0072"
    assert err.message.startswith(
        "IMG-FAST-RAW: Fast import takes RAW (with a bitmap file) or ZVHD2; this file is qcow2."
    )
    assert counts(services) == (0, 0)


def test_fast_import_of_raw_needs_its_bitmap_beside_it(services: Services) -> None:
    pid = fx.project_id(services)
    put(services, "dir/disk.raw", b"\0" * 4096)
    err = refused(lambda: quick_import(services, pid, body("dir/disk.raw")))
    assert (err.code, err.field) == ("IMG.0057", "is_quick_import")
    assert err.message.startswith("IMG-FAST-RAW: No bitmap file was given")
    assert (
        f"  note: looked for the bitmap file {BUCKET}:dir/disk.mf beside {BUCKET}:dir/disk.raw; "
        "there is none"
    ) in err.message.splitlines()
    put(services, "dir/disk.mf", b"the job compares it with the image")
    assert quick_import(services, pid, body("dir/disk.raw"))


def test_glance_register_refuses_and_leaves_the_image_as_it_was(
    services: Services, tmp_path: Path
) -> None:
    pid = fx.project_id(services)
    put(services, "big.qcow2", qcow2_of(tmp_path, "50G"))
    queued = create_glance_image(services, pid, {"name": "later", "min_disk": 40})
    err = refused(
        lambda: register_image_file(services, pid, queued.id, {"image_url": f"{BUCKET}:big.qcow2"})
    )
    assert err.code == "IMG.0055" and err.message.startswith("IMG-DISK-SIZE: min_disk 40 GiB")
    after = get_image(services, pid, queued.id)
    assert after.status == "queued" and after.properties == queued.properties
    assert counts(services) == (1, 0)


def test_a_header_that_does_not_tell_is_left_to_the_job(services: Services) -> None:
    """A qcow2 whose L1 table lies past the header window: no verdict here, the job decides
    (and only the window was read)."""
    size = 64 << 20
    header = struct.pack(
        ">4sIQIIQIIQQIIQ",
        b"QFI\xfb",
        3,  # version
        0,
        0,  # backing file offset, size
        16,  # cluster bits
        100 * GiB,  # virtual size
        0,  # crypt
        400,  # l1 entries
        32 << 20,  # l1 table offset: past the 4 MiB header window
        1 << 16,  # refcount table offset
        1,  # refcount table clusters
        0,  # snapshots
        0,
    )
    header += struct.pack(">QQQII", 0, 0, 0, 4, 104)  # features, refcount order, header length
    put_sparse(services, "far.qcow2", size, header)
    pid = fx.project_id(services)
    registered = services.store.get_object(BUCKET, "far.qcow2")
    assert registered is not None
    options = CheckOptions(min_disk_gib=40)
    started = time.monotonic()
    assert header_checks.judge(services, ImageUrl(BUCKET, "far.qcow2"), registered, options) is None
    assert time.monotonic() - started < 10  # one small worker process
    assert create_image_from_file(services, pid, body("far.qcow2", 40))  # the job decides


def test_a_worker_that_fails_leaves_the_verdict_to_the_job(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(services, "big.qcow2", qcow2_of(tmp_path, "50G"))

    def broken(*args: object) -> None:
        raise WorkerError("the header check exceeded its CPU limit of 5 s", limit="cpu")

    monkeypatch.setattr(services.worker, "check_header", broken)
    assert create_image_from_file(services, fx.project_id(services), body("big.qcow2", 40))
    assert list(services.settings.tmp_dir.iterdir()) == []  # the window file is gone


def test_only_the_head_and_tail_are_read(services: Services) -> None:
    put_sparse(services, "huge.raw", 900 * GiB, b"first")
    with header_checks.header_window(services, ImageUrl(BUCKET, "huge.raw")) as (info, path, n):
        assert info.size == 900 * GiB and n == header_checks.HEAD_BYTES
        data = path.read_bytes()
        assert len(data) == header_checks.HEAD_BYTES + header_checks.TAIL_BYTES
        assert data.startswith(b"first")
    assert not path.exists()
    put(services, "small.raw", b"small" * 100)  # a small object: all of it, once
    with header_checks.header_window(services, ImageUrl(BUCKET, "small.raw")) as (_, path, n):
        assert path.read_bytes() == b"small" * 100 and n == 500


def test_each_kind_of_image_is_judged_as_its_job_judges_it(
    services: Services, tmp_path: Path
) -> None:
    """An ISO registered as an ISO passes the header (as a system disk IMG-FORMAT refuses it),
    and a data disk's min_disk is held against its virtual size like a system disk's."""
    pid = fx.project_id(services)
    put(services, "cd.iso", minimal_iso())
    iso_job = create_image_from_file(services, pid, body("cd.iso", type="IsoImage"))
    assert fx.job_row(services, iso_job).status == "INIT"
    err = refused(lambda: create_image_from_file(services, pid, {**body("cd.iso"), "name": "s"}))
    assert err.code == "IMG.0072" and err.message.startswith("IMG-FORMAT: ")
    put(services, "data.qcow2", qcow2_of(tmp_path, "50G"))
    data = {"name": "data", "image_url": f"{BUCKET}:data.qcow2", "os_type": "Linux"}
    err = refused(lambda: create_data_image(services, pid, {**data, "min_disk": 40}))
    assert err.code == "IMG.0055" and err.message.startswith("IMG-DISK-SIZE: ")
    assert fx.job_row(services, create_data_image(services, pid, {**data, "min_disk": 50}))
