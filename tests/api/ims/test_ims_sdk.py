"""The image API driven by the vendor's own SDK (huaweicloudsdkims, unmodified) over real HTTP.

A real uvicorn serves :func:`build_ims_app` on loopback over a real SQLite database and the local
object store; files are put into a bucket through the store, as an upload would leave them.
There is no job queue: jobs stay INIT until the test runs them with the real job runner
(:func:`imageport.service.jobs.import_job.run_job`), as a worker would.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Callable, Iterator

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkims.v2 import model as m
from sqlalchemy import func, select

from imageport.api.ims.app import build_ims_app
from imageport.service.access.projects import create_key, create_project
from imageport.service.jobs.import_job import run_job
from imageport.service.tables import images, jobs
from support import fuzz_seeds, import_fixtures, sdk_clients, server_process, service_fixtures
from support.sdk_requests import sdk_signed

# The SDK marks ShowJob and the Glance* operations deprecated but still sends them (and
# Terraform polls ShowJob): they are part of the API we serve.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '.*' of ImsClient is deprecated:DeprecationWarning"
)


class Api(sdk_clients.ImsApi):
    def signed(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> SdkRequest:
        """A request signed by the SDK's signer with alpha's key (to replay or tamper with)."""
        return sdk_signed(
            self.base,
            self.alpha.access_key,
            self.alpha.secret_key,
            method,
            path,
            body,
            {"X-Project-Id": self.alpha.project_id, **(headers or {})},
        )

    def send(self, req: SdkRequest) -> httpx.Response:
        return httpx.request(
            req.method,
            self.base + req.resource_path,
            headers=req.header_params,
            content=req.body,
            timeout=10,
        )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("ims-sdk")
    services = service_fixtures.make_services(data / "data")
    create_project(services, "alpha")
    create_project(services, "beta")
    alpha, beta = create_key(services, "alpha"), create_key(services, "beta")
    services.store.create_bucket("images", alpha.project_id, "STANDARD", "local-1")
    import_fixtures.store_bytes(
        services, "images", "disk/ready.qcow2", import_fixtures.good_image("qcow2").read_bytes()
    )
    empty = data / "empty.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(empty), "1G"], check=True)
    import_fixtures.store_bytes(services, "images", "disk/empty.qcow2", empty.read_bytes())
    try:
        with server_process.running_app(build_ims_app(services)) as base:
            yield Api(base, services, alpha, beta)
    finally:
        services.db.dispose()


def create_body(
    name: str, url: str = "images:disk/ready.qcow2", **extra: object
) -> m.CreateImageRequestBody:
    fields: dict[str, object] = {
        "name": name,
        "image_url": url,
        "min_disk": 40,
        "os_version": "Ubuntu 22.04 server 64bit",
        "description": "from the sdk",
        "image_tags": [m.TagKeyValue(key="env", value="test")],
        "architecture": "x86",
        "hw_firmware_type": "bios",
        "type": "ECS",
        "is_config": False,
        "is_quick_import": False,
    }
    return m.CreateImageRequestBody(**{**fields, **extra})


def sdk_error(call: Callable[[], object]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def test_create_run_list_update_delete(api: Api) -> None:
    ims = api.client(api.alpha)
    job_id = ims.create_image(m.CreateImageRequest(body=create_body("sdk-ready"))).job_id
    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert (job.status, job.job_type) == ("INIT", "imsImportImageJob")
    image_id = job.entities.image_id
    assert job.entities.image_name == "sdk-ready"
    assert job.entities.alarm_code is None  # nothing checked yet

    run_job(api.services, job_id)  # what a worker does with the submitted job
    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    # active with a warning: no fail_reason, but the SDK's alarm_code names the rule
    assert job.fail_reason is None
    assert "IMG-ROOT-PASSWORD" in (job.entities.alarm_code or "").split(",")
    progress = ims.show_job_progress(m.ShowJobProgressRequest(job_id=job_id))
    assert progress.entities.process_percent == 1.0
    report = api.send(api.signed("GET", f"/v1/cloudimages/{image_id}/report")).json()
    warned = [f["rule_id"] for f in report["findings"] if f["severity"] != "error"]
    assert sorted(job.entities.alarm_code.split(",")) == sorted(set(warned))

    listed = ims.list_images(
        m.ListImagesRequest(
            imagetype="private",
            status="active",
            name="sdk-ready",
            sort_key="created_at",
            sort_dir="desc",
            limit=10,
        )
    ).images
    assert [i.id for i in listed] == [image_id]
    image = listed[0]
    # the OS found in the guest overrides the one the request named
    assert (image.os_version, image.platform, image.os_bit) == (
        "Debian GNU/Linux 12.0.0 64bit",
        "Debian",
        "64",
    )
    assert (image.disk_format, image.imagetype, image.data_origin) == (
        "qcow2",
        "private",
        "file,images:disk/ready.qcow2",
    )
    assert image.tags == ["env=test"] and int(image.image_size) == image.size > 0

    renamed = ims.update_image(
        m.UpdateImageRequest(
            image_id=image_id,
            body=[m.UpdateImageRequestBody(op="replace", path="/name", value="sdk-renamed")],
        )
    )
    assert renamed.name == "sdk-renamed"
    shown = ims.glance_show_image(m.GlanceShowImageRequest(image_id=image_id))
    assert shown.name == "sdk-renamed" and shown.status == "active"
    described = ims.glance_update_image(
        m.GlanceUpdateImageRequest(
            image_id=image_id,
            body=[m.GlanceUpdateImageRequestBody(op="add", path="/__description", value="patched")],
        )
    )
    assert described.description == "patched"

    blob = api.services.settings.images_dir
    files_before = {p.name for p in blob.iterdir()}
    ims.glance_delete_image(
        m.GlanceDeleteImageRequest(
            image_id=image_id, body=m.GlanceDeleteImageRequestBody(delete_backup=False)
        )
    )
    assert {p.name for p in blob.iterdir()} < files_before  # the stored file is gone
    err = sdk_error(lambda: ims.glance_show_image(m.GlanceShowImageRequest(image_id=image_id)))
    assert (err.status_code, err.error_code) == (404, "IMG.NOT_FOUND")


def test_a_failed_import_keeps_the_rule_on_the_image(api: Api) -> None:
    ims = api.client(api.alpha)
    job_id = ims.create_image(
        m.CreateImageRequest(body=create_body("sdk-empty", "images:disk/empty.qcow2"))
    ).job_id
    run_job(api.services, job_id)
    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert job.status == "FAIL" and "IMG-SYSTEM-DISK" in (job.fail_reason or "")
    # the SDK's model drops fields it does not know: read the raw document
    doc = api.send(api.signed("GET", f"/v2/images/{job.entities.image_id}")).json()
    assert doc["status"] == "killed"
    assert "IMG-SYSTEM-DISK" in doc["__fail_reason"] and doc["__error_code"]


def test_a_failed_import_names_every_failing_rule_with_evidence_and_fix(api: Api) -> None:
    """Two failing rules, each with its first evidence line and its fix, read by the SDK's
    ShowJob and on the killed image."""
    import_fixtures.store_bytes(
        api.services,
        "images",
        "disk/failing-twice.qcow2",
        import_fixtures.failing_twice_qcow2().read_bytes(),
    )
    ims = api.client(api.alpha)
    job_id = ims.create_image(
        m.CreateImageRequest(body=create_body("sdk-twice", "images:disk/failing-twice.qcow2"))
    ).job_id
    run_job(api.services, job_id)
    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert (job.status, job.error_code) == ("FAIL", "IMG-FSTAB-DATA-DISK")
    lines = (job.fail_reason or "").splitlines()
    assert [line.split(":", 1)[0] for line in lines if not line.startswith(" ")] == [
        "IMG-FSTAB-DATA-DISK",
        "IMG-BOOT-MODE",
    ]
    assert lines[1] == "  evidence: /etc/fstab:7: /dev/vdb1 /data ext4 defaults 0 2"
    assert lines[2].startswith("  fix: Remove the line from /etc/fstab")
    assert lines[4] == "  evidence: BIOS: sector 0: no boot code (+1 more in the check report)"
    assert lines[5].startswith("  fix: Install the BIOS boot loader")
    assert "UEFI: ESP" not in (job.fail_reason or "")  # the second evidence line: report only
    doc = api.send(api.signed("GET", f"/v2/images/{job.entities.image_id}")).json()
    assert (doc["status"], doc["__error_code"]) == ("killed", "IMG-FSTAB-DATA-DISK")
    assert doc["__fail_reason"] == job.fail_reason


def test_validation_errors_carry_the_img_code(api: Api) -> None:
    ims = api.client(api.alpha)
    for body, code in (
        (create_body("bad name!"), "IMG.0003"),
        (create_body("x", "images:my disk.qcow2"), "IMG.0175"),
        (create_body("x", "images:nothing.qcow2"), "IMG.0121"),
        (create_body("x", "elsewhere:disk.qcow2"), "IMG.0069"),
        (create_body("x", architecture="sparc"), "IMG.0212"),
        (create_body("x", hw_firmware_type="efi"), "IMG.0141"),
        (create_body("x", instance_id="c3a1e5d2"), "IMG.0001"),  # image_url: a file
    ):
        err = sdk_error(functools.partial(ims.create_image, m.CreateImageRequest(body=body)))
        assert (err.status_code, err.error_code) == (400, code), err.error_msg
    err = sdk_error(lambda: ims.list_images(m.ListImagesRequest(sort_key="secret")))
    assert err.error_code == "IMG.0001"


def _rows(api: Api) -> tuple[int, int]:
    """How many images and jobs the service holds."""
    with api.services.db.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(images)).scalar_one(),
            conn.execute(select(func.count()).select_from(jobs)).scalar_one(),
        )


def test_a_min_disk_below_the_virtual_size_is_refused_at_once(
    api: Api, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 11: the header tells the virtual size, so registration answers at once (400
    IMG.0055, the job's IMG-DISK-SIZE words) instead of a job failing minutes later; no image
    or job is created, on each of the three registration routes."""
    big = tmp_path_factory.mktemp("big") / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(big), "50G"], check=True)
    import_fixtures.store_bytes(api.services, "images", "disk/big50.qcow2", big.read_bytes())
    ims = api.client(api.alpha)
    queued = ims.glance_create_image_metadata(
        m.GlanceCreateImageMetadataRequest(
            body=m.GlanceCreateImageMetadataRequestBody(
                name="sdk-small-disk-later", container_format="bare", min_disk=40
            )
        )
    )
    before = _rows(api)
    wanted = "IMG-DISK-SIZE: min_disk 40 GiB is smaller than the virtual disk (50 GiB)."
    err = sdk_error(
        lambda: ims.create_image(
            m.CreateImageRequest(body=create_body("sdk-small-disk", "images:disk/big50.qcow2"))
        )
    )
    assert (err.status_code, err.error_code) == (400, "IMG.0055")
    assert err.error_msg.splitlines()[0] == wanted
    assert "fix: Register the image with min_disk of at least 50." in err.error_msg
    quick = m.QuickImportImageByFileRequestBody(
        name="sdk-small-disk",
        os_version="Ubuntu 22.04 server 64bit",
        image_url="images:disk/big50.qcow2",
        min_disk=40,
    )
    err = sdk_error(lambda: ims.import_image_quick(m.ImportImageQuickRequest(body=quick)))
    assert (err.status_code, err.error_code) == (400, "IMG.0055")
    assert err.error_msg.splitlines()[0] == wanted
    assert "IMG-FAST-RAW: Fast import takes RAW" in err.error_msg  # a qcow2, too
    err = sdk_error(
        lambda: ims.register_image(
            m.RegisterImageRequest(
                image_id=queued.id,
                body=m.RegisterImageRequestBody(image_url="images:disk/big50.qcow2"),
            )
        )
    )
    assert (err.status_code, err.error_code) == (400, "IMG.0055")
    assert err.error_msg.splitlines()[0] == wanted
    assert _rows(api) == before  # nothing half-written
    shown = ims.glance_show_image(m.GlanceShowImageRequest(image_id=queued.id))
    assert (shown.status, shown.data_origin) == ("queued", "")  # no file given to it


