"""The create request's body, checked field by field: what is accepted, and each refusal with the
code and the field a client reads in the error."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

import pytest

from imageport.service.errors import RequestInvalid
from imageport.service.servers.create_request import MAX_BATCH, parse_create_request
from imageport.service.servers.network import GUEST_ADDRESS, NETWORK_ID, SUBNET_ID
from imageport.settings import load_settings

SETTINGS = load_settings({})
PASSWORD = "Imag3port!pass"  # noqa: S105 (a test server's)


def body(**server: object) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "imageRef": "11111111-2222-3333-4444-555555555555",
        "flavorRef": "s1.small.1",
        "name": "vm1",
        "vpcid": NETWORK_ID,
        "nics": [{"subnet_id": SUBNET_ID}],
        "root_volume": {"volumetype": "SSD", "size": 40},
    }
    doc.update(server)
    return {"server": {k: v for k, v in doc.items() if v is not None}}


def refused(doc: object, version: str = "v1", **settings: object) -> RequestInvalid:
    conf = load_settings({}, **settings) if settings else SETTINGS
    with pytest.raises(RequestInvalid) as info:
        parse_create_request(conf, doc, version)  # type: ignore[arg-type]
    return info.value


def test_a_full_request_is_read_with_every_field() -> None:
    user_data = b"#cloud-config\nruncmd: [touch /ok]\n"
    request = parse_create_request(
        SETTINGS,
        {
            "dry_run": False,
            **body(
                count=3,
                key_name="kp1",
                adminPass=PASSWORD,
                user_data=base64.b64encode(user_data).decode(),
                metadata={"role": "web", "a.b:c-d_e": ""},
                availability_zone="local-1a",
                description="three of them",
                data_volumes=[],
                security_groups=[],
                extendparam={"chargingMode": 0, "regionID": "local-1"},
                nics=[{"subnet_id": SUBNET_ID, "ip_address": GUEST_ADDRESS, "ipv6_enable": False}],
            ),
        },
        "v1",
    )
    assert request.names == ("vm1-0001", "vm1-0002", "vm1-0003") and request.count == 3
    assert (request.flavor.id, request.flavor.vcpus, request.flavor.memory_mib) == (
        "s1.small.1",
        1,
        1024,
    )
    assert (request.disk_gib, request.key_name, request.admin_pass) == (40, "kp1", PASSWORD)
    assert request.user_data == user_data
    assert request.metadata == {"role": "web", "a.b:c-d_e": ""}
    assert (request.availability_zone, request.description) == ("local-1a", "three of them")
    assert PASSWORD not in repr(request)


def test_defaults() -> None:
    request = parse_create_request(
        SETTINGS, {"server": {"imageRef": "i", "flavorRef": "s1.small.1", "name": "n"}}, "v1.1"
    )
    assert request.names == ("n",) and request.disk_gib is None and not request.dry_run
    assert request.availability_zone == "local-1a" and request.metadata == {}
    assert (request.key_name, request.admin_pass, request.user_data) == (None, None, None)


def test_the_digest_tells_requests_apart_but_never_depends_on_the_password() -> None:
    def digest(**server: object) -> str:
        return parse_create_request(SETTINGS, body(**server), "v1").digest()

    assert digest(adminPass=PASSWORD) == digest(adminPass="An0ther!secret")
    assert digest(adminPass=PASSWORD) != digest()
    assert digest(name="a") != digest(name="b")
    assert digest(metadata={"k": "v"}) != digest()


@pytest.mark.parametrize(
    ("change", "code", "names"),
    [
        (lambda b: b["server"].update(name="bad name"), "Ecs.0005", "name"),
        (lambda b: b["server"].update(name="x" * 65), "Ecs.0005", "name"),
        (lambda b: b["server"].update(name="x" * 60, count=2), "Ecs.0005", "name"),
        (lambda b: b["server"].pop("name"), "Ecs.0005", "name"),
        (lambda b: b["server"].update(count=0), "Ecs.0005", "count"),
        (lambda b: b["server"].update(count=True), "Ecs.0005", "count"),
        (lambda b: b["server"].update(count="2"), "Ecs.0005", "count"),
        (lambda b: b["server"].update(count=MAX_BATCH + 1), "Ecs.0118", "count"),
        (lambda b: b["server"].update(flavorRef="s6.large.2"), "Ecs.0029", "flavorRef"),
        (lambda b: b["server"].pop("flavorRef"), "Ecs.0029", "flavorRef"),
        (lambda b: b["server"].pop("imageRef"), "Ecs.0005", "imageRef"),
        (lambda b: b["server"].update(imageRef=7), "Ecs.0005", "imageRef"),
        (lambda b: b["server"]["root_volume"].update(size=39), "Ecs.0005", "root_volume.size"),
        (lambda b: b["server"]["root_volume"].update(size=1025), "Ecs.0005", "root_volume.size"),
        (lambda b: b["server"]["root_volume"].update(size="40"), "Ecs.0005", "root_volume.size"),
        (
            lambda b: b["server"]["root_volume"].update(volumetype="FAST"),
            "Ecs.0005",
            "root_volume.volumetype",
        ),
        (
            lambda b: b["server"]["root_volume"].update(iops=3000),
            "Ecs.0005",
            "root_volume.iops",
        ),
        (lambda b: b["server"].update(user_data="not base64!"), "Ecs.0005", "user_data"),
        (
            lambda b: b["server"].update(user_data=base64.b64encode(bytes(32 * 1024 + 1)).decode()),
            "Ecs.0005",
            "user_data",
        ),
        (lambda b: b["server"].update(metadata={"k": 1}), "Ecs.0005", "metadata.k"),
        (lambda b: b["server"].update(metadata={"bad key": "v"}), "Ecs.0005", "metadata"),
        (
            lambda b: b["server"].update(metadata={f"k{i}": "v" for i in range(17)}),
            "Ecs.0005",
            "metadata",
        ),
        (lambda b: b["server"].update(metadata=["k"]), "Ecs.0005", "metadata"),
        (lambda b: b["server"].update(vpcid="vpc-uuid"), "Ecs.0005", "vpcid"),
        (lambda b: b["server"].update(nics=[{"subnet_id": "other"}]), "Ecs.0038", "subnet_id"),
        (
            lambda b: b["server"].update(nics=[{"ip_address": "192.168.0.5"}]),
            "Ecs.0005",
            "nics[0].ip_address",
        ),
        (lambda b: b["server"].update(nics=[{"port_id": "p"}]), "Ecs.0005", "nics[0].port_id"),
        (lambda b: b["server"].update(nics=[{}, {}]), "Ecs.0005", "nics"),
        (
            lambda b: b["server"].update(nics=[{"ipv6_enable": True}]),
            "Ecs.0005",
            "nics[0].ipv6_enable",
        ),
        (lambda b: b["server"].update(availability_zone="az1"), "Ecs.0005", "availability_zone"),
        (lambda b: b["server"].update(description="<b>"), "Ecs.0005", "description"),
        (lambda b: b["server"].update(description="x" * 86), "Ecs.0005", "description"),
        # C1 controls, line separators and bidirectional overrides are control characters too
        (lambda b: b["server"].update(description="a\x85b"), "Ecs.0005", "description"),
        (lambda b: b["server"].update(description="a\u202eb"), "Ecs.0005", "description"),
        (lambda b: b["server"].update(metadata={"k": "a\u2028b"}), "Ecs.0005", "metadata.k"),
        (lambda b: b["server"].update(metadata={"k": "a\x9bb"}), "Ecs.0005", "metadata.k"),
        (lambda b: b["server"].update(key_name="k\u2066"), "Ecs.0005", "key_name"),
        (lambda b: b["server"].update(publicip={"id": "x"}), "Ecs.0005", "server.publicip"),
        (lambda b: b["server"].update(tags=["a"]), "Ecs.0005", "server.tags"),
        (lambda b: b["server"].update(isAutoRename=False), "Ecs.0005", "server.isAutoRename"),
        (lambda b: b["server"].update(surprise=1), "Ecs.0005", "server.surprise"),
        (
            lambda b: b["server"].update(data_volumes=[{"volumetype": "SSD", "size": 10}]),
            "Ecs.0005",
            "data_volumes",
        ),
        (
            lambda b: b["server"].update(security_groups=[{"id": "sg"}]),
            "Ecs.0005",
            "security_groups",
        ),
        (
            lambda b: b["server"].update(extendparam={"chargingMode": 1}),
            "Ecs.0005",
            "extendparam.chargingMode",
        ),
        (
            lambda b: b["server"].update(extendparam={"chargingMode": 0.0}),
            "Ecs.0005",
            "extendparam.chargingMode",
        ),
        (
            lambda b: b["server"].update(extendparam={"chargingMode": "postPaid"}),
            "Ecs.0005",
            "extendparam.chargingMode",
        ),
        (
            lambda b: b["server"].update(extendparam={"regionID": "cn-north-4"}),
            "Ecs.0005",
            "extendparam.regionID",
        ),
        (
            lambda b: b["server"].update(extendparam={"marketType": "spot"}),
            "Ecs.0005",
            "extendparam.marketType",
        ),
        (lambda b: b.update(dry_run="yes"), "Ecs.0005", "dry_run"),
        (lambda b: b.update(extra=1), "Ecs.0005", "extra"),
        (lambda b: b.update(server=[]), "Ecs.0005", "server"),
    ],
)
def test_each_refusal_names_its_field(
    change: Callable[[dict[str, Any]], object], code: str, names: str
) -> None:
    doc = copy.deepcopy(body())
    change(doc)
    error = refused(doc)
    assert error.code == code, error.message
    assert error.message.startswith(names) or names in error.message, error.message


def test_the_v11_route_takes_charging_mode_as_a_string() -> None:
    doc = body(extendparam={"chargingMode": "postPaid"})
    assert parse_create_request(SETTINGS, doc, "v1.1").names == ("vm1",)
    prepaid = refused(body(extendparam={"chargingMode": "prePaid"}), "v1.1")
    assert prepaid.code == "Ecs.0005" and "pay-per-use" in prepaid.message
    period = refused(body(extendparam={"periodType": "month"}), "v1.1")
    assert period.message.startswith("extendparam.periodType")


@pytest.mark.parametrize(
    "password",
    [
        "Sh0rt!",  # too short
        "Imag3port!pass" * 2,  # too long
        "alllowercase1",  # two kinds
        "Imag3port pass",  # a space
        "Imag3port!root",  # the user name
        "Imag3port!TOOR",  # its reverse
        "Ümlaut3port!x",  # not ASCII
    ],
)
def test_weak_or_odd_passwords_are_refused_without_being_repeated(password: str) -> None:
    error = refused(body(adminPass=password))
    assert error.code == "Ecs.0011"
    assert error.message.startswith("adminPass") and password not in error.message


def test_a_flavor_above_the_memory_cap_is_not_offered() -> None:
    error = refused(body(flavorRef="s1.medium.2"), server_max_memory_mib=1024)
    assert error.code == "Ecs.0029" and "s1.small.1" in error.message


def test_a_body_that_is_not_an_object() -> None:
    assert refused([]).code == "Ecs.0000"
