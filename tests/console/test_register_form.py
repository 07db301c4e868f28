"""The register form's logic, without a browser: the body it sends is the one the vendor's SDK
sends for the same choices, each refusal finds its input, and a link pre-fills it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from huaweicloudsdkcore.utils.http_utils import sanitize_for_serialization
from huaweicloudsdkims.v2 import (
    CreateDataImageRequestBody,
    CreateImageRequestBody,
    ImageTag,
    QuickImportImageByFileRequestBody,
    ResourceTag,
    TagKeyValue,
)

from imageport.console.checks import check_body
from imageport.console.register import (
    DATA_ROWS,
    MAX_TAG_LINES,
    RegisterForm,
    input_of,
    prefill,
    read_form,
    registration,
    suggested_name,
)
from imageport.numbers import HUGE
from imageport.service.errors import RequestInvalid
from imageport.service.images.import_request import parse_data_image_request, parse_import_request

FORM = RegisterForm(
    source="images:dir/disk.qcow2",
    name="web 1",
    description="line one\r\nline two",
    min_disk="40",
    os_version="Debian GNU/Linux 12.0.0 64bit",
    architecture="x86",
    hw_firmware_type="uefi",
    tags="env=prod\n\nteam = web\nflag\n",
)


def sdk(body: Any) -> dict[str, object]:
    """What the SDK sends for a request body model."""
    sent: dict[str, object] = sanitize_for_serialization(body)
    return sent


def test_a_system_image_is_the_sdks_create_image_body() -> None:
    route, body = registration(FORM, boot_offered=False)
    assert route == "action"
    assert body == sdk(
        CreateImageRequestBody(
            name="web 1",
            description="line one\nline two",  # a browser's CRLF is the user's newline
            image_url="images:dir/disk.qcow2",
            min_disk=40,
            os_version="Debian GNU/Linux 12.0.0 64bit",
            architecture="x86",
            hw_firmware_type="uefi",
            image_tags=[
                TagKeyValue(key="env", value="prod"),
                TagKeyValue(key="team", value="web"),
                TagKeyValue(key="flag", value=""),
            ],
        )
    )
    parse_import_request(body, quick=False)  # and the service takes it


def test_fast_import_and_automatic_configuration_are_sent_as_chosen() -> None:
    form = replace(
        FORM, description="", tags="", hw_firmware_type="bios", is_quick_import=True, is_config=True
    )
    _, body = registration(form, boot_offered=True)
    expected = sdk(
        CreateImageRequestBody(
            name="web 1",
            image_url=form.source,
            min_disk=40,
            os_version=form.os_version,
            architecture="x86",
            hw_firmware_type="bios",
            is_quick_import=True,
            is_config=True,
        )
    )
    assert body == {**expected, "boot_test": False}  # ours, where boot tests are offered
    with pytest.raises(RequestInvalid) as refused:
        parse_import_request(body, quick=False)
    assert (refused.value.code, input_of(refused.value.field)) == ("IMG.0001", "is_config")


def test_a_data_image_goes_to_its_route_and_fast_import_to_quick_import() -> None:
    data = RegisterForm(
        image_type="data",
        source="images:data.qcow2",
        name="data 1",
        min_disk="100",
        os_type="Linux",
        architecture="arm",  # a system disk's choices are not a data image's
        hw_firmware_type="uefi",
        os_version="Debian GNU/Linux 12.0.0 64bit",
        tags="k=v",
    )
    route, body = registration(data, boot_offered=True)
    assert route == "dataimages"
    assert body == sdk(
        CreateDataImageRequestBody(
            name="data 1",
            image_url="images:data.qcow2",
            min_disk=100,
            os_type="Linux",
            image_tags=[ImageTag(key="k", value="v")],
        )
    )
    parse_data_image_request(body)
    route, body = registration(replace(data, is_quick_import=True), boot_offered=True)
    assert route == "quickimport"
    assert body == sdk(
        QuickImportImageByFileRequestBody(
            name="data 1",
            image_url="images:data.qcow2",
            min_disk=100,
            os_type="Linux",
            type="DataImage",
            image_tags=[ResourceTag(key="k", value="v")],
        )
    )
    parse_import_request(body, quick=True)


def test_a_choice_that_does_not_fit_the_type_is_sent_for_the_service_to_refuse() -> None:
    form = RegisterForm(image_type="data", source="images:d", name="d", min_disk="40")
    _, body = registration(replace(form, is_config=True), boot_offered=True)
    assert body["is_config"] is True
    with pytest.raises(RequestInvalid) as refused:
        parse_data_image_request(body)
    assert input_of(refused.value.field) == "is_config"


def test_numbers_and_tags_are_read_as_written_and_bounded() -> None:
    _, body = registration(
        RegisterForm(source="bkt:k", name="n", min_disk=" 4O "), boot_offered=False
    )
    assert body["min_disk"] == "4O"  # not a number: the service says so at min_disk
    with pytest.raises(RequestInvalid) as refused:
        parse_import_request(body, quick=False)
    assert (refused.value.code, refused.value.field) == ("IMG.0055", "min_disk")
    many = "\n".join(f"k{i}=v" for i in range(500))
    _, body = registration(RegisterForm(source="b:k", name="n", tags=many), boot_offered=False)
    tags = body["image_tags"]
    assert isinstance(tags, list) and len(tags) == MAX_TAG_LINES  # "at most 10", not cut to 10
    _, body = registration(RegisterForm(source="b:k", name="n"), boot_offered=False)
    assert "min_disk" not in body and "image_tags" not in body and "description" not in body


def test_refusals_find_their_input() -> None:
    assert input_of("image_url") == "source"
    assert input_of("image_tags") == "tags" and input_of("tags") == "tags"
    assert input_of("type") == "image_type"
    assert input_of("name") == "name" and input_of("hw_firmware_type") == "hw_firmware_type"
    assert input_of("min_ram") is None  # no such input: shown above the form
    assert input_of(None) is None


def test_a_link_prefills_the_form_and_suggests_a_name() -> None:
    form = prefill(
        [
            ("source", "images:dir/My Disk_v2.qcow2"),
            ("os_version", "Debian GNU/Linux 12.0.0 64bit"),
            ("min_disk", "40"),
            ("hw_firmware_type", "uefi"),
            ("is_quick_import", "on"),
        ],
        boot_default=False,
    )
    assert form.source == "images:dir/My Disk_v2.qcow2"
    assert (form.os_version, form.min_disk, form.hw_firmware_type) == (
        "Debian GNU/Linux 12.0.0 64bit",
        "40",
        "uefi",
    )
    assert form.is_quick_import and not form.is_config and not form.boot_test
    assert form.name == "My-Disk_v2"
    assert form.architecture == "x86" and form.image_type == "system"
    assert prefill([], boot_default=True).boot_test  # the server's import_boot_test


def test_a_post_reads_the_first_value_of_each_field_bounded() -> None:
    form = read_form(
        [("name", "a" * 5000), ("name", "second"), ("is_config", "on")],
        defaults=RegisterForm(),
    )
    assert form.name == "a" * 2048 and form.is_config and not form.is_quick_import


def test_suggested_names_are_valid_names() -> None:
    assert suggested_name("b:disk.qcow2") == "disk"
    assert suggested_name("b:a/b/c.d.raw") == "c.d"
    assert suggested_name("b:.hidden") == "hidden"
    assert suggested_name("b:磁盘.qcow2") == ""  # nothing usable: the user names it
    assert len(suggested_name("b:" + "x" * 500)) == 128


def test_a_bucket_pages_link_names_the_object_with_bucket_and_key() -> None:
    form = prefill([("bucket", "images"), ("key", "dir/web.qcow2")], boot_default=False)
    assert form.source == "images:dir/web.qcow2" and form.name == "web"
    both = prefill([("source", "a:b"), ("bucket", "images"), ("key", "c")], boot_default=False)
    assert both.source == "images:c"  # as the check page reads them
    assert prefill([("bucket", "images")], boot_default=False).source == ""


def test_a_long_number_is_judged_whole_not_cut_into_another() -> None:
    """Twenty characters were read of min_disk: nineteen zeros and 400 were read as 4."""
    padded = "0" * 19 + "400"
    _, body = registration(
        RegisterForm(source="b:k", name="n", min_disk=padded), boot_offered=False
    )
    assert body["min_disk"] == 400
    _, body = registration(
        RegisterForm(source="b:k", name="n", min_disk="9" * 40), boot_offered=False
    )
    assert body["min_disk"] == HUGE  # refused by the service as out of range
    assert check_body("b:k", [("min_disk", padded)])["min_disk"] == 400


def test_data_disk_rows_are_sent_as_the_registrations_data_images() -> None:
    form = replace(
        FORM,
        data_source_1="images:data-a.qcow2",
        data_min_disk_1="100",
        data_source_3="images:data-c.vmdk",
        data_min_disk_3="60",
    )
    _, body = registration(form, boot_offered=False)
    assert body["data_images"] == [
        {"name": "web 1-data1", "image_url": "images:data-a.qcow2", "min_disk": 100},
        {"name": "web 1-data3", "image_url": "images:data-c.vmdk", "min_disk": 60},
    ]
    request = parse_import_request(body, quick=False)  # and the service takes it
    assert [str(d.url) for d in request.data_images] == [
        "images:data-a.qcow2",
        "images:data-c.vmdk",
    ]
    assert "data_images" not in registration(FORM, boot_offered=False)[1]
    # a size without a file is sent, for the service to refuse at the rows
    _, half = registration(replace(FORM, data_min_disk_2="50"), boot_offered=False)
    assert half["data_images"] == [{"name": "web 1-data2", "image_url": "", "min_disk": 50}]
    assert input_of("data_images") == "data_source_1"
    assert len(form.data_rows) == DATA_ROWS
