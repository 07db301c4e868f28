"""The real clients the end-to-end tests drive against a running ``imageport serve``: boto3
(path style, SigV4, no retries so that a refusal shows at once), the vendor's IMS SDK, and a
token from the server's IAM endpoint for the token-authenticated clients."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Protocol

import boto3
import httpx
from botocore.config import Config
from huaweicloudsdkims.v2 import ImsClient, ShowJobRequest

from support import sdk_clients
from support.server_process import Keys, ServeProcess


def s3_client(server: ServeProcess, keys: Keys, secret: str | None = None) -> Any:
    """boto3 S3 client for ``keys`` (or a wrong ``secret``) on the server's bucket API."""
    return boto3.client(
        "s3",
        endpoint_url=server.s3_url,
        region_name="local-1",
        aws_access_key_id=keys.access_key,
        aws_secret_access_key=secret or keys.secret_key,
        config=Config(
            signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}
        ),
    )


def ims_client(server: ServeProcess, keys: Keys) -> ImsClient:
    """The unmodified vendor SDK's IMS client for ``keys`` on the server's image API."""
    return sdk_clients.ims_client(server.ims_url, keys)


JOB_SECONDS = 180.0
"""How long an end-to-end test waits for one import job."""


def wait_job(client: ImsClient, job_id: str, seconds: float = JOB_SECONDS) -> Any:
    """ShowJob until SUCCESS or FAIL; fails the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        job = client.show_job(ShowJobRequest(job_id=job_id))
        if job.status in ("SUCCESS", "FAIL"):
            return job
        assert job.status in ("INIT", "RUNNING"), job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.status} after {seconds} s")
        time.sleep(0.2)


class Served(Protocol):
    """Anything that serves the image API (a :class:`ServeProcess`, the benchmarks' server)."""

    @property
    def ims_url(self) -> str: ...


def token_for(server: Served, keys: Keys) -> str:
    """A token from the server's IAM endpoint, asked for with the access key pair."""
    reply = httpx.post(
        f"{server.ims_url}/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["hw_ak_sk"],
                    "hw_ak_sk": {
                        "access": {"key": keys.access_key},
                        "secret": {"key": keys.secret_key},
                    },
                },
                "scope": {"project": {"id": keys.project_id}},
            }
        },
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    return reply.headers["x-subject-token"]


#: The imageport CLI, run as a separate process.
IMAGEPORT = [sys.executable, "-m", "imageport.cli.main"]


def imageport_cli(
    server: ServeProcess, keys: Keys, *args: str, timeout: float = 120, own_home: bool = False
) -> subprocess.CompletedProcess[str]:
    """``imageport ARGS`` as a user of ``keys`` runs it against ``server`` (settings from the
    environment only; with ``own_home`` a HOME and config folder of the server's, so no
    client configuration of the machine's user is read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPORT_")}
    env.update(
        IMAGEPORT_ENDPOINT=server.ims_url,
        IMAGEPORT_S3_ENDPOINT=server.s3_url,
        IMAGEPORT_ACCESS_KEY=keys.access_key,
        IMAGEPORT_SECRET_KEY=keys.secret_key,
        IMAGEPORT_PROJECT_ID=keys.project_id,
    )
    if own_home:
        env.update(HOME=str(server.root), XDG_CONFIG_HOME=str(server.root / "config"))
    return subprocess.run(
        [*IMAGEPORT, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
