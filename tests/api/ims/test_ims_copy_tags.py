"""CopyImageInRegion and the image tag APIs driven by the vendor's SDK (huaweicloudsdkims,
unmodified) over real HTTP, as in test_ims_sdk.py: a real uvicorn over SQLite and the local
store, no job queue (the test runs a job with the queue's dispatcher,
:func:`imageport.service.jobs.dispatch.run_job`). Active images are made as an import job leaves
them (a row and its stored file), so no import runs here."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkims.v2 import ImsClient
from huaweicloudsdkims.v2 import model as m

from imageport.api.ims.app import build_ims_app
from imageport.service.access.projects import AccessKey
from imageport.service.clock import new_uuid
from imageport.service.jobs.dispatch import run_job
from support import sdk_clients, server_process, service_fixtures, shared_images
from support.sdk_requests import sdk_signed

# the SDK marks ShowJob and the Glance* operations deprecated but still sends them
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '.*' of ImsClient is deprecated:DeprecationWarning"
)

DISK = b"QFI\xfb" + bytes(60) + b"stored image" * 500


class Api(sdk_clients.ImsApi):
    def send(self, method: str, path: str, body: bytes = b"") -> httpx.Response:
        """A request signed with alpha's key by the SDK's own signer (any path)."""
        headers = {
            "Content-Type": "application/json;charset=UTF-8",
            "X-Project-Id": self.alpha.project_id,
        }
        req = sdk_signed(
            self.base, self.alpha.access_key, self.alpha.secret_key, method, path, body, headers
        )
        return httpx.request(
            method, self.base + path, headers=req.header_params, content=body, timeout=10
        )

    def active_image(self, key: AccessKey, name: str) -> str:
        """An active image of ``key``'s project, as an import job leaves it."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return shared_images.active_image(
            self.services,
            key.project_id,
            name,
            data=DISK,
            description="",
            report=None,
            created_at=now,
        )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    services = service_fixtures.make_services(tmp_path_factory.mktemp("copy-tags") / "data")
    alpha, beta = sdk_clients.projects_with_keys(services, "alpha", "beta")
    try:
        with server_process.running_app(build_ims_app(services)) as base:
            yield Api(base, services, alpha, beta)
    finally:
        services.db.dispose()


