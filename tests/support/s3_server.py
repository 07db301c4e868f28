"""A real bucket API server for tests: uvicorn on 127.0.0.1 (ephemeral port) in a thread,
plus project/key helpers, ready boto3 / s3cmd clients, and :class:`PartPuts`, an ASGI wrapper
that counts, slows down or fails the UploadPart requests a client sends."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imageport.api.s3.app import build_s3_app
from imageport.service.access.projects import create_key, create_project
from imageport.service.context import Services
from support.server_process import running_app


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
    """A boto3 S3 client configured for a local S3 service (path style, SigV4, http)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            **config,
        ),
    )


def rclone(
    url: str,
    creds: Credentials,
    home: Path,
    *args: str,
    secret: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run rclone (the Debian program) with the remote ``loc:`` set to the server at ``url``
    configured for a local S3 service (provider Other, path style, http); stdout as bytes.
    ``check`` asserts that it succeeded."""
    program = shutil.which("rclone")
    if program is None:
        raise AssertionError(
            "rclone is not installed (Debian package rclone): scripts/install --test installs it"
        )
    config = home / "rclone.conf"
    config.touch()
    env = {key: value for key, value in os.environ.items() if key != "AWS_CA_BUNDLE"}
    env.update(
        {
            "HOME": str(home),
            "RCLONE_CONFIG": str(config),
            "RCLONE_CONFIG_LOC_TYPE": "s3",
            "RCLONE_CONFIG_LOC_PROVIDER": "Other",
            "RCLONE_CONFIG_LOC_ENDPOINT": url,
            "RCLONE_CONFIG_LOC_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG_LOC_ACCESS_KEY_ID": creds.access_key,
            "RCLONE_CONFIG_LOC_SECRET_ACCESS_KEY": secret or creds.secret_key,
            "RCLONE_LOW_LEVEL_RETRIES": "1",
            "RCLONE_RETRIES": "1",
        }
    )
    done = subprocess.run([program, *args], capture_output=True, timeout=120, check=False, env=env)
    if check:
        assert done.returncode == 0, f"rclone {' '.join(args)} failed:\n{done.stderr.decode()}"
    return done


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
        "progress_meter = False\n"
    )
    return path


_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
    b"<Message>injected by the test</Message></Error>"
)


class PartPuts:
    """ASGI wrapper around the bucket API: records the part number of every UploadPart answered
    200, delays each part by ``delay`` seconds, and answers the part numbers in ``failing``
    with 503 ServiceUnavailable (before reading their bodies) as a struggling server would."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.delay = 0.0
        self.failing: set[int] = set()
        self.parts: list[int] = []
        self.refused = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode()) if scope["type"] == "http" else {}
        if scope["type"] != "http" or scope["method"] != "PUT" or "partNumber" not in query:
            await self.app(scope, receive, send)
            return
        number = int(query["partNumber"][0])
        if self.delay:
            await asyncio.sleep(self.delay)
        if number in self.failing:
            with self._lock:
                self.refused += 1
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/xml"),
                        (b"connection", b"close"),
                        (b"content-length", str(len(_SLOW_DOWN)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _SLOW_DOWN})
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                with self._lock:
                    self.parts.append(number)
            await send(message)

        await self.app(scope, receive, counting_send)

    def taken(self) -> list[int]:
        """The parts counted so far, sorted, and the count cleared."""
        with self._lock:
            got, self.parts = sorted(self.parts), []
        return got
