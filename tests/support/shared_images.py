"""Active images made in no time, as an import job leaves them (a row and its stored file), for
the tests of what is done with images (sharing, copying, tags: service, vendor SDK and CLI)."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import insert

from imageport.service.clock import new_uuid
from imageport.service.context import Services
from imageport.service.images.import_request import base_properties
from imageport.service.tables import images

DISK = b"QFI\xfb" + bytes(60) + b"a shared image" * 300
PASSING: dict[str, Any] = {"schema": "imageport.check/1", "summary": {"verdict": "pass"}}


def active_image(
    services: Services,
    project_id: str,
    name: str,
    *,
    data: bytes = DISK,
    status: str = "active",
    description: str = "to share",
    min_ram: int = 0,
    max_ram: int | None = None,
    report: dict[str, Any] | None = PASSING,
    enterprise_project_id: str | None = None,
    created_at: str = "2030-01-01T00:00:00.000Z",
) -> str:
    """A new image of ``project_id`` in ``status`` with ``data`` as its stored file; its id."""
    image_id = new_uuid()
    folder = services.settings.images_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{image_id}.qcow2").write_bytes(data)
    props = base_properties(
        os_version="Ubuntu 22.04 server 64bit",
        description=description,
        config_init=True,
        architecture="x86",
        firmware="bios",
        data_origin="file,images:disk.qcow2",
    )
    props["__image_size"] = str(len(data))
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
                min_ram=min_ram,
                max_ram=max_ram,
                size=len(data),
                virtual_size=1 << 30,
                checksum=hashlib.sha256(data).hexdigest(),
                blob=f"{image_id}.qcow2",
                properties=props,
                tags=["env=test"],
                report=report,
                created_at=created_at,
                updated_at=created_at,
                active_at=created_at,
            )
        )
    return image_id
