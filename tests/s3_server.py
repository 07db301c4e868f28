"""A real bucket API server for tests: uvicorn on 127.0.0.1 (ephemeral port) in a thread,
plus project/key helpers and ready boto3 / s3cmd clients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imageport.api.s3.app import build_s3_app
from imageport.service.context import Services
from imageport.service.projects import create_key, create_project
from server_process import running_app


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    project_id: str


def new_credentials(services: Services, project: str) -> Credentials:
    made = create_project(services, project)
    key = create_key(services, made.id)
    return Credentials(key.access_key, key.secret_key, made.id)


@contextmanager
def running(services: Services) -> Iterator[str]:
    """Serve the bucket API for ``services`` (a real uvicorn in a thread); yields its URL."""
    with running_app(build_s3_app(services)) as url:
        yield url


def boto3_client(url: str, creds: Credentials, **config: Any) -> Any:
    """A boto3 S3 client as clients.md section 3 configures it (path style, SigV4, http)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1}, **config))


def s3cmd_config(path: Path, url: str, creds: Credentials) -> Path:
    """An s3cmd configuration file for the server at ``url``."""
    host = url.removeprefix("http://")
    path.write_text(
        "[default]\n"
        f"access_key = {creds.access_key}\n"
        f"secret_key = {creds.secret_key}\n"
        f"host_base = {host}\n"
        f"host_bucket = {host}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        "bucket_location = us-east-1\n"
        "multipart_chunk_size_mb = 5\n"
        "check_ssl_certificate = False\n"
        "guess_mime_type = False\n"
        "progress_meter = False\n")
    return path