def sdk_error(call: Callable[[], object]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def copy_request(image_id: str, name: str, **extra: str) -> m.CopyImageInRegionRequest:
    return m.CopyImageInRegionRequest(
        image_id=image_id, body=m.CopyImageInRegionRequestBody(name=name, **extra)
    )


def test_copy_image_in_region(api: Api) -> None:
    ims = api.client(api.alpha)
    source_id = api.active_image(api.alpha, "copy-source")
    job_id = ims.copy_image_in_region(
        copy_request(source_id, "copy-target", description="copied by the sdk")
    ).job_id
    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert (job.status, job.job_type) == ("INIT", "imsCopyImageInRegionJob")
    copy_id = job.entities.image_id
    assert job.entities.image_name == "copy-target"

    run_job(api.services, job_id)  # what a worker does with the submitted job
    job = ims.show_job(m.ShowJobRequest(job_id=job_id))
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    source = ims.glance_show_image(m.GlanceShowImageRequest(image_id=source_id))
    copy = ims.glance_show_image(m.GlanceShowImageRequest(image_id=copy_id))
    assert (copy.status, copy.name, copy.description) == (
        "active",
        "copy-target",
        "copied by the sdk",
    )
    assert (copy.checksum, copy.size, copy.disk_format) == (
        source.checksum,
        source.size,
        source.disk_format,
    )
    assert (copy.originalimagename, copy.data_origin) == (source_id, f"image,{source_id}")
    folder = api.services.settings.images_dir
    stored, copied = folder / f"{source_id}.qcow2", folder / f"{copy_id}.qcow2"
    assert os.stat(stored).st_ino == os.stat(copied).st_ino  # a hard link

    ims.glance_delete_image(m.GlanceDeleteImageRequest(image_id=source_id))
    assert not stored.exists()
    downloaded = api.send("GET", f"/v2/images/{copy_id}/file")
    assert downloaded.status_code == 200 and downloaded.content == DISK


def test_copy_refusals(api: Api) -> None:
    ims = api.client(api.alpha)
    source_id = api.active_image(api.alpha, "refusal-source")
    for request, status, code in (
        (copy_request(source_id, "refusal-source"), 400, "IMG.0009"),
        (copy_request(source_id, "enc", cmk_id="bd66288c"), 400, "IMG.0095"),
        (copy_request(source_id, "bad name!"), 400, "IMG.0003"),
        (copy_request(new_uuid(), "x"), 404, "IMG.NOT_FOUND"),
    ):
        err = sdk_error(functools.partial(ims.copy_image_in_region, request))
        assert (err.status_code, err.error_code) == (status, code), err.error_msg
    queued = ims.glance_create_image_metadata(
        m.GlanceCreateImageMetadataRequest(
            body=m.GlanceCreateImageMetadataRequestBody(name="refusal-queued")
        )
    ).id
    err = sdk_error(lambda: ims.copy_image_in_region(copy_request(queued, "x")))
    assert (err.status_code, err.error_code) == (409, "IMG.STATE")
    theirs = api.client(api.beta)
    err = sdk_error(lambda: theirs.copy_image_in_region(copy_request(source_id, "x")))
    assert (err.status_code, err.error_code) == (404, "IMG.NOT_FOUND")


def test_image_tags_through_the_sdk(api: Api) -> None:
    ims = api.client(api.alpha)
    image_id = api.active_image(api.alpha, "tagged")
    other_id = api.active_image(api.alpha, "tagged-too")
    api.active_image(api.alpha, "tagged-three")  # keeps env=test
    ims.add_image_tag(
        m.AddImageTagRequest(
            image_id=image_id,
            body=m.AddImageTagRequestBody(tag=m.ResourceTag(key="owner", value="ops")),
        )
    )
    tags = ims.list_image_tags(m.ListImageTagsRequest(image_id=image_id)).tags
    assert [(tag.key, tag.value) for tag in tags] == [("env", "test"), ("owner", "ops")]

    ims.batch_add_or_delete_tags(
        m.BatchAddOrDeleteTagsRequest(
            image_id=image_id,
            body=m.BatchAddOrDeleteTagsRequestBody(
                action="create",
                tags=[m.ResourceTag(key="env", value="prod"), m.ResourceTag(key="tier", value="")],
            ),
        )
    )
    ims.delete_image_tag(m.DeleteImageTagRequest(image_id=image_id, key="owner"))
    ims.batch_add_or_delete_tags(
        m.BatchAddOrDeleteTagsRequest(
            image_id=other_id,
            body=m.BatchAddOrDeleteTagsRequestBody(
                action="delete", tags=[m.ResourceTag(key="env", value="test")]
            ),
        )
    )
    tags = ims.list_image_tags(m.ListImageTagsRequest(image_id=image_id)).tags
    assert [(tag.key, tag.value) for tag in tags] == [("env", "prod"), ("tier", "")]
    shown = ims.glance_show_image(m.GlanceShowImageRequest(image_id=image_id))
    assert shown.tags == ["env=prod", "tier="]

    found = ims.list_image_by_tags(
        m.ListImageByTagsRequest(
            body=m.ListImageByTagsRequestBody(
                action="filter",
                limit="10",
                offset="0",
                tags=[m.Tags(key="env", values=["prod"])],
                matches=[m.TagKeyValue(key="resource_name", value="tagged")],
            )
        )
    )
    assert found.total_count == 1
    (resource,) = found.resources
    assert (resource.resource_id, resource.resource_name, resource.resource_detail.status) == (
        image_id,
        "tagged",
        "active",
    )
    assert [(tag.key, tag.value) for tag in resource.tags] == [("env", "prod"), ("tier", "")]
    counted = ims.list_image_by_tags(
        m.ListImageByTagsRequest(
            body=m.ListImageByTagsRequestBody(
                action="count",
                not_tags_any=[m.Tags(key="tier", values=[])],
                matches=[m.TagKeyValue(key="resource_id", value=other_id)],
            )
        )
    )
    assert (counted.total_count, counted.resources) == (1, None)

    every = {tag.key: tag.values for tag in ims.list_images_tags(m.ListImagesTagsRequest()).tags}
    assert (every["env"], every["tier"]) == (["prod", "test"], [""])


def test_tag_refusals(api: Api) -> None:
    ims = api.client(api.alpha)
    image_id = api.active_image(api.alpha, "tag-refusals")

    def add(key: str, value: str, client: ImsClient = ims) -> object:
        return client.add_image_tag(
            m.AddImageTagRequest(
                image_id=image_id, body=m.AddImageTagRequestBody(tag=m.ResourceTag(key, value))
            )
        )

    for key, value in (("k" * 37, "v"), ("k", "v" * 44), ("k k", "v")):
        err = sdk_error(functools.partial(add, key, value))
        assert (err.status_code, err.error_code) == (400, "IMG.0001"), err.error_msg
    ims.batch_add_or_delete_tags(
        m.BatchAddOrDeleteTagsRequest(
            image_id=image_id,
            body=m.BatchAddOrDeleteTagsRequestBody(
                action="create", tags=[m.ResourceTag(key=f"k{i}", value="v") for i in range(9)]
            ),
        )
    )  # 10 with env=test
    err = sdk_error(lambda: add("one-too-many", "v"))
    assert (err.status_code, err.error_code) == (400, "IMG.0001") and "10" in err.error_msg
    err = sdk_error(
        lambda: ims.delete_image_tag(m.DeleteImageTagRequest(image_id=image_id, key="absent"))
    )
    assert (err.status_code, err.error_code) == (404, "IMG.NOT_FOUND")

    # another project's image is not found
    err = sdk_error(lambda: add("x", "y", api.client(api.beta)))
    assert (err.status_code, err.error_code) == (404, "IMG.NOT_FOUND")
    # a path naming another project than the caller's is refused
    beta = api.beta.project_id
    for method, path, body in (
        ("GET", f"/v2/{beta}/images/{image_id}/tags", b""),
        ("POST", f"/v2/{beta}/images/{image_id}/tags", b'{"tag": {"key": "x", "value": "y"}}'),
        ("GET", f"/v2/{beta}/images/tags", b""),
        ("POST", f"/v2/{beta}/images/resource_instances/action", b'{"action": "count"}'),
    ):
        answer = api.send(method, path, body)
        assert answer.status_code == 404 and answer.json()["error_code"] == "IMG.NOT_FOUND", path
    mine = api.send("GET", f"/v2/{api.alpha.project_id}/images/{image_id}/tags")
    assert mine.status_code == 200 and len(mine.json()["tags"]) == 10