def test_license_type_is_kept_on_the_image(api: Api) -> None:
    """The vendor's ImageInfo has no field for it: the image keeps it as ``__license_type``,
    which the raw document shows."""
    import_fixtures.store_bytes(api.services, "images", "fast/lic.raw", bytes(1 << 20))
    import_fixtures.store_bytes(api.services, "images", "fast/lic.mf", b"bitmap")
    ims = api.client(api.alpha)
    body = m.QuickImportImageByFileRequestBody(
        name="sdk-byol",
        os_version="Ubuntu 22.04 server 64bit",
        image_url="images:fast/lic.raw",
        min_disk=40,
        license_type="byol",
    )
    job_id = ims.import_image_quick(m.ImportImageQuickRequest(body=body)).job_id
    image_id = ims.show_job(m.ShowJobRequest(job_id=job_id)).entities.image_id
    doc = api.send(api.signed("GET", f"/v2/images/{image_id}")).json()
    assert doc["__license_type"] == "byol"
    without = ims.create_image(m.CreateImageRequest(body=create_body("sdk-no-license"))).job_id
    other = ims.show_job(m.ShowJobRequest(job_id=without)).entities.image_id
    assert "__license_type" not in api.send(api.signed("GET", f"/v2/images/{other}")).json()
    wrong = m.QuickImportImageByFileRequestBody(**{**body.to_dict(), "license_type": "oem"})
    err = sdk_error(lambda: ims.import_image_quick(m.ImportImageQuickRequest(body=wrong)))
    assert (err.status_code, err.error_code) == (400, "IMG.0001")


