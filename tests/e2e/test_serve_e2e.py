"""End-to-end: a real ``imageport serve`` process on loopback, driven by unmodified clients.

boto3, s3cmd and the vendor's object-storage SDK (esdk-obs) upload a qcow2 guest (one multipart
upload is resumed after the server was killed); the vendor's IMS SDK registers it, polls the
job to SUCCESS, lists, renames and deletes the image; a qcow2 naming /etc/passwd as backing file
is refused at registration with IMG-SAFE; unsigned and cross-project requests fail; the server
is killed with SIGKILL while jobs run and every job still ends with a clear outcome after the
restart.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkims.v2 import (
    CreateImageRequest,
    CreateImageRequestBody,
    GlanceDeleteImageRequest,
    GlanceDeleteImageRequestBody,
    GlanceShowImageRequest,
    ImsClient,
    ListImagesRequest,
    ShowJobRequest,
    UpdateImageRequest,
    UpdateImageRequestBody,
)
from obs import ObsClient

from support import builders, guest_fixtures, import_fixtures
from support.e2e_clients import ims_client, s3_client, wait_job
from support.server_process import Keys, ServeProcess, serve_process

#: the SDK marks ShowJob and the Glance calls deprecated; clients still call them
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '[a-z_]+' of ImsClient is deprecated:DeprecationWarning"
)

MiB = 1 << 20
PART = 5 * MiB


# -- images ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def guest_qcow2() -> Path:
    """The cloud-ready synthetic Debian guest as qcow2 (about 2 MiB, cached)."""
    return import_fixtures.good_image("qcow2")


@pytest.fixture(scope="session")
def big_guest_qcow2() -> Path:
    """The same guest with 12 MiB of random bytes in the unpartitioned tail of the disk (so the
    qcow2 is about 14 MiB: three 5 MiB parts, and jobs that take a moment)."""
    final = builders.cached("e2e-guest-noisy.qcow2")
    if not final.exists():
        raw = final.with_name(final.name + ".raw")
        shutil.copyfile(guest_fixtures.synthetic_guest(), raw)
        with open(raw, "r+b") as f:  # partition 4 ends at 115 MiB, the disk at 128 MiB
            f.seek(115 * MiB)
            f.write(os.urandom(12 * MiB))
        tmp = final.with_name(final.name + ".tmp")
        builders.qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp))
        raw.unlink()
        os.replace(tmp, final)
    return final


@pytest.fixture(scope="session")
def hostile_qcow2() -> Path:
    """A qcow2 whose backing file is /etc/passwd (never to be opened by the service)."""
    final = builders.cached("e2e-hostile-backing.qcow2")
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        builders.qemu_img(
            "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", str(tmp), "64M"
        )
        os.replace(tmp, final)
    return final


# -- clients ---------------------------------------------------------------------------------------


def s3cmd(server: ServeProcess, keys: Keys, tmp_path: Path, *args: str) -> str:
    if shutil.which("s3cmd") is None:
        raise RuntimeError("s3cmd is not installed; run scripts/install --test")
    host = server.s3_url.removeprefix("http://")
    config = tmp_path / "s3cfg"
    config.write_text(
        f"[default]\naccess_key = {keys.access_key}\n"
        f"secret_key = {keys.secret_key}\nhost_base = {host}\n"
        f"host_bucket = {host}\nuse_https = False\nsignature_v2 = False\n"
        "bucket_location = local-1\nmultipart_chunk_size_mb = 5\n"
    )
    proc = subprocess.run(
        ["s3cmd", "-c", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, f"s3cmd {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc.stdout


def register(client: ImsClient, name: str, bucket: str, key: str) -> str:
    """CreateImage from ``bucket:key``; the job id."""
    body = CreateImageRequestBody(
        name=name, image_url=f"{bucket}:{key}", min_disk=40, is_config=False, type="ECS"
    )
    job_id: str = client.create_image(CreateImageRequest(body=body)).job_id
    assert re.match(r"^[0-9a-f]{32}$", job_id)
    return job_id


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in /metrics")


# -- one server for most tests ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("serve")) as started:
        yield started


@pytest.fixture(scope="module")
def alpha_bucket(server: ServeProcess, guest_qcow2: Path, hostile_qcow2: Path) -> str:
    """Bucket "alpha-images" of project alpha, holding guest.qcow2 and hostile.qcow2 (boto3)."""
    s3 = s3_client(server, server.keys["alpha"])
    s3.create_bucket(Bucket="alpha-images")
    s3.upload_file(str(guest_qcow2), "alpha-images", "disk/guest.qcow2")
    s3.upload_file(str(hostile_qcow2), "alpha-images", "disk/hostile.qcow2")
    return "alpha-images"


def test_health_metrics_and_request_ids(server: ServeProcess) -> None:
    health = httpx.get(f"{server.ims_url}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["database"] == "ok"
    assert httpx.get(f"{server.s3_url}/health").json()["status"] == "ok"
    # errors carry the request id too, in both APIs' error shapes
    unsigned = httpx.get(f"{server.ims_url}/v2/cloudimages")
    assert unsigned.status_code == 401
    assert re.match(r"^[0-9a-f]{32}$", unsigned.headers["x-request-id"])
    assert unsigned.json()["error_code"]
    s3_unsigned = httpx.get(f"{server.s3_url}/")
    assert s3_unsigned.status_code in (401, 403)
    assert s3_unsigned.headers["x-request-id"] in s3_unsigned.text  # <RequestId>
    traced = httpx.get(f"{server.ims_url}/health", headers={"X-Request-Id": "trace-e2e-1"})
    assert traced.headers["x-request-id"] == "trace-e2e-1"
    scrape = httpx.get(f"{server.ims_url}/metrics").text
    assert metric(scrape, 'imageport_http_requests_total{api="ims",method="GET",status="401"}') >= 1
    assert (
        metric(
            scrape,
            'imageport_http_requests_total{api="s3",method="GET",'
            f'status="{s3_unsigned.status_code}"}}',
        )
        >= 1
    )
    assert 'imageport_jobs{status="INIT"}' in scrape
    # one JSON log line per request, with its id
    lines = [line for line in server.log_lines() if line.get("request_id") == "trace-e2e-1"]
    assert len(lines) == 1 and lines[0]["path"] == "/health" and lines[0]["status"] == 200


def test_boto3_and_s3cmd_upload_the_same_image(
    server: ServeProcess, alpha_bucket: str, guest_qcow2: Path, tmp_path: Path
) -> None:
    keys = server.keys["alpha"]
    s3cmd(server, keys, tmp_path, "put", str(guest_qcow2), f"s3://{alpha_bucket}/s3cmd/guest.qcow2")
    s3 = s3_client(server, keys)
    by_boto = s3.head_object(Bucket=alpha_bucket, Key="disk/guest.qcow2")
    by_s3cmd = s3.head_object(Bucket=alpha_bucket, Key="s3cmd/guest.qcow2")
    assert by_boto["ContentLength"] == by_s3cmd["ContentLength"] == guest_qcow2.stat().st_size
    assert by_s3cmd["ETag"] == f'"{md5(guest_qcow2)}"'
    s3cmd(
        server,
        keys,
        tmp_path,
        "get",
        f"s3://{alpha_bucket}/s3cmd/guest.qcow2",
        str(tmp_path / "back.qcow2"),
    )
    assert (tmp_path / "back.qcow2").read_bytes() == guest_qcow2.read_bytes()
    listed = s3cmd(server, keys, tmp_path, "ls", f"s3://{alpha_bucket}/s3cmd/")
    assert "s3cmd/guest.qcow2" in listed
    puts = [
        line
        for line in server.log_lines()
        if line.get("method") == "PUT" and line.get("path") == f"/{alpha_bucket}/s3cmd/guest.qcow2"
    ]
    assert [(p["api"], p["status"], p.get("project")) for p in puts] == [
        ("s3", 200, keys.project_id)
    ]


def test_vendor_sdks_upload_register_list_rename_and_delete(
    server: ServeProcess, alpha_bucket: str, guest_qcow2: Path
) -> None:
    """The vendor's own workflow with its two SDKs: esdk-obs uploads the file in parts (path
    style and AWS v2 signatures against an IP endpoint), huaweicloudsdkims registers it."""
    keys = server.keys["alpha"]
    obs = ObsClient(
        access_key_id=keys.access_key, secret_access_key=keys.secret_key, server=server.s3_url
    )
    try:
        uploaded = obs.uploadFile(
            alpha_bucket, "obs/guest.qcow2", str(guest_qcow2), partSize=PART, taskNum=2
        )
    finally:
        obs.close()
    assert uploaded.status == 200, (uploaded.errorCode, uploaded.errorMessage)
    client = ims_client(server, keys)
    job_id = register(client, "e2e-debian", alpha_bucket, "obs/guest.qcow2")
    job = wait_job(client, job_id)
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    image_id = job.entities.image_id

    listed = client.list_images(ListImagesRequest(imagetype="private", name="e2e-debian"))
    assert [i.id for i in listed.images] == [image_id]
    image = listed.images[0]
    assert image.status == "active"
    assert image.disk_format == "qcow2"
    assert "Debian" in image.os_version  # detected from the guest: none was given
    assert int(image.image_size) > 0

    renamed = client.update_image(
        UpdateImageRequest(
            image_id=image_id,
            body=[UpdateImageRequestBody(op="replace", path="/name", value="e2e-debian-renamed")],
        )
    )
    assert renamed.name == "e2e-debian-renamed"

    scrape = httpx.get(f"{server.ims_url}/metrics").text
    assert metric(scrape, 'imageport_jobs{status="SUCCESS"}') >= 1
    assert metric(scrape, 'imageport_images{status="active"}') >= 1
    logged = server.log_lines()
    job_messages = [str(line["msg"]) for line in logged if line.get("job_id") == job_id]
    assert job_messages[:1] == ["job started"]
    assert job_messages[-1].startswith("job ended after")

    client.glance_delete_image(
        GlanceDeleteImageRequest(
            image_id=image_id, body=GlanceDeleteImageRequestBody(delete_backup=False)
        )
    )
    with pytest.raises(ClientRequestException) as gone:
        client.glance_show_image(GlanceShowImageRequest(image_id=image_id))
    assert gone.value.status_code == 404
    assert gone.value.request_id
    # the request's log line names the caller's project
    creates = [line for line in logged if line.get("path") == "/v2/cloudimages/action"]
    assert creates and creates[0].get("project") == server.keys["alpha"].project_id


def test_hostile_backing_file_is_refused_at_registration_with_img_safe(
    server: ServeProcess, alpha_bucket: str
) -> None:
    """The header names a backing file: refused at once (the job's IMG-SAFE words, which the
    job would also give), and no image is created."""
    client = ims_client(server, server.keys["alpha"])
    with pytest.raises(ClientRequestException) as refused:
        register(client, "e2e-hostile", alpha_bucket, "disk/hostile.qcow2")
    assert (refused.value.status_code, refused.value.error_code) == (400, "IMG.0057")
    assert refused.value.error_msg.startswith("IMG-SAFE: ")
    assert "/etc/passwd" in refused.value.error_msg
    assert client.list_images(ListImagesRequest(name="e2e-hostile")).images == []
    assert httpx.get(f"{server.ims_url}/health").status_code == 200


def test_unsigned_and_cross_project_requests_fail(server: ServeProcess, alpha_bucket: str) -> None:
    alpha, beta = server.keys["alpha"], server.keys["beta"]
    alpha_ims = ims_client(server, alpha)
    job_id = register(alpha_ims, "e2e-private", alpha_bucket, "disk/guest.qcow2")
    image_id = alpha_ims.show_job(ShowJobRequest(job_id=job_id)).entities.image_id

    beta_ims = ims_client(server, beta)
    with pytest.raises(ClientRequestException) as hidden:
        beta_ims.glance_show_image(GlanceShowImageRequest(image_id=image_id))
    assert hidden.value.status_code == 404
    with pytest.raises(ClientRequestException) as hidden_job:
        beta_ims.show_job(ShowJobRequest(job_id=job_id))
    assert hidden_job.value.status_code == 404
    listed = beta_ims.list_images(ListImagesRequest(imagetype="private"))
    assert image_id not in [i.id for i in listed.images or []]
    # beta cannot register an image from alpha's bucket either
    with pytest.raises(ClientRequestException) as foreign:
        register(beta_ims, "e2e-stolen", alpha_bucket, "disk/guest.qcow2")
    assert foreign.value.status_code in (400, 404)

    with pytest.raises(ClientError) as s3_hidden:
        s3_client(server, beta).head_object(Bucket=alpha_bucket, Key="disk/guest.qcow2")
    assert s3_hidden.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as bad_secret:
        s3_client(server, alpha, secret="x" * 40).list_buckets()
    assert bad_secret.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    unsigned = httpx.get(f"{server.ims_url}/v2/images/{image_id}")
    assert unsigned.status_code == 401
    wait_job(alpha_ims, job_id)  # leave no job running for the next tests


def test_multipart_upload_resumes_after_a_kill(server: ServeProcess, big_guest_qcow2: Path) -> None:
    keys = server.keys["alpha"]
    data = big_guest_qcow2.read_bytes()
    parts = [data[i : i + PART] for i in range(0, len(data), PART)]
    assert len(parts) >= 3
    s3 = s3_client(server, keys)
    s3.create_bucket(Bucket="alpha-multipart")
    upload_id = s3.create_multipart_upload(Bucket="alpha-multipart", Key="big.qcow2")["UploadId"]
    etags = {
        1: s3.upload_part(
            Bucket="alpha-multipart",
            Key="big.qcow2",
            UploadId=upload_id,
            PartNumber=1,
            Body=parts[0],
        )["ETag"]
    }

    server.kill9()
    server.restart()

    s3 = s3_client(server, keys)
    kept = s3.list_parts(Bucket="alpha-multipart", Key="big.qcow2", UploadId=upload_id)
    assert [(p["PartNumber"], p["ETag"]) for p in kept["Parts"]] == [(1, etags[1])]
    for number, body in enumerate(parts[1:], start=2):  # only the missing parts
        etags[number] = s3.upload_part(
            Bucket="alpha-multipart",
            Key="big.qcow2",
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
        )["ETag"]
    s3.complete_multipart_upload(
        Bucket="alpha-multipart",
        Key="big.qcow2",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in etags.items()]},
    )
    got = s3.get_object(Bucket="alpha-multipart", Key="big.qcow2")
    assert got["Body"].read() == data
    assert got["ETag"].endswith(f'-{len(parts)}"')

    client = ims_client(server, keys)
    job = wait_job(client, register(client, "e2e-multipart", "alpha-multipart", "big.qcow2"))
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)


# -- kill -9 while jobs run ------------------------------------------------------------------------


def _states(data_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(job id, status) of every job and the status of every image, read from the database."""
    with sqlite3.connect(f"file:{data_dir / 'imageport.db'}?mode=ro", uri=True) as db:
        job_rows = [(str(a), str(b)) for a, b in db.execute("SELECT id, status FROM jobs")]
        image_rows = [str(s) for (s,) in db.execute("SELECT status FROM images")]
    return job_rows, image_rows


