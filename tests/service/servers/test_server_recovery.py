"""A service that restarts (or was killed) finds its servers again: jobs cut short fail, rows say
what the machines are, jobs not yet started run, machines of no server are removed."""

from __future__ import annotations

from sqlalchemy import update

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.jobs.recovery import recover
from imageport.service.servers import queries
from imageport.service.servers.actions import server_action
from imageport.service.servers.create import create_servers
from imageport.service.servers.jobs import server_job
from imageport.service.servers.passwords import VAULT
from imageport.service.servers.recovery import RESTARTED, recover_servers
from imageport.service.tables import jobs
from support.server_fixtures import (
    create_body,
    fake_host,
    fake_queue,
    run_submitted,
)
from support.shared_images import active_image


def restart(services: Services) -> list[str]:
    """What ``imageport serve`` does at start, with a new host process (its machines are what
    the old one left running)."""
    job_ids = recover(services)
    recover_servers(services)
    return job_ids


def mark_running(services: Services, *job_ids: str) -> None:
    """Jobs a worker had claimed when the service was killed."""
    with services.db.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id.in_(job_ids)).values(status="RUNNING"))


def test_a_create_cut_short_fails_and_its_server_is_error(services: Services) -> None:
    project = create_project(services, "alpha").id
    image = active_image(services, project, "debian")
    created = create_servers(services, project, create_body(image, count=2), version="v1")
    assert created.job_id is not None
    first, second = created.server_ids
    mark_running(services, created.job_id, first.replace("-", ""))  # killed while making the first

    assert restart(services) == []  # nothing runs again
    job = server_job(services, project, created.job_id)
    assert (job.status, job.error_code, job.fail_reason) == ("FAIL", "Ecs.0204", RESTARTED)
    assert [(s.status, s.error_code) for s in job.sub_jobs] == [
        ("FAIL", "Ecs.0204"),
        ("FAIL", "Ecs.0204"),  # never started: its batch has ended
    ]
    for server_id in (first, second):
        server = queries.show_server(services, project, server_id)
        assert (server.status, server.task_state, server.power_state) == ("ERROR", None, 0)
        assert server.fault is not None and server.fault["code"] == "Ecs.0204"


def test_rows_follow_the_machines(services: Services) -> None:
    project = create_project(services, "alpha").id
    image = active_image(services, project, "debian")
    gone, alive, stopping, stopped = create_servers(
        services, project, create_body(image, count=4), version="v1"
    ).server_ids
    run_submitted(services)
    server_action(services, project, {"os-stop": {"servers": [{"id": stopped}]}})
    run_submitted(services)
    stop_job = server_action(services, project, {"os-stop": {"servers": [{"id": stopping}]}})
    mark_running(services, stop_job)

    # the new service's host: "gone" died with the old process, "stopped" was started by hand,
    # "stopping" still runs (the stop was cut short), and one machine belongs to no server
    host = fake_host(services)
    old_port = queries.show_server(services, project, alive).ssh_port
    del host.machines[gone]
    host.machines[stopped].running = True
    host.machines[stopped].ssh_port = 23000
    host.machines[alive].ssh_port = 23001  # re-attached: its forward is new
    orphan = next(iter(host.machines.values())).spec
    host.machines["orphan"] = type(host.machines[alive])(spec=orphan, running=True)

    restart(services)
    assert ("recover", "") in host.calls and "orphan" not in host.machines

    def says(server_id: str) -> tuple[str, str | None, int, int | None]:
        server = queries.show_server(services, project, server_id)
        return server.status, server.task_state, server.power_state, server.ssh_port

    assert says(gone) == ("SHUTOFF", None, 4, None)
    assert says(alive) == ("ACTIVE", None, 1, 23001) and old_port != 23001
    assert says(stopped) == ("ACTIVE", None, 1, 23000)
    assert says(stopping)[:3] == ("ACTIVE", None, 1)
    job = server_job(services, project, stop_job)
    assert (job.status, job.error_code) == ("FAIL", "Ecs.MACHINE")


def test_a_job_not_yet_started_runs_after_the_restart(services: Services) -> None:
    project = create_project(services, "alpha").id
    image = active_image(services, project, "debian")
    plain = create_servers(services, project, create_body(image), version="v1")
    secret = create_servers(
        services, project, create_body(image, adminPass="Imag3port!pass"), version="v1"
    )
    assert plain.job_id is not None and secret.job_id is not None
    VAULT.forget(secret.server_ids[0])  # the old process's memory is gone
    fake_queue(services).submitted.clear()

    assert sorted(restart(services)) == sorted([plain.job_id, secret.job_id])  # batches only
    assert queries.show_server(services, project, plain.server_ids[0]).status == "BUILD"
    for job_id in (plain.job_id, secret.job_id):
        fake_queue(services).submit(job_id)
    run_submitted(services)
    assert queries.show_server(services, project, plain.server_ids[0]).status == "ACTIVE"
    server = queries.show_server(services, project, secret.server_ids[0])
    assert server.status == "ERROR" and server.fault is not None
    assert "adminPass is never stored" in server.fault["message"]
    job = server_job(services, project, secret.job_id)
    assert job.error_code == "Ecs.0204" and "create it again" in (job.fail_reason or "")


def test_without_a_host_recovery_leaves_servers_alone(services: Services) -> None:
    project = create_project(services, "alpha").id
    image = active_image(services, project, "debian")
    server_id = create_servers(services, project, create_body(image), version="v1").server_ids[0]
    run_submitted(services)
    services.host = None
    assert recover_servers(services) == 0
    assert queries.show_server(services, project, server_id).status == "ACTIVE"
