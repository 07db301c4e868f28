"""A server's config drive: its metadata documents on an ISO 9660 disc labelled ``config-2``,
laid out as OpenStack's (``openstack/latest/meta_data.json`` ...), which cloud-init and
cloudbase-init find by that label.

Made with ``xorriso -as mkisofs`` (Rock Ridge names for Linux, Joliet for Windows) from the
folder :meth:`~.metadata_tree.MetadataTree.write` filled; the guest sees it as a read-only
CD-ROM. The label is read back from the primary volume descriptor by :func:`volume_label`.
"""

from __future__ import annotations

from pathlib import Path

from imageport.adapters.qemu.disks import run_tool
from imageport.service.ports import MachineError

LABEL = "config-2"
#: The primary volume descriptor: at sector 16 (of 2048 bytes); its volume identifier is 32
#: characters at byte 40.
_PVD_OFFSET = 16 * 2048
_LABEL_FIELD = slice(40, 72)


def make_config_drive(xorriso: str, tree: Path, iso: Path) -> None:
    """Write ``iso`` (replacing it) holding the files under ``tree``."""
    partial = iso.with_name(iso.name + ".partial")
    partial.unlink(missing_ok=True)
    argv = [xorriso, "-as", "mkisofs", "-quiet", "-r", "-J", "-V", LABEL]
    run_tool([*argv, "-o", str(partial), str(tree)], "xorriso (config drive)", MachineError)
    partial.chmod(0o600)
    partial.replace(iso)


def volume_label(iso: Path) -> str:
    """The volume identifier of an ISO 9660 image ('' when it has no primary descriptor)."""
    with open(iso, "rb") as f:
        f.seek(_PVD_OFFSET)
        pvd = f.read(2048)
    if pvd[:6] != b"\x01CD001":
        return ""
    return pvd[_LABEL_FIELD].decode("ascii", errors="replace").rstrip()
