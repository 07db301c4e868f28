"""Image sharing driven by the vendor's SDK (huaweicloudsdkims, unmodified) over real HTTP, as
in test_ims_sdk.py: a real uvicorn over SQLite and the local store, three projects (the owner
alpha, the member beta, the stranger gamma), no job queue (the copy job is run by the test with
the queue's dispatcher). Active images are made as an import job leaves them."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkims.v2 import ImsClient
from huaweicloudsdkims.v2 import model as m

from imageport.api.ims.app import build_ims_app
from imageport.service.access.projects import AccessKey
from imageport.service.jobs.dispatch import run_job
from support import sdk_clients, server_process, service_fixtures
from support.shared_images import active_image

# the SDK marks ShowJob and the Glance* operations deprecated but still sends them
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '.*' of ImsClient is deprecated:DeprecationWarning"
)


@dataclass
class Api(sdk_clients.ImsApi):
    gamma: AccessKey


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    services = service_fixtures.make_services(tmp_path_factory.mktemp("members") / "data")
    keys = sdk_clients.projects_with_keys(services, "alpha", "beta", "gamma")
    try:
        with server_process.running_app(build_ims_app(services)) as base:
            yield Api(base, services, *keys)
    finally:
        services.db.dispose()


def sdk_error(call: Callable[[], object]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def ended(ims: ImsClient, job_id: str) -> m.ShowJobResponse:
    return ims.show_job(m.ShowJobRequest(job_id=job_id))


def test_share_answer_copy_and_remove_through_the_sdk(api: Api) -> None:
    owner, member, stranger = api.client(api.alpha), api.client(api.beta), api.client(api.gamma)
    beta = api.beta.project_id
    first = active_image(api.services, api.alpha.project_id, "sdk-shared-1")
    second = active_image(api.services, api.alpha.project_id, "sdk-shared-2")

    job_id = owner.batch_add_members(
        m.BatchAddMembersRequest(
            body=m.BatchAddMembersRequestBody(images=[first, second], projects=[beta])
        )
    ).job_id
    job = ended(owner, job_id)
    assert (job.job_type, job.status, job.error_code) == ("imsAddImageMembersJob", "SUCCESS", None)
    progress = owner.show_job_progress(m.ShowJobProgressRequest(job_id=job_id))
    assert progress.status == "SUCCESS" and progress.entities.process_percent == 1.0

    listed = owner.glance_list_image_members(m.GlanceListImageMembersRequest(image_id=first))
    assert [(x.member_id, x.status, x.image_id) for x in listed.members] == [
        (beta, "pending", first)
    ]
    assert listed.schema == "/v2/schemas/members" and listed.page_info.current_count == 1
    shown = owner.glance_show_image_member(
        m.GlanceShowImageMemberRequest(image_id=first, member_id=beta)
    )
    assert (shown.status, shown.member_type, shown.schema) == (
        "pending",
        "project",
        "/v2/schemas/member",
    )

    # pending: the member finds it with member_status, not in its plain list
    assert member.list_images(m.ListImagesRequest()).images == []
    pending = member.list_images(
        m.ListImagesRequest(
            visibility="shared", member_status="pending", sort_key="name", sort_dir="asc"
        )
    ).images
    assert [(i.id, i.imagetype, i.visibility, i.owner) for i in pending] == [
        (first, "shared", "shared", api.alpha.project_id),
        (second, "shared", "shared", api.alpha.project_id),
    ]
    # the Glance route answers the first; the batch answers both
    answered = member.glance_update_image_member(
        m.GlanceUpdateImageMemberRequest(
            image_id=first,
            member_id=beta,
            body=m.GlanceUpdateImageMemberRequestBody(status="accepted"),
        )
    )
    assert answered.status == "accepted"
    job_id = member.batch_update_members(
        m.BatchUpdateMembersRequest(
            body=m.BatchUpdateMembersRequestBody(
                images=[first, second], project_id=beta, status="accepted"
            )
        )
    ).job_id
    assert (ended(member, job_id).job_type, ended(member, job_id).status) == (
        "imsUpdateImageMembersJob",
        "SUCCESS",
    )
    shared = member.list_images(m.ListImagesRequest(imagetype="shared")).images
    assert sorted(i.id for i in shared) == sorted([first, second])
    glance = member.glance_list_images(m.GlanceListImagesRequest(visibility="shared"))
    assert sorted(i.id for i in glance.images) == sorted([first, second])
    seen = member.glance_show_image(m.GlanceShowImageRequest(image_id=first))
    assert (seen.visibility, seen.imagetype) == ("shared", "shared")

    # the member copies it into its own project, and cannot change the original
    job_id = member.copy_image_in_region(
        m.CopyImageInRegionRequest(
            image_id=first, body=m.CopyImageInRegionRequestBody(name="beta-own-copy")
        )
    ).job_id
    run_job(api.services, job_id)
    copied = ended(member, job_id)
    assert copied.status == "SUCCESS", copied.fail_reason
    copy = member.glance_show_image(m.GlanceShowImageRequest(image_id=copied.entities.image_id))
    assert (copy.owner, copy.visibility, copy.status) == (beta, "private", "active")
    err = sdk_error(
        lambda: member.update_image(
            m.UpdateImageRequest(
                image_id=first,
                body=[m.UpdateImageRequestBody(op="replace", path="/name", value="taken")],
            )
        )
    )
    assert (err.status_code, err.error_code) == (403, "IMG.0092")
    err = sdk_error(lambda: member.glance_delete_image(m.GlanceDeleteImageRequest(image_id=first)))
    assert (err.status_code, err.error_code) == (403, "IMG.0092")
    err = sdk_error(
        lambda: member.glance_add_image_member(
            m.GlanceAddImageMemberRequest(
                image_id=first,
                body=m.GlanceAddImageMemberRequestBody(member=api.gamma.project_id),
            )
        )
    )
    assert (err.status_code, err.error_code) == (403, "IMG.0092")

    # the stranger sees none of it
    for call in (
        functools.partial(stranger.glance_show_image, m.GlanceShowImageRequest(image_id=first)),
        functools.partial(
            stranger.glance_list_image_members, m.GlanceListImageMembersRequest(image_id=first)
        ),
        functools.partial(
            stranger.copy_image_in_region,
            m.CopyImageInRegionRequest(
                image_id=first, body=m.CopyImageInRegionRequestBody(name="stolen")
            ),
        ),
    ):
        err = sdk_error(call)
        assert (err.status_code, err.error_code) == (404, "IMG.NOT_FOUND")
    assert stranger.list_images(m.ListImagesRequest(member_status="accepted")).images == []

    # the owner removes the member from one image (Glance) and from the other (batch)
    owner.glance_delete_image_member(
        m.GlanceDeleteImageMemberRequest(image_id=first, member_id=beta)
    )
    job_id = owner.batch_delete_members(
        m.BatchDeleteMembersRequest(
            body=m.BatchAddMembersRequestBody(images=[second], projects=[beta])
        )
    ).job_id
    assert (ended(owner, job_id).job_type, ended(owner, job_id).status) == (
        "imsDelImageMembersJob",
        "SUCCESS",
    )
    for image_id in (first, second):
        err = sdk_error(
            functools.partial(member.glance_show_image, m.GlanceShowImageRequest(image_id=image_id))
        )
        assert (err.status_code, err.error_code) == (404, "IMG.NOT_FOUND")
    assert member.list_images(m.ListImagesRequest(imagetype="shared")).images == []
    # its own copy stays
    assert [i.id for i in member.list_images(m.ListImagesRequest()).images] == [copy.id]


def test_refusals_through_the_sdk(api: Api) -> None:
    owner = api.client(api.alpha)
    queued = active_image(api.services, api.alpha.project_id, "sdk-queued", status="queued")
    image_id = active_image(api.services, api.alpha.project_id, "sdk-refusals")
    job_id = owner.batch_add_members(
        m.BatchAddMembersRequest(
            body=m.BatchAddMembersRequestBody(images=[queued], projects=[api.beta.project_id])
        )
    ).job_id
    job = ended(owner, job_id)
    assert (job.status, job.error_code) == ("FAIL", "IMG.STATE")
    assert "only an active private image can be shared" in job.fail_reason
    err = sdk_error(
        lambda: owner.batch_add_members(
            m.BatchAddMembersRequest(
                body=m.BatchAddMembersRequestBody(
                    images=[image_id], projects=[api.beta.project_id], domains=["d1"]
                )
            )
        )
    )
    assert (err.status_code, err.error_code) == (400, "IMG.0001")
    add = m.GlanceAddImageMemberRequest(
        image_id=image_id, body=m.GlanceAddImageMemberRequestBody(member=api.beta.project_id)
    )
    assert owner.glance_add_image_member(add).status == "pending"
    time.sleep(1.1)  # the same request within its second would be refused as a replay
    err = sdk_error(functools.partial(owner.glance_add_image_member, add))
    assert (err.status_code, err.error_code) == (409, "IMG.MEMBER_EXISTS")
    err = sdk_error(
        lambda: owner.glance_update_image_member(
            m.GlanceUpdateImageMemberRequest(
                image_id=image_id,
                member_id=api.beta.project_id,
                body=m.GlanceUpdateImageMemberRequestBody(status="accepted"),
            )
        )
    )
    assert (err.status_code, err.error_code) == (403, "IMG.0092")
    # deleting the image ends its shares
    owner.glance_delete_image(m.GlanceDeleteImageRequest(image_id=image_id))
    member = api.client(api.beta)
    pending = member.list_images(m.ListImagesRequest(member_status="pending")).images
    assert image_id not in [i.id for i in pending]