def test_glance_register_and_os_versions(api: Api) -> None:
    ims = api.client(api.alpha)
    created = ims.glance_create_image_metadata(
        m.GlanceCreateImageMetadataRequest(
            body=m.GlanceCreateImageMetadataRequestBody(
                name="sdk-glance",
                container_format="bare",
                disk_format="qcow2",
                min_disk=40,
                tags=["k=v"],
                visibility="private",
                protected=False,
            )
        )
    )
    assert created.status == "queued" and created.os_version == "Other Linux(64 bit)"
    job_id = ims.register_image(
        m.RegisterImageRequest(
            image_id=created.id,
            body=m.RegisterImageRequestBody(image_url="images:disk/ready.qcow2"),
        )
    ).job_id
    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert (job.job_type, job.entities.image_id) == ("imsNativeImportImageJob", created.id)
    listed = ims.glance_list_images(m.GlanceListImagesRequest(limit=1, sort_key="name"))
    assert len(listed.images) == 1 and listed.first
    assert listed.next and "marker=" in listed.next  # alpha has more than one image by now
    safe_mode = api.send(api.signed("POST", "/v2.1/cloudimages/action", b"{}"))
    assert safe_mode.json()["error_code"] == "IMG.0007"  # the /v2.1/ path is served too
    versions = ims.list_os_versions(m.ListOsVersionsRequest()).body
    assert any(
        v.platform == "Ubuntu"
        and any(i.os_version == "Ubuntu 22.04 server 64bit" for i in v.version_list)
        for v in versions
    )


