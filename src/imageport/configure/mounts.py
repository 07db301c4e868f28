"""Where the editing appliance mounts the guest's filesystems: exactly as the checker read them.

The plan is made from the filesystems the checker mounted (root found by searching the volumes,
the rest from the guest's fstab); the appliance must write to the same ones, so it is told
them rather than left to its own inspection (which, on a guest whose mount point is not a
directory, mounts less and writes into the directory underneath). A partition is named as the
appliance's Linux names it (``/dev/sda3``; one disk is attached), a logical volume
``/dev/<vg>/<lv>``; a Btrfs filesystem is mounted with ``subvolid=`` of the subvolume the
checker opened (its own search for ``@`` included; never fstab's options as written, which
the appliance's kernel would read differently).

A mount that no planned file can be under is left out: one whose mount point is not a sane
guest path (:func:`~imageport.configure.edits.guest_path`), and one the checker never reads
through: when the path to its mount point
crosses a symbolic link (or ``..``), the guest's paths resolve past it, and the appliance's
kernel, following that link from its own root, would mount it somewhere else (over one of
the appliance's directories, or over a guest directory the plan read from another
filesystem).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imageport.configure.edits import NotEditableError, guest_path
from imageport.errors import ImageportError
from imageport.guest.files.mounts import GuestFiles, GuestLayout, Mount
from imageport.guest.fs.btrfs import BtrfsFilesystem

# LVM's own rule: no "." or "..", no leading "-"
_LVM_NAME = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$")


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


def _options(mount: Mount) -> str:
    if isinstance(mount.fs, BtrfsFilesystem):
        return f"subvolid={mount.fs.subvol_id}"
    return ""


def _sane(mountpoint: str) -> bool:
    """Whether ``mountpoint`` is a path the plan may edit under: when it is not (under
    ``/dev``, control characters, too long), no planned file is under it, so it is not
    mounted at all."""
    try:
        guest_path(mountpoint)
    except NotEditableError:
        return False
    return True


def _read_through(files: GuestFiles, mountpoint: str) -> bool:
    """Whether the checker read the guest through a mount at ``mountpoint`` (normalised as
    the checker does): the path to it resolves, in the guest, to itself (no symbolic link, no
    ``..`` on the way)."""
    if ".." in mountpoint.split("/"):
        return False
    parent = mountpoint.rpartition("/")[0] or "/"
    if parent == "/":
        return True
    try:
        return files.locate(parent, follow=True)[2] == parent
    except ImageportError:
        return False


def appliance_mounts(layout: GuestLayout) -> tuple[ApplianceMount, ...]:
    """The guest's mounts, shallowest first (``/`` before ``/boot`` before ``/boot/efi``)."""
    if layout.root is None:
        raise NotEditableError("no root filesystem was found")
    files = layout.files()
    found: list[ApplianceMount] = []
    for mount in (layout.root, *layout.mounts):
        point = "/" + "/".join(p for p in mount.mountpoint.split("/") if p not in ("", "."))
        if any(m.mountpoint == point for m in found):
            continue
        if point != "/" and not (_sane(point) and _read_through(files, point)):
            continue
        found.append(ApplianceMount(_device(mount), point, _options(mount)))
    return tuple(sorted(found, key=lambda m: (m.mountpoint != "/", m.mountpoint.count("/"))))
