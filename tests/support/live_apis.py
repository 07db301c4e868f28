"""The real bucket and image APIs on loopback for the client tests, with a part counter.

:func:`live_apis` builds :func:`service_fixtures.make_services` in a directory, creates a project
and an access key, and serves ``build_s3_app`` and ``build_ims_app`` (behind the request-id
middleware) with uvicorn in background threads. :class:`PartCounter` wraps the bucket API: it
records the part number of every UploadPart the server answered 200, can slow part uploads
down so a test can kill an uploader half-way, and can refuse parts from a number on (503) as a
server going away mid-upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imageport.service.access.projects import create_key, create_project
from imageport.service.context import Services
from support import service_fixtures
from support.server_process import running_app

IMAGEPORT = [sys.executable, "-m", "imageport.cli.main"]
"""The client CLI, run as the user runs it."""


class PartCounter:
    """ASGI wrapper counting UploadPart requests answered 200 (and optionally delaying them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.parts: list[int] = []
        self.puts = 0
        self.delay = 0.0
        #: UploadParts of this number and above are answered 503 (the server went away
        #: mid-upload, as far as the client can tell), until set back to None.
        self.fail_from: int | None = None
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.parts.clear()
            self.puts = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "PUT":
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        number = int(query["partNumber"][0]) if "partNumber" in query else None
        if number is not None and self.delay:
            await asyncio.sleep(self.delay)
        if number is not None and self.fail_from is not None and number >= self.fail_from:
            await _unavailable(receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                with self._lock:
                    if number is not None:
                        self.parts.append(number)
                    else:
                        self.puts += 1
            await send(message)

        await self.app(scope, receive, counting_send)


async def _unavailable(receive: Receive, send: Send) -> None:
    """Read the request body, then answer 503 ServiceUnavailable as S3 does."""
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
        b"<Message>the test stopped taking parts</Message></Error>"
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/xml"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class Live:
    services: Services
    s3_url: str
    ims_url: str
    counter: PartCounter
    access_key: str
    secret_key: str
    project_id: str
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``imageport ARGS`` (a real process) configured for these APIs."""
        return subprocess.run(
            [*IMAGEPORT, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        """:meth:`cli`, asserting that it succeeded."""
        done = self.cli(*args)
        assert done.returncode == 0, done.stderr
        return done

    def object_bytes(self, bucket: str, key: str) -> bytes:
        with self.services.store.open_object(bucket, key) as handle:
            return handle.read()


@contextlib.contextmanager
def live_apis(root: Path) -> Iterator[Live]:
    """Both APIs over fresh services in ``root``; ``Live.env`` configures the CLI for them."""
    from imageport.api.ims.app import build_ims_app
    from imageport.api.middleware import RequestContext
    from imageport.api.s3.app import build_s3_app

    services = service_fixtures.make_services(root / "data")
    project = create_project(services, "clienttests")
    key = create_key(services, project.id)
    counter = PartCounter(RequestContext(build_s3_app(services), "s3"))
    ims = RequestContext(build_ims_app(services), "ims")
    try:
        with running_app(counter) as s3_url, running_app(ims) as ims_url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPORT_")}
            env.update(
                IMAGEPORT_ENDPOINT=ims_url,
                IMAGEPORT_S3_ENDPOINT=s3_url,
                IMAGEPORT_ACCESS_KEY=key.access_key,
                IMAGEPORT_SECRET_KEY=key.secret_key,
                IMAGEPORT_PROJECT_ID=key.project_id,
                HOME=str(root),
                XDG_CONFIG_HOME=str(root / "config"),
            )
            yield Live(
                services,
                s3_url,
                ims_url,
                counter,
                key.access_key,
                key.secret_key,
                key.project_id,
                env,
            )
    finally:
        services.db.dispose()
