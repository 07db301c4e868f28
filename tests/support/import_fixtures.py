"""Helpers for the import-job tests: images to import, and a registered job ready to run.

``register(services, path)`` does what a user does: creates a project and a STANDARD bucket,
puts the file in it through the object store, and registers it with the image use case
(:func:`imageport.service.images.lifecycle.create_image_from_file`), leaving the job INIT.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from imageport.service.access.projects import create_project
from imageport.service.clock import new_id, new_uuid, time_text, utc_now
from imageport.service.context import Services
from imageport.service.images import lifecycle
from imageport.service.images.lifecycle import create_image_from_file
from imageport.service.ports import StagedFile
from imageport.service.tables import images, jobs
from support import builders
from support import guest_fixtures as gf

BUCKET = "images"

#: root's password hash (sha512-crypt): an uninitialized image (the Glance and ``/v1/.../upload``
#: paths register one) must let root log in at the console (IMG-ROOT-PASSWORD).
ROOT_SHADOW = (
    "root:$6$imageport0$cbgZQAkYcvwTPGd6fnM2.LNvgcKZ7ejlXDeihTw8iK2jB/BW07lQwti."
    "sd2MSI/L3Zi03A8hZqTXHoGJdc.wY0:19700:0:99999:7:::\n"
)


def good_raw() -> Path:
    """The cloud-ready synthetic Debian 12 guest (raw, 128 MiB, passes every rule)."""
    return gf.synthetic_guest()


def good_image(fmt: str) -> Path:
    """The good guest converted by qemu-img to ``fmt`` (cached)."""
    raw = good_raw()
    final = builders.cached(f"import-good-{raw.stem}.{fmt}")
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        builders.qemu_img("convert", "-f", "raw", "-O", fmt, str(raw), str(tmp))
        tmp.replace(final)
    return final


def console_ready_qcow2() -> Path:
    """The cloud-ready guest with a root password (fit for an uninitialized image), as qcow2
    (about 2 MiB, cached)."""
    final = builders.cached("glance-guest.qcow2")
    if not final.exists():
        raw = gf.build_guest(
            "glance",
            root={**gf.CLOUD_READY, "etc/shadow": ROOT_SHADOW},
            boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
        )
        tmp = final.with_name(final.name + ".tmp")
        builders.qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp))
        tmp.replace(final)
    return final


def failing_twice_qcow2() -> Path:
    """The cloud-ready guest failing two rules, each with evidence and a fix, as qcow2 (cached):
    its fstab mounts a data disk (IMG-FSTAB-DATA-DISK, one evidence line) and it boots only with
    UEFI (IMG-BOOT-MODE, two evidence lines: BIOS first, then UEFI)."""
    final = builders.cached("import-failing-twice.qcow2")
    if not final.exists():
        raw = gf.build_guest(
            "failing-twice",
            root=gf.CLOUD_READY,
            boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
            fstab=gf.GOOD_FSTAB + gf.DATA_DISK_LINE + "\n",
            bios_boot=False,
        )
        tmp = final.with_name(final.name + ".tmp")
        builders.qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp))
        tmp.replace(final)
    return final


def backing_qcow2() -> Path:
    """A qcow2 that names ``/etc/passwd`` as its backing file (IMG-SAFE)."""
    final = builders.cached("import-backing.qcow2")
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        builders.qemu_img(
            "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", str(tmp), "64M"
        )
        tmp.replace(final)
    return final


def luks_qcow2() -> Path:
    """A LUKS-encrypted qcow2 (IMG-QCOW2-ENCRYPTED)."""
    final = builders.cached("import-luks.qcow2")
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        builders.qemu_img(
            "create",
            "-q",
            "-f",
            "qcow2",
            "--object",
            "secret,id=sec0,data=abc",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=100",
            str(tmp),
            "64M",
        )
        tmp.replace(final)
    return final


def put_object(services: Services, project_id: str, key: str, path: Path) -> None:
    """Upload ``path`` as ``BUCKET/key`` through the object store."""
    store = services.store
    if store.get_bucket(BUCKET) is None:
        store.create_bucket(BUCKET, project_id, "STANDARD", services.settings.region)
    staged = store.staging_path()
    staged.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, staged)
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(staged, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
    store.commit_object(
        BUCKET,
        key,
        StagedFile(staged, staged.stat().st_size, md5.hexdigest(), sha.hexdigest()),
        content_type="application/octet-stream",
        storage_class="STANDARD",
        metadata={},
    )


def store_bytes(
    services: Services, bucket: str, key: str, data: bytes, storage_class: str = "STANDARD"
) -> None:
    """Commit ``data`` as ``bucket/key`` straight into the object store (the bucket exists)."""
    staging = services.store.staging_path()
    staging.parent.mkdir(parents=True, exist_ok=True)
    staging.write_bytes(data)
    staged = StagedFile(
        staging,
        len(data),
        hashlib.md5(data).hexdigest(),  # noqa: S324
        hashlib.sha256(data).hexdigest(),
    )
    services.store.commit_object(
        bucket,
        key,
        staged,
        content_type="application/octet-stream",
        storage_class=storage_class,
        metadata={},
    )


def project_id(services: Services) -> str:
    """The test project's id (created on first use)."""
    from imageport.service.tables import projects

    with services.db.connect() as conn:
        found = conn.execute(select(projects.c.id).where(projects.c.name == "tester")).scalar()
    return found or create_project(services, "tester").id


