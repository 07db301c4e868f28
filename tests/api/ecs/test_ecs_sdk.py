"""The server API driven by the vendor's own SDK (huaweicloudsdkecs, unmodified) over real HTTP.

A real uvicorn serves :func:`build_ims_app` (which mounts the server routes, behind the
request-id middleware, as ``imageport serve`` runs it) on loopback, over
a real SQLite database; its servers run on the in-memory host
(:class:`~support.fakes.FakeServerHost`: no virtual machine boots here; the end-to-end test
with QEMU is ``imageport serve``'s). There is no running job queue: jobs stay INIT until the
test runs them with the queue's dispatcher, as a worker would, so every status on the way
can be seen through the SDK.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkecs.v2 import EcsClient
from huaweicloudsdkecs.v2 import model as m

from imageport.api.ims.app import build_ims_app
from imageport.api.middleware import RequestContext
from support import sdk_clients, server_process
from support.sdk_requests import sdk_signed
from support.server_fixtures import (
    PUBLIC_KEY,
    add_keypair,
    fake_host,
    run_submitted,
    server_services,
)
from support.shared_images import active_image

# NovaShowServer is deprecated in the SDK but still sent (and still answered here)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '.*' of EcsClient is deprecated:DeprecationWarning"
)

PASSWORD = "Imag3port!pass"  # noqa: S105 (a test server's)


@dataclass
class Api(sdk_clients.EcsApi):
    image: str

    def run_jobs(self) -> None:
        run_submitted(self.services)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    services = server_services(tmp_path_factory.mktemp("ecs-sdk") / "data", server_quota=6)
    alpha, beta = sdk_clients.projects_with_keys(services, "alpha", "beta")
    add_keypair(services, alpha.project_id, "kp1")
    image = active_image(services, alpha.project_id, "debian-sdk")
    try:
        app = RequestContext(build_ims_app(services), "ims")  # as serve runs it: X-Request-Id
        with server_process.running_app(app) as base:
            yield Api(base, services, alpha, beta, image)
    finally:
        services.db.dispose()


def sdk_error(call: Callable[[], object]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def post_paid(api: Api, **fields: object) -> m.PostPaidServer:
    values: dict[str, object] = {
        "image_ref": api.image,
        "flavor_ref": "s1.small.1",
        "name": "sdk-vm",
        "vpcid": "default",
        "nics": [m.PostPaidServerNic(subnet_id="default")],
        "root_volume": m.PostPaidServerRootVolume(volumetype="SSD", size=40),
    }
    values.update(fields)
    return m.PostPaidServer(**values)


def create(api: Api, ecs: EcsClient, **fields: object) -> m.CreatePostPaidServersResponse:
    body = m.CreatePostPaidServersRequestBody(server=post_paid(api, **fields))
    return ecs.create_post_paid_servers(m.CreatePostPaidServersRequest(body=body))


def ids(server_ids: list[str]) -> list[m.ServerId]:
    return [m.ServerId(id=s) for s in server_ids]


def test_flavors_as_the_sdk_reads_them(api: Api) -> None:
    ecs = api.client(api.alpha)
    flavors = ecs.list_flavors(m.ListFlavorsRequest()).flavors
    assert [(f.id, f.vcpus, f.ram, f.disk) for f in flavors] == [
        ("s1.small.1", "1", 1024, "0"),
        ("s1.medium.2", "1", 2048, "0"),
        ("s1.large.1", "2", 2048, "0"),
    ]
    assert flavors[0].os_flavor_accessis_public is True
    zone = ecs.list_flavors(m.ListFlavorsRequest(availability_zone="local-1a", limit=1))
    assert [f.id for f in zone.flavors] == ["s1.small.1"]
    assert ecs.list_flavors(m.ListFlavorsRequest(availability_zone="az1")).flavors == []


def test_a_servers_life_through_the_sdk(api: Api) -> None:
    ecs = api.client(api.alpha)
    created = create(
        api,
        ecs,
        name="life",
        count=2,
        key_name="kp1",
        admin_pass=PASSWORD,
        user_data=base64.b64encode(b"#cloud-config\n").decode(),
        metadata={"role": "web"},
        availability_zone="local-1a",
        extendparam=m.PostPaidServerExtendParam(charging_mode=0),
    )
    assert len(created.server_ids) == 2
    first, second = created.server_ids
    job = ecs.show_job(m.ShowJobRequest(job_id=created.job_id))
    assert (job.status, job.job_type, job.entities.sub_jobs_total) == ("INIT", "createServer", 2)
    building = ecs.show_server(m.ShowServerRequest(server_id=first)).server
    assert (building.status, building.os_ext_st_svm_state, building.os_ext_st_stask_state) == (
        "BUILD",
        "building",
        "spawning",
    )

    api.run_jobs()
    job = ecs.show_job(m.ShowJobRequest(job_id=created.job_id))
    assert (job.status, job.error_code, job.fail_reason) == ("SUCCESS", None, None)
    assert job.begin_time and job.end_time
    assert [(s.job_type, s.status, s.entities.server_id) for s in job.entities.sub_jobs] == [
        ("createSingleServer", "SUCCESS", first),
        ("createSingleServer", "SUCCESS", second),
    ]
    server = ecs.show_server(m.ShowServerRequest(server_id=first)).server
    assert (server.id, server.name, server.status) == (first, "life-0001", "ACTIVE")
    assert (server.os_ext_st_svm_state, server.os_ext_st_stask_state) == ("active", None)
    assert server.os_ext_st_spower_state == 1
    assert (server.flavor.id, server.flavor.vcpus, server.flavor.ram) == ("s1.small.1", "1", "1024")
    assert (server.image.id, server.key_name, server.metadata) == (
        api.image,
        "kp1",
        {"role": "web"},
    )
    assert server.tenant_id == api.alpha.project_id
    assert server.os_ext_a_zavailability_zone == "local-1a"
    (address,) = server.addresses["default"]
    assert (address.addr, address.version, address.os_ext_ip_stype) == (
        "169.254.169.15",
        "4",
        "fixed",
    )
    assert address.os_ext_ips_ma_cmac_addr.startswith("fa:16:3e:")
    spec = fake_host(api.services).specs[first]
    meta = json.loads(spec.metadata["openstack/latest/meta_data.json"])
    assert meta["public_keys"] == {"kp1": PUBLIC_KEY} and meta["admin_pass"] == PASSWORD

    listed = ecs.list_servers_details(
        m.ListServersDetailsRequest(name="life", status="ACTIVE", limit=25, offset=1)
    )
    assert listed.count == 2 and sorted(s.id for s in listed.servers) == sorted([first, second])
    paged = ecs.list_servers_details(m.ListServersDetailsRequest(name="life", limit=1, offset=2))
    assert paged.count == 2 and len(paged.servers) == 1
    assert ecs.list_servers_details(m.ListServersDetailsRequest(flavor="s1.large.1")).count == 0
    assert (
        ecs.list_servers_details(m.ListServersDetailsRequest(ip_eq="169.254.169.15", name="life"))
    ).count == 2

    stop = ecs.batch_stop_servers(
        m.BatchStopServersRequest(
            body=m.BatchStopServersRequestBody(
                os_stop=m.BatchStopServersOption(servers=ids([first, second]), type="HARD")
            )
        )
    )
    stopping = ecs.show_server(m.ShowServerRequest(server_id=first)).server
    assert (stopping.status, stopping.os_ext_st_stask_state) == ("ACTIVE", "powering-off")
    api.run_jobs()
    assert ecs.show_job(m.ShowJobRequest(job_id=stop.job_id)).status == "SUCCESS"
    stopped = ecs.show_server(m.ShowServerRequest(server_id=first)).server
    assert (stopped.status, stopped.os_ext_st_spower_state) == ("SHUTOFF", 4)
    refused = sdk_error(
        lambda: ecs.batch_stop_servers(
            m.BatchStopServersRequest(
                body=m.BatchStopServersRequestBody(
                    os_stop=m.BatchStopServersOption(servers=ids([first]))
                )
            )
        )
    )
    assert (refused.status_code, refused.error_code) == (400, "Ecs.0100")

    ecs.batch_start_servers(
        m.BatchStartServersRequest(
            body=m.BatchStartServersRequestBody(
                os_start=m.BatchStartServersOption(servers=ids([first]))
            )
        )
    )
    assert ecs.show_server(m.ShowServerRequest(server_id=first)).server.os_ext_st_stask_state == (
        "powering-on"
    )
    api.run_jobs()
    ecs.batch_reboot_servers(
        m.BatchRebootServersRequest(
            body=m.BatchRebootServersRequestBody(
                reboot=m.BatchRebootSeversOption(servers=ids([first]), type="SOFT")
            )
        )
    )
    assert ecs.show_server(m.ShowServerRequest(server_id=first)).server.status == "REBOOT"
    api.run_jobs()
    assert ecs.show_server(m.ShowServerRequest(server_id=first)).server.status == "ACTIVE"

    fake_host(api.services).machines[first].console = ["one", "two", "three"]
    output = ecs.show_server_console_output(
        m.ShowServerConsoleOutputRequest(server_id=first, length=2)
    )
    assert output.output == "two\nthree"
    assert (
        ecs.show_server_console_output(m.ShowServerConsoleOutputRequest(server_id=first)).output
        == "one\ntwo\nthree"
    )

    nova = ecs.nova_show_server(m.NovaShowServerRequest(server_id=first)).server
    assert (nova.id, nova.status, nova.flavor.vcpus, nova.flavor.ram) == (first, "ACTIVE", 1, 1024)

    delete = ecs.delete_servers(
        m.DeleteServersRequest(
            body=m.DeleteServersRequestBody(
                servers=ids([first, second]), delete_publicip=True, delete_volume=True
            )
        )
    )
    assert ecs.show_server(m.ShowServerRequest(server_id=second)).server.os_ext_st_stask_state == (
        "deleting"
    )
    api.run_jobs()
    job = ecs.show_job(m.ShowJobRequest(job_id=delete.job_id))
    assert (job.job_type, job.status, job.entities.sub_jobs_total) == ("deleteServer", "SUCCESS", 2)
    gone = sdk_error(lambda: ecs.show_server(m.ShowServerRequest(server_id=first)))
    assert (gone.status_code, gone.error_code) == (404, "Ecs.0114")
    assert gone.request_id  # the X-Request-Id of the answer, for a support ticket
    deleted = ecs.list_servers_details(m.ListServersDetailsRequest(status="DELETED", name="life"))
    assert deleted.count == 2 and {s.status for s in deleted.servers} == {"DELETED"}
    assert all(s.addresses == {} for s in deleted.servers)


def test_v11_create_is_idempotent_with_a_client_token(api: Api) -> None:
    ecs = api.client(api.alpha)

    def v11(token: str) -> m.CreateServersResponse:
        server = m.PrePaidServer(
            image_ref=api.image,
            flavor_ref="s1.small.1",
            name="token-vm",
            vpcid="default",
            nics=[m.PrePaidServerNic(subnet_id="default")],
            root_volume=m.PrePaidServerRootVolume(volumetype="SSD"),
            admin_pass=PASSWORD,
            extendparam=m.PrePaidServerExtendParam(charging_mode="postPaid"),
        )
        return ecs.create_servers(
            m.CreateServersRequest(
                x_client_token=token, body=m.CreateServersRequestBody(server=server)
            )
        )

    first = v11("tok-sdk-1")
    # the same request signed in the same second is the same signature, which the replay
    # memory refuses before the token is read; a retry comes later (and is signed again)
    time.sleep(1.1)
    again = v11("tok-sdk-1")
    assert (again.job_id, again.server_ids) == (first.job_id, first.server_ids)
    assert len(first.server_ids) == 1 and first.order_id is None
    api.run_jobs()
    assert ecs.show_server(m.ShowServerRequest(server_id=first.server_ids[0])).server.status == (
        "ACTIVE"
    )
    ecs.delete_servers(
        m.DeleteServersRequest(body=m.DeleteServersRequestBody(servers=ids(first.server_ids)))
    )
    api.run_jobs()


def test_a_dry_run_answers_202_and_makes_nothing(api: Api) -> None:
    ecs = api.client(api.alpha)
    before = ecs.list_servers_details(m.ListServersDetailsRequest()).count
    answer = ecs.create_post_paid_servers(
        m.CreatePostPaidServersRequest(
            body=m.CreatePostPaidServersRequestBody(dry_run=True, server=post_paid(api))
        )
    )
    assert answer.status_code == 202 and (answer.job_id, answer.server_ids) == (None, None)
    assert ecs.list_servers_details(m.ListServersDetailsRequest()).count == before


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"flavor_ref": "s6.large.2"}, "Ecs.0029", "flavorRef"),
        ({"image_ref": "00000000-0000-0000-0000-000000000000"}, "Ecs.0031", "imageRef"),
        ({"key_name": "no-such-key"}, "Ecs.0314", "key_name"),
        ({"admin_pass": "weak"}, "Ecs.0011", "adminPass"),
        ({"count": 11}, "Ecs.0118", "count"),
        ({"count": 7}, "Ecs.0001", "quota"),
        ({"name": "no spaces"}, "Ecs.0005", "name"),
        ({"vpcid": "vpc-123"}, "Ecs.0005", "vpcid"),
        ({"nics": [m.PostPaidServerNic(subnet_id="subnet-123")]}, "Ecs.0038", "subnet_id"),
        ({"is_auto_rename": True}, "Ecs.0005", "isAutoRename"),
        ({"flavor_ref": None}, "Ecs.0029", "flavorRef"),
    ],
)
def test_refusals_reach_the_sdk_with_their_codes(
    api: Api, fields: dict[str, object], code: str, says: str
) -> None:
    error = sdk_error(lambda: create(api, api.client(api.alpha), **fields))
    assert (error.status_code, error.error_code) == (400, code)
    assert says in error.error_msg


def test_other_projects_and_paths(api: Api) -> None:
    alpha, beta = api.client(api.alpha), api.client(api.beta)
    server_id = create(api, alpha, name="private").server_ids[0]
    api.run_jobs()
    hidden = sdk_error(lambda: beta.show_server(m.ShowServerRequest(server_id=server_id)))
    assert (hidden.status_code, hidden.error_code) == (404, "Ecs.0114")
    assert beta.list_servers_details(m.ListServersDetailsRequest()).count == 0
    theirs = sdk_error(lambda: create(api, beta))  # alpha's image is not shared with beta
    assert theirs.error_code == "Ecs.0031"

    # a path naming another project than the key's (no X-Project-Id header to disagree with)
    path = f"/v1/{api.beta.project_id}/cloudservers/{server_id}"
    req = sdk_signed(api.base, api.alpha.access_key, api.alpha.secret_key, "GET", path)
    answer = httpx.get(api.base + path, headers=req.header_params, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "Ecs.0023"
    assert answer.json()["error_code"] == "Ecs.0023"

    alpha.delete_servers(
        m.DeleteServersRequest(body=m.DeleteServersRequestBody(servers=ids([server_id])))
    )
    api.run_jobs()