def _processes_using(folder: Path) -> list[str]:
    """Command lines of running processes that name ``folder`` (job workers do)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline:
            found.append(cmdline)
    return found


def test_kill9_during_jobs_then_restart(tmp_path: Path, big_guest_qcow2: Path) -> None:
    with serve_process(tmp_path, workers=1, tenants=("gamma",)) as server:
        keys = server.keys["gamma"]
        s3 = s3_client(server, keys)
        s3.create_bucket(Bucket="gamma-images")
        s3.upload_file(str(big_guest_qcow2), "gamma-images", "big.qcow2")
        client = ims_client(server, keys)
        job_ids = [
            register(client, f"e2e-crash-{n}", "gamma-images", "big.qcow2") for n in range(3)
        ]
        deadline = time.monotonic() + 60
        while not any(
            client.show_job(ShowJobRequest(job_id=j)).status == "RUNNING" for j in job_ids
        ):
            assert time.monotonic() < deadline, "no job started running"
            time.sleep(0.02)
        server.kill9()
        jobs_at_kill, _ = _states(server.data_dir)
        assert any(status in ("INIT", "RUNNING") for _, status in jobs_at_kill), jobs_at_kill
        # the job's worker processes die with the server
        deadline = time.monotonic() + 5
        while _processes_using(server.data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_using(server.data_dir) == []

        server.restart()
        client = ims_client(server, keys)
        for job_id in job_ids:
            job = wait_job(client, job_id)
            assert job.status in ("SUCCESS", "FAIL")
            if job.status == "FAIL":
                assert job.error_code and job.fail_reason, job
        jobs_after, images_after = _states(server.data_dir)
        assert {status for _, status in jobs_after} <= {"SUCCESS", "FAIL"}
        assert "saving" not in images_after and "queued" not in images_after
        assert list((server.data_dir / "tmp").iterdir()) == []


def test_sigterm_stops_cleanly_and_start_failures_are_clear(tmp_path: Path) -> None:
    first = ServeProcess(tmp_path / "one").start()
    try:
        second = ServeProcess(tmp_path / "two", data_dir=first.data_dir)
        with pytest.raises(RuntimeError, match="another imageport serve is using"):
            second.start()
        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{first.ports[0]}"):
            ServeProcess(tmp_path / "three").start(ims_port=first.ports[0])
        stdout = (tmp_path / "one" / "serve-1.stdout").read_text()
        assert "imageport: image API http://127.0.0.1:" in stdout
        assert "imageport admin" in stdout  # the hint: no project exists yet
    finally:
        assert first.stop() == 0, first.output()
    assert "imageport: listening" in first.output()
