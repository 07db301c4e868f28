"""Staged Glance uploads leave nothing behind: a client that goes away mid-body, a body over the
cap (refused while it streams), a deleted image, a cancelled job, and a restart after a crash.

Raw sockets send the bodies, so a test controls exactly when the client stops; the image API
runs under a real uvicorn (:func:`server_process.running_app`) with no job queue.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from imageport.api.ims.app import build_ims_app
from imageport.limits import MiB
from imageport.service.access.authn import Principal, issue_token
from imageport.service.access.projects import create_key, create_project
from imageport.service.context import Services
from imageport.service.images import staging
from imageport.service.jobs.recovery import recover
from imageport.service.tables import images, jobs
from support import server_process, service_fixtures

LIMIT = 1 * MiB


@dataclass
class Api:
    base: str
    services: Services
    token: str

    @property
    def staged(self) -> Path:
        return self.services.settings.staged_dir

    def staged_names(self) -> list[str]:
        """The names in the staging folder (none before the first upload made it)."""
        folder = self.staged
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}

    def create(self, name: str) -> str:
        answer = httpx.post(
            f"{self.base}/v2/images",
            headers=self.headers(),
            json={"name": name, "disk_format": "qcow2"},
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def image(self, image_id: str) -> dict[str, object]:
        answer = httpx.get(f"{self.base}/v2/images/{image_id}", headers=self.headers())
        doc: dict[str, object] = answer.json()
        return doc

    def connect(self, image_id: str, route: str, framing: str) -> socket.socket:
        """A socket that has sent the request line and headers of a data PUT."""
        host, port = self.base.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(
            (
                f"PUT /v2/images/{image_id}/{route} HTTP/1.1\r\nHost: {host}\r\n"
                f"X-Auth-Token: {self.token}\r\n"
                f"Content-Type: application/octet-stream\r\n{framing}\r\n\r\n"
            ).encode()
        )
        return sock


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    services = service_fixtures.make_services(
        tmp_path_factory.mktemp("staging") / "data", normal_import_max_bytes=LIMIT
    )
    create_project(services, "alpha")
    key = create_key(services, "alpha")
    token = issue_token(services, Principal(key.project_id, key.access_key))[0]
    try:
        with server_process.running_app(build_ims_app(services)) as base:
            yield Api(base, services, token)
    finally:
        services.db.dispose()


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def jobs_of(api: Api, image_id: str) -> list[str]:
    with api.services.db.connect() as conn:
        return [
            r.status for r in conn.execute(select(jobs.c.status).where(jobs.c.image_id == image_id))
        ]


def test_a_client_that_goes_away_mid_body_leaves_nothing(api: Api) -> None:
    image_id = api.create("gone-away")
    sock = api.connect(image_id, "file", f"Content-Length: {LIMIT}")
    sock.sendall(b"\0" * (LIMIT // 4))
    wait_for(lambda: any(n.endswith(".part") for n in api.staged_names()))
    sock.close()
    wait_for(lambda: not api.staged_names())
    assert api.image(image_id)["status"] == "queued" and jobs_of(api, image_id) == []


def test_a_chunked_body_over_the_cap_is_refused_while_it_streams(api: Api) -> None:
    image_id = api.create("too-big")
    sock = api.connect(image_id, "stage", "Transfer-Encoding: chunked")
    chunk = b"%x\r\n" % (64 * 1024) + b"\1" * (64 * 1024) + b"\r\n"
    sent = 0
    try:  # an endless body: the server must answer once the cap is passed
        while sent < 16 * LIMIT:
            sock.sendall(chunk)
            sent += 64 * 1024
    except OSError:
        pass  # the server closed the connection after its answer
    assert sent < 16 * LIMIT
    assert read_status(sock) == 413
    sock.close()
    wait_for(lambda: not api.staged_names())
    declared = httpx.put(
        f"{api.base}/v2/images/{image_id}/file",
        content=b"x" * (LIMIT + 1),
        headers={**api.headers(), "Content-Type": "application/octet-stream"},
    )
    assert declared.status_code == 413 and declared.json()["error_code"] == "IMG.0059"
    assert "IMG-SIZE" in declared.json()["error_msg"]
    assert api.image(image_id)["status"] == "queued" and jobs_of(api, image_id) == []


def test_a_chunked_body_longer_than_its_declared_size_is_stopped(api: Api) -> None:
    """glanceclient declares the size of a chunked upload in ``x-openstack-image-size``: a body
    that runs past it is refused as soon as it does (the rest is not read), naming the size."""
    image_id = api.create("longer")

    def body() -> Iterator[bytes]:
        yield b"QFI\xfb" + b"\0" * 4092
        yield b"\0" * 4096

    answer = httpx.put(
        f"{api.base}/v2/images/{image_id}/file",
        content=body(),
        headers={
            **api.headers(),
            "Content-Type": "application/octet-stream",
            "x-openstack-image-size": "4096",
        },
    )
    assert answer.status_code == 400 and answer.json()["error_code"] == "IMG.0001"
    assert "longer than the 4096 bytes" in answer.json()["error_msg"]
    assert api.image(image_id)["status"] == "queued" and jobs_of(api, image_id) == []
    wait_for(lambda: not api.staged_names())


def _stage(api: Api, image_id: str, body: bytes = b"QFI\xfb" + b"\0" * 4092) -> None:
    answer = httpx.put(
        f"{api.base}/v2/images/{image_id}/stage",
        content=body,
        headers={**api.headers(), "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 204, answer.text


def test_staged_data_goes_with_its_image_or_its_cancelled_job(api: Api) -> None:
    deleted = api.create("staged-deleted")
    _stage(api, deleted)
    assert api.staged_names() == [deleted]
    refused = httpx.put(
        f"{api.base}/v2/images/{deleted}/stage",
        content=b"again",
        headers={**api.headers(), "Content-Type": "application/octet-stream"},
    )
    assert refused.status_code == 409
    assert httpx.delete(f"{api.base}/v2/images/{deleted}", headers=api.headers()).status_code == 204
    assert not api.staged_names()
    cancelled = api.create("staged-cancelled")
    _stage(api, cancelled)
    imported = httpx.post(
        f"{api.base}/v2/images/{cancelled}/import",
        headers=api.headers(),
        json={"method": {"name": "glance-direct"}},
    )
    assert imported.status_code == 202
    with api.services.db.connect() as conn:
        job_id = conn.execute(select(jobs.c.id).where(jobs.c.image_id == cancelled)).scalar()
    answer = httpx.post(f"{api.base}/v1/cloudimages/job/{job_id}/cancel", headers=api.headers())
    assert answer.status_code == 202 and answer.json()["status"] == "FAIL"
    assert not api.staged_names()


def test_recovery_keeps_only_data_a_job_will_read(api: Api) -> None:
    waiting, killed = api.create("recover-waiting"), api.create("recover-killed")
    _stage(api, waiting)
    _stage(api, killed)
    with api.services.db.begin() as conn:
        conn.execute(update(images).where(images.c.id == killed).values(status="killed"))
    (api.staged / f".{waiting}.0123.part").write_bytes(b"half a body")
    (api.staged / "not-an-image").write_bytes(b"?")
    recover(api.services)
    assert api.staged_names() == [waiting]
    staging.remove(api.services.settings, waiting)
    staging.remove(api.services.settings, "../../etc/passwd")  # never a path: ignored


def test_a_second_import_of_the_same_staged_data_is_refused(api: Api) -> None:
    image_id = api.create("imported-twice")
    _stage(api, image_id)
    first = httpx.post(
        f"{api.base}/v2/images/{image_id}/import",
        headers=api.headers(),
        json={"method": {"name": "glance-direct"}},
    )
    assert first.status_code == 202
    again = httpx.post(
        f"{api.base}/v2/images/{image_id}/import",
        headers=api.headers(),
        json={"method": {"name": "glance-direct"}},
    )
    assert again.status_code == 400 and again.json()["error_code"] == "IMG.0090"
    assert jobs_of(api, image_id) == ["INIT"]
