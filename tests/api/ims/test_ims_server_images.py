"""An image from a server, driven by the vendor's SDK (huaweicloudsdkims, unmodified) over real
HTTP: ``ImsClient.create_image(instance_id=...)``, then ``show_job`` / ``show_job_progress``
until the job ends, then the image as the SDK and a Glance read show it.

The service is the one ``imageport serve`` builds (:func:`imageport.wiring.build_services`: the
local store, the real image worker, the thread job queue running jobs as they are submitted),
served by uvicorn on loopback in this process; only its server host is the in-memory
:class:`~support.fakes.FakeServerHost` (no virtual machine runs), whose disk copy is a real
qcow2 overlay on the small synthetic Debian guest, with a write of the "server" in it.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkims.v2 import ImsClient
from huaweicloudsdkims.v2 import model as m

from imageport.api.ims.app import build_ims_app
from imageport.settings import load_settings
from imageport.wiring import build_services
from support import guest_fixtures, sdk_clients, server_process, shared_images
from support.fakes import FakeServerHost
from support.sdk_requests import sdk_signed
from support.server_rows import GiB, add_server, overlay_maker

pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '.*' of ImsClient is deprecated:DeprecationWarning"
)
MiB = 1 << 20


class Api(sdk_clients.ImsApi):
    def glance_image(self, image_id: str) -> dict[str, object]:
        """``GET /v2/images/{id}`` as alpha, signed by the SDK's signer (every property)."""
        req = sdk_signed(
            self.base,
            self.alpha.access_key,
            self.alpha.secret_key,
            "GET",
            f"/v2/images/{image_id}",
            b"",
            {"X-Project-Id": self.alpha.project_id},
        )
        answer = httpx.get(self.base + req.resource_path, headers=req.header_params, timeout=10)
        doc: dict[str, object] = answer.json()
        return doc


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("ims-servers")
    services = build_services(load_settings({}, data_dir=data / "data", workers=1))
    services.host = FakeServerHost()
    alpha, beta = sdk_clients.projects_with_keys(services, "alpha", "beta")
    assert services.queue is not None
    services.queue.start()
    try:
        with server_process.running_app(build_ims_app(services)) as base:
            yield Api(base, services, alpha, beta)
    finally:
        services.queue.stop()
        services.db.dispose()


def sdk_error(call: Callable[[], object]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def wait_for(ims: ImsClient, job_id: str, seconds: float = 120.0) -> m.ShowJobResponse:
    deadline = time.monotonic() + seconds
    while True:
        job = ims.show_job(m.ShowJobRequest(job_id=job_id))
        if job.status in ("SUCCESS", "FAIL") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def test_the_sdk_makes_an_image_from_a_server_and_follows_its_job(api: Api, tmp_path: Path) -> None:
    services = api.services
    host = services.host
    assert isinstance(host, FakeServerHost)
    as_copied = tmp_path / "as-copied.qcow2"
    host.copy_maker = overlay_maker(writes=[(30 * GiB, MiB, 0x5A)], keep=as_copied)
    image_id = shared_images.active_image(services, api.alpha.project_id, "uninitialized")
    server = add_server(
        services,
        api.alpha.project_id,
        image_id,
        status="ACTIVE",
        base=guest_fixtures.synthetic_guest(),
        base_format="raw",
    )
    ims = api.client(api.alpha)
    body = m.CreateImageRequestBody(
        name="img-from-vm",
        instance_id=server,
        description="d",
        image_tags=[m.TagKeyValue(key="k", value="v")],
        max_ram=0,
        min_ram=0,
    )
    job_id = ims.create_image(m.CreateImageRequest(body=body)).job_id
    job = wait_for(ims, job_id)
    assert (job.status, job.job_type, job.error_code) == (
        "SUCCESS",
        "imsCreateImageByInstance",
        None,
    ), job.fail_reason
    progress = ims.show_job_progress(m.ShowJobProgressRequest(job_id=job_id))
    assert (progress.entities.process_percent, progress.entities.current_task) == (1.0, "store")
    new_id = job.entities.image_id
    listed = ims.list_images(m.ListImagesRequest(id=new_id)).images
    assert [(i.name, i.status, i.data_origin, i.originalimagename, i.min_disk) for i in listed] == [
        ("img-from-vm", "active", f"instance,{server}", image_id, 40)
    ]
    doc = api.glance_image(new_id)
    assert (doc["__is_config_init"], doc["disk_format"], doc["virtual_size"]) == (
        "true",
        "qcow2",
        40 * GiB,
    )
    stored = services.settings.images_dir / f"{new_id}.qcow2"
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", "-f", "qcow2", str(stored)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert "backing-filename" not in info
    same = subprocess.run(
        ["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", str(stored), str(as_copied)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert same.returncode == 0, same.stdout + same.stderr


def test_the_sdk_sees_the_refusals(api: Api) -> None:
    services = api.services
    theirs = add_server(
        services,
        api.beta.project_id,
        shared_images.active_image(services, api.beta.project_id, "theirs"),
    )
    building = add_server(
        services,
        api.alpha.project_id,
        shared_images.active_image(services, api.alpha.project_id, "mine"),
        status="BUILD",
    )
    ims = api.client(api.alpha)
    for server, status, code in (
        (theirs, 404, "IMG.NOT_FOUND"),
        (building, 409, "IMG.STATE"),
    ):
        body = m.CreateImageRequestBody(name="x", instance_id=server)
        err = sdk_error(functools.partial(ims.create_image, m.CreateImageRequest(body=body)))
        assert (err.status_code, err.error_code) == (status, code), err.error_msg
    body = m.CreateImageRequestBody(name="x", instance_id=building, image_url="images:disk.qcow2")
    err = sdk_error(lambda: ims.create_image(m.CreateImageRequest(body=body)))
    assert (err.status_code, err.error_code) == (400, "IMG.0001")
    assert "image_url does not go with instance_id" in err.error_msg
