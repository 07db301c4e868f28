"""The OpenStack metadata tree a guest reads from its config drive and metadata service."""

from __future__ import annotations

import json

import pytest

from imageport.service.servers.metadata import GuestIdentity, hostname_of, metadata_tree

SERVER = "0d9f2c4e-1111-4222-8333-444455556666"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0 user@host"


def guest(**changes: object) -> GuestIdentity:
    fields: dict[str, object] = {
        "server_id": SERVER,
        "name": "Web_Server.01",
        "project_id": "0123456789abcdef0123456789abcdef",
        "availability_zone": "local-1a",
        "mac": "fa:16:3e:12:34:56",
    }
    fields.update(changes)
    return GuestIdentity(**fields)  # type: ignore[arg-type]


def meta(tree: dict[str, bytes]) -> dict[str, object]:
    doc = json.loads(tree["openstack/latest/meta_data.json"])
    assert isinstance(doc, dict)
    return doc


def test_a_server_with_a_key_a_password_and_user_data() -> None:
    tree = metadata_tree(
        guest(
            launch_index=2,
            meta={"role": "web"},
            key_name="kp1",
            public_key=KEY,
            admin_pass="Imag3port!pass",  # noqa: S106
            user_data=b"#cloud-config\nruncmd: [touch /ok]\n",
        )
    )
    assert sorted(tree) == [
        "openstack/latest/meta_data.json",
        "openstack/latest/network_data.json",
        "openstack/latest/user_data",
        "openstack/latest/vendor_data.json",
        "openstack/latest/vendor_data2.json",
    ]
    assert meta(tree) == {
        "uuid": SERVER,
        "name": "Web_Server.01",
        "hostname": "web-server-01",
        "project_id": "0123456789abcdef0123456789abcdef",
        "availability_zone": "local-1a",
        "launch_index": 2,
        "meta": {"role": "web"},
        "devices": [],
        "public_keys": {"kp1": KEY},
        "keys": [{"name": "kp1", "type": "ssh", "data": KEY}],
        "admin_pass": "Imag3port!pass",
    }
    assert tree["openstack/latest/user_data"] == b"#cloud-config\nruncmd: [touch /ok]\n"
    assert tree["openstack/latest/vendor_data.json"] == b"{}"
    assert tree["openstack/latest/vendor_data2.json"] == b"{}"


def test_what_was_not_given_is_not_in_the_tree() -> None:
    tree = metadata_tree(guest())
    assert "openstack/latest/user_data" not in tree
    doc = meta(tree)
    assert "admin_pass" not in doc and "public_keys" not in doc and "keys" not in doc
    assert doc["meta"] == {} and doc["launch_index"] == 0


def test_the_network_is_one_ethernet_link_configured_by_dhcp() -> None:
    network = json.loads(metadata_tree(guest())["openstack/latest/network_data.json"])
    assert network["links"] == [
        {
            "id": "tap0",
            "type": "ethernet",
            "ethernet_mac_address": "fa:16:3e:12:34:56",
            "mtu": 1500,
            "vif_id": SERVER,
        }
    ]
    assert network["networks"] == [
        {"id": "network0", "type": "ipv4_dhcp", "link": "tap0", "network_id": "default"}
    ]
    assert network["services"] == []


@pytest.mark.parametrize(
    ("name", "hostname"),
    [
        ("vm1", "vm1"),
        ("My.Server_1", "my-server-1"),
        ("--edge--", "edge"),
        ("___", "server-0d9f2c4e"),
        ("a" * 64, "a" * 63),
        ("a" * 62 + "-b", "a" * 62),
    ],
)
def test_host_names_are_valid_dns_labels(name: str, hostname: str) -> None:
    assert hostname_of(name, SERVER) == hostname
