"""Creating servers on the in-memory host: the rows, the jobs and what the host is given, the
checks against images, key pairs and quotas, dry runs, idempotent retries, and failures."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from imageport.limits import GiB
from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.images.members import add_member, update_member
from imageport.service.servers import queries
from imageport.service.servers.create import create_servers
from imageport.service.servers.jobs import server_job
from imageport.service.servers.passwords import VAULT
from imageport.service.tables import images, jobs, servers
from support.server_fixtures import (
    PUBLIC_KEY,
    add_keypair,
    create_body,
    fake_host,
    fake_queue,
    run_submitted,
    server_services,
)
from support.shared_images import active_image

PASSWORD = "Imag3port!pass"  # noqa: S105 (a test server's)
TOKEN = "tok-1"  # noqa: S105 (an idempotency token)
USER_DATA = b"#cloud-config\nruncmd: [touch /tmp/ok]\n"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = server_services(tmp_path / "data")
    yield made
    made.db.dispose()


def refusal(call: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(ServiceError) as info:
        call()
    return info.value.status, info.value.code, info.value.message


def rows(services: Services, table: Any, **where: object) -> list[Any]:
    with services.db.connect() as conn:
        statement = select(table)
        for name, value in where.items():
            statement = statement.where(table.c[name] == value)
        return list(conn.execute(statement).all())


def test_a_batch_is_built_then_runs_to_active(services: Services, project: str, image: str) -> None:
    add_keypair(services, project, "kp1")
    created = create_servers(
        services,
        project,
        create_body(
            image,
            name="web",
            count=2,
            key_name="kp1",
            adminPass=PASSWORD,
            user_data=base64.b64encode(USER_DATA).decode(),
            metadata={"role": "web"},
            description="two web servers",
        ),
        version="v1",
    )
    assert created.job_id is not None and len(created.server_ids) == 2
    assert fake_queue(services).submitted == [created.job_id]  # the batch only

    built = [queries.show_server(services, project, s) for s in created.server_ids]
    assert [s.name for s in built] == ["web-0001", "web-0002"]
    for server in built:
        assert (server.status, server.vm_state, server.task_state, server.power_state) == (
            "BUILD",
            "building",
            "spawning",
            0,
        )
        assert (server.flavor_id, server.vcpus, server.memory_mib, server.disk_gib) == (
            "s1.small.1",
            1,
            1024,
            40,
        )
        assert server.mac.startswith("fa:16:3e:") and len(server.mac) == 17
        assert (server.image_id, server.key_name, server.firmware) == (image, "kp1", "bios")
        assert server.metadata == {"role": "web"} and server.description == "two web servers"
        assert server.availability_zone == "local-1a" and server.ssh_port is None
    assert built[0].mac != built[1].mac
    job = server_job(services, project, created.job_id)
    assert (job.job_type, job.status, job.server_id) == ("createServer", "INIT", None)
    assert [(s.job_type, s.status, s.server_id) for s in job.sub_jobs] == [
        ("createSingleServer", "INIT", server_id) for server_id in created.server_ids
    ]
    assert [s.id for s in job.sub_jobs] == [s.replace("-", "") for s in created.server_ids]

    run_submitted(services)
    job = server_job(services, project, created.job_id)
    assert (job.status, job.error_code, job.fail_reason) == ("SUCCESS", None, None)
    assert job.end_time is not None
    assert [s.status for s in job.sub_jobs] == ["SUCCESS", "SUCCESS"]
    host = fake_host(services)
    for index, server_id in enumerate(created.server_ids):
        server = queries.show_server(services, project, server_id)
        assert (server.status, server.task_state, server.power_state) == ("ACTIVE", None, 1)
        assert server.ssh_port is not None and server.launched_at is not None
        assert host.calls.count(("create", server_id)) == host.calls.count(("start", server_id))
        spec = host.specs[server_id]
        assert spec.image == services.settings.images_dir / f"{image}.qcow2"
        assert (spec.image_format, spec.disk_bytes, spec.firmware) == ("qcow2", 40 * GiB, "bios")
        assert (spec.vcpus, spec.memory_mib, spec.mac) == (1, 1024, server.mac)
        meta = json.loads(spec.metadata["openstack/latest/meta_data.json"])
        assert (meta["uuid"], meta["name"], meta["launch_index"]) == (
            server_id,
            server.name,
            index,
        )
        assert meta["admin_pass"] == PASSWORD and meta["public_keys"] == {"kp1": PUBLIC_KEY}
        assert meta["meta"] == {"role": "web"} and meta["project_id"] == project
        assert spec.metadata["openstack/latest/user_data"] == USER_DATA
        network = json.loads(spec.metadata["openstack/latest/network_data.json"])
        assert network["links"][0]["ethernet_mac_address"] == server.mac


def test_the_password_is_never_written_down(
    services: Services, project: str, image: str, tmp_path: Path
) -> None:
    created = create_servers(
        services, project, create_body(image, adminPass=PASSWORD), version="v1.1"
    )
    run_submitted(services)
    server_id = created.server_ids[0]
    assert (
        json.loads(
            fake_host(services).specs[server_id].metadata["openstack/latest/meta_data.json"]
        )["admin_pass"]
        == PASSWORD
    )
    assert VAULT.take(server_id) is None  # handed over, then forgotten
    services.db.dispose()  # every page on disk
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*.db*"))
    assert stored and PASSWORD.encode() not in stored


def test_the_disk_follows_the_image(services: Services, project: str, image: str) -> None:
    with services.db.begin() as conn:
        conn.execute(
            update(images)
            .where(images.c.id == image)
            .values(min_disk=50, properties={"hw_firmware_type": "uefi"})
        )
    small = refusal(
        lambda: create_servers(
            services,
            project,
            create_body(image, root_volume={"volumetype": "SSD", "size": 45}),
            version="v1",
        )
    )
    assert small[:2] == (400, "Ecs.0005") and small[2].startswith("root_volume.size")
    default = create_servers(services, project, create_body(image), version="v1")
    larger = create_servers(
        services,
        project,
        create_body(image, root_volume={"volumetype": "SATA", "size": 100}),
        version="v1",
    )
    shown = [queries.show_server(services, project, c.server_ids[0]) for c in (default, larger)]
    assert [(s.disk_gib, s.firmware) for s in shown] == [(50, "uefi"), (100, "uefi")]


def test_the_image_must_be_the_projects_or_accepted(services: Services, project: str) -> None:
    other = create_project(services, "beta").id
    theirs = active_image(services, other, "theirs")
    assert refusal(lambda: create_servers(services, project, create_body(theirs), version="v1"))[
        :2
    ] == (400, "Ecs.0031")
    add_member(services, other, theirs, {"member": project})  # pending: not yet
    assert refusal(lambda: create_servers(services, project, create_body(theirs), version="v1"))[
        :2
    ] == (400, "Ecs.0031")
    update_member(services, project, theirs, project, {"status": "accepted"})
    created = create_servers(services, project, create_body(theirs), version="v1")
    assert queries.show_server(services, project, created.server_ids[0]).image_id == theirs
    missing = refusal(
        lambda: create_servers(
            services, project, create_body("00000000-0000-0000-0000-000000000000"), version="v1"
        )
    )
    assert missing[:2] == (400, "Ecs.0031")


@pytest.mark.parametrize(
    ("values", "code", "says"),
    [
        ({"status": "queued"}, "Ecs.0032", "queued"),
        ({"properties": {"virtual_env_type": "DataImage"}}, "Ecs.0005", "DataImage"),
        ({"properties": {"virtual_env_type": "IsoImage"}}, "Ecs.0005", "IsoImage"),
        ({"properties": {"architecture": "aarch64"}}, "Ecs.0005", "aarch64"),
        ({"disk_format": "zvhd2"}, "Ecs.0005", "zvhd2"),
        ({"min_ram": 2048}, "Ecs.0005", "flavorRef"),
        ({"max_ram": 512}, "Ecs.0005", "flavorRef"),
    ],
)
def test_images_that_cannot_boot_here(
    services: Services, project: str, image: str, values: dict[str, object], code: str, says: str
) -> None:
    with services.db.begin() as conn:
        conn.execute(update(images).where(images.c.id == image).values(**values))
    status, got, message = refusal(
        lambda: create_servers(services, project, create_body(image), version="v1")
    )
    assert (status, got) == (400, code) and says in message
    assert rows(services, servers) == [] and rows(services, jobs) == []


def test_the_key_pair_must_exist(services: Services, project: str, image: str) -> None:
    other = create_project(services, "beta").id
    add_keypair(services, other, "kp1")  # another project's key pair of that name
    status, code, message = refusal(
        lambda: create_servers(services, project, create_body(image, key_name="kp1"), version="v1")
    )
    assert (status, code) == (400, "Ecs.0314") and "kp1" in message


def test_a_dry_run_checks_and_makes_nothing(services: Services, project: str, image: str) -> None:
    created = create_servers(
        services, project, {"dry_run": True, **create_body(image)}, version="v1"
    )
    assert (created.job_id, created.server_ids) == (None, ())
    assert rows(services, servers) == [] and rows(services, jobs) == []
    assert fake_queue(services).submitted == []
    bad = refusal(
        lambda: create_servers(
            services,
            project,
            {"dry_run": True, **create_body(image, key_name="nope")},
            version="v1",
        )
    )
    assert bad[1] == "Ecs.0314"


def test_the_server_quota(tmp_path: Path) -> None:
    services = server_services(tmp_path / "data", server_quota=2)
    project = create_project(services, "alpha").id
    image = active_image(services, project, "debian")
    assert refusal(
        lambda: create_servers(services, project, create_body(image, count=3), version="v1")
    )[:2] == (400, "Ecs.0001")
    first = create_servers(services, project, create_body(image, count=2), version="v1")
    assert refusal(lambda: create_servers(services, project, create_body(image), version="v1"))[
        :2
    ] == (400, "Ecs.0001")
    other = create_project(services, "beta").id  # the quota is per project
    create_servers(services, other, create_body(active_image(services, other, "b")), version="v1")
    run_submitted(services)
    from imageport.service.servers.actions import delete_servers

    delete_servers(services, project, {"servers": [{"id": first.server_ids[0]}]})
    run_submitted(services)
    create_servers(services, project, create_body(image), version="v1")  # a deleted one frees
    services.db.dispose()


def test_the_host_budget_counts_machines_that_run(tmp_path: Path) -> None:
    from imageport.service.servers.actions import server_action

    services = server_services(tmp_path / "data", server_host_vcpus=2, server_host_memory_mib=3072)
    project = create_project(services, "alpha").id
    image = active_image(services, project, "debian")
    big = create_servers(
        services, project, create_body(image, flavorRef="s1.large.1"), version="v1"
    )
    status, code, message = refusal(
        lambda: create_servers(services, project, create_body(image), version="v1")
    )
    assert (status, code) == (400, "Ecs.0319") and "0 vCPU(s)" in message
    run_submitted(services)
    server_action(services, project, {"os-stop": {"servers": [{"id": big.server_ids[0]}]}})
    assert (
        refusal(lambda: create_servers(services, project, create_body(image), version="v1"))[1]
        == "Ecs.0319"
    )  # stopping: still running
    run_submitted(services)
    small = create_servers(services, project, create_body(image), version="v1")  # stopped: free
    run_submitted(services)
    start = refusal(
        lambda: server_action(
            services, project, {"os-start": {"servers": [{"id": big.server_ids[0]}]}}
        )
    )
    assert start[:2] == (400, "Ecs.0319")
    assert queries.show_server(services, project, small.server_ids[0]).status == "ACTIVE"
    services.db.dispose()


def test_a_client_token_makes_a_retry_answer_the_same_job(
    services: Services, project: str, image: str
) -> None:
    first = create_servers(
        services,
        project,
        create_body(image, adminPass=PASSWORD),
        version="v1.1",
        client_token=TOKEN,
    )
    again = create_servers(
        services,
        project,
        create_body(image, adminPass="An0ther!secret"),  # the digest leaves the password out
        version="v1.1",
        client_token=TOKEN,
    )
    assert again == first and len(rows(services, servers)) == 1
    assert fake_queue(services).submitted == [first.job_id]
    dry = create_servers(
        services,
        project,
        {"dry_run": True, **create_body(image, adminPass=PASSWORD)},
        version="v1.1",
        client_token=TOKEN,
    )
    assert (dry.job_id, dry.server_ids) == (None, ())  # a dry run neither finds nor takes it
    status, code, message = refusal(
        lambda: create_servers(
            services,
            project,
            create_body(image, name="other"),
            version="v1.1",
            client_token=TOKEN,
        )
    )
    assert (status, code) == (400, "Ecs.0005") and message.startswith("X-Client-Token")
    other = create_project(services, "beta").id
    theirs = create_servers(
        services,
        other,
        create_body(active_image(services, other, "b")),
        version="v1.1",
        client_token=TOKEN,
    )
    assert theirs.job_id != first.job_id
    for token in ("", "x" * 65, "with space", "tök"):
        assert (
            refusal(
                partial(
                    create_servers,
                    services,
                    project,
                    create_body(image),
                    version="v1",
                    client_token=token,
                )
            )[1]
            == "Ecs.0005"
        )


def test_a_machine_that_cannot_start_leaves_an_error_server(
    services: Services, project: str, image: str
) -> None:
    fake_host(services).fail["start"] = "qemu: could not open the disk"
    created = create_servers(services, project, create_body(image), version="v1")
    run_submitted(services)
    assert created.job_id is not None
    job = server_job(services, project, created.job_id)
    server_id = created.server_ids[0]
    assert (job.status, job.error_code) == ("FAIL", "Ecs.0204")
    assert job.fail_reason == f"server {server_id}: qemu: could not open the disk"
    assert [(s.status, s.error_code) for s in job.sub_jobs] == [("FAIL", "Ecs.0204")]
    server = queries.show_server(services, project, server_id)
    assert (server.status, server.vm_state, server.task_state, server.power_state) == (
        "ERROR",
        "error",
        None,
        0,
    )
    assert server.fault == {"code": "Ecs.0204", "message": "qemu: could not open the disk"}


def test_without_a_host_servers_are_not_offered(
    services: Services, project: str, image: str
) -> None:
    services.host = None
    status, code, message = refusal(
        lambda: create_servers(services, project, create_body(image), version="v1")
    )
    assert (status, code) == (403, "Ecs.NOT_OFFERED") and "server host" in message
    assert queries.list_servers(services, project, []).count == 0
