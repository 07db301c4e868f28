"""Servers made in no time, for the tests of what is done with a server (an image made from it):
a row of the ``servers`` table as the server use cases leave it, and its machine registered in a
:class:`~support.fakes.FakeServerHost`, running or off.

:func:`overlay_maker` gives the fake host a ``copy_maker`` that writes a real qcow2 overlay as the
copy of the disk (``qemu-img create -b <base> -F <format>``, grown to the server's disk), then
changes it as a guest would: ``qemu-io`` writes, or the whole content of another raw disk (a
guest whose files differ), so that a test can tell the overlay's data from the base's.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from imageport.service.clock import new_uuid
from imageport.service.context import Services
from imageport.service.ports import MachineSpec
from imageport.service.servers.statuses import (
    POWER_NOSTATE,
    POWER_RUNNING,
    POWER_SHUTDOWN,
    VmState,
    status_of,
)
from imageport.service.tables import servers
from support.fakes import FakeServerHost

GiB = 1 << 30
NOW = "2030-01-01T00:00:00.000Z"
#: A server's ``status`` -> the ``vm_state`` and ``power_state`` that give it.
STATES: dict[str, tuple[str, int]] = {
    "ACTIVE": (VmState.ACTIVE, POWER_RUNNING),
    "SHUTOFF": (VmState.STOPPED, POWER_SHUTDOWN),
    "BUILD": (VmState.BUILDING, POWER_NOSTATE),
    "ERROR": (VmState.ERROR, POWER_SHUTDOWN),
    "DELETED": (VmState.DELETED, POWER_NOSTATE),
}


def add_server(
    services: Services,
    project_id: str,
    image_id: str,
    *,
    status: str = "SHUTOFF",
    task_state: str | None = None,
    disk_gib: int = 40,
    firmware: str = "bios",
    base: Path | None = None,
    base_format: str = "qcow2",
    name: str = "web-1",
) -> str:
    """A server of ``project_id`` made from image ``image_id`` in ``status`` (and
    ``task_state``); when ``services.host`` is a fake host and the server is ACTIVE or SHUTOFF,
    its machine is registered there too (running when ACTIVE), its system disk an overlay on
    ``base`` (default: the image's stored file). Its id."""
    server_id = new_uuid()
    vm_state, power = STATES[status]
    with services.db.begin() as conn:
        conn.execute(
            insert(servers).values(
                id=server_id,
                project_id=project_id,
                name=name,
                description="",
                status=status_of(vm_state, task_state),
                vm_state=vm_state,
                task_state=task_state,
                power_state=power,
                flavor_id="s1.small",
                vcpus=1,
                memory_mib=1024,
                image_id=image_id,
                disk_gib=disk_gib,
                firmware=firmware,
                key_name=None,
                metadata={},
                availability_zone="local-1a",
                mac="fa:16:3e:00:00:01",
                ssh_port=None,
                fault=None,
                created_at=NOW,
                updated_at=NOW,
                launched_at=NOW,
                deleted_at=None,
            )
        )
    host = services.host
    if isinstance(host, FakeServerHost) and status in ("ACTIVE", "SHUTOFF"):
        image = base or services.settings.images_dir / f"{image_id}.qcow2"
        spec = MachineSpec(
            server_id=server_id,
            image=image,
            image_format=base_format,
            disk_bytes=disk_gib * GiB,
            firmware=firmware,
            vcpus=1,
            memory_mib=1024,
            mac="fa:16:3e:00:00:01",
            metadata={},
        )
        host.create(spec)
        if status == "ACTIVE":
            host.start(spec)
    return server_id


def server_row(services: Services, server_id: str) -> Any:
    with services.db.connect() as conn:
        return conn.execute(select(servers).where(servers.c.id == server_id)).one()


def overlay_maker(
    *,
    writes: Sequence[tuple[int, int, int]] = (),
    content: Path | None = None,
    keep: Path | None = None,
    then: Callable[[MachineSpec, Path], None] | None = None,
) -> Callable[[MachineSpec, Path], None]:
    """A ``copy_maker`` writing a real qcow2 overlay on the machine's image, of the machine's
    disk size: then ``content`` (a raw disk: the overlay then reads as it, a guest whose files
    changed), then each ``(offset, length, byte)`` of ``writes`` (``qemu-io write -P``); a copy
    of the finished overlay at ``keep`` (to compare with later: the job discards its own);
    ``then(spec, top)`` last (to look at the service while the disk is being copied)."""

    def make(spec: MachineSpec, top: Path) -> None:
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                str(spec.image),
                "-F",
                spec.image_format,
                str(top),
                str(spec.disk_bytes),
            ],
            check=True,
        )
        if content is not None:
            subprocess.run(
                ["qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", str(content), str(top)],
                check=True,
            )
        for offset, length, byte in writes:
            subprocess.run(
                ["qemu-io", "-f", "qcow2", "-c", f"write -P {byte} {offset} {length}", str(top)],
                check=True,
                capture_output=True,
            )
        if keep is not None:
            shutil.copyfile(top, keep)
        if then is not None:
            then(spec, top)

    return make


__all__ = ["STATES", "GiB", "add_server", "overlay_maker", "server_row"]
