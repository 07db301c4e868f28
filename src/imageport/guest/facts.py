"""Inspect the guest on a virtual disk and gather the facts the rules judge."""

from __future__ import annotations

from dataclasses import dataclass

from imageport.errors import SourceError
from imageport.guest.blockdev import BlockDevice
from imageport.guest.mounts import GuestLayout, assemble
from imageport.guest.osinfo import OsInfo, read_os_info
from imageport.guest.partitions import PartitionTable
from imageport.guest.storage import StorageLayout, scan_storage


@dataclass(frozen=True, slots=True)
class GuestFacts:
    """What is inside the image."""

    layout: GuestLayout
    os: OsInfo | None


def inspect_guest(disk: BlockDevice) -> GuestFacts:
    """Scan partitions and volumes, find the installed system, read its identity.

    Fails closed: an unexpected error leaves a layout with no root and the error as a problem,
    so IMG-SYSTEM-DISK reports it instead of the check crashing.
    """
    try:
        layout = assemble(scan_storage(disk))
        os_info = read_os_info(layout.files()) if layout.root is not None else None
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - a reader bug must not pass or crash a check
        empty = StorageLayout(PartitionTable("none", ()), (), (), ())
        problem = f"internal error while reading the guest ({type(exc).__name__}: {exc})"
        return GuestFacts(GuestLayout(empty, None, (), (), (), (problem,)), None)
    return GuestFacts(layout, os_info)
