"""Time the import service end to end against the unavoidable work measured in the same run.

Two measurements, against a real ``imageport serve`` process on loopback (its own temporary data
dir, SQLite, ``--workers 1``):

* **upload**: boto3 ``upload_file`` (path style, SigV4, multipart: 64 MiB parts, 4 in
  parallel) and ``imageport upload`` (the same part size and parallelism) of a multi-GiB file
  into a bucket, against copying the same file on the same disk (``shutil.copyfile`` + fsync)
  — ratio = copy time / upload time (goal: at least 0.6). boto3 signs each part's sha256 over
  http, so client and server each hash every byte with sha256 and the server also with md5 (the
  ETag); ``imageport upload`` signs ``UNSIGNED-PAYLOAD`` with a Content-MD5, one hash per byte
  on each side. The server's and the client's CPU seconds are printed next to the times;
* **import**: from the vendor SDK's CreateImage call (made right after the upload completed) to
  the job's SUCCESS, against the work an import cannot avoid, run alone on the same file:
  ``imageport check FILE`` + ``qemu-img convert -O qcow2`` + one sha256 pass over the output
  — ratio = import time / that sum (goal: at most 1.5).

Files: the upload file is ``--upload-gib`` GiB of incompressible data made once under the bench
cache; the import file is the Debian 12 guest image of ``tests/support/guest_images.py`` (3 GiB
virtual, ~0.9 GB of data) as qcow2, built on first use (needs mmdebstrap; takes minutes once).

Usage: ``bench/run --service [--reps N] [--upload-gib N] [--layout NAME] [--format FMT]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (HERE, REPO / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from support import guest_images  # noqa: E402 - from tests/, after the path is set

MiB = 1 << 20
GiB = 1 << 30
BIN = Path(sys.executable).parent
IMAGEPORT = str(BIN / "imageport") if (BIN / "imageport").exists() else "imageport"
LISTENING = re.compile(r"listening image-api=(\S+):(\d+) s3-api=(\S+):(\d+)")


def bench_dir() -> Path:
    d = Path(os.environ.get("IMAGEPORT_BENCH_DIR", REPO / ".test-cache" / "bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def upload_file(gib: int) -> Path:
    """``gib`` GiB of random bytes, made once (incompressible, every block allocated)."""
    path = bench_dir() / f"upload-{gib}g.bin"
    if not path.exists() or path.stat().st_size != gib * GiB:
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            for _ in range(gib * 16):
                f.write(os.urandom(64 * MiB))
        tmp.replace(path)
    return path


@dataclass
class Server:
    process: subprocess.Popen[str]
    data_dir: Path
    ims_url: str
    s3_url: str
    access_key: str
    secret_key: str
    project_id: str


def _admin(data_dir: Path, *args: str) -> dict[str, str]:
    out = subprocess.run(
        [IMAGEPORT, "admin", "--data-dir", str(data_dir), *args, "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, str] = json.loads(out)
    return result


@contextmanager
def running_server(workdir: Path) -> Iterator[Server]:
    data_dir = workdir / "data"
    project = _admin(data_dir, "project", "create", "bench")
    key = _admin(data_dir, "key", "create", "--project", "bench")
    proc = subprocess.Popen(
        [
            IMAGEPORT,
            "serve",
            "--port",
            "0",
            "--s3-port",
            "0",
            "--workers",
            "1",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        match = None
        while match is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("imageport serve exited before listening")
            match = LISTENING.search(line)
        if match is None:
            raise RuntimeError("imageport serve did not print its listening line")
        yield Server(
            proc,
            data_dir,
            f"http://{match[1]}:{match[2]}",
            f"http://{match[3]}:{match[4]}",
            key["access_key"],
            key["secret_key"],
            project["id"],
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def s3_client(server: Server) -> Any:  # boto3 has no type stubs here: its clients are Any
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.s3_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
        ),
    )


def ims_client(server: Server) -> Any:  # the Huawei Cloud SDK is untyped
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkims.v2 import ImsClient

    cred = BasicCredentials(server.access_key, server.secret_key, server.project_id)
    return ImsClient.new_builder().with_credentials(cred).with_endpoint(server.ims_url).build()


def timed_upload(server: Server, path: Path, key: str) -> float:
    from boto3.s3.transfer import TransferConfig

    s3 = s3_client(server)
    config = TransferConfig(
        multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB, max_concurrency=4
    )
    start = time.perf_counter()
    s3.upload_file(str(path), "bench", key, Config=config)
    return time.perf_counter() - start


def client_env(server: Server) -> dict[str, str]:
    """The environment that points the ``imageport`` client at ``server`` with its key."""
    return {
        **os.environ,
        "IMAGEPORT_ENDPOINT": server.ims_url,
        "IMAGEPORT_S3_ENDPOINT": server.s3_url,
        "IMAGEPORT_ACCESS_KEY": server.access_key,
        "IMAGEPORT_SECRET_KEY": server.secret_key,
        "IMAGEPORT_PROJECT_ID": server.project_id,
        "IMAGEPORT_CONFIG": os.devnull,
    }


def timed_cli_upload(server: Server, path: Path, key: str) -> float:
    env = client_env(server)
    start = time.perf_counter()
    subprocess.run(
        [IMAGEPORT, "upload", str(path), f"bench/{key}", "--part-size", "64", "--parallel", "4"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def server_cpu(server: Server) -> float:
    """CPU seconds (user + system) the server process has used so far."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_copy(path: Path, workdir: Path) -> float:
    target = workdir / "copy.bin"
    start = time.perf_counter()
    shutil.copyfile(path, target)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def timed_import(server: Server, key: str, name: str) -> tuple[float, float, str]:
    """(seconds to the registration's answer, seconds to the job's end, the job's outcome):
    the answer includes the header verdict (a worker judging the file's first and last
    MiBs)."""
    from huaweicloudsdkims.v2 import (
        CreateImageRequest,
        CreateImageRequestBody,
        ShowJobRequest,
    )

    ims = ims_client(server)
    body = CreateImageRequestBody(
        name=name, image_url=f"bench:{key}", min_disk=40, os_version="Debian GNU/Linux 12.0.0 64bit"
    )
    start = time.perf_counter()
    job_id = ims.create_image(CreateImageRequest(body=body)).job_id
    answered = time.perf_counter() - start
    while True:
        job = ims.show_job(ShowJobRequest(job_id=job_id))
        if job.status in ("SUCCESS", "FAIL"):
            outcome = f"{job.status} {job.error_code or ''}".strip()
            return answered, time.perf_counter() - start, outcome
        time.sleep(0.05)


