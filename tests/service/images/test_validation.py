"""Every synchronous IMG code: one request that gets it and one, close to it, that passes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import cast

import pytest

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import Forbidden, RequestInvalid, ServiceError
from imageport.service.images import os_versions
from imageport.service.images import source_checks as src
from imageport.service.images import validation as v
from imageport.service.images.import_request import (
    parse_data_image_request,
    parse_import_request,
)
from imageport.service.images.lifecycle import create_glance_image
from imageport.service.ports import BucketInfo, ObjectInfo
from imageport.settings import load_settings

GOOD = {
    "name": "web server 1",
    "image_url": "images:disk/web.qcow2",
    "min_disk": 40,
    "os_version": "Ubuntu 22.04 server 64bit",
}


@pytest.fixture
def services(backend_services: Services) -> Services:
    """The tests that reach the database run on SQLite and on a real PostgreSQL server."""
    return backend_services


def code_of(call: Callable[[], object]) -> str:
    with pytest.raises(ServiceError) as info:
        call()
    return info.value.code


def refused(body: dict[str, object], *, quick: bool = False) -> str:
    return code_of(lambda: parse_import_request(body, quick=quick))


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"name": None}, "IMG.0013"),
        ({"name": "x" * 129}, "IMG.0002"),
        ({"name": " leading"}, "IMG.0003"),
        ({"name": "semi;colon"}, "IMG.0003"),
        ({"description": "d" * 1025}, "IMG.0004"),
        ({"description": "<script>"}, "IMG.0054"),
        ({"description": "line\r\nbreak"}, "IMG.0054"),
        ({"image_url": "no-colon"}, "IMG.0017"),
        ({"image_url": "images:folder/"}, "IMG.0017"),
        ({"image_url": None}, "IMG.0017"),
        ({"image_url": "Bad_Bucket:disk.qcow2"}, "IMG.0109"),
        ({"image_url": "images:my folder/disk.qcow2"}, "IMG.0175"),
        ({"image_url": "images:disk 1.qcow2"}, "IMG.0175"),
        ({"min_disk": 39}, "IMG.0055"),
        ({"min_disk": 1025}, "IMG.0055"),
        ({"min_disk": None}, "IMG.0055"),
        ({"min_disk": True}, "IMG.0055"),
        ({"min_ram": 2048, "max_ram": 1024}, "IMG.0055"),
        ({"os_version": "Ubuntu 99.04 server 64bit"}, "IMG.0056"),
        ({"os_type": "Windows"}, "IMG.0122"),
        ({"os_type": "BeOS"}, "IMG.0122"),
        ({"architecture": "mips"}, "IMG.0212"),
        ({"hw_firmware_type": "coreboot"}, "IMG.0141"),
        ({"architecture": "arm", "hw_firmware_type": "bios"}, "IMG.0141"),
        ({"type": "DataImage"}, "IMG.0024"),  # a data image: data_images or its own route
        ({"type": "BMS"}, "IMG.0024"),
        ({"type": "Bogus"}, "IMG.0024"),
        ({"type": "IsoImage", "os_version": None}, "IMG.0166"),
        ({"type": "IsoImage", "is_quick_import": True}, "IMG.0167"),
        ({"type": "IsoImage", "is_config": True}, "IMG.0167"),
        ({"type": "IsoImage", "data_images": [{"name": "d"}]}, "IMG.0167"),
        (
            {"data_images": [{"name": "d", "image_url": "images:d.qcow2", "min_disk": 0}]},
            "IMG.0055",
        ),
        (
            {"data_images": [{"name": "d", "image_url": "images:d.qcow2", "min_disk": 2049}]},
            "IMG.0055",
        ),
        ({"data_images": [{"name": "d", "image_url": "images:d.qcow2"}]}, "IMG.0055"),
        ({"data_images": [{"name": "d", "image_url": "d.qcow2", "min_disk": 1}]}, "IMG.0017"),
        ({"data_images": [{"image_url": "images:d.qcow2", "min_disk": 1}]}, "IMG.0013"),
        (
            {"data_images": [{"name": "web server 1", "image_url": "images:d", "min_disk": 1}]},
            "IMG.0009",
        ),
        (
            {
                "data_images": [
                    {"name": "d", "image_url": "images:d", "min_disk": 1, "os_version": "x"}
                ]
            },
            "IMG.0001",
        ),
        (
            {
                "data_images": [
                    {"name": f"d{i}", "image_url": "images:d", "min_disk": 1} for i in range(4)
                ]
            },
            "IMG.0001",
        ),
        ({"data_images": "images:d"}, "IMG.0001"),
        ({"tags": ["no-dot"]}, "IMG.0001"),
        ({"image_tags": [{"key": "k" * 37, "value": "v"}]}, "IMG.0001"),
        ({"tags": ["a.b"], "image_tags": [{"key": "c", "value": "d"}]}, "IMG.0001"),
        ({"is_config": "yes"}, "IMG.0001"),
        ({"colour": "blue"}, "IMG.0001"),
        ({"instance_id": "0f6c3a36-3c4b-4f1e-9a55-2b5d0c1f7e11"}, "IMG.SOURCE"),
        ({"data_images": [{"name": "d", "volume_id": "v"}]}, "IMG.SOURCE"),
        ({"cmk_id": "key"}, "IMG.0095"),
    ],
)
def test_each_bad_field_gets_its_code(change: dict[str, object], code: str) -> None:
    assert refused({**GOOD, **change}) == code


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"name": None}, "IMG.0013", "name"),
        ({"name": " leading"}, "IMG.0003", "name"),
        ({"description": "<script>"}, "IMG.0054", "description"),
        ({"image_url": "no-colon"}, "IMG.0017", "image_url"),
        ({"image_url": "images:disk 1.qcow2"}, "IMG.0175", "image_url"),
        ({"min_disk": 39}, "IMG.0055", "min_disk"),
        ({"min_disk": "40"}, "IMG.0055", "min_disk"),
        ({"min_ram": -1}, "IMG.0055", "min_ram"),
        ({"min_ram": 2048, "max_ram": 1024}, "IMG.0055", "max_ram"),
        ({"os_version": "Ubuntu 99.04 server 64bit"}, "IMG.0056", "os_version"),
        ({"os_type": "Windows"}, "IMG.0122", "os_type"),
        ({"architecture": "mips"}, "IMG.0212", "architecture"),
        ({"hw_firmware_type": "coreboot"}, "IMG.0141", "hw_firmware_type"),
        ({"type": "BMS"}, "IMG.0024", "type"),
        ({"type": "IsoImage", "os_version": None}, "IMG.0166", "os_version"),
        ({"type": "IsoImage", "is_config": True}, "IMG.0167", "is_config"),
        ({"is_quick_import": True, "is_config": True}, "IMG.0001", "is_config"),
        ({"is_config": "yes"}, "IMG.0001", "is_config"),
        ({"boot_test": 1}, "IMG.0001", "boot_test"),
        ({"tags": ["no-dot"]}, "IMG.0001", "tags"),
        ({"image_tags": [{"key": "k" * 37, "value": "v"}]}, "IMG.0001", "image_tags"),
        ({"colour": "blue"}, "IMG.0001", "colour"),
        ({"cmk_id": "key"}, "IMG.0095", "cmk_id"),
        ({"data_images": [{"name": "d", "image_url": "images:d"}]}, "IMG.0055", "data_images"),
    ],
)
def test_each_refusal_names_its_field(change: dict[str, object], code: str, field: str) -> None:
    """A form (the web console's) shows the error at the input the refusal names."""
    with pytest.raises(RequestInvalid) as info:
        parse_import_request({**GOOD, **change}, quick=False)
    assert (info.value.code, info.value.field) == (code, field)


def test_a_quick_import_refusal_names_its_field() -> None:
    with pytest.raises(RequestInvalid) as info:
        parse_import_request({**GOOD, "os_version": None}, quick=True)
    assert (info.value.code, info.value.field) == ("IMG.0056", "os_version")
    with pytest.raises(RequestInvalid) as info:
        parse_data_image_request({"name": "d", "image_url": "images:d.raw", "min_disk": 39})
    assert (info.value.code, info.value.field) == ("IMG.0055", "min_disk")
    with pytest.raises(RequestInvalid) as info:
        src.check_bucket_access(None, "images", "p1")
    assert info.value.field == "image_url"


def test_the_closest_good_request_passes() -> None:
    request = parse_import_request(
        {
            **GOOD,
            "name": "a" * 128,
            "description": "multi\nline, fine",
            "min_disk": 1024,
            "image_url": "images:folder/sub/disk-1.qcow2",
            "os_type": "Linux",
            "architecture": "arm",
            "tags": ["env.prod", "team.a_b-1"],
            "min_ram": 1024,
            "max_ram": 4096,
            "type": "FusionCompute",
            "is_config": True,
        },
        quick=False,
    )
    assert (request.url.bucket, request.url.key) == ("images", "folder/sub/disk-1.qcow2")
    assert request.firmware == "uefi"  # arm boots with UEFI only
    assert request.tags == ["env=prod", "team=a_b-1"]
    assert request.min_disk == 1024 and request.is_config and not request.quick
    defaults = parse_import_request({**GOOD, "os_version": None}, quick=False)
    assert defaults.os_version is None and defaults.architecture == "x86"
    assert defaults.firmware is None and defaults.is_config_init
    assert parse_import_request({**GOOD, "min_disk": 40}, quick=False).min_disk == 40


def test_data_images_and_iso_images_are_parsed() -> None:
    """data_images: up to three data images of 1-2048 GiB, each its own request; an ISO image
    with its os_version; the quick-import route's DataImage without one."""
    items = [
        {"name": "logs", "image_url": "images:data/logs.qcow2", "min_disk": 1},
        {
            "name": "db",
            "image_url": "images:data/db.raw",
            "min_disk": 2048,
            "is_quick_import": True,
            "description": "the database",
            "image_tags": [{"key": "role", "value": "db"}],
        },
    ]
    request = parse_import_request({**GOOD, "data_images": items}, quick=False)
    assert request.disk_kind == "system" and request.job_type == "imsImportImageJob"
    logs, db = request.data_images
    assert (logs.name, logs.min_disk, logs.quick, logs.disk_kind) == ("logs", 1, False, "data")
    assert (db.url.key, db.min_disk, db.quick, db.tags) == ("data/db.raw", 2048, True, ["role=db"])
    assert db.job_type == "imsImportDataImageJob" and db.os_version is None
    iso = parse_import_request({**GOOD, "type": "IsoImage", "is_quick_import": False}, quick=False)
    assert (iso.disk_kind, iso.os_version) == ("iso", "Ubuntu 22.04 server 64bit")
    data = parse_import_request(
        {**GOOD, "type": "DataImage", "os_type": "Windows", "os_version": None, "min_disk": 2048},
        quick=True,
    )
    assert (data.disk_kind, data.os_type, data.quick) == ("data", "Windows", True)
    assert refused({**GOOD, "type": "IsoImage"}, quick=True) == "IMG.0167"
    assert refused({**GOOD, "data_images": items}, quick=True) == "IMG.0001"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"min_disk": 39}, "IMG.0055"),
        ({"min_disk": 2049}, "IMG.0055"),
        ({"os_type": "BeOS"}, "IMG.0122"),
        ({"cmk_id": "key"}, "IMG.0095"),
        ({"os_version": "Ubuntu 22.04 server 64bit"}, "IMG.0001"),
        ({"name": None}, "IMG.0013"),
        ({"image_url": "no-colon"}, "IMG.0017"),
    ],
)
def test_data_image_route_codes(change: dict[str, object], code: str) -> None:
    good = {"name": "data 1", "image_url": "images:data.qcow2", "min_disk": 40}
    assert code_of(lambda: parse_data_image_request({**good, **change})) == code
    parsed = parse_data_image_request({**good, "min_disk": 2048, "os_type": "Windows"})
    assert (parsed.disk_kind, parsed.os_type, parsed.min_disk) == ("data", "Windows", 2048)