def register(services: Services, path: Path, *, name: str = "img", **body: Any) -> str:
    """Upload ``path`` and register it as image ``name``; the INIT job's id."""
    pid = project_id(services)
    key = f"uploads/{name}.{path.suffix.lstrip('.') or 'img'}"
    put_object(services, pid, key, path)
    request = {"name": name, "image_url": f"{BUCKET}:{key}", "min_disk": 40, **body}
    return create_image_from_file(services, pid, request, quick=bool(body.get("is_quick_import")))


def without_header_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registration accepts what its header checks would refuse at once
    (:mod:`imageport.service.images.header_checks`), so that a test can show the job's own
    check still refuses it (defence in depth)."""
    monkeypatch.setattr(lifecycle, "check_header", lambda *args, **kwargs: None)


def job_row(services: Services, job_id: str) -> Any:
    with services.db.connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).one()


def image_row(services: Services, job_id: str) -> Any:
    with services.db.connect() as conn:
        image_id = conn.execute(select(jobs.c.image_id).where(jobs.c.id == job_id)).scalar()
        return conn.execute(select(images).where(images.c.id == image_id)).one()


def raw_of(image: Path, fmt: str, out: Path) -> bytes:
    """What qemu-img says the disk holds (``convert -O raw``)."""
    builders.qemu_img("convert", "-f", fmt, "-O", "raw", str(image), str(out))
    return out.read_bytes()


def add_job_and_image(services: Services, project_id: str, status: str, image_status: str) -> None:
    """An image in ``image_status`` and an import job of it in ``status``, written straight
    into the tables (for the figures that count them)."""
    now = time_text(utc_now())
    image_id = new_uuid()
    with services.db.begin() as conn:
        conn.execute(
            insert(images).values(
                id=image_id,
                project_id=project_id,
                name=f"img-{image_id[:8]}",
                status=image_status,
                visibility="private",
                protected=False,
                container_format="bare",
                min_disk=1,
                min_ram=0,
                properties={},
                tags=[],
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            insert(jobs).values(
                id=new_id(),
                project_id=project_id,
                job_type="imsImportImageJob",
                status=status,
                image_id=image_id,
                params={},
                percent=0.0,
                bytes_done=0,
                bytes_total=0,
                cancel_requested=False,
                attempts=0,
                begin_time=now,
            )
        )
