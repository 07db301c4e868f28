"""``imageport server`` and ``imageport flavor`` as a user runs them (real CLI processes) against
a real HTTP server over services whose servers run on the in-memory host (no virtual machine:
the end-to-end test with QEMU is ``tests/e2e/test_servers_e2e.py``). Jobs run as soon as they
are submitted, so ``--wait`` sees them end. ``server ssh`` runs a stand-in ``ssh`` from PATH
that prints the arguments it was given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imageport.api.ims.app import build_ims_app
from imageport.api.middleware import RequestContext
from imageport.service.access.projects import create_key, create_project
from imageport.service.context import Services
from imageport.service.jobs.dispatch import run_job
from support import server_process
from support.fakes import FakeJobQueue
from support.server_fixtures import add_keypair, fake_host, server_services
from support.shared_images import active_image

IMAGEPORT = [sys.executable, "-m", "imageport.cli.main"]
FAKE_SSH = '#!/bin/sh\necho "ssh $*"\n'


@dataclass
class Cli:
    services: Services
    env: dict[str, str]
    image: str

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*IMAGEPORT, *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    services = server_services(tmp_path / "data")
    services.queue = FakeJobQueue(lambda job_id: run_job(services, job_id))
    services.queue.start()
    create_project(services, "alpha")
    key = create_key(services, "alpha")
    add_keypair(services, key.project_id, "kp1")
    image = active_image(services, key.project_id, "ubuntu-base")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    try:
        app = RequestContext(build_ims_app(services), "ims")
        with server_process.running_app(app) as base:
            env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPORT_")}
            env.update(
                IMAGEPORT_ENDPOINT=base,
                IMAGEPORT_ACCESS_KEY=key.access_key,
                IMAGEPORT_SECRET_KEY=key.secret_key,
                IMAGEPORT_PROJECT_ID=key.project_id,
                PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
                HOME=str(tmp_path),
            )
            yield Cli(services, env, image)
    finally:
        services.db.dispose()


def test_a_server_is_created_listed_shown_powered_and_removed(cli: Cli) -> None:
    made = json.loads(
        cli.ok(
            "server",
            "create",
            "web",
            "--image",
            cli.image,
            "--flavor",
            "s1.small.1",
            "--key-name",
            "kp1",
            "--wait",
            "--json",
        )
    )
    (server,) = made
    assert server["name"] == "web" and server["status"] == "ACTIVE"
    forward = server["OS-EXT-IMAGEPORT:ssh"]
    assert forward.startswith("127.0.0.1:")

    listed = cli.ok("server", "ls")
    assert "web" in listed and "ACTIVE" in listed and forward in listed
    shown = cli.ok("server", "show", "web")
    assert server["id"] in shown and "kp1" in shown and forward in shown

    assert "login:" in cli.ok("server", "log", "web", "--lines", "5")

    assert "SUCCESS" in cli.ok("server", "stop", "web", "--wait")
    assert json.loads(cli.ok("server", "show", server["id"], "--json"))["status"] == "SHUTOFF"
    refused = cli.run("server", "ssh", "web")
    assert refused.returncode == 2 and "SHUTOFF" in refused.stderr
    assert "SUCCESS" in cli.ok("server", "start", "web", "--wait")
    assert "SUCCESS" in cli.ok("server", "reboot", "web", "--hard", "--wait")
    assert [call for call in fake_host(cli.services).calls if call[0] == "reboot-hard"]

    assert "SUCCESS" in cli.ok("server", "rm", "web", "--wait")
    assert "web" not in cli.ok("server", "ls", "--status", "ACTIVE")
    gone = cli.run("server", "show", "web")
    assert gone.returncode == 2 and "Ecs.0114" in gone.stderr


def test_ssh_runs_ssh_on_the_forward_as_the_images_cloud_user(cli: Cli) -> None:
    made = json.loads(cli.ok("server", "create", "box", "--image", cli.image, "--wait", "--json"))
    port = made[0]["OS-EXT-IMAGEPORT:ssh"].rsplit(":", 1)[1]
    said = cli.ok("server", "ssh", "box", "-i", "/keys/id", "--", "uname", "-a")
    # the image is an Ubuntu: its cloud user is ubuntu; the command comes after the host
    assert said.strip().endswith("-i /keys/id ubuntu@127.0.0.1 uname -a")
    assert f"-p {port}" in said and "StrictHostKeyChecking=no" in said
    as_root = cli.ok("server", "ssh", "box", "--user", "root")
    assert as_root.strip().endswith("root@127.0.0.1")


def test_names_resolve_to_one_server_and_flavors_are_listed(cli: Cli) -> None:
    for _ in range(2):
        cli.ok("server", "create", "twin", "--image", cli.image, "--wait")
    twins = cli.run("server", "show", "twin")
    assert twins.returncode == 2 and "2 servers are named 'twin'" in twins.stderr
    flavors = cli.ok("flavor", "ls")
    assert "s1.small.1" in flavors
    assert {f["id"] for f in json.loads(cli.ok("flavor", "ls", "--json"))} >= {"s1.small.1"}