def test_quick_import_needs_os_version() -> None:
    assert refused({**GOOD, "os_version": None}, quick=True) == "IMG.0056"
    assert refused({**GOOD, "os_version": None, "is_quick_import": True}) == "IMG.0056"
    assert parse_import_request(GOOD, quick=True).quick


def test_body_codes() -> None:
    assert code_of(lambda: v.parse_json_body(b"")) == "IMG.0007"
    assert code_of(lambda: v.parse_json_body(b"{not json")) == "IMG.0001"
    assert code_of(lambda: v.parse_json_body(b"[" * 40 + b"]" * 40)) == "IMG.0001"
    assert code_of(lambda: v.parse_json_body(b'{"a": NaN}')) == "IMG.0001"
    assert code_of(lambda: v.parse_json_body(b"\xff\xfe")) == "IMG.0001"
    assert code_of(lambda: parse_import_request({}, quick=False)) == "IMG.0007"
    assert code_of(lambda: parse_import_request([GOOD], quick=False)) == "IMG.0001"
    assert v.parse_json_body(b'{"a": "[[[["}') == {"a": "[[[["}
    assert v.parse_json_body(b"", required=False) is None


def test_a_field_given_twice_is_refused_not_overridden() -> None:
    """``{"image_url": "mine:a", "image_url": "mine:b"}``: which one a reader takes depends on
    the reader (a proxy or a log may take the first); the request is refused, at any depth."""
    twice = b'{"image_url": "images:a.qcow2", "image_url": "images:b.qcow2"}'
    with pytest.raises(RequestInvalid) as err:
        v.parse_json_body(twice)
    assert err.value.code == "IMG.0001" and "'image_url' is given twice" in err.value.message
    assert code_of(lambda: v.parse_json_body(b'[{"op": "add", "op": "remove"}]')) == "IMG.0001"
    assert v.parse_json_body(b'{"a": {"b": 1}, "b": {"a": 2}}') == {"a": {"b": 1}, "b": {"a": 2}}


