"""End-to-end on PostgreSQL: a real ``imageport serve --database-url postgresql+pg8000://...``
process, with projects and keys made by ``imageport admin --database-url``, driven by boto3 and
the vendor SDK (``huaweicloudsdkims``): a good qcow2 becomes active, a hostile one (backing
file /etc/passwd) is refused at registration (IMG.0057, IMG-SAFE) and a truncated one fails
its job with IMG-FORMAT. Then the server is killed with
SIGKILL while a job runs and restarted on the same database and data dir: what was there is
still there, the interrupted jobs end with a clear outcome and a new job still works. The rows
are read back from PostgreSQL itself (and the data dir holds no SQLite database), so the test
proves the service really ran on it.

Also on PostgreSQL: an ``s3cmd put`` cut by kill -9 of the server (and of s3cmd) is resumed
after the restart with s3cmd's own ``--continue-put``, which sends only the parts the server
lacks (counted from the server's request log).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkims.v2 import (
    CreateImageRequest,
    CreateImageRequestBody,
    ImsClient,
    ListImagesRequest,
    ShowJobRequest,
)

from support import import_fixtures as fx
from support import pg_server, s3_server
from support.e2e_clients import ims_client, s3_client, wait_job
from support.server_process import serve_process

#: the SDK marks ShowJob deprecated; clients still call it
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '[a-z_]+' of ImsClient is deprecated:DeprecationWarning"
)

MiB = 1 << 20
BUCKET = "pg-images"


@pytest.fixture
def pg_url(postgres_server: pg_server.PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped after the test)."""
    url = postgres_server.fresh_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)


def register(client: ImsClient, name: str, key: str) -> str:
    body = CreateImageRequestBody(
        name=name, image_url=f"{BUCKET}:{key}", min_disk=40, is_config=False, type="ECS"
    )
    job_id: str = client.create_image(CreateImageRequest(body=body)).job_id
    assert re.match(r"^[0-9a-f]{32}$", job_id)
    return job_id