def test_auth_and_isolation(api: Api) -> None:
    ims = api.client(api.alpha)
    job_id = ims.create_image(m.CreateImageRequest(body=create_body("sdk-private"))).job_id
    image_id = ims.show_job(m.ShowJobRequest(job_id=job_id)).entities.image_id

    unsigned = httpx.get(api.base + "/v2/cloudimages", timeout=10)
    assert unsigned.status_code == 401 and unsigned.json()["error_code"]

    beta = api.client(api.beta)
    err = sdk_error(lambda: beta.glance_show_image(m.GlanceShowImageRequest(image_id=image_id)))
    assert (err.status_code, err.error_code) == (404, "IMG.NOT_FOUND")
    err = sdk_error(lambda: beta.show_job(m.ShowJobRequest(job_id=job_id)))
    assert err.status_code == 404
    assert beta.list_images(m.ListImagesRequest(name="sdk-private")).images == []

    liar = api.client(api.alpha, project_id=api.beta.project_id)  # X-Project-Id of beta
    err = sdk_error(lambda: liar.list_images(m.ListImagesRequest()))
    assert (err.status_code, err.error_code) == (403, "ProjectMismatch")

    body = json.dumps(
        {"name": "sdk-replayed", "image_url": "images:disk/ready.qcow2", "min_disk": 40}
    ).encode()
    req = api.signed("POST", "/v2/cloudimages/action", body)
    first = api.send(req)
    assert first.status_code == 200, first.text
    again = api.send(req)
    assert again.status_code == 401 and again.json()["error"]["code"] == "ReplayedRequest"

    tampered = api.signed("POST", "/v2/cloudimages/action", body.replace(b"40", b"41"))
    tampered.body = body.replace(b"replayed", b"tampered")
    assert api.send(tampered).status_code == 401

    issued = api.send(api.signed("POST", "/v3/auth/tokens"))  # the token endpoint is mounted
    assert issued.status_code == 201, issued.text
    by_token = httpx.get(
        api.base + "/v2/cloudimages",
        params={"name": "sdk-private"},
        headers={"X-Auth-Token": issued.headers["X-Subject-Token"]},
        timeout=10,
    )
    assert [i["id"] for i in by_token.json()["images"]] == [image_id]

    big = api.send(api.signed("POST", "/v2/cloudimages/action", b"[" * (2 << 20)))
    assert big.status_code == 413 and big.json()["error_code"] == "IMG.0001"


