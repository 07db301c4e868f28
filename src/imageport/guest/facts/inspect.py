"""Inspect the guest on a virtual disk and gather the facts the rules judge.

:class:`GuestFacts` holds the layout (volumes, root, mounts) and the OS identity, which every
report shows. Topic facts (kernels and initrds, accounts, network, cloud-init, boot) are read
on demand with :meth:`GuestFacts.derive`, which runs a reader function once per check and
memoises its result, so several rules can share one reading of the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from imageport.errors import SourceError
from imageport.guest.facts.osinfo import OsInfo, read_os_info
from imageport.guest.files.mounts import GuestFiles, GuestLayout, assemble
from imageport.guest.volumes.blockdev import BlockDevice
from imageport.guest.volumes.discover import StorageLayout, scan_storage
from imageport.guest.volumes.partitions import PartitionTable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GuestFacts:
    """What is inside the image."""

    layout: GuestLayout
    os: OsInfo | None
    #: release files (os-release ...) that exist but could not be read (IMG-SYSTEM-DISK)
    os_problems: tuple[str, ...] = ()
    _derived: dict[Callable[..., Any], Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def family(self) -> str:
        """The distribution family for advice: ``debian``, ``rhel``, ``suse`` ... or ``other``."""
        return self.os.family if self.os is not None else "other"

    @property
    def files(self) -> GuestFiles:
        """The guest's files across its mounts."""
        return self.layout.files()

    def derive(self, reader: Callable[[GuestFacts], T]) -> T:
        """``reader(self)``, computed once per check (memoised by reader)."""
        if reader not in self._derived:
            self._derived[reader] = reader(self)
        result: T = self._derived[reader]
        return result


def inspect_guest(disk: BlockDevice) -> GuestFacts:
    """Scan partitions and volumes, find the installed system, read its identity.

    Fails closed: an unexpected error leaves a layout with no root and the error as a problem,
    so IMG-SYSTEM-DISK reports it instead of the check crashing.
    """
    try:
        layout = assemble(scan_storage(disk))
        os_problems: list[str] = []
        os_info = read_os_info(layout.files(), os_problems) if layout.root is not None else None
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - a reader bug must not pass or crash a check
        empty = StorageLayout(PartitionTable("none", ()), (), (), ())
        problem = f"internal error while reading the guest ({type(exc).__name__}: {exc})"
        return GuestFacts(GuestLayout(empty, None, (), (), (), (problem,)), None)
    return GuestFacts(layout, os_info, tuple(os_problems))
