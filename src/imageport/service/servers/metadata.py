"""What a guest learns about itself: the OpenStack metadata tree its machine is given.

The host serves these files from the metadata service at ``169.254.169.254`` (for that server
only) and writes them to the config drive (label ``config-2``), where cloud-init's OpenStack
and ConfigDrive data sources read them. :func:`metadata_tree` builds, below ``openstack/latest/``:

* ``meta_data.json``: ``uuid`` (cloud-init's instance id), ``name``, ``hostname``,
  ``project_id``, ``availability_zone``, ``launch_index``, ``meta`` (the server's metadata),
  ``public_keys`` ``{key_name: key}`` and ``keys`` ``[{name, type, data}]`` when the server has a
  key pair, and ``admin_pass`` when the create request gave one (it is nowhere else: never in
  the database, a job's params or a log);
* ``user_data``: the request's ``user_data``, decoded, when given;
* ``network_data.json``: one ethernet link with the server's MAC, configured by DHCP (IPv4);
* ``vendor_data.json`` and ``vendor_data2.json``: ``{}`` (there is no vendor data).

Every value comes from the service (the request was checked, the key is the key pair's): none
is read from an image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from imageport.service.servers.network import NETWORK_ID

PREFIX = "openstack/latest/"
LINK_ID = "tap0"
MAX_HOSTNAME = 63
_NOT_HOSTNAME = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class GuestIdentity:
    """Everything :func:`metadata_tree` puts in the tree."""

    server_id: str
    name: str
    project_id: str
    availability_zone: str
    mac: str
    launch_index: int = 0
    meta: Mapping[str, str] = field(default_factory=dict)
    key_name: str | None = None
    public_key: str | None = None
    admin_pass: str | None = None
    user_data: bytes | None = None


def hostname_of(name: str, server_id: str) -> str:
    """A host name for the server called ``name``: lower case, each run of characters other
    than letters, digits and ``-`` one ``-``, at most 63 characters; ``server-<id>`` when
    nothing is left."""
    host = _NOT_HOSTNAME.sub("-", name.lower()).strip("-")[:MAX_HOSTNAME].strip("-")
    return host or f"server-{server_id[:8]}"


def metadata_tree(guest: GuestIdentity) -> dict[str, bytes]:
    """The files of the tree (path -> content), as the module docstring lists them."""
    meta: dict[str, object] = {
        "uuid": guest.server_id,
        "name": guest.name,
        "hostname": hostname_of(guest.name, guest.server_id),
        "project_id": guest.project_id,
        "availability_zone": guest.availability_zone,
        "launch_index": guest.launch_index,
        "meta": dict(guest.meta),
        "devices": [],
    }
    if guest.key_name is not None and guest.public_key is not None:
        meta["public_keys"] = {guest.key_name: guest.public_key}
        meta["keys"] = [{"name": guest.key_name, "type": "ssh", "data": guest.public_key}]
    if guest.admin_pass is not None:
        meta["admin_pass"] = guest.admin_pass
    network = {
        "links": [
            {
                "id": LINK_ID,
                "type": "ethernet",
                "ethernet_mac_address": guest.mac,
                "mtu": 1500,
                "vif_id": guest.server_id,
            }
        ],
        "networks": [
            {"id": "network0", "type": "ipv4_dhcp", "link": LINK_ID, "network_id": NETWORK_ID}
        ],
        "services": [],
    }
    tree = {
        PREFIX + "meta_data.json": _json(meta),
        PREFIX + "network_data.json": _json(network),
        PREFIX + "vendor_data.json": b"{}",
        PREFIX + "vendor_data2.json": b"{}",
    }
    if guest.user_data is not None:
        tree[PREFIX + "user_data"] = guest.user_data
    return tree


def _json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, ensure_ascii=True).encode()


__all__ = ["PREFIX", "GuestIdentity", "hostname_of", "metadata_tree"]