def test_image_quota_through_the_sdk(api: Api) -> None:
    mine = api.client(api.alpha).show_image_quota(m.ShowImageQuotaRequest()).quotas.resources
    theirs = api.client(api.beta).show_image_quota(m.ShowImageQuotaRequest()).quotas.resources
    with api.services.db.connect() as conn:
        held = conn.execute(
            select(func.count())
            .select_from(images)
            .where(images.c.project_id == api.alpha.project_id)
        ).scalar_one()
    assert [(q.type, q.used, q.quota) for q in mine] == [("image", held, 50)]  # the default
    assert [(q.type, q.used) for q in theirs] == [("image", 0)]  # per project


def test_data_images_through_the_sdk(api: Api) -> None:
    """A data image from a file with the SDK's CreateDataImage, and a registration with
    data_images (the SDK's CreateDataImage item has no image_url, so that body is sent signed
    by hand), whose job the SDK's ShowJob reads with its sub_jobs_list and sub_jobs_result."""
    ims = api.client(api.alpha)
    body = m.CreateDataImageRequestBody(
        name="sdk-data", image_url="images:disk/empty.qcow2", min_disk=40, os_type="Linux"
    )
    job_id = ims.create_data_image(m.CreateDataImageRequest(body=body)).job_id
    run_job(api.services, job_id)
    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert (job.status, job.job_type) == ("SUCCESS", "imsImportDataImageJob"), job.fail_reason
    listed = ims.list_images(m.ListImagesRequest(virtual_env_type="DataImage", name="sdk-data"))
    (image,) = listed.images
    assert (image.virtual_env_type, image.imagetype, image.os_type) == (
        "DataImage",
        "private",
        "Linux",
    )
    err = sdk_error(
        lambda: ims.create_data_image(
            m.CreateDataImageRequest(
                body=m.CreateDataImageRequestBody(**{**body.to_dict(), "min_disk": 39})
            )
        )
    )
    assert err.error_code == "IMG.0055"

    doc = {
        "name": "sdk-with-data",
        "image_url": "images:disk/ready.qcow2",
        "min_disk": 40,
        "os_version": "Ubuntu 22.04 server 64bit",
        "data_images": [
            {"name": "sdk-data-1", "image_url": "images:disk/empty.qcow2", "min_disk": 1},
        ],
    }
    sent = api.send(api.signed("POST", "/v2/cloudimages/action", json.dumps(doc).encode()))
    assert sent.status_code == 200, sent.text
    parent_id = sent.json()["job_id"]
    job = ims.show_job(m.ShowJobRequest(job_id=parent_id))
    (sub_id,) = job.entities.sub_jobs_list
    (result,) = job.entities.sub_jobs_result
    assert (result.job_id, result.job_type, result.status) == (
        sub_id,
        "imsImportDataImageJob",
        "INIT",
    )
    assert result.entities.image_name == "sdk-data-1"
    run_job(api.services, parent_id)
    assert ims.show_job(m.ShowJobRequest(job_id=parent_id)).status == "RUNNING"
    run_job(api.services, sub_id)
    job = ims.show_job(m.ShowJobRequest(job_id=parent_id))
    assert job.status == "SUCCESS" and job.entities.sub_jobs_result[0].status == "SUCCESS"
    data = ims.list_images(m.ListImagesRequest(name="sdk-data-1")).images[0]
    assert (data.virtual_env_type, data.min_disk) == ("DataImage", 1)


def test_iso_image_through_the_sdk(api: Api) -> None:
    ims = api.client(api.alpha)
    import_fixtures.store_bytes(api.services, "images", "iso/install.iso", fuzz_seeds.minimal_iso())
    iso = create_body("sdk-iso", "images:iso/install.iso", type="IsoImage", is_quick_import=None)
    job_id = ims.create_image(m.CreateImageRequest(body=iso)).job_id
    run_job(api.services, job_id)
    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert job.status == "SUCCESS", job.fail_reason
    image = ims.list_images(m.ListImagesRequest(name="sdk-iso")).images[0]
    assert (image.disk_format, image.virtual_env_type) == ("iso", "IsoImage")
    assert image.os_version == "Ubuntu 22.04 server 64bit"
    no_os = create_body("sdk-iso-2", "images:iso/install.iso", type="IsoImage", os_version=None)
    err = sdk_error(lambda: ims.create_image(m.CreateImageRequest(body=no_os)))
    assert err.error_code == "IMG.0166"
    quick = create_body(
        "sdk-iso-3", "images:iso/install.iso", type="IsoImage", is_quick_import=True
    )
    err = sdk_error(lambda: ims.create_image(m.CreateImageRequest(body=quick)))
    assert err.error_code == "IMG.0167"