def test_duplicate_name_in_the_project(services: Services) -> None:
    mine = create_project(services, "mine").id
    other = create_project(services, "other").id
    create_glance_image(services, mine, {"name": "web"})
    with services.db.connect() as conn:
        assert code_of(lambda: v.check_unique_name(conn, mine, "web")) == "IMG.0009"
        v.check_unique_name(conn, other, "web")  # names are per project
        v.check_unique_name(conn, mine, "web2")


BUCKET = BucketInfo("images", "p1", "STANDARD", "local-1", "2024-01-01T00:00:00.000Z")
OBJECT = ObjectInfo(
    "images",
    "disk.qcow2",
    1 << 20,
    '"e"',
    "s",
    "application/octet-stream",
    "STANDARD",
    "2024-01-01T00:00:00.000Z",
)
URL = v.ImageUrl("images", "disk.qcow2")


def test_bucket_codes() -> None:
    assert code_of(lambda: src.check_bucket_access(None, "images", "p1")) == "IMG.0069"
    foreign = code_of(lambda: src.check_bucket_access(BUCKET, "images", "p2"))
    assert foreign == "IMG.0069"  # the same answer: nobody learns the bucket exists
    assert src.check_bucket_access(BUCKET, "images", "p1") is BUCKET
    assert code_of(lambda: src.check_object_exists(None, URL)) == "IMG.0121"
    assert src.check_object_exists(OBJECT, URL) is OBJECT
    assert code_of(lambda: src.check_not_empty(replace(OBJECT, size=0))) == "IMG.0057"
    src.check_not_empty(replace(OBJECT, size=1))


