"""``imageport image export`` against the real image API on loopback: an image registered and
imported, exported with the CLI (the test runs the job as a worker would), the job waited for
and the object checked in the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.service.jobs.dispatch import run_job
from support import import_fixtures as fx
from support.live_apis import Live, live_apis


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_apis(tmp_path) as apis:
        apis.cli_ok("bucket", "create", "images")
        apis.cli_ok("upload", str(fx.good_image("qcow2")), "images/good.qcow2")
        yield apis


def test_export_writes_the_object_and_job_wait_reports_it(live: Live) -> None:
    registered = live.cli_ok("image", "register", "good", "images:good.qcow2", "--json")
    import_job = json.loads(registered.stdout)["job_id"]
    run_job(live.services, import_job)
    image_id = json.loads(live.cli_ok("job", "show", import_job, "--json").stdout)["entities"][
        "image_id"
    ]

    exported = live.cli_ok(
        "image", "export", image_id, "images/out/disk.vhd", "--format", "vhd", "--json"
    )
    doc = json.loads(exported.stdout)
    assert (doc["image_id"], doc["bucket_url"]) == (image_id, "images:out/disk.vhd")
    run_job(live.services, doc["job_id"])
    waited = live.cli_ok("job", "wait", doc["job_id"], "--json")
    job = json.loads(waited.stdout)
    assert (job["status"], job["job_type"]) == ("SUCCESS", "imsNativeExportImageJob")
    info = live.services.store.get_object("images", "out/disk.vhd")
    assert info is not None
    assert job["entities"]["bucket_url"] == "images:out/disk.vhd"
    assert (job["entities"]["object_etag"], job["entities"]["object_size"]) == (
        info.etag,
        info.size,
    )
    # the text output names the object written, as the job's entities do
    said = live.cli_ok("job", "wait", doc["job_id"]).stdout.strip()
    assert said == (
        f"job {doc['job_id']} SUCCESS: image {image_id}, wrote images:out/disk.vhd "
        f"({info.size} bytes)"
    )
    shown = live.cli_ok("job", "show", doc["job_id"]).stdout
    assert "entities.bucket_url: images:out/disk.vhd" in shown

    refused = live.cli("image", "export", image_id, "images:x", "--quick", "--format", "raw")
    assert refused.returncode == 2 and "--quick" in refused.stderr
    bad = live.cli("image", "export", image_id, "no-key")
    assert bad.returncode == 2 and "BUCKET/KEY" in bad.stderr
    missing = live.cli("image", "export", image_id, "nobucket/k")
    assert missing.returncode == 2 and "IMG.0069" in missing.stderr
