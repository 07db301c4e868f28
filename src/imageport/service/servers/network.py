"""The one network every server is on, and its MAC addresses.

Each machine has one NIC on QEMU's user-mode network: the guest gets :data:`GUEST_ADDRESS` by
DHCP, reaches the metadata service at ``169.254.169.254`` and nothing else, and is reached only
through the loopback port forwarded to its SSH port. There are no VPCs or subnets to choose:
this network is ``default``, both as :data:`NETWORK_ID` (the ``vpcid`` a create request may
name, the key of the server's ``addresses``) and as :data:`SUBNET_ID` (the only
``nics[].subnet_id``; ``imageport server create`` sends both); a request naming any other is
refused rather than given this network silently
(:mod:`imageport.service.servers.create_request`).
"""

from __future__ import annotations

import secrets
from typing import Final

NETWORK_ID: Final = "default"
SUBNET_ID: Final = "default"
#: The address every guest gets by DHCP on its own user-mode network.
GUEST_ADDRESS: Final = "169.254.169.15"
#: The OpenStack prefix of the MAC addresses (``fa:16:3e``), which guests' tools recognise.
MAC_PREFIX: Final = "fa:16:3e"


def new_mac() -> str:
    """A random ``fa:16:3e:xx:xx:xx`` address."""
    return MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


__all__ = ["GUEST_ADDRESS", "MAC_PREFIX", "NETWORK_ID", "SUBNET_ID", "new_mac"]
