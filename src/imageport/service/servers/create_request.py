"""The create request's body (``CreatePostPaidServers`` v1, ``CreateServers`` v1.1), checked
field by field before anything is looked up.

``{"dry_run"?: bool, "server": {...}}``; every field of ``server`` is read with its JSON type
(an integer is a JSON integer, a flag a JSON boolean) and refused with ``Ecs.0005`` naming it
when wrong, unless a finer code says more:

======================= ==============================================================
field                   what is accepted
======================= ==============================================================
``imageRef``            an image id (checked against the images by :mod:`.create`)
``flavorRef``           an offered flavor (:mod:`.flavors`; else ``Ecs.0029``)
``name``                1-64 letters, digits, ``.``, ``_``, ``-``; with ``count`` > 1 each
                        server is named ``<name>-0001``, ``-0002``... (the vendor's
                        suffix), which must fit in 64 too
``count``               1 to :data:`MAX_BATCH` (more: ``Ecs.0118``; the server quota is
                        checked by :mod:`.create`, ``Ecs.0001``)
``root_volume``         ``volumetype`` one of the vendor's disk types (every one is the same
                        local disk here) and ``size`` 40-1024 GiB (default: 40, or the
                        image's ``min_disk`` if larger; never below it)
``key_name``            a key pair name (it must exist: ``Ecs.0314``, checked by
                        :mod:`.create`)
``adminPass``           the vendor's password rules (``Ecs.0011``, :mod:`.passwords`)
``user_data``           base64, at most 32 KiB decoded
``metadata``            at most 16 string pairs; keys 1-255 characters of letters, digits
                        and ``_-.:``, values at most 255 characters without control characters
``availability_zone``   this region's one zone (:func:`.flavors.availability_zone`)
``description``         at most 85 characters, no ``<``, ``>`` or control characters
``vpcid``, ``nics``     this service's one network (:mod:`.network`): ``vpcid``
                        ``default``; at most one NIC, whose ``subnet_id`` is
                        ``default`` (another: ``Ecs.0038``) and whose
                        ``ip_address``, if given, is the guest's address
``data_volumes``,       empty lists only: there are no data disks and no security
``security_groups``     groups here (a guest is reachable only through its SSH forward)
``extendparam``         ``chargingMode`` pay-per-use only (v1: ``0``; v1.1: ``"postPaid"``),
                        ``regionID`` this region, ``enterprise_project_id`` ``"0"``
======================= ==============================================================

Every other field the vendor defines (``publicip``, ``tags``, ``server_tags``,
``os:scheduler_hints``, ``isAutoRename``, ``cpu_options``, ``security_options``,
``serial_console_options``, ``metadata_options``, ``enclave_options``,
``batch_create_in_multi_az``, ``auto_terminate_time``, and the sub-fields not listed) is refused
as not offered, and an unknown one as unknown: none is silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from imageport.service import codes
from imageport.service.errors import RequestInvalid
from imageport.service.servers.flavors import Flavor, availability_zone, flavor_by_id
from imageport.service.servers.network import GUEST_ADDRESS, NETWORK_ID, SUBNET_ID
from imageport.service.servers.passwords import check_admin_pass
from imageport.settings import Settings

Version = Literal["v1", "v1.1"]

MAX_BATCH = 10
"""Most servers one request may create (and one batch action may name): the vendor allows
hundreds, a small machine runs a few."""
MAX_NAME = 64
MIN_DISK_GIB = 40
MAX_DISK_GIB = 1024
MAX_USER_DATA = 32 * 1024
"""Most bytes of ``user_data`` once decoded (the vendor's 32 KiB)."""
MAX_METADATA = 16
MAX_METADATA_KEY = 255
MAX_METADATA_VALUE = 255
MAX_DESCRIPTION = 85
MAX_ID = 64
"""Longest id (image, key pair name) read from a request."""
VOLUME_TYPES = frozenset({"SATA", "SAS", "SSD", "GPSSD", "ESSD", "GPSSD2", "ESSD2", "ESSD-Entry"})

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Control characters: C0, DEL and C1 (``\\x85`` is a line break to many readers), the line and
paragraph separators, and the bidirectional overrides and isolates (text shown in another order
than it is stored)."""
_FIELDS = frozenset(
    {
        "imageRef",
        "flavorRef",
        "name",
        "vpcid",
        "nics",
        "root_volume",
        "key_name",
        "adminPass",
        "user_data",
        "count",
        "availability_zone",
        "description",
        "metadata",
        "data_volumes",
        "security_groups",
        "extendparam",
    }
)
_NOT_OFFERED = frozenset(
    {
        "publicip",
        "tags",
        "server_tags",
        "os:scheduler_hints",
        "isAutoRename",
        "cpu_options",
        "security_options",
        "serial_console_options",
        "metadata_options",
        "enclave_options",
        "batch_create_in_multi_az",
        "auto_terminate_time",
    }
)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A checked create request (nothing looked up yet but the flavor)."""

    image_ref: str
    flavor: Flavor
    #: one name per server (``count`` of them)
    names: tuple[str, ...]
    availability_zone: str
    description: str = ""
    #: None: the default size (40 GiB, or the image's ``min_disk`` when larger)
    disk_gib: int | None = None
    key_name: str | None = None
    admin_pass: str | None = field(default=None, repr=False)
    user_data: bytes | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def count(self) -> int:
        return len(self.names)

    def digest(self) -> str:
        """What the request asks for, as a sha256 (to tell a client's retry with the same
        ``X-Client-Token`` from another request). The password is left out (a digest of it
        would be a password hash in the database); only whether one was given counts."""
        doc = {
            "image": self.image_ref,
            "flavor": self.flavor.id,
            "names": list(self.names),
            "zone": self.availability_zone,
            "description": self.description,
            "disk": self.disk_gib,
            "key": self.key_name,
            "password": self.admin_pass is not None,
            "user_data": None if self.user_data is None else self.user_data.hex(),
            "metadata": dict(self.metadata),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def invalid(field_name: str, why: str) -> RequestInvalid:
    """``Ecs.0005`` naming ``field_name``."""
    return RequestInvalid(codes.ECS_INVALID, f"{field_name}: {why}")


def parse_create_request(settings: Settings, body: object, version: Version) -> CreateRequest:
    """The checked request of the create route ``version`` (see the module docstring)."""
    if not isinstance(body, dict):
        raise RequestInvalid(codes.ECS_BAD_REQUEST, "the body must be a JSON object")
    unknown = sorted(set(body) - {"server", "dry_run"})
    if unknown:
        raise invalid(unknown[0][:64], "is not a field of the request")
    dry_run = _flag(body.get("dry_run"), "dry_run")
    server = body.get("server")
    if not isinstance(server, dict):
        raise invalid("server", "must be an object")
    _refuse_unknown(server)
    flavor = flavor_by_id(settings, server.get("flavorRef"))
    count = _count(server.get("count"))
    zone = server.get("availability_zone", availability_zone(settings))
    if zone != availability_zone(settings):
        raise invalid(
            "availability_zone", f"this region has one zone, {availability_zone(settings)!r}"
        )
    _check_network(server.get("vpcid"), server.get("nics"))
    _check_empty_list(server.get("data_volumes"), "data_volumes", "there are no data disks")
    _check_empty_list(
        server.get("security_groups"),
        "security_groups",
        "there are no security groups (a guest is reachable only through its SSH forward)",
    )
    _check_extendparam(settings, server.get("extendparam"), version)
    return CreateRequest(
        image_ref=_text(server.get("imageRef"), "imageRef", MAX_ID),
        flavor=flavor,
        names=_names(server.get("name"), count),
        availability_zone=availability_zone(settings),
        description=_description(server.get("description")),
        disk_gib=_root_volume(server.get("root_volume")),
        key_name=None
        if server.get("key_name") is None
        else _text(server["key_name"], "key_name", MAX_ID),
        admin_pass=None
        if server.get("adminPass") is None
        else check_admin_pass(server["adminPass"]),
        user_data=_user_data(server.get("user_data")),
        metadata=_metadata(server.get("metadata")),
        dry_run=dry_run,
    )


def _refuse_unknown(server: Mapping[str, object]) -> None:
    for name in sorted(server):
        if name in _NOT_OFFERED:
            raise invalid(f"server.{name}", "is not offered by this service")
        if name not in _FIELDS:
            raise invalid(f"server.{name[:64]}", "is not a field of server")


def _flag(value: object, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(name, "must be true or false")
    return value


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or _CONTROL.search(value):
        raise invalid(name, f"must be a string of 1-{limit} characters")
    return value


def _count(value: object) -> int:
    if value is None:
        return 1
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid("count", "must be a whole number of at least 1")
    if value > MAX_BATCH:
        raise RequestInvalid(
            codes.ECS_BATCH_TOO_LARGE,
            f"count: at most {MAX_BATCH} servers can be created by one request",
        )
    return value


def _names(value: object, count: int) -> tuple[str, ...]:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise invalid("name", f"must be 1-{MAX_NAME} letters, digits, '.', '_' or '-'")
    if count == 1:
        return (value,)
    names = tuple(f"{value}-{n:04d}" for n in range(1, count + 1))
    if len(names[-1]) > MAX_NAME:
        raise invalid(
            "name",
            f"with count {count} each server is named {names[-1]!r}, longer than {MAX_NAME}",
        )
    return names


def _description(value: object) -> str:
    if value is None:
        return ""
    if (
        not isinstance(value, str)
        or len(value) > MAX_DESCRIPTION
        or _CONTROL.search(value)
        or "<" in value
        or ">" in value
    ):
        raise invalid(
            "description",
            f"must be a string of at most {MAX_DESCRIPTION} characters without <, > "
            "or control characters",
        )
    return value


def _root_volume(value: object) -> int | None:
    """The requested system disk size (GiB), None for the default."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("root_volume", "must be an object")
    for name in sorted(value):
        if name not in ("volumetype", "size"):
            raise invalid(f"root_volume.{name[:64]}", "is not offered by this service")
    kind = value.get("volumetype")
    if kind not in VOLUME_TYPES:
        raise invalid(
            "root_volume.volumetype",
            f"must be one of {', '.join(sorted(VOLUME_TYPES))} (all are the same local disk)",
        )
    size = value.get("size")
    if size is None:
        return None
    if (
        not isinstance(size, int)
        or isinstance(size, bool)
        or not MIN_DISK_GIB <= size <= MAX_DISK_GIB
    ):
        raise invalid("root_volume.size", f"must be {MIN_DISK_GIB}-{MAX_DISK_GIB} (GiB)")
    return size


def _user_data(value: object) -> bytes | None:
    if value is None:
        return None
    limit = (MAX_USER_DATA + 2) // 3 * 4
    if not isinstance(value, str) or len(value) > limit:
        raise invalid("user_data", f"must be base64 of at most {MAX_USER_DATA} bytes")
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise invalid("user_data", "must be base64") from exc
    if len(data) > MAX_USER_DATA:
        raise invalid("user_data", f"must be at most {MAX_USER_DATA} bytes once decoded")
    return data


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_METADATA:
        raise invalid("metadata", f"must be an object of at most {MAX_METADATA} entries")
    for key, item in value.items():
        if not _METADATA_KEY.fullmatch(key):
            raise invalid(
                "metadata",
                f"key {key[:64]!r} must be 1-{MAX_METADATA_KEY} letters, digits or '_-.:'",
            )
        if not isinstance(item, str) or len(item) > MAX_METADATA_VALUE or _CONTROL.search(item):
            raise invalid(
                f"metadata.{key}",
                f"must be a string of at most {MAX_METADATA_VALUE} characters",
            )
    return dict(value)


def _check_network(vpcid: object, nics: object) -> None:
    if vpcid is not None and vpcid != NETWORK_ID:
        raise invalid("vpcid", f"this service has one network, {NETWORK_ID!r}")
    if nics is None:
        return
    if not isinstance(nics, list) or len(nics) > 1:
        raise invalid("nics", f"at most one NIC, on the subnet {SUBNET_ID!r}")
    for nic in nics:
        if not isinstance(nic, dict):
            raise invalid("nics[0]", "must be an object")
        for name in sorted(nic):
            if name not in ("subnet_id", "ip_address", "ipv6_enable"):
                raise invalid(f"nics[0].{name[:64]}", "is not offered by this service")
        subnet = nic.get("subnet_id")
        if subnet is not None and subnet != SUBNET_ID:
            raise RequestInvalid(
                codes.ECS_SUBNET_UNKNOWN,
                f"nics[0].subnet_id: this service has one subnet, {SUBNET_ID!r}",
            )
        address = nic.get("ip_address")
        if address is not None and address != GUEST_ADDRESS:
            raise invalid("nics[0].ip_address", f"every guest has the address {GUEST_ADDRESS}")
        if _flag(nic.get("ipv6_enable"), "nics[0].ipv6_enable"):
            raise invalid("nics[0].ipv6_enable", "there is no IPv6 here")


def _check_empty_list(value: object, name: str, why: str) -> None:
    if value is not None and value != []:
        raise invalid(name, why)


def _check_extendparam(settings: Settings, value: object, version: Version) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise invalid("extendparam", "must be an object")
    for name in sorted(value):
        if name not in ("chargingMode", "regionID", "enterprise_project_id"):
            raise invalid(f"extendparam.{name[:64]}", "is not offered by this service")
    mode = value.get("chargingMode")
    pay_per_use: object = 0 if version == "v1" else "postPaid"
    if mode is not None and (mode != pay_per_use or type(mode) is not type(pay_per_use)):
        raise invalid(
            "extendparam.chargingMode", f"only pay-per-use ({pay_per_use!r}) is offered here"
        )
    region = value.get("regionID")
    if region is not None and region != settings.region:
        raise invalid("extendparam.regionID", f"this region is {settings.region!r}")
    project = value.get("enterprise_project_id")
    if project is not None and project != "0":
        raise invalid("extendparam.enterprise_project_id", "only the default project '0'")


__all__ = [
    "MAX_BATCH",
    "CreateRequest",
    "invalid",
    "parse_create_request",
]
