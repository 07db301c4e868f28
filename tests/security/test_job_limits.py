"""Issue 9, findings 2 (service side) and 4: what one project's jobs may take from the service,
reproduced against a real ``imageport serve`` with the vendor's SDK.

* Fair scheduling: one project's long jobs (here made long by qemu-img's read-rate limit, as a
  hostile image once made them) no longer make another project's import wait for them.
* ``IMG.0194``: a project cannot queue jobs without end.
* Room: a conversion must fit in the project's storage quota (``IMG.0015``) and in the free
  disk space (``IMG.1075``), known before it starts; nothing is written when it does not.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkims.v2 import CreateImageRequest, CreateImageRequestBody, ShowJobRequest

from imageport.limits import MiB
from support import import_fixtures, storage_bombs
from support.e2e_clients import ims_client, s3_client, wait_job
from support.server_process import ServeProcess, serve_process

# The SDK marks ShowJob deprecated but still sends it; it is part of the API we serve.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '.*' of ImsClient is deprecated:DeprecationWarning"
)

#: qemu-img reads at most this many bytes a second in these tests: the good guest's data then
#: take about four seconds to convert, long enough to hold a worker.
RATE = 128 * 1024


def _upload(server: ServeProcess, tenant: str, copies: int = 1) -> None:
    s3 = s3_client(server, server.keys[tenant])
    s3.create_bucket(Bucket=f"{tenant}-images")
    image = import_fixtures.good_image("qcow2")
    for n in range(copies):
        s3.upload_file(str(image), f"{tenant}-images", f"disk-{n}.qcow2")


def _register(server: ServeProcess, tenant: str, n: int = 0) -> str:
    body = CreateImageRequestBody(
        name=f"{tenant}-{n}-{uuid.uuid4().hex[:8]}",
        image_url=f"{tenant}-images:disk-{n}.qcow2",
        min_disk=40,
    )
    client = ims_client(server, server.keys[tenant])
    job_id: str = client.create_image(CreateImageRequest(body=body)).job_id
    return job_id


def _status(server: ServeProcess, tenant: str, job_id: str) -> Any:
    return ims_client(server, server.keys[tenant]).show_job(ShowJobRequest(job_id=job_id))


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    env = {"IMAGEPORT_CONVERT_RATE_LIMIT_BYTES": str(RATE), "IMAGEPORT_PROJECT_JOB_LIMIT": "3"}
    with serve_process(tmp_path_factory.mktemp("slow"), workers=2, env=env) as server:
        _upload(server, "alpha", copies=4)
        _upload(server, "beta")
        yield server


def test_one_project_cannot_starve_another(slow_server: ServeProcess) -> None:
    """Two workers; the hostile project queues two long jobs first. The victim's import
    starts on the worker the hostile project may not take, and ends before the hostile
    project's second job does (first in, first out, it waited for both to end)."""
    hostile = [_register(slow_server, "alpha", n) for n in range(2)]
    deadline = time.monotonic() + 30
    while _status(slow_server, "alpha", hostile[0]).status != "RUNNING":
        assert time.monotonic() < deadline, "the first hostile job never started"
        time.sleep(0.05)
    victim = _register(slow_server, "beta")
    running = _status(slow_server, "beta", victim)
    done = wait_job(ims_client(slow_server, slow_server.keys["beta"]), victim)
    assert done.status == "SUCCESS", done
    second = _status(slow_server, "alpha", hostile[1])
    assert second.status in ("INIT", "RUNNING"), (running, second)
    for job_id in hostile:
        assert wait_job(ims_client(slow_server, slow_server.keys["alpha"]), job_id).status == (
            "SUCCESS"
        )


def test_a_project_with_too_many_unfinished_jobs_is_refused(slow_server: ServeProcess) -> None:
    client = ims_client(slow_server, slow_server.keys["alpha"])
    jobs = [_register(slow_server, "alpha", n) for n in range(3)]
    with pytest.raises(ClientRequestException) as err:
        _register(slow_server, "alpha", 3)
    assert (err.value.status_code, err.value.error_code) == (400, "IMG.0194")
    assert "unfinished jobs" in err.value.error_msg
    # the other project is not affected
    other = _register(slow_server, "beta")
    for job_id in jobs:
        wait_job(client, job_id)
    wait_job(ims_client(slow_server, slow_server.keys["beta"]), other)
    # once they have ended, the project may import again
    wait_job(client, _register(slow_server, "alpha", 3))


def _failed_without_trace(server: ServeProcess, tenant: str, job_id: str) -> Any:
    job = wait_job(ims_client(server, server.keys[tenant]), job_id)
    assert job.status == "FAIL", job
    leftovers = [p for p in (server.data_dir / "images").iterdir()] + [
        p for p in (server.data_dir / "tmp").iterdir()
    ]
    assert leftovers == [], leftovers
    return job


