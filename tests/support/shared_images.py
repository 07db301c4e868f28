"""Active images made in no time, as an import job leaves them (a row and its stored file), for
the image sharing tests (service, vendor SDK and CLI)."""

from __future__ import annotations

import hashlib

from sqlalchemy import insert

from imageport.service.clock import new_uuid
from imageport.service.context import Services
from imageport.service.images.import_request import base_properties
from imageport.service.tables import images

DISK = b"QFI\xfb" + bytes(60) + b"a shared image" * 300


def active_image(
    services: Services,
    project_id: str,
    name: str,
    *,
    status: str = "active",
    enterprise_project_id: str | None = None,
) -> str:
    """A new image of ``project_id`` in ``status`` with a stored file; its id."""
    image_id = new_uuid()
    folder = services.settings.images_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{image_id}.qcow2").write_bytes(DISK)
    props = base_properties(
        os_version="Ubuntu 22.04 server 64bit",
        description="to share",
        config_init=True,
        architecture="x86",
        firmware="bios",
        data_origin="file,images:disk.qcow2",
    )
    props["__image_size"] = str(len(DISK))
    if enterprise_project_id is not None:
        props["enterprise_project_id"] = enterprise_project_id
    with services.db.begin() as conn:
        conn.execute(
            insert(images).values(
                id=image_id,
                project_id=project_id,
                name=name,
                status=status,
                visibility="private",
                protected=False,
                container_format="bare",
                disk_format="qcow2",
                min_disk=40,
                min_ram=0,
                max_ram=None,
                size=len(DISK),
                virtual_size=1 << 30,
                checksum=hashlib.sha256(DISK).hexdigest(),
                blob=f"{image_id}.qcow2",
                properties=props,
                tags=["env=test"],
                report={"schema": "imageport.check/1", "summary": {"verdict": "pass"}},
                created_at="2030-01-01T00:00:00.000Z",
                updated_at="2030-01-01T00:00:00.000Z",
                active_at="2030-01-01T00:00:00.000Z",
            )
        )
    return image_id
