"""Checking an object and registering an image in the console, in Chromium against a real
``imageport serve``: the objects are uploaded with boto3 (the tests are not about uploading),
checked through the page (the real checker in its worker process), and the good one is
registered through the form and imported by the real job until it is active."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from imageport.rules.catalogue import rule_by_id
from support import console_browser, e2e_clients
from support import import_fixtures as fx
from support.server_process import ServeProcess

#: How long the good image's import may take to become active (seconds).
IMPORT_SECONDS = 180.0


@dataclass(frozen=True)
class Objects:
    bucket: str
    good: str
    failing: str
    #: an object of project beta
    other_bucket: str
    other_key: str


@pytest.fixture(scope="module")
def objects(server: ServeProcess) -> Iterator[Objects]:
    alpha = e2e_clients.s3_client(server, server.keys["alpha"])
    alpha.create_bucket(Bucket="alpha-checks")
    alpha.upload_file(str(fx.good_image("qcow2")), "alpha-checks", "debian/good.qcow2")
    alpha.upload_file(str(fx.failing_twice_qcow2()), "alpha-checks", "failing.qcow2")
    beta = e2e_clients.s3_client(server, server.keys["beta"])
    beta.create_bucket(Bucket="beta-private")
    beta.upload_file(str(fx.good_image("qcow2")), "beta-private", "secret.qcow2")
    yield Objects(
        "alpha-checks", "debian/good.qcow2", "failing.qcow2", "beta-private", "secret.qcow2"
    )


def check_url(server: ServeProcess, bucket: str, key: str) -> str:
    return f"{server.ims_url}/console/check?bucket={bucket}&key={key}"


def test_a_failing_image_shows_its_findings_by_severity_and_links_each_rule(
    server: ServeProcess, objects: Objects, page: Page, shots: Path
) -> None:
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    started = time.monotonic()
    page.goto(check_url(server, objects.bucket, objects.failing))
    print(f"check page of {objects.failing}: {time.monotonic() - started:.2f} s")
    report = page.get_by_role("region", name="Check report")
    expect(report.get_by_text("Fails", exact=True)).to_be_visible()
    expect(report).to_contain_text("2 errors, 2 warnings, 0 notes")

    errors = report.get_by_role("region", name="Errors (2)")
    warnings = report.get_by_role("region", name="Warnings (2)")
    for rule_id in ("IMG-FSTAB-DATA-DISK", "IMG-BOOT-MODE"):
        expect(errors.get_by_role("link", name=rule_id)).to_be_visible()
    for rule_id in ("IMG-FSTAB-UUID", "IMG-ROOT-PASSWORD"):
        expect(warnings.get_by_role("link", name=rule_id)).to_be_visible()
    fstab = errors.locator('[data-rule="IMG-FSTAB-DATA-DISK"]')
    expect(fstab).to_contain_text(rule_by_id("IMG-FSTAB-DATA-DISK").title)
    expect(fstab).to_contain_text("mounts /data at boot from /dev/vdb1")
    expect(fstab.locator(".evidence")).to_have_text(
        "/etc/fstab:7: /dev/vdb1 /data ext4 defaults 0 2"
    )
    fix = fstab.locator(".finding-fix")
    expect(fix).to_have_text("Remove the line from /etc/fstab or add noauto,nofail to its options.")
    expect(fix.locator("code")).to_have_text("noauto,nofail")  # a command, marked as code
    # the guest summary and the file's facts
    expect(report).to_contain_text("Debian GNU/Linux 12 (bookworm)")
    expect(report).to_contain_text("6.1.0-13-amd64 (default)")
    expect(report.get_by_role("table", name="Mounts")).to_contain_text("/boot/efi")
    expect(report).to_contain_text("qcow2 (v3)")
    expect(report).to_contain_text("128 MiB")
    console_browser.shoot(page, "check-report", shots)

    errors.get_by_role("link", name="IMG-BOOT-MODE").click()
    rule = rule_by_id("IMG-BOOT-MODE")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"IMG-BOOT-MODE {rule.title}")
    expect(page.get_by_role("heading", name="What it checks")).to_be_visible()
    expect(page.get_by_role("heading", name="Example")).to_be_visible()
    console_browser.shoot(page, "rule", shots)


def test_in_chinese_the_rules_speak_chinese(
    server: ServeProcess, objects: Objects, page: Page
) -> None:
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    page.goto(check_url(server, objects.bucket, objects.failing))
    page.get_by_role("link", name="简体中文").click()
    report = page.get_by_role("region", name="检查报告")
    errors = report.get_by_role("region", name="错误 (2)")
    boot = rule_by_id("IMG-BOOT-MODE")
    expect(errors.locator('[data-rule="IMG-BOOT-MODE"] .rule-title')).to_have_text(boot.title_zh)
    fstab = rule_by_id("IMG-FSTAB-DATA-DISK")
    expect(errors.locator('[data-rule="IMG-FSTAB-DATA-DISK"] .finding-fix')).to_have_text(
        fstab.advice_zh.replace("`", "")  # the default fix in Chinese, its command as code
    )
    errors.get_by_role("link", name="IMG-BOOT-MODE").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"IMG-BOOT-MODE {boot.title_zh}")
    expect(page.get_by_role("heading", name="检查内容")).to_be_visible()
    page.get_by_role("link", name="检查规则").click()
    expect(page.get_by_role("row", name=re.compile("IMG-BOOT-MODE"))).to_contain_text(boot.title_zh)
    page.goto(f"{server.ims_url}/console/register?source={objects.bucket}:{objects.good}")
    expect(page.get_by_role("heading", name="注册镜像")).to_be_visible()
    page.get_by_label("快速导入").check()
    expect(page.get_by_label("自动配置")).to_be_visible()
    expect(page.locator("#bitmap-status")).to_contain_text(f"{objects.bucket}:debian/good.mf")


def test_a_good_image_is_checked_then_registered_through_the_form_until_active(
    server: ServeProcess, objects: Objects, page: Page, shots: Path
) -> None:
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    page.goto(f"{server.ims_url}/console/check")
    page.get_by_label("Object").select_option(f"{objects.bucket}:{objects.good}")
    page.get_by_role("button", name="Check", exact=True).click()
    expect(page.get_by_role("region", name="Check report")).to_contain_text("Passes")
    page.get_by_role("link", name="Register this image").click()

    # pre-filled from the check: the object, the guest's OS, the smallest disk it fits
    expect(page.get_by_label("File in a bucket")).to_have_value(f"{objects.bucket}:{objects.good}")
    expect(page.get_by_label("Operating system")).to_have_value("Debian GNU/Linux 12.0.0 64bit")
    expect(page.get_by_label("Minimum disk (GiB)")).to_have_value("40")
    expect(page.get_by_label("BIOS")).to_be_checked()
    expect(page.get_by_label("Name", exact=True)).to_have_value("good")
    page.get_by_label("Name", exact=True).fill("console good")
    page.get_by_label("Description").fill("registered from the console")
    page.get_by_label("Tags").fill("env=test\nteam=console")
    # a data disk registered with it: the good file again, as a data disk image of its own
    page.get_by_label("Data disk 1: file").select_option(f"{objects.bucket}:{objects.good}")
    page.get_by_label("Data disk 1: size (GiB)").fill("40")
    console_browser.shoot(page, "register", shots)
    page.get_by_role("button", name="Register").click()

    page.wait_for_url(re.compile(r"/console/images/[0-9a-f-]{36}\?done=registered$"))
    expect(page.get_by_role("status").first).to_contain_text("The image is registered")
    expect(page.locator("#image-jobs")).to_contain_text("Import")
    # the image page follows the import by itself: its status turns Active without a reload
    expect(page.locator("main h1")).to_contain_text("console good")
    expect(page.locator("h1 .status")).to_have_text("Active", timeout=IMPORT_SECONDS * 1000)
    page.goto(f"{server.ims_url}/console/images")
    row = page.locator("#images tr", has_text=re.compile(r"console good(?!-data)"))
    expect(row).to_contain_text("Debian GNU/Linux 12.0.0 64bit")
    expect(row.locator(".status")).to_have_text("Active")
    data_row = page.locator("#images tr", has_text="console good-data1")
    expect(data_row.locator(".status")).to_have_text("Active", timeout=IMPORT_SECONDS * 1000)


def test_a_refused_field_shows_the_vendors_code_at_the_field(
    server: ServeProcess, objects: Objects, page: Page
) -> None:
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    page.goto(f"{server.ims_url}/console/register?source={objects.bucket}:{objects.good}")
    page.get_by_label("Fast import").check()
    page.get_by_label("Automatic configuration").check()
    expect(page.get_by_text("Fast import cannot be combined")).to_be_visible()  # said at once
    page.get_by_label("Operating system").select_option("Debian GNU/Linux 12.0.0 64bit")
    page.get_by_label("Minimum disk (GiB)").fill("40")
    page.get_by_role("button", name="Register").click()
    config = page.get_by_label("Automatic configuration")
    expect(config).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#is_config-error")).to_contain_text("IMG.0001")
    expect(page.locator("#is_config-error")).to_contain_text(
        "fast import performs no configuration"
    )
    expect(config).to_have_attribute("aria-describedby", re.compile("is_config-error"))
    expect(page.get_by_label("Fast import")).to_be_checked()  # the form keeps what was chosen

    page.get_by_label("Automatic configuration").uncheck()
    page.get_by_label("Fast import").uncheck()
    page.get_by_label("Name", exact=True).fill("")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#name-error")).to_have_text("IMG.0013 name is required")

    # a data disk shows its own fields and keeps the system's out of the request
    page.get_by_label("Data disk image").check()
    expect(page.get_by_label("For servers running")).to_be_visible()
    expect(page.get_by_label("Automatic configuration")).to_be_hidden()


def test_another_projects_object_is_not_found(
    server: ServeProcess, objects: Objects, page: Page
) -> None:
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    answer = page.goto(check_url(server, objects.other_bucket, objects.other_key))
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_text(objects.other_key)).to_have_count(0)
    answer = page.goto(f"{server.ims_url}/console/rules/IMG-NOT-A-RULE")
    assert answer is not None and answer.status == 404