def test_storage_class_names_the_rule() -> None:
    for bucket, obj in (
        (replace(BUCKET, storage_class="WARM"), OBJECT),
        (BUCKET, replace(OBJECT, storage_class="COLD")),
    ):
        with pytest.raises(RequestInvalid) as info:
            src.check_storage_class(bucket, obj)
        assert info.value.code == "IMG.0058"
        assert "IMG-STORAGE-CLASS" in info.value.message
    src.check_storage_class(BUCKET, OBJECT)


def test_size_limits_point_at_fast_import() -> None:
    settings = load_settings({}, normal_import_max_bytes=1000, import_max_bytes=5000)
    big = replace(OBJECT, size=1001)
    with pytest.raises(RequestInvalid) as info:
        src.check_size(big, settings, quick=False)
    assert info.value.code == "IMG.0059"
    assert "quickimport" in info.value.message and "IMG-SIZE" in info.value.message
    src.check_size(big, settings, quick=True)
    src.check_size(replace(OBJECT, size=1000), settings, quick=False)
    with pytest.raises(RequestInvalid) as info:
        src.check_size(replace(OBJECT, size=5001), settings, quick=True)
    assert info.value.code == "IMG.0059" and "IMG-SIZE" in info.value.message


def test_region_refusing_import() -> None:
    with pytest.raises(Forbidden) as info:
        src.check_import_offered(load_settings({}, import_enabled=False, region="eu-x"))
    assert info.value.code == "IMG.REGION" and "eu-x" in info.value.message
    assert info.value.status == 403
    src.check_import_offered(load_settings({}))