def timed_header_baseline(path: Path, fmt: str) -> float:
    """Seconds of ``qemu-img info`` on the file: what reading a header costs alone."""
    start = time.perf_counter()
    subprocess.run(
        ["qemu-img", "info", "-f", fmt, "--output=json", str(path)],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


def timed_baseline(path: Path, fmt: str, workdir: Path) -> tuple[float, float, float]:
    """(check, convert, sha256) seconds for the same file, run alone."""
    start = time.perf_counter()
    subprocess.run(
        [IMAGEPORT, "check", str(path), "--json"], stdout=subprocess.DEVNULL, check=False
    )
    check = time.perf_counter() - start
    out = workdir / "baseline.qcow2"
    start = time.perf_counter()
    subprocess.run(
        ["qemu-img", "convert", "-f", fmt, "-O", "qcow2", str(path), str(out)], check=True
    )
    convert = time.perf_counter() - start
    start = time.perf_counter()
    digest = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    sha = time.perf_counter() - start
    out.unlink()
    return check, convert, sha


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--upload-gib", type=int, default=2)
    ap.add_argument("--layout", default="gpt-bios-esp-ext4")
    ap.add_argument("--format", default="qcow2")
    args = ap.parse_args(argv)

    big = upload_file(args.upload_gib)
    image = guest_images.guest_image(args.layout, args.format)
    with tempfile.TemporaryDirectory(dir=bench_dir()) as tmp:
        workdir = Path(tmp)
        copies, uploads, cli_uploads, imports, baselines = [], [], [], [], []
        answers, header_infos = [], []
        cpu_boto3, cpu_cli = [], []
        with running_server(workdir) as server:
            s3_client(server).create_bucket(Bucket="bench")
            for rep in range(args.reps):
                copies.append(timed_copy(big, workdir))
                before = server_cpu(server)
                uploads.append(timed_upload(server, big, f"big-{rep}.bin"))
                cpu_boto3.append(server_cpu(server) - before)
                s3_client(server).delete_object(Bucket="bench", Key=f"big-{rep}.bin")
                before = server_cpu(server)
                cli_uploads.append(timed_cli_upload(server, big, f"cli-{rep}.bin"))
                cpu_cli.append(server_cpu(server) - before)
                s3_client(server).delete_object(Bucket="bench", Key=f"cli-{rep}.bin")
            for rep in range(args.reps):
                timed_upload(server, image, f"guest-{rep}.{args.format}")
                answered, seconds, outcome = timed_import(
                    server, f"guest-{rep}.{args.format}", f"bench-{rep}"
                )
                answers.append(answered)
                header_infos.append(timed_header_baseline(image, args.format))
                if not outcome.startswith("SUCCESS"):
                    print(f"import {rep} ended {outcome}", file=sys.stderr)
                    return 1
                imports.append(seconds)
                baselines.append(timed_baseline(image, args.format, workdir))

    size_mb = args.upload_gib * GiB / 1e6
    copy, upload = statistics.median(copies), statistics.median(uploads)
    cli = statistics.median(cli_uploads)
    print(f"upload {args.upload_gib} GiB (median of {args.reps}):")
    print(f"  local copy + fsync    {copy:7.2f} s  {size_mb / copy:7.0f} MB/s")
    print(
        f"  boto3 -> bucket API   {upload:7.2f} s  {size_mb / upload:7.0f} MB/s   "
        f"ratio {copy / upload:5.2f} (goal >= 0.6)   server CPU "
        f"{statistics.median(cpu_boto3):5.1f} s"
    )
    print(
        f"  imageport upload      {cli:7.2f} s  {size_mb / cli:7.0f} MB/s   "
        f"ratio {copy / cli:5.2f} (goal >= 0.6)   server CPU "
        f"{statistics.median(cpu_cli):5.1f} s"
    )
    check = statistics.median(b[0] for b in baselines)
    convert = statistics.median(b[1] for b in baselines)
    sha = statistics.median(b[2] for b in baselines)
    imp = statistics.median(imports)
    alone = check + convert + sha
    print(f"import {image.name} ({image.stat().st_size / 1e6:.0f} MB, median of {args.reps}):")
    print(f"  imageport check       {check:7.2f} s")
    print(f"  qemu-img convert      {convert:7.2f} s")
    print(f"  sha256 of the output  {sha:7.2f} s")
    print(f"  sum (work alone)      {alone:7.2f} s")
    print(f"  create -> SUCCESS     {imp:7.2f} s")
    print(f"  ratio (import/alone)  {imp / alone:7.2f}   goal <= 1.5")
    answer, info = statistics.median(answers), statistics.median(header_infos)
    print(f"register (the answer, with its header verdict; median of {args.reps}):")
    print(f"  qemu-img info         {info:7.3f} s")
    print(f"  CreateImage answered  {answer:7.3f} s   ratio {answer / info:5.1f} (goal: < 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
