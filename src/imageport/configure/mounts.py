"""Where the editing appliance mounts the guest's filesystems: exactly as the checker read them.

The plan is made from the filesystems the checker mounted (root found by searching the volumes,
the rest from the guest's fstab); the appliance must write to the same ones, so it is told
them rather than left to its own inspection (which, on a guest whose mount point is not a
directory, mounts less and writes into the directory underneath). A partition is named as the
appliance's Linux names it (``/dev/sda3``; one disk is attached), a logical volume
``/dev/<vg>/<lv>``; Btrfs keeps its ``subvol=`` option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imageport.configure.edits import NotEditableError, guest_path
from imageport.guest.files.mounts import GuestLayout, Mount

_LVM_NAME = re.compile(r"^[A-Za-z0-9+_.-]{1,127}$")
_SUBVOL = re.compile(r"^subvol(id)?=[A-Za-z0-9@/_.+-]{1,255}$")


@dataclass(frozen=True, slots=True)
class ApplianceMount:
    """One filesystem to mount in the appliance: ``device`` at ``mountpoint``."""

    device: str
    mountpoint: str
    options: str = ""


def _device(mount: Mount) -> str:
    volume = mount.volume
    if volume.logical_volume is not None and volume.volume_group is not None:
        vg, lv = volume.volume_group, volume.logical_volume
        if not (_LVM_NAME.match(vg) and _LVM_NAME.match(lv)):
            raise NotEditableError(f"the logical volume {vg}/{lv} has a name not used as given")
        return f"/dev/{vg}/{lv}"
    if volume.partition is not None:
        return f"/dev/sda{volume.partition.number}"
    return "/dev/sda"


def appliance_mounts(layout: GuestLayout) -> tuple[ApplianceMount, ...]:
    """The guest's mounts, shallowest first (``/`` before ``/boot`` before ``/boot/efi``)."""
    if layout.root is None:
        raise NotEditableError("no root filesystem was found")
    found: list[ApplianceMount] = []
    for mount in (layout.root, *layout.mounts):
        if any(m.mountpoint == mount.mountpoint for m in found):
            continue
        options = ""
        if mount.entry is not None:
            options = ",".join(o for o in mount.entry.options if _SUBVOL.match(o))
        point = mount.mountpoint if mount.mountpoint == "/" else guest_path(mount.mountpoint)
        found.append(ApplianceMount(_device(mount), point, options))
    return tuple(sorted(found, key=lambda m: (m.mountpoint != "/", m.mountpoint.count("/"))))