def test_glance_codes(services: Services) -> None:
    project = create_project(services, "p").id
    for body, code in (
        ({"name": "g", "disk_format": "iso"}, "IMG.0072"),
        ({"name": "g", "min_disk": 2}, "IMG.0055"),
        ({"name": "g", "__os_version": "Windows 95"}, "IMG.0056"),
        ({"name": "g", "visibility": "public"}, "IMG.0001"),
        ({"name": "g", "tags": ["x" * 256]}, "IMG.0001"),
        ({"disk_format": "qcow2"}, "IMG.0013"),
    ):
        assert code_of(functools.partial(create_glance_image, services, project, body)) == code
    image = create_glance_image(
        services, project, {"name": "g", "disk_format": "vmdk", "tags": ["k=v"]}
    )
    assert image.status == "queued" and image.min_disk == 40
    assert image.properties["__os_version"] == "Other Linux(64 bit)"


def test_os_version_mapping() -> None:
    assert os_versions.os_version_for("ubuntu", "22.04", 64) == "Ubuntu 22.04 server 64bit"
    assert os_versions.os_version_for("debian", "12", 64) == "Debian GNU/Linux 12.0.0 64bit"
    assert os_versions.os_version_for("centos", "7", 64) == "CentOS 7.0 64bit"
    assert os_versions.os_version_for("centos", "7.9", 64) == "CentOS 7.9 64bit"
    assert os_versions.os_version_for("rocky", "9.3", 64) == "Rocky Linux 9.0 64bit"
    assert os_versions.os_version_for("openEuler", "22.03", 64) == "openEuler 22.03 64bit"
    assert os_versions.os_version_for("ubuntu", "12.04", 64) is None
    assert os_versions.os_version_for("plan9", "4", 64) is None
    assert os_versions.platform_of("Rocky Linux 9.0 64bit") == "Rocky"
    assert os_versions.platform_of("Other Linux(64 bit)") == "Other"
    assert os_versions.bits_of(os_versions.OTHER_LINUX_32) == 32
    groups = os_versions.os_version_document()
    names = [
        item["os_version"]
        for g in groups
        for item in cast("list[dict[str, str]]", g["version_list"])
    ]
    assert len(names) == len(set(names))
    assert all(v.check_os_version(n) == n for n in names)
