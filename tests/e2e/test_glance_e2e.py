"""End-to-end: python-glanceclient, unmodified, against a real ``imageport serve`` process.

The OpenStack user's path with nothing but a token: ``POST /v3/auth/tokens`` (the IAM body with
the access key), then glanceclient creates an image, uploads the file (``Transfer-Encoding:
chunked``, through the server's httptools parser), the server's own job queue checks and
converts it, the image becomes active, and the stored file comes back with ``images.data()``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import glanceclient
import pytest
from glanceclient import exc as glance_exc

from support import import_fixtures
from support.e2e_clients import token_for
from support.server_process import ServeProcess, serve_process

JOB_SECONDS = 180.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("glance-serve")) as started:
        yield started


def wait_status(glance: Any, image_id: str) -> Any:
    deadline = time.monotonic() + JOB_SECONDS
    while True:
        image = glance.images.get(image_id)
        if image.status in ("active", "killed"):
            return image
        assert time.monotonic() < deadline, f"image still {image.status}"
        time.sleep(0.2)


def test_glanceclient_uploads_and_the_servers_queue_imports(
    server: ServeProcess, tmp_path: Path
) -> None:
    guest = import_fixtures.console_ready_qcow2()
    glance = glanceclient.Client(
        endpoint=f"{server.ims_url}/v2", token=token_for(server, server.keys["alpha"])
    )
    image = glance.images.create(
        name="glance-e2e", disk_format="qcow2", container_format="bare", min_disk=40
    )
    assert image.status == "queued"
    with open(guest, "rb") as data:
        glance.images.upload(image.id, data, image_size=guest.stat().st_size)
    done = wait_status(glance, image.id)
    assert done.status == "active", done.get("__fail_reason") or done
    assert "Debian" in done["__os_version"]  # detected by the job's guest check
    back = tmp_path / "back.qcow2"
    with open(back, "wb") as out:
        for chunk in glance.images.data(image.id):
            out.write(chunk)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == done.os_hash_value
    glance.images.delete(image.id)
    with pytest.raises(glance_exc.HTTPNotFound):
        glance.images.get(image.id)
