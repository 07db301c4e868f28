"""The check and register pages take their own fields only: a query parameter or form field they
do not read, or one given twice, is refused with ``IMG.0001`` naming it, never dropped (the
check page ran without a misspelt option, the register form registered without it). Over HTTP
against the console app (a real uvicorn), without a browser."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from imageport.console.app import build_console_app
from imageport.service import codes
from imageport.service.access.console_sessions import sign_in_with_key
from imageport.service.buckets import buckets as bucket_cases
from imageport.service.context import Services
from support.import_fixtures import store_bytes
from support.sdk_clients import projects_with_keys
from support.server_process import running_app


@dataclass
class Console:
    client: httpx.Client
    csrf: str


@pytest.fixture
def console(services: Services) -> Iterator[Console]:
    (alpha,) = projects_with_keys(services, "alpha")
    bucket_cases.create_bucket(services, alpha.project_id, "images", "STANDARD")
    store_bytes(services, "images", "d.iso", b"an ISO? a disk? the form decides" * 100)
    session = sign_in_with_key(services, alpha.access_key, alpha.secret_key)
    app = Starlette(routes=[Mount("/console", app=build_console_app(services))])
    with (
        running_app(app) as base,
        httpx.Client(base_url=base, cookies={"imageport_console": session.token}) as client,
    ):
        yield Console(client, session.csrf)


def _refused(answer: httpx.Response, name: str) -> None:
    assert answer.status_code == 400, answer.text[:300]
    assert codes.BAD_REQUEST in answer.text and name in answer.text


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"bucket": "images", "key": "d.raw", "min_disks": "100"}, "min_disks"),
        ({"source": "images:d.raw", "os_version": "Debian 12"}, "os_version"),
        ([("source", "images:d.raw"), ("min_disk", "100"), ("min_disk", "50")], "min_disk"),
    ],
)
def test_the_check_page_refuses_a_parameter_it_does_not_read(
    console: Console, query: dict[str, str] | list[tuple[str, str]], name: str
) -> None:
    _refused(console.client.get("/console/check?" + urlencode(query)), name)


def test_the_check_pages_own_parameters_are_read(console: Console) -> None:
    page = console.client.get(
        "/console/check",
        params={
            "source": "images:missing.raw",
            "type": "ECS",
            "min_disk": "40",
            "architecture": "x86",
            "hw_firmware_type": "bios",
            "is_quick_import": "on",
            "uninitialized": "on",
        },
    )
    assert page.status_code == 404  # the object is not there: read, checked, not refused
    assert console.client.get("/console/check").status_code == 200


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"source": "images:d.raw", "min_ram": "1024"}, "min_ram"),
        ([("name", "web"), ("name", "db")], "name"),
    ],
)
def test_the_register_link_refuses_a_parameter_it_does_not_read(
    console: Console, query: dict[str, str] | list[tuple[str, str]], name: str
) -> None:
    _refused(console.client.get("/console/register?" + urlencode(query)), name)


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"cmk_id": "key-1"}, "cmk_id"),
        ({"bucket": "images"}, "bucket"),
    ],
)
def test_the_register_form_refuses_a_field_it_does_not_read(
    console: Console, fields: dict[str, str], name: str
) -> None:
    form = {"csrf": console.csrf, "source": "images:d.raw", "name": "web", **fields}
    _refused(console.client.post("/console/register", data=form), name)


def test_the_register_form_refuses_a_field_given_twice(console: Console) -> None:
    form = [
        ("csrf", console.csrf),
        ("source", "images:d.raw"),
        ("name", "web"),
        ("is_config", "on"),
        ("is_config", "on"),
    ]
    answer = console.client.post(
        "/console/register",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _refused(answer, "is_config")


@pytest.mark.parametrize("image_type", ["IsoImage", "iso", "DATA", ""])
def test_an_image_type_the_form_does_not_offer_is_refused_at_its_input(
    console: Console, image_type: str
) -> None:
    """The form offers a system disk or a data disk; any other ``image_type`` (an ISO, a
    misspelling) was registered as a system disk image without a word."""
    form = {
        "csrf": console.csrf,
        "image_type": image_type,
        "source": "images:d.iso",
        "name": "web",
        "min_disk": "40",
        "architecture": "x86",
        "hw_firmware_type": "bios",
    }
    refused = console.client.post("/console/register", data=form)
    assert refused.status_code == 400
    assert 'id="image_type-system" name="image_type" value="system"' in refused.text
    assert codes.TYPE_INVALID in refused.text and 'aria-invalid="true"' in refused.text
    assert console.client.get("/console/register?image_type=iso").status_code == 400


@pytest.mark.parametrize("value", ["false", "0", "off", ""])
def test_a_box_sends_on_and_nothing_else_is_read_as_ticked(console: Console, value: str) -> None:
    """``is_config=false`` was read as a ticked box (any value but an empty one was)."""
    form = {
        "csrf": console.csrf,
        "image_type": "system",
        "source": "images:d.iso",
        "name": "web",
        "min_disk": "40",
        "architecture": "x86",
        "hw_firmware_type": "bios",
        "is_config": value,
    }
    refused = console.client.post("/console/register", data=form)
    assert refused.status_code == 400
    assert codes.BAD_REQUEST in refused.text and 'id="is_config-error"' in refused.text
    # boot tests are not offered by this server: the form has no such box, so the refusal is
    # said above the form
    boot = console.client.post(
        "/console/register", data={**form, "is_config": "on", "boot_test": value}
    )
    assert boot.status_code == 400 and 'id="register-failure"' in boot.text
    assert "boot_test" in boot.text
    link = console.client.get(f"/console/register?source=images:d.iso&is_quick_import={value}")
    assert link.status_code == 400


def test_another_projects_object_is_refused_as_a_missing_one(
    console: Console, services: Services
) -> None:
    """Held: registering from another project's bucket (as the API: IMG.0069 at the object),
    in the same words as a bucket that does not exist; checking it is "not found"."""
    (beta,) = projects_with_keys(services, "beta")
    bucket_cases.create_bucket(services, beta.project_id, "theirs", "STANDARD")
    store_bytes(services, "theirs", "d.raw", b"their disk" * 100)
    answers = []
    for bucket in ("theirs", "nobodys"):
        form = {"csrf": console.csrf, "source": f"{bucket}:d.raw", "name": "web", "min_disk": "40"}
        refused = console.client.post("/console/register", data=form)
        assert refused.status_code == 400 and 'id="source-error"' in refused.text
        answers.append(refused.text.replace(bucket, "B"))
        checked = console.client.get(f"/console/check?bucket={bucket}&key=d.raw")
        assert checked.status_code == 404
    assert answers[0] == answers[1]
    assert "IMG.0069" in answers[0]
