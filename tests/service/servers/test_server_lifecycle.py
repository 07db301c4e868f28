"""A server's life on the in-memory host, on SQLite and PostgreSQL: stop, start, reboot and
delete in batches with the status, task and power state of each step, the refusals of actions a
status does not allow, a guest that powers itself off, failures of the host, console output,
lists and their filters, and an image that cannot be deleted while a server uses it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.images.lifecycle import delete_image
from imageport.service.jobs import manage
from imageport.service.servers import queries
from imageport.service.servers.actions import delete_servers, server_action
from imageport.service.servers.create import create_servers
from imageport.service.servers.jobs import server_job
from imageport.service.servers.machines import create_params
from imageport.service.servers.records import ServerRecord
from support.server_fixtures import (
    add_keypair,
    create_body,
    fake_host,
    run_submitted,
)
from support.shared_images import active_image


def active_servers(
    services: Services, project: str, image: str, count: int = 1, **fields: object
) -> list[str]:
    created = create_servers(
        services, project, create_body(image, count=count, **fields), version="v1"
    )
    run_submitted(services)
    return list(created.server_ids)


def state(services: Services, project: str, server_id: str) -> tuple[str, str | None, int]:
    server = queries.show_server(services, project, server_id)
    return server.status, server.task_state, server.power_state


def refusal(call: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(ServiceError) as info:
        call()
    return info.value.status, info.value.code, info.value.message


def act(services: Services, project: str, action: str, ids: list[str], **extra: object) -> str:
    return server_action(
        services, project, {action: {"servers": [{"id": i} for i in ids], **extra}}
    )


def test_stop_start_reboot_delete(services: Services, project: str, image: str) -> None:
    add_keypair(services, project, "kp1")
    first, second = active_servers(
        services, project, image, count=2, key_name="kp1", user_data="I2Nsb3VkLWNvbmZpZwo="
    )
    host = fake_host(services)
    assert create_params(services, first).user_data == "I2Nsb3VkLWNvbmZpZwo="

    job_id = act(services, project, "os-stop", [first, second])
    assert state(services, project, first) == ("ACTIVE", "powering-off", 1)
    assert refusal(lambda: act(services, project, "os-start", [first]))[:2] == (400, "Ecs.0100")
    assert refusal(lambda: act(services, project, "os-stop", [second]))[:2] == (400, "Ecs.0100")
    run_submitted(services)
    assert state(services, project, first) == ("SHUTOFF", None, 4)
    assert queries.show_server(services, project, first).ssh_port is None
    assert ("stop", first) in host.calls and ("stop-hard", first) not in host.calls
    job = server_job(services, project, job_id)
    assert (job.job_type, job.status, job.server_id) == ("batchStopServers", "SUCCESS", None)
    assert [(s.job_type, s.server_id, s.status) for s in job.sub_jobs] == [
        ("stopServer", first, "SUCCESS"),
        ("stopServer", second, "SUCCESS"),
    ]

    job_id = act(services, project, "os-start", [first])
    assert state(services, project, first) == ("SHUTOFF", "powering-on", 4)
    run_submitted(services)
    assert state(services, project, first) == ("ACTIVE", None, 1)
    assert queries.show_server(services, project, first).ssh_port is not None
    assert server_job(services, project, job_id).server_id == first  # one server: named

    act(services, project, "reboot", [first], type="HARD")
    assert state(services, project, first) == ("HARD_REBOOT", "rebooting_hard", 1)
    run_submitted(services)
    act(services, project, "reboot", [first], type="SOFT")
    assert state(services, project, first) == ("REBOOT", "rebooting", 1)
    run_submitted(services)
    assert state(services, project, first) == ("ACTIVE", None, 1)
    assert [c for c in host.calls if c[0].startswith("reboot")] == [
        ("reboot-hard", first),
        ("reboot", first),
    ]
    assert refusal(lambda: act(services, project, "reboot", [second], type="SOFT"))[1] == (
        "Ecs.0100"
    )  # SHUTOFF

    job_id = delete_servers(
        services, project, {"servers": [{"id": first}, {"id": second}], "delete_volume": True}
    )
    assert state(services, project, first) == ("ACTIVE", "deleting", 1)
    assert state(services, project, second) == ("SHUTOFF", "deleting", 4)
    run_submitted(services)
    assert server_job(services, project, job_id).job_type == "deleteServer"
    assert first not in host.machines and second not in host.machines
    for server_id in (first, second):
        status, code, _ = refusal(partial(queries.show_server, services, project, server_id))
        assert (status, code) == (404, "Ecs.0114")
    assert queries.list_servers(services, project, []).count == 0
    deleted = queries.list_servers(services, project, [("status", "DELETED")])
    assert sorted(s.id for s in deleted.servers) == sorted([first, second])
    gone = deleted.servers[0]
    assert (gone.vm_state, gone.task_state, gone.power_state) == ("deleted", None, 0)
    assert gone.deleted_at is not None and queries.addresses_of(gone) == []
    kept = create_params(services, first)  # what a start would need: dropped, may be secret
    assert (kept.user_data, kept.public_key, kept.server_id) == (None, None, first)
    assert refusal(lambda: act(services, project, "os-start", [first]))[:2] == (404, "Ecs.0114")


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({}, "Ecs.0005", "body"),
        ({"os-start": {"servers": []}}, "Ecs.0005", "os-start.servers"),
        ({"os-start": {"servers": [{"id": "x"}], "type": "HARD"}}, "Ecs.0005", "os-start.type"),
        ({"os-stop": {"servers": [{"id": "x"}], "type": "GENTLE"}}, "Ecs.0005", "os-stop.type"),
        ({"reboot": {"servers": [{"id": "x"}]}}, "Ecs.0005", "reboot.type"),
        ({"reboot": {"servers": [{"id": "x"}, {"id": "x"}], "type": "SOFT"}}, "Ecs.0005", "twice"),
        ({"os-stop": {"servers": [{"id": str(i)} for i in range(11)]}}, "Ecs.0118", "at most"),
        ({"os-stop": {"servers": [{"id": "x", "name": "y"}]}}, "Ecs.0005", "servers"),
        ({"os-stop": {"servers": [{"id": "x"}]}, "os-start": {}}, "Ecs.0005", "exactly one"),
        ({"os-stop": {"servers": [{"id": "no-such-server"}]}}, "Ecs.0114", "no-such-server"),
    ],
)
def test_malformed_actions(
    services: Services, project: str, body: dict[str, object], code: str, says: str
) -> None:
    status, got, message = refusal(lambda: server_action(services, project, body))
    assert got == code and says in message
    assert status == (404 if code == "Ecs.0114" else 400)


def test_batches_are_all_or_nothing_and_private(
    services: Services, project: str, image: str
) -> None:
    mine = active_servers(services, project, image)[0]
    other = create_project(services, "beta").id
    theirs = active_servers(services, other, active_image(services, other, "b"))[0]
    assert refusal(lambda: act(services, project, "os-stop", [mine, theirs]))[:2] == (
        404,
        "Ecs.0114",
    )
    assert state(services, project, mine) == ("ACTIVE", None, 1)
    assert refusal(lambda: queries.show_server(services, project, theirs))[1] == "Ecs.0114"
    assert (
        refusal(lambda: delete_servers(services, project, {"servers": [{"id": theirs}]}))[1]
        == "Ecs.0114"
    )
    assert (
        refusal(lambda: delete_servers(services, project, {"servers": [{"id": mine}], "x": 1}))[1]
        == "Ecs.0005"
    )


def test_a_server_being_built_cannot_be_acted_on(
    services: Services, project: str, image: str
) -> None:
    created = create_servers(services, project, create_body(image), version="v1")
    server_id = created.server_ids[0]
    for call in (
        lambda: act(services, project, "os-stop", [server_id]),
        lambda: delete_servers(services, project, {"servers": [{"id": server_id}]}),
    ):
        status, code, message = refusal(call)
        assert (status, code) == (400, "Ecs.0100") and "BUILD (spawning)" in message


def test_a_guest_that_powers_off_makes_its_server_shutoff(
    services: Services, project: str, image: str
) -> None:
    server_id = active_servers(services, project, image)[0]
    fake_host(services).guest_powered_off(server_id)
    assert state(services, project, server_id) == ("SHUTOFF", None, 4)
    assert queries.show_server(services, project, server_id).ssh_port is None
    act(services, project, "os-start", [server_id])  # and it can be started again
    run_submitted(services)
    assert state(services, project, server_id) == ("ACTIVE", None, 1)


def test_failures_of_the_host_leave_rows_that_tell_the_truth(
    services: Services, project: str, image: str
) -> None:
    server_id = active_servers(services, project, image)[0]
    host = fake_host(services)
    host.fail["stop"] = "the guest would not stop"
    job_id = act(services, project, "os-stop", [server_id], type="SOFT")
    run_submitted(services)
    job = server_job(services, project, job_id)
    assert (job.status, job.error_code) == ("FAIL", "Ecs.MACHINE")
    assert job.fail_reason == f"server {server_id}: the guest would not stop"
    assert state(services, project, server_id) == ("ACTIVE", None, 1)  # it still runs

    host.fail["destroy"] = "disk busy"
    job_id = delete_servers(services, project, {"servers": [{"id": server_id}]})
    run_submitted(services)
    assert server_job(services, project, job_id).error_code == "Ecs.0501"
    assert state(services, project, server_id) == ("ACTIVE", None, 1)

    host.guest_powered_off(server_id)
    host.fail["start"] = "no memory"
    act(services, project, "os-start", [server_id])
    run_submitted(services)
    assert state(services, project, server_id) == ("SHUTOFF", None, 4)


def test_server_jobs_cannot_be_cancelled(services: Services, project: str, image: str) -> None:
    created = create_servers(services, project, create_body(image), version="v1")
    assert created.job_id is not None
    for job_id in (created.job_id, created.server_ids[0].replace("-", "")):
        status, code, _ = refusal(partial(manage.cancel_job, services, project, job_id))
        assert (status, code) == (409, "IMG.STATE")
    record = manage.show_job(services, project, created.job_id)  # the shared jobs route
    assert record.job_type == "createServer" and record.image_id is None


def test_console_output(services: Services, project: str, image: str) -> None:
    server_id = active_servers(services, project, image)[0]
    host = fake_host(services)
    host.machines[server_id].console = [f"line {n}" for n in range(120)]
    assert queries.console_output(services, project, server_id, []).splitlines() == [
        f"line {n}" for n in range(70, 120)
    ]
    assert queries.console_output(services, project, server_id, [("length", "3")]) == (
        "line 117\nline 118\nline 119"
    )
    assert (
        len(queries.console_output(services, project, server_id, [("length", "-1")]).splitlines())
        == 120
    )
    for query in ([("length", "x")], [("length", "-2")], [("length", "10001")], [("lines", "1")]):
        assert (
            refusal(partial(queries.console_output, services, project, server_id, query))[1]
            == "Ecs.0005"
        )
    host.fail["console_output"] = "the log is gone"
    status, code, message = refusal(
        lambda: queries.console_output(services, project, server_id, [])
    )
    assert (status, code) == (400, "Ecs.0321") and "the log is gone" in message


def test_list_filters_and_pages(services: Services, project: str, image: str) -> None:
    ids = active_servers(services, project, image, count=3)  # vm-0001..3, made at once
    act(services, project, "os-stop", [ids[0]])
    run_submitted(services)
    big = create_servers(
        services, project, create_body(image, name="db", flavorRef="s1.medium.2"), version="v1"
    ).server_ids[0]
    run_submitted(services)

    def listed(*query: tuple[str, str]) -> list[str]:
        return [s.name for s in queries.list_servers(services, project, list(query)).servers]

    assert sorted(listed()) == ["db", "vm-0001", "vm-0002", "vm-0003"]
    assert sorted(listed(("name", "vm-000"))) == ["vm-0001", "vm-0002", "vm-0003"]
    assert listed(("status", "SHUTOFF")) == ["vm-0001"]
    assert listed(("status", "RESIZE")) == []  # the vendor's, never ours
    assert listed(("flavor", "s1.medium.2")) == ["db"]
    assert listed(("server_id", big)) == ["db"]
    assert len(listed(("ip", "169.254"))) == 4 and len(listed(("ip_eq", "169.254.169.15"))) == 4
    assert listed(("ip_eq", "169.254.169.1")) == []
    assert listed(("tags", "a=b")) == [] and len(listed(("not-tags", "a=b"))) == 4
    assert listed(("reservation_id", "r-1")) == []
    assert len(listed(("enterprise_project_id", "0"))) == 4
    assert listed(("enterprise_project_id", "eps-1")) == []
    everything = listed()
    assert listed(("limit", "3")) == everything[:3]
    assert listed(("limit", "3"), ("offset", "2")) == everything[3:]
    assert listed(("limit", "3"), ("offset", "0")) == everything[:3]
    page = queries.list_servers(services, project, [("limit", "2"), ("offset", "2")])
    assert page.count == 4 and [s.name for s in page.servers] == everything[2:]
    marker = queries.list_servers(services, project, [("limit", "2")]).servers[-1].id
    assert listed(("limit", "2"), ("marker", marker)) == everything[2:]
    for query in (
        [("limit", "0")],
        [("limit", "1001")],
        [("offset", "-1")],
        [("status", "RUNNING")],
        [("marker", "nope")],
        [("marker", marker), ("offset", "1")],
        [("name", "a"), ("name", "b")],
        [("sort_key", "name")],
    ):
        status, code, _ = refusal(partial(queries.list_servers, services, project, query))
        assert (status, code) == (400, "Ecs.0005"), query


def test_an_image_in_use_cannot_be_deleted(services: Services, project: str, image: str) -> None:
    server_id = active_servers(services, project, image)[0]
    status, code, message = refusal(lambda: delete_image(services, project, image, None))
    assert (status, code) == (409, "IMG.IN_USE") and "1 server" in message
    delete_servers(services, project, {"servers": [{"id": server_id}]})
    run_submitted(services)
    delete_image(services, project, image, None)
    assert not (services.settings.images_dir / f"{image}.qcow2").exists()


def test_records_keep_what_the_row_says(services: Services, project: str, image: str) -> None:
    server_id = active_servers(services, project, image)[0]
    server = queries.show_server(services, project, server_id)
    assert isinstance(server, ServerRecord) and server.fault is None
    assert server.created_at <= server.updated_at and server.launched_at is not None


def test_an_unexpected_error_fails_one_server_and_the_batch_goes_on(
    services: Services, project: str, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = active_servers(services, project, image, count=2)
    host = fake_host(services)
    real_stop = host.stop

    def stop(server_id: str, *, hard: bool, timeout: float) -> None:
        if server_id == first:
            raise RuntimeError("a bug in the host")
        real_stop(server_id, hard=hard, timeout=timeout)

    monkeypatch.setattr(host, "stop", stop)
    job_id = act(services, project, "os-stop", [first, second])
    run_submitted(services)
    job = server_job(services, project, job_id)
    assert (job.status, job.error_code) == ("FAIL", "Ecs.MACHINE")
    assert "internal error: RuntimeError('a bug in the host')" in (job.fail_reason or "")
    assert [s.status for s in job.sub_jobs] == ["FAIL", "SUCCESS"]
    assert state(services, project, first) == ("ACTIVE", None, 1)  # no task left behind
    assert state(services, project, second) == ("SHUTOFF", None, 4)
