"""Services that run servers on the in-memory host, for the service and SDK tests of servers.

:func:`server_services` is :func:`service_fixtures.make_fake_services` (real database, fake
store, image worker and a job queue that only records) with a
:class:`~fakes.FakeServerHost` whose ``on_stopped`` is the service's
:func:`~imageport.service.servers.lifecycle.machine_stopped`, as the wiring connects the real
host. Jobs stay INIT until the test runs them with the queue's dispatcher
(:func:`run_submitted`). A project's key pair is written as the key pair routes leave it
(:func:`add_keypair`); an image as an import job leaves it
(:func:`support.shared_images.active_image`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import insert

from imageport.service.context import Services
from imageport.service.jobs.dispatch import run_job
from imageport.service.servers.lifecycle import machine_stopped
from imageport.service.tables import keypairs
from support import service_fixtures
from support.fakes import FakeJobQueue, FakeServerHost

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5Zm9yc2VydmVyc3Rlc3Rz test@imageport"


def server_services(
    data_dir: Path, database_url: str | None = None, **settings: object
) -> Services:
    """Fake services with a :class:`FakeServerHost` (see the module docstring)."""
    made = service_fixtures.make_fake_services(data_dir, database_url, **settings)
    made.host = FakeServerHost(on_stopped=lambda server_id: machine_stopped(made, server_id))
    return made


def fake_host(services: Services) -> FakeServerHost:
    host = services.host
    assert isinstance(host, FakeServerHost)
    return host


def fake_queue(services: Services) -> FakeJobQueue:
    queue = services.queue
    assert isinstance(queue, FakeJobQueue)
    return queue


def run_submitted(services: Services) -> list[str]:
    """Run every job submitted since the last call, as the queue's worker would; their ids."""
    queue = fake_queue(services)
    ran = list(queue.submitted)
    queue.submitted.clear()
    for job_id in ran:
        run_job(services, job_id)
    return ran


def add_keypair(
    services: Services, project_id: str, name: str, public_key: str = PUBLIC_KEY
) -> None:
    with services.db.begin() as conn:
        conn.execute(
            insert(keypairs).values(
                project_id=project_id,
                name=name,
                public_key=public_key,
                fingerprint="SHA256:test",
                key_type="ssh",
                created_at="2030-01-01T00:00:00.000Z",
            )
        )


def create_body(image_id: str, **server: object) -> dict[str, object]:
    """A create request's body for one small server of ``image_id`` (``server`` adds fields or,
    set to None, removes them)."""
    doc: dict[str, object] = {
        "imageRef": image_id,
        "flavorRef": "s1.small.1",
        "name": "vm",
        "vpcid": "default",
        "nics": [{"subnet_id": "default"}],
        "root_volume": {"volumetype": "SSD"},
    }
    doc.update(server)
    return {"server": {k: v for k, v in doc.items() if v is not None}}
