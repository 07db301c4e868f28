"""``imageport image`` and ``imageport job`` against the real image API on loopback: a file
uploaded with ``imageport upload`` is registered, its job run (there is no queue in the test, so
the test runs :func:`run_job` as a worker would), waited for, listed, shown and deleted."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from imageport.service.jobs.import_job import run_job
from imageport.service.tables import jobs
from support import import_fixtures as fx
from support.guest_fixtures import CLOUD_READY, GOOD_FSTAB, READY_GRUB_CFG, build_guest
from support.live_apis import IMAGEPORT, Live, live_apis


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_apis(tmp_path) as apis:
        apis.cli_ok("bucket", "create", "images")
        apis.cli_ok("upload", str(fx.good_image("qcow2")), "images/good.qcow2")
        apis.cli_ok("upload", str(fx.backing_qcow2()), "images/bad.qcow2")
        yield apis


def _init_jobs(live: Live) -> list[str]:
    with live.services.db.connect() as conn:
        return list(conn.execute(select(jobs.c.id).where(jobs.c.status == "INIT")).scalars())


def test_register_wait_runs_to_active_and_the_image_is_listed(live: Live) -> None:
    waiting = subprocess.Popen(
        [
            *IMAGEPORT,
            "image",
            "register",
            "good",
            "images:good.qcow2",
            "--min-disk",
            "40",
            "--os-version",
            "Debian GNU/Linux 12.0.0 64bit",
            "--description",
            "from the CLI",
            "--wait",
            "--json",
        ],
        env=live.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (pending := _init_jobs(live)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pending) == 1
    run_job(live.services, pending[0])  # what a worker of `imageport serve` does
    out, err = waiting.communicate(timeout=60)

    assert waiting.returncode == 0, err
    job = json.loads(out)
    assert (job["status"], job["job_id"]) == ("SUCCESS", pending[0])
    assert f"job {pending[0]}: SUCCESS" in err  # the progress line, one per change off a TTY
    image_id = job["entities"]["image_id"]

    listed = json.loads(live.cli_ok("image", "ls", "--json").stdout)
    assert [(i["id"], i["name"], i["status"]) for i in listed] == [(image_id, "good", "active")]
    table = live.cli_ok("image", "ls").stdout
    assert image_id in table and "active" in table and "good" in table
    shown = json.loads(live.cli_ok("image", "show", image_id, "--json").stdout)
    assert shown["__description"] == "from the CLI" and shown["disk_format"] == "qcow2"
    text = live.cli_ok("job", "show", pending[0]).stdout
    assert f"job {pending[0]}: SUCCESS" in text and f"entities.image_id: {image_id}" in text
    # the check report the image keeps, printed as `imageport check` prints it
    assert "imageport check: " in text and "Result: PASS" in text
    report = live.cli_ok("image", "report", image_id)
    assert report.stdout == live.cli_ok("job", "report", pending[0]).stdout
    assert report.stdout.startswith("imageport check: ") and "Result: PASS" in report.stdout
    document = json.loads(live.cli_ok("image", "report", image_id, "--json").stdout)
    assert document["schema"] == "imageport.check/1" and document["summary"]["verdict"] == "pass"

    assert live.cli_ok("image", "rm", image_id).stdout.strip() == f"deleted image {image_id}"
    gone = live.cli("image", "show", image_id)
    assert gone.returncode == 2 and "HTTP 404" in gone.stderr


def test_a_header_verdict_is_given_at_once(live: Live) -> None:
    """What the job would refuse from the header alone (here a backing file) is refused when
    the image is registered: exit 2, the vendor's code, the rule with its evidence and fix."""
    refused = live.cli("image", "register", "bad", "images:bad.qcow2")
    assert refused.returncode == 2
    assert "HTTP 400 IMG.0057: IMG-SAFE: " in refused.stderr and "/etc/passwd" in refused.stderr
    assert "  fix: " in refused.stderr
    assert json.loads(live.cli_ok("image", "ls", "--json").stdout) == []  # nothing registered


def test_failed_job_exits_1_with_the_rule_and_reason(live: Live) -> None:
    live.cli_ok("upload", str(fx.failing_twice_qcow2()), "images/twice.qcow2")
    registered = live.cli_ok("image", "register", "twice", "images:twice.qcow2", "--json")
    job_id = json.loads(registered.stdout)["job_id"]
    run_job(live.services, job_id)

    waited = live.cli("job", "wait", job_id, "--timeout", "30")
    assert waited.returncode == 1
    assert f"job {job_id} failed: IMG-FSTAB-DATA-DISK" in waited.stderr
    assert "/etc/fstab:7" in waited.stderr  # fail_reason names the evidence
    shown = live.cli("job", "show", job_id, "--json")
    assert shown.returncode == 1
    assert json.loads(shown.stdout)["error_code"] == "IMG-FSTAB-DATA-DISK"
    image_id = json.loads(shown.stdout)["entities"]["image_id"]
    killed = live.cli("image", "show", image_id)
    assert killed.returncode == 1 and "status: killed" in killed.stdout
    # the whole report of the failed check: the rule, its evidence and its fix
    assert "Errors (" in killed.stdout and "  IMG-FSTAB-DATA-DISK" in killed.stdout
    assert "evidence: " in killed.stdout and "Result: FAIL" in killed.stdout
    report = live.cli("job", "report", job_id, "--json")
    assert report.returncode == 1
    failed = [f for f in json.loads(report.stdout)["findings"] if f["severity"] == "error"]
    assert [f["rule_id"] for f in failed] == ["IMG-FSTAB-DATA-DISK", "IMG-BOOT-MODE"]
    assert failed[0]["evidence"]


