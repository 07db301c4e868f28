"""The guest the ``is_config`` import tests configure: the cloud-ready synthetic Debian guest
(:data:`~support.guest_fixtures.CLOUD_READY`) with the network defects a merged fix clears: a
udev rule naming eth0 after the old machine's MAC address (IMG-NET-RULES) and eth0 on a static
address with a pinned MAC in ``/etc/network/interfaces`` (IMG-NET-DHCP, IMG-HW-BINDING)."""

from __future__ import annotations

from pathlib import Path

from support import builders
from support import guest_fixtures as gf
from support import network_fixtures as nf

NAME = "is-config-netdefects"
PERSISTENT_NET = "/etc/udev/rules.d/70-persistent-net.rules"
#: The rules the defects trip (warnings), all of them initialization rules.
NETWORK_RULES = ("IMG-NET-RULES", "IMG-NET-DHCP", "IMG-HW-BINDING")
ROOT: gf.Tree = {
    **gf.CLOUD_READY,
    PERSISTENT_NET[1:]: (
        '# generated\nSUBSYSTEM=="net", ACTION=="add", ATTR{address}=="52:54:00:12:34:56", '
        'NAME="eth0"\n'
    ),
    "etc/network/interfaces": nf.DEB_STATIC_INTERFACES,
    # the mount points, as a real guest has them (the appliance mounts /boot and /boot/efi)
    "boot/efi/.mountpoint": "",
}
BOOT: gf.Tree = {"grub/grub.cfg": gf.READY_GRUB_CFG, "efi/.mountpoint": ""}


def defective_guest() -> Path:
    """The guest as a raw disk (128 MiB, sparse; cached)."""
    return gf.build_guest(NAME, root=ROOT, boot=BOOT)


def defective_qcow2() -> Path:
    """The same guest as qcow2 (about 2 MiB; cached), as a user would upload it."""
    raw = defective_guest()
    final = builders.cached(f"{raw.stem}.qcow2")  # the raw's name holds its content's hash
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        builders.qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp))
        tmp.replace(final)
    return final