def test_an_image_beyond_the_projects_storage_quota_is_refused_before_converting(
    tmp_path: Path,
) -> None:
    env = {"IMAGEPORT_PROJECT_STORAGE_BYTES": str(4 * MiB)}
    with serve_process(tmp_path, env=env) as server:
        _upload(server, "alpha")
        job = _failed_without_trace(server, "alpha", _register(server, "alpha"))
    assert job.error_code == "IMG.0015"
    assert "storage quota" in job.fail_reason


def test_a_conversion_that_would_not_fit_on_disk_is_refused_before_it_starts(
    tmp_path: Path,
) -> None:
    # all but 15 MiB must stay free: the 2 MB upload fits (with room for what other processes
    # on this machine write meanwhile), the conversion's bound (its data plus at least 16 MiB
    # for metadata) does not
    reserve = shutil.disk_usage(tmp_path).free - 15 * MiB
    env = {"IMAGEPORT_FREE_SPACE_RESERVE_BYTES": str(reserve)}
    with serve_process(tmp_path, env=env) as server:
        _upload(server, "alpha")
        job = _failed_without_trace(server, "alpha", _register(server, "alpha"))
    assert job.error_code == "IMG.1075"
    assert "free disk space" in job.fail_reason and "nothing was written" in job.fail_reason


@pytest.mark.parametrize("compressed", [False, True])
def test_a_shared_cluster_bomb_is_refused_before_it_is_converted(
    slow_server: ServeProcess, compressed: bool
) -> None:
    """The attack of finding 2: a good guest followed by L2 entries pointing a TiB of guest
    clusters at one stored cluster. A 2 MiB upload once became a 10.6 GB image; now the job
    fails at its check, in seconds, and nothing is stored."""
    bomb = storage_bombs.shared_qcow2(compressed=compressed, size=1 << 40)
    assert bomb.stat().st_size < 4 * MiB
    s3 = s3_client(slow_server, slow_server.keys["beta"])
    s3.upload_file(str(bomb), "beta-images", "bomb.qcow2")
    client = ims_client(slow_server, slow_server.keys["beta"])
    body = CreateImageRequestBody(
        name=f"bomb-{uuid.uuid4().hex[:8]}", image_url="beta-images:bomb.qcow2", min_disk=1024
    )
    started = time.monotonic()
    job = wait_job(client, client.create_image(CreateImageRequest(body=body)).job_id)
    assert (job.status, job.error_code) == ("FAIL", "IMG-SAFE"), job
    assert "all use the file byte at offset" in job.fail_reason
    assert time.monotonic() - started < 30
    stored = [p.stat().st_size for p in (slow_server.data_dir / "images").iterdir()]
    assert sum(stored) < 64 * MiB  # only the good images of the other tests


def test_a_project_cannot_fill_the_disk_with_objects(tmp_path: Path) -> None:
    """Round 2 of the review, M4: the byte quota covered images only; one project's objects
    could take the disk the other projects' imports need."""
    env = {"IMAGEPORT_PROJECT_OBJECT_BYTES": str(3 * MiB)}
    with serve_process(tmp_path, env=env) as server:
        alpha = s3_client(server, server.keys["alpha"])
        alpha.create_bucket(Bucket="fill")
        alpha.put_object(Bucket="fill", Key="a", Body=b"\1" * (2 * MiB))
        with pytest.raises(ClientError) as err:
            alpha.put_object(Bucket="fill", Key="b", Body=b"\2" * (2 * MiB))
        assert err.value.response["Error"]["Code"] == "QuotaExceeded"
        upload = alpha.create_multipart_upload(Bucket="fill", Key="c")["UploadId"]
        with pytest.raises(ClientError) as err:
            alpha.upload_part(
                Bucket="fill", Key="c", UploadId=upload, PartNumber=1, Body=b"\3" * (2 * MiB)
            )
        assert err.value.response["Error"]["Code"] == "QuotaExceeded"
        with pytest.raises(ClientError) as err:
            alpha.copy_object(Bucket="fill", Key="d", CopySource={"Bucket": "fill", "Key": "a"})
        assert err.value.response["Error"]["Code"] == "QuotaExceeded"
        assert [o["Key"] for o in alpha.list_objects_v2(Bucket="fill")["Contents"]] == ["a"]
        beta = s3_client(server, server.keys["beta"])  # another project's own quota
        beta.create_bucket(Bucket="other")
        beta.put_object(Bucket="other", Key="b", Body=b"\2" * (2 * MiB))


def test_no_upload_may_eat_the_disk_reserve(tmp_path: Path) -> None:
    env = {"IMAGEPORT_FREE_SPACE_RESERVE_BYTES": str(1 << 60)}
    with serve_process(tmp_path, env=env) as server:
        alpha = s3_client(server, server.keys["alpha"])
        alpha.create_bucket(Bucket="full")
        with pytest.raises(ClientError) as err:
            alpha.put_object(Bucket="full", Key="a", Body=b"\1" * 1024)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507
        assert err.value.response["Error"]["Code"] == "InsufficientStorage"
        assert (
            "KeyCount" not in alpha.list_objects_v2(Bucket="full")
            or alpha.list_objects_v2(Bucket="full")["KeyCount"] == 0
        )
