"""Rocky Linux 9 as a VMware export leaves it, composed from the topic fixtures: ifcfg-eth0
static with HWADDR, an old NIC's ifcfg-eth1 and persistent-net rules (``rhel_network``), fstab
and ``root=`` naming ``/dev/sdaN``, BLS entries and GRUB defaults without a serial console
(``rhel_boot``), and a host-only dracut initrd without virtio or Xen front ends (``rhel_initrd``).
"""

from __future__ import annotations

from pathlib import Path

from support import guest_fixtures as gf
from support import rhel_boot as rb
from support import rhel_initrd as ri
from support.rhel_network import RHEL_NETWORK


def rocky9() -> Path:
    return gf.build_guest(
        "rocky9-vmware",
        root={
            **ri.RHEL9_ROOT,
            **rb.ROOT,
            **RHEL_NETWORK,
            "boot/efi/.mountpoint": "",  # the mount points, as a real guest has them
        },
        boot={**ri.rhel9_boot(), **rb.BOOT, "efi/.mountpoint": ""},
        fstab=rb.FSTAB,
    )