def test_uninitialized_path_and_refusals(live: Live) -> None:
    made = json.loads(
        live.cli_ok(
            "image", "register", "raw-one", "images:good.qcow2", "--uninitialized", "--json"
        ).stdout
    )
    job_id, image_id = made["job_id"], made["image_id"]
    job = json.loads(live.cli_ok("job", "show", job_id, "--json").stdout)
    assert job["job_type"] == "imsNativeImportImageJob"
    assert job["entities"]["image_id"] == image_id

    busy = live.cli("image", "rm", image_id)  # refused while its job is pending
    assert busy.returncode == 2 and "IMG.0090" in busy.stderr

    slow = live.cli("job", "wait", job_id, "--timeout", "0.5", "--interval", "0.1")
    assert slow.returncode == 2 and f"job {job_id} is still INIT" in slow.stderr

    small = live.cli("image", "register", "tiny", "images:good.qcow2", "--min-disk", "10")
    assert small.returncode == 2 and "HTTP 400 IMG." in small.stderr
    assert len(small.stderr.strip().splitlines()) == 1
    form = live.cli("image", "register", "x", "images/good.qcow2")
    assert form.returncode == 2 and "is not BUCKET:KEY" in form.stderr
    noproject = {k: v for k, v in live.env.items() if k != "IMAGEPORT_PROJECT_ID"}
    missing = subprocess.run(
        [*IMAGEPORT, "image", "ls"],
        env=noproject,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 2 and "missing project id" in missing.stderr


def test_check_an_object_through_the_service(live: Live) -> None:
    """``imageport check BUCKET:KEY``: the service's checker on an uploaded object, the same
    report as a local check, nothing registered."""
    good = live.cli("check", "images:good.qcow2")
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("imageport check: images:good.qcow2\n")
    assert "Result: PASS" in good.stdout and "/data/" not in good.stdout  # no server path
    bad = live.cli("check", "images:bad.qcow2", "--json")
    assert bad.returncode == 1
    document = json.loads(bad.stdout)
    assert document["schema"] == "imageport.check/1" and document["file"] == "images:bad.qcow2"
    assert "IMG-SAFE" in [f["rule_id"] for f in document["findings"] if f["severity"] == "error"]
    declared = live.cli("check", "images:good.qcow2", "--architecture", "arm", "--json")
    assert declared.returncode == 0, declared.stderr
    (note,) = [f for f in json.loads(declared.stdout)["findings"] if f["rule_id"] == "IMG-ARCH"]
    # the good guest's /usr/bin/sh has no ELF header: the declared arm is noted, not checked
    assert note["severity"] == "info" and "arm was not checked" in note["message"]
    # as a data disk only the file rules run: no guest findings at all
    as_data = json.loads(
        live.cli("check", "images:good.qcow2", "--type", "DataImage", "--json").stdout
    )
    assert {f["rule_id"] for f in as_data["findings"]} <= {"IMG-FORMAT", "IMG-DISK-SIZE"}
    assert as_data["summary"]["verdict"] == "pass"
    missing = live.cli("check", "images:absent.qcow2")
    assert missing.returncode == 2 and "HTTP 404" in missing.stderr
    local_only = live.cli("check", "images:good.qcow2", "--fast-import")
    assert (
        local_only.returncode == 2 and "--fast-import: only for a local file" in local_only.stderr
    )
    assert json.loads(live.cli_ok("image", "ls", "--json").stdout) == []  # nothing stored


#: Control characters a terminal obeys (C0 but the line break, DEL, C1).
_OBEYED = {chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]} - {"\n"}


def test_an_images_text_cannot_drive_the_users_terminal(live: Live) -> None:
    """A guest whose hostname sets the terminal's title and clears the screen, and whose fstab
    line colours the text: the real checker reports them (through the
    server's check, an import job's report and its fail_reason), and what ``imageport check``,
    ``job wait``, ``job show`` and ``image show`` print holds them escaped, not raw."""
    hostile = build_guest(
        "terminal-escapes",
        root={**CLOUD_READY, "etc/hostname": "\x1b]0;PWNED\x07\x1b[2Jhost\n"},
        boot={"grub/grub.cfg": READY_GRUB_CFG},
        fstab=GOOD_FSTAB + "/dev/vdb1 /data\x1b[31mRED\x1b[0m ext4 defaults 0 2\n",
    )
    live.cli_ok("upload", str(hostile), "images/hostile.raw")
    checked = live.cli("check", "images:hostile.raw")
    registered = live.cli_ok("image", "register", "hostile", "images:hostile.raw", "--json")
    job_id = json.loads(registered.stdout)["job_id"]
    run_job(live.services, job_id)
    waited = live.cli("job", "wait", job_id, "--timeout", "30")
    shown = live.cli("job", "show", job_id)
    as_json = live.cli("job", "show", job_id, "--json").stdout
    image_id = json.loads(as_json)["entities"]["image_id"]
    image = live.cli("image", "show", image_id)
    for run in (checked, waited, shown, image):
        assert run.returncode == 1, run.stderr
        assert not _OBEYED & set(run.stdout + run.stderr), run.args
    for run in (checked, shown, image):
        assert "hostname         \\x1b]0;PWNED\\x07\\x1b[2Jhost" in run.stdout
        assert "evidence: /etc/fstab:7: /dev/vdb1 /data\\x1b[31mRED\\x1b[0m ext4" in run.stdout
    assert "IMG-FSTAB-DATA-DISK: /etc/fstab line 7" in waited.stderr
