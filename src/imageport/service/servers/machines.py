"""The :class:`~imageport.service.ports.MachineSpec` of a server: what the host is given to make
and start its machine.

Every value comes from the server's row and the service's own records, never from the image:

* the system disk is an overlay on the image's **stored** file (``images_dir/<blob>``) in its
  stored format (``disk_format``, ``qcow2`` or ``raw``), grown to the server's ``disk_gib``;
* firmware, vCPUs, memory and MAC address are the row's (chosen when it was made);
* the metadata tree (:mod:`.metadata`) is rebuilt at every start from the row and from what the
  server's create sub-job kept (:class:`CreateParams`: its launch index, the key pair's public
  key as it was at create, so a key pair deleted later does not take the key from the server,
  as in Nova, and ``user_data``; both are dropped when the server is deleted:
  :func:`forget_create_inputs`). ``adminPass`` is in it only at the first start, handed over
  by the create job from memory (:mod:`.passwords`): cloud-init sets it once per instance.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, select, update

from imageport.limits import GiB
from imageport.service.context import Services
from imageport.service.ports import MachineError, MachineSpec
from imageport.service.servers.job_types import create_job_id
from imageport.service.servers.metadata import GuestIdentity, metadata_tree
from imageport.service.tables import images, jobs
from imageport.settings import STORED_FORMATS


@dataclass(frozen=True, slots=True)
class CreateParams:
    """The params of a ``createSingleServer`` sub-job, read defensively."""

    server_id: str
    launch_index: int
    public_key: str | None
    #: base64, as the request gave it
    user_data: str | None
    #: the request gave an ``adminPass`` (the password itself is never stored)
    admin_pass_given: bool

    @classmethod
    def from_document(cls, doc: object) -> CreateParams:
        d: Mapping[str, Any] = doc if isinstance(doc, dict) else {}
        index = d.get("launch_index")
        key = d.get("public_key")
        data = d.get("user_data")
        server = d.get("server_id")
        return cls(
            server_id=server if isinstance(server, str) else "",
            launch_index=index if isinstance(index, int) and not isinstance(index, bool) else 0,
            public_key=key if isinstance(key, str) else None,
            user_data=data if isinstance(data, str) else None,
            admin_pass_given=d.get("admin_pass_given") is True,
        )

    def document(self) -> dict[str, object]:
        return {
            "server_id": self.server_id,
            "launch_index": self.launch_index,
            "public_key": self.public_key,
            "user_data": self.user_data,
            "admin_pass_given": self.admin_pass_given,
        }


def create_params(services: Services, server_id: str) -> CreateParams:
    """What the server's create sub-job kept (defaults if the row is gone)."""
    with services.db.connect() as conn:
        doc = conn.execute(
            select(jobs.c.params).where(jobs.c.id == create_job_id(server_id))
        ).scalar()
    return CreateParams.from_document(doc)


def forget_create_inputs(conn: Connection, server_id: str) -> None:
    """Drop ``user_data`` and the public key from the server's create sub-job (in the caller's
    transaction, when the server is deleted): they may hold secrets, and no start needs them
    any more."""
    job_id = create_job_id(server_id)
    doc = conn.execute(select(jobs.c.params).where(jobs.c.id == job_id)).scalar()
    if isinstance(doc, dict):
        kept = {**doc, "user_data": None, "public_key": None}
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(params=kept))


def machine_spec(
    services: Services, row: Row[Any], *, admin_pass: str | None = None
) -> MachineSpec:
    """The spec of the server ``row``'s machine (``admin_pass``: at its first start only).
    :class:`MachineError` when its image no longer has a usable stored file."""
    with services.db.connect() as conn:
        image = conn.execute(
            select(images.c.blob, images.c.disk_format).where(images.c.id == row.image_id)
        ).first()
    blob = "" if image is None or image.blob is None else str(image.blob)
    if "/" in blob or "\\" in blob or blob in ("", ".", ".."):
        raise MachineError(f"the server's image {row.image_id} has no stored file")
    if image is None or image.disk_format not in STORED_FORMATS:
        raise MachineError(f"the server's image {row.image_id} is not stored as qcow2 or raw")
    params = create_params(services, row.id)
    user_data = None
    if params.user_data is not None:
        try:
            user_data = base64.b64decode(params.user_data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MachineError("the server's user_data cannot be read back") from exc
    guest = GuestIdentity(
        server_id=row.id,
        name=row.name,
        project_id=row.project_id,
        availability_zone=row.availability_zone,
        mac=row.mac,
        launch_index=params.launch_index,
        meta=dict(row.metadata or {}),
        key_name=row.key_name,
        public_key=params.public_key,
        admin_pass=admin_pass,
        user_data=user_data,
    )
    return MachineSpec(
        server_id=row.id,
        image=services.settings.images_dir / blob,
        image_format=str(image.disk_format),
        disk_bytes=int(row.disk_gib) * GiB,
        firmware=row.firmware,
        vcpus=int(row.vcpus),
        memory_mib=int(row.memory_mib),
        mac=row.mac,
        metadata=metadata_tree(guest),
    )


__all__ = ["CreateParams", "create_params", "forget_create_inputs", "machine_spec"]