def pg_rows(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """{job id: status} and {image id: status}, read from PostgreSQL directly."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            job_rows = conn.execute(sqlalchemy.text("SELECT id, status FROM jobs")).all()
            image_rows = conn.execute(sqlalchemy.text("SELECT id, status FROM images")).all()
    finally:
        engine.dispose()
    return ({str(i): str(s) for i, s in job_rows}, {str(i): str(s) for i, s in image_rows})


def test_serve_on_postgresql_survives_kill9(tmp_path: Path, pg_url: str) -> None:
    with serve_process(tmp_path, workers=1, tenants=("alpha",), database_url=pg_url) as server:
        keys = server.keys["alpha"]
        assert not (server.data_dir / "imageport.db").exists()  # no SQLite: PostgreSQL
        s3 = s3_client(server, keys)
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(fx.good_image("qcow2")), BUCKET, "disk/guest.qcow2")
        s3.upload_file(str(fx.backing_qcow2()), BUCKET, "disk/hostile.qcow2")
        guest = fx.good_image("qcow2").read_bytes()
        s3.put_object(Bucket=BUCKET, Key="disk/truncated.qcow2", Body=guest[: len(guest) // 2])

        client = ims_client(server, keys)
        job = wait_job(client, register(client, "pg-debian", "disk/guest.qcow2"))
        assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
        image_id = job.entities.image_id
        listed = client.list_images(ListImagesRequest(imagetype="private"))
        assert [(i.id, i.status) for i in listed.images] == [(image_id, "active")]
        assert "Debian" in listed.images[0].os_version
        with pytest.raises(ClientRequestException) as hostile:  # the header tells: at once
            register(client, "pg-hostile", "disk/hostile.qcow2")
        assert hostile.value.error_code == "IMG.0057"
        assert hostile.value.error_msg.startswith("IMG-SAFE: ")
        broken = wait_job(client, register(client, "pg-broken", "disk/truncated.qcow2"))
        assert broken.status == "FAIL" and broken.error_code == "IMG-FORMAT", broken
        assert "beyond the end of the file" in broken.fail_reason
        _, images_in_pg = pg_rows(pg_url)
        assert images_in_pg[image_id] == "active"
        assert images_in_pg[broken.entities.image_id] == "killed"

        # kill -9 with one job running and one waiting
        waiting = [register(client, f"pg-crash-{n}", "disk/guest.qcow2") for n in range(2)]
        deadline = time.monotonic() + 60
        while not any(
            client.show_job(ShowJobRequest(job_id=j)).status == "RUNNING" for j in waiting
        ):
            assert time.monotonic() < deadline, "no job started running"
            time.sleep(0.02)
        server.kill9()
        jobs_at_kill, _ = pg_rows(pg_url)
        assert {jobs_at_kill[j] for j in waiting} & {"INIT", "RUNNING"}, jobs_at_kill

        server.restart()  # same ports, data dir and PostgreSQL database
        assert not (server.data_dir / "imageport.db").exists()
        client = ims_client(server, keys)  # the keys live in PostgreSQL: still valid
        for job_id in waiting:
            job = wait_job(client, job_id)
            assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
        listed = client.list_images(ListImagesRequest(imagetype="private", name="pg-debian"))
        assert [(i.id, i.status) for i in listed.images] == [(image_id, "active")]
        fresh = wait_job(client, register(client, "pg-after-restart", "disk/guest.qcow2"))
        assert fresh.status == "SUCCESS", (fresh.error_code, fresh.fail_reason)
        assert s3_client(server, keys).head_object(Bucket=BUCKET, Key="disk/guest.qcow2")

        jobs_after, images_after = pg_rows(pg_url)
        assert set(jobs_after.values()) <= {"SUCCESS", "FAIL"}
        assert sorted(images_after.values()) == ["active"] * 4 + ["killed"]
        assert list((server.data_dir / "tmp").iterdir()) == []


# -- s3cmd resumes an upload cut by kill -9 -------------------------------------------------------


def _part_puts(lines: list[dict[str, object]], path: str) -> list[int]:
    """Part numbers of the UploadPart requests to ``path`` the server answered 200, in order."""
    found = []
    for line in lines:
        number = re.search(r"(?:^|&)partNumber=(\d+)", str(line.get("query", "")))
        if number and (line.get("method"), line.get("path"), line.get("status")) == (
            "PUT",
            path,
            200,
        ):
            found.append(int(number.group(1)))
    return found


def _s3cmd_argv(config: Path, *args: str) -> list[str]:
    s3cmd = shutil.which("s3cmd")
    if s3cmd is None:
        raise AssertionError("s3cmd is not installed: scripts/install --test installs it")
    return [s3cmd, "-c", str(config), *args]


def test_s3cmd_resumes_an_upload_cut_by_kill9(tmp_path: Path, pg_url: str) -> None:
    parts = 6
    source = tmp_path / "disk.img"
    data = os.urandom(parts * 5 * MiB)
    source.write_bytes(data)
    env = {**os.environ, "HOME": str(tmp_path)}
    with serve_process(tmp_path / "serve", tenants=("alpha",), database_url=pg_url) as server:
        keys = server.keys["alpha"]
        creds = s3_server.Credentials(keys.access_key, keys.secret_key, keys.project_id)
        config = s3_server.s3cmd_config(tmp_path / "s3cfg", server.s3_url, creds)
        subprocess.run(
            _s3cmd_argv(config, "mb", f"s3://{BUCKET}"),
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        # 10 MB/s: about half a second a part, so the kill lands half-way
        first = subprocess.Popen(
            _s3cmd_argv(config, "--limit-rate=10m", "put", str(source), f"s3://{BUCKET}/disk.img"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(_part_puts(server.log_lines(), f"/{BUCKET}/disk.img")) < 2:
            assert first.poll() is None, "s3cmd ended before it was interrupted"
            assert time.monotonic() < deadline, "s3cmd sent no parts"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        server.kill9()
        first.wait(10)

        server.restart()
        s3 = s3_client(server, keys)
        uploads = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
        assert [u["Key"] for u in uploads] == ["disk.img"]
        upload_id = uploads[0]["UploadId"]
        kept = [
            p["PartNumber"]
            for p in s3.list_parts(Bucket=BUCKET, Key="disk.img", UploadId=upload_id).get(
                "Parts", []
            )
        ]
        assert 2 <= len(kept) < parts, kept
        listed = subprocess.run(
            _s3cmd_argv(config, "multipart", f"s3://{BUCKET}"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert upload_id in listed.stdout

        before = len(server.log_lines())
        resumed = subprocess.run(
            _s3cmd_argv(config, "put", "--continue-put", str(source), f"s3://{BUCKET}/disk.img"),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert resumed.returncode == 0, resumed.stderr
        sent = _part_puts(server.log_lines()[before:], f"/{BUCKET}/disk.img")
        assert sorted(sent) == sorted(set(range(1, parts + 1)) - set(kept))
        got = s3.get_object(Bucket=BUCKET, Key="disk.img")
        assert got["Body"].read() == data
        assert got["ETag"].endswith(f'-{parts}"')
        assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
