"""s3cmd (the Debian program, unmodified) resumes an interrupted multipart upload against the
real bucket API: the first ``s3cmd put`` is killed after some parts, ``s3cmd multipart`` shows
the upload, and ``s3cmd put --continue-put`` finds it (ListMultipartUploads), compares its
parts (ListParts: size and MD5 ETag) and sends only the missing ones. The part PUTs are counted
at the server by an ASGI wrapper, which also slows them down so the kill lands half-way."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from imageport.api.s3.app import build_s3_app
from imageport.service.context import Services
from support import s3_server
from support.server_process import running_app

MiB = 1024 * 1024
PARTS = 6  # 30 MiB in 5 MiB parts (multipart_chunk_size_mb = 5 in s3_server.s3cmd_config)


def _s3cmd_argv(config: Path, *args: str) -> list[str]:
    s3cmd = shutil.which("s3cmd")
    if s3cmd is None:
        raise AssertionError(
            "s3cmd is not installed (Debian package s3cmd): scripts/install --test installs it"
        )
    return [s3cmd, "-c", str(config), *args]


def _s3cmd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        _s3cmd_argv(config, *args),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(config.parent)},
    )
    assert done.returncode == 0, f"s3cmd {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_s3cmd_continue_put_sends_only_the_missing_parts(
    services: Services, tmp_path: Path
) -> None:
    creds = s3_server.new_credentials(services, "alpha")
    counter = s3_server.PartPuts(build_s3_app(services))
    source = tmp_path / "disk.img"
    data = os.urandom(PARTS * 5 * MiB)
    source.write_bytes(data)
    with running_app(counter) as url:
        config = s3_server.s3cmd_config(tmp_path / "s3cfg", url, creds)
        _s3cmd(config, "mb", "s3://images")

        # first run: killed once the server has stored two parts (each part waits 0.4 s)
        counter.delay = 0.4
        first = subprocess.Popen(
            _s3cmd_argv(config, "put", str(source), "s3://images/disk.img"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        deadline = time.monotonic() + 60
        while len(counter.parts) < 2 and first.poll() is None:
            assert time.monotonic() < deadline, "s3cmd sent no parts"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        time.sleep(0.6)  # a part in flight when s3cmd died is now stored or dropped
        sent_first = counter.taken()
        assert 2 <= len(sent_first) < PARTS, sent_first
        uploads = services.store.list_uploads("images")
        assert len(uploads) == 1
        upload_id = uploads[0].upload_id
        stored = [p.number for p in services.store.list_parts(upload_id)]
        assert stored == sent_first
        assert services.store.get_object("images", "disk.img") is None
        # the interrupted upload is visible to s3cmd
        assert upload_id in _s3cmd(config, "multipart", "s3://images").stdout

        # second run: s3cmd's own resume
        counter.delay = 0.0
        resumed = _s3cmd(config, "put", "--continue-put", str(source), "s3://images/disk.img")

        missing = sorted(set(range(1, PARTS + 1)) - set(sent_first))
        assert counter.taken() == missing
        for number in sent_first:
            assert f"part {number}, skipping" in resumed.stderr, resumed.stderr
        assert list(services.store.list_uploads("images")) == []
        with services.store.open_object("images", "disk.img") as handle:
            assert handle.read() == data
        head = s3_server.boto3_client(url, creds).head_object(Bucket="images", Key="disk.img")
        assert head["ContentLength"] == len(data)
        assert head["ETag"].endswith(f'-{PARTS}"')
        back = tmp_path / "back.img"
        _s3cmd(config, "get", "s3://images/disk.img", str(back))
        assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()
