"""Sharing images between projects (the vendor's image members), on SQLite and PostgreSQL: the
batch and Glance use cases, what a member sees and may do, what everyone else sees (nothing),
and the copy of an accepted shared image into the member's project."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from imageport.service import codes
from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.images import member_batches, members, reports, tags, updates
from imageport.service.images import queries as image_queries
from imageport.service.images.glance_data import stored_file
from imageport.service.images.lifecycle import delete_image
from imageport.service.images.records import JobRecord
from imageport.service.jobs import manage
from imageport.service.jobs.copy_job import copy_image
from imageport.service.jobs.dispatch import run_job
from imageport.service.jobs.export_request import export_image
from imageport.service.tables import image_members
from support.shared_images import active_image


@pytest.fixture
def services(backend_services: Services) -> Services:
    """These tests run on SQLite and on a real PostgreSQL server."""
    return backend_services


def code_of(call: Callable[[], object]) -> tuple[int, str]:
    with pytest.raises(ServiceError) as info:
        call()
    return info.value.status, info.value.code


def job(services: Services, project_id: str, job_id: str) -> JobRecord:
    return manage.show_job(services, project_id, job_id, project_id)


def listed(services: Services, project_id: str, *query: tuple[str, str]) -> list[str]:
    return [i.id for i in image_queries.list_images(services, project_id, list(query)).images]


def share_rows(services: Services) -> int:
    with services.db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(image_members)).scalar_one())


@pytest.fixture
def three(services: Services) -> tuple[str, str, str]:
    """The projects owner, member and stranger."""
    return (
        create_project(services, "owner").id,
        create_project(services, "member").id,
        create_project(services, "stranger").id,
    )


def test_share_accept_list_and_reject(services: Services, three: tuple[str, str, str]) -> None:
    owner, member, stranger = three
    image_id = active_image(services, owner, "golden")
    job_id = member_batches.batch_add(services, owner, {"images": [image_id], "projects": [member]})
    added = job(services, owner, job_id)
    assert (added.job_type, added.status, added.image_id) == (
        "imsAddImageMembersJob",
        "SUCCESS",
        image_id,
    )
    assert code_of(lambda: reports.job_report(services, owner, job_id)) == (404, codes.NO_REPORT)

    # pending: not in the member's list (the vendor lists accepted shares), but showable
    assert listed(services, member) == []
    assert listed(services, member, ("member_status", "pending")) == [image_id]
    shown = image_queries.get_image(services, member, image_id)
    assert (shown.visibility, shown.properties["__imagetype"], shown.project_id) == (
        "shared",
        "shared",
        owner,
    )
    # the owner still sees its own private image
    mine = image_queries.get_image(services, owner, image_id)
    assert (mine.visibility, mine.properties["__imagetype"]) == ("private", "private")

    answered = member_batches.batch_update(
        services, member, {"images": [image_id], "project_id": member, "status": "accepted"}
    )
    assert job(services, member, answered).status == "SUCCESS"
    assert listed(services, member) == [image_id]
    assert listed(services, member, ("__imagetype", "shared")) == [image_id]
    assert listed(services, member, ("visibility", "shared")) == [image_id]
    assert listed(services, member, ("__imagetype", "private")) == []
    assert listed(services, member, ("owner", owner)) == [image_id]
    assert listed(services, member, ("member_status", "pending")) == []
    assert listed(services, owner, ("__imagetype", "shared")) == []  # not shared *with* it
    assert reports.image_report(services, member, image_id)["summary"]["verdict"] == "pass"

    # the stranger sees nothing of it
    assert code_of(lambda: image_queries.get_image(services, stranger, image_id)) == (
        404,
        codes.NOT_FOUND,
    )
    assert listed(services, stranger) == listed(services, stranger, ("member_status", "accepted"))
    assert listed(services, stranger) == []

    members.update_member(services, member, image_id, member, {"status": "rejected"})
    assert listed(services, member) == []
    assert listed(services, member, ("member_status", "rejected")) == [image_id]
    assert code_of(lambda: image_queries.get_image(services, member, image_id)) == (
        404,
        codes.NOT_FOUND,
    )
    # ...and may change its mind
    members.update_member(services, member, image_id, member, {"status": "accepted"})
    assert listed(services, member) == [image_id]


def test_a_member_reads_but_cannot_change_the_image(
    services: Services, three: tuple[str, str, str]
) -> None:
    owner, member, _ = three
    image_id = active_image(services, owner, "golden")
    members.add_member(services, owner, image_id, {"member": member})
    refused = (403, codes.NOT_OWNER)
    patch = [{"op": "replace", "path": "/name", "value": "mine now"}]
    assert code_of(lambda: updates.update_image(services, member, image_id, patch)) == refused
    assert code_of(lambda: delete_image(services, member, image_id, None)) == refused
    export = {"bucket_url": "bucket:k.qcow2", "file_format": "qcow2"}
    assert code_of(lambda: export_image(services, member, image_id, export)) == refused
    assert code_of(lambda: tags.list_tags(services, member, member, image_id)) == refused
    assert code_of(lambda: stored_file(services, member, image_id)) == refused
    third = create_project(services, "third").id
    again = {"images": [image_id], "projects": [third]}
    failed = job(services, member, member_batches.batch_add(services, member, again))
    assert (failed.status, failed.error_code) == ("FAIL", codes.NOT_OWNER)
    assert code_of(lambda: members.add_member(services, member, image_id, {"member": third})) == (
        refused
    )
    assert code_of(lambda: members.delete_member(services, member, image_id, member)) == refused
    # the member cannot answer for the owner, nor the owner for the member
    assert code_of(
        lambda: members.update_member(services, owner, image_id, member, {"status": "accepted"})
    ) == (403, codes.NOT_OWNER)
    assert image_queries.get_image(services, owner, image_id).name == "golden"


def test_members_see_only_themselves(services: Services, three: tuple[str, str, str]) -> None:
    owner, member, stranger = three
    other = create_project(services, "other").id
    image_id = active_image(services, owner, "golden")
    member_batches.batch_add(services, owner, {"images": [image_id], "projects": [member, other]})
    everyone = members.list_members(services, owner, image_id, [])
    assert {m.member_id for m in everyone.members} == {member, other}
    assert {m.status for m in everyone.members} == {"pending"}
    own = members.list_members(services, member, image_id, [])
    assert [m.member_id for m in own.members] == [member]
    assert code_of(lambda: members.show_member(services, member, image_id, other)) == (
        404,
        codes.NOT_FOUND,
    )
    for call in (
        lambda: members.list_members(services, stranger, image_id, []),
        lambda: members.show_member(services, stranger, image_id, member),
        lambda: members.update_member(
            services, stranger, image_id, stranger, {"status": "accepted"}
        ),
    ):
        assert code_of(call) == (404, codes.NOT_FOUND)
    page = members.list_members(services, owner, image_id, [("limit", "1")])
    assert len(page.members) == 1 and page.next_marker == page.members[0].member_id
    rest = members.list_members(services, owner, image_id, [("marker", page.next_marker)])
    assert len(rest.members) == 1 and rest.next_marker is None
    assert code_of(lambda: members.list_members(services, owner, image_id, [("sort", "x")])) == (
        400,
        codes.BAD_REQUEST,
    )
    # a stranger's batch answer is refused as for an image that does not exist
    body = {"images": [image_id], "project_id": stranger, "status": "accepted"}
    failed = job(services, stranger, member_batches.batch_update(services, stranger, body))
    assert (failed.status, failed.error_code) == ("FAIL", codes.NOT_FOUND)


def test_removed_members_and_deleted_images_leave_nothing(
    services: Services, three: tuple[str, str, str]
) -> None:
    owner, member, _ = three
    kept, gone = active_image(services, owner, "kept"), active_image(services, owner, "gone")
    body = {"images": [kept, gone], "projects": [member]}
    member_batches.batch_add(services, owner, body)
    member_batches.batch_update(
        services, member, {"images": [kept, gone], "project_id": member, "status": "accepted"}
    )
    assert sorted(listed(services, member)) == sorted([kept, gone])
    removed = member_batches.batch_delete(services, owner, {"images": [kept], "projects": [member]})
    deleted = job(services, owner, removed)
    assert (deleted.job_type, deleted.status) == ("imsDelImageMembersJob", "SUCCESS")
    gone_for_member = code_of(lambda: image_queries.get_image(services, member, kept))
    assert gone_for_member == (404, codes.NOT_FOUND)
    # removing it again names what is wrong, and changes nothing
    again = job(services, owner, member_batches.batch_delete(services, owner, body))
    assert (again.status, again.error_code) == ("FAIL", codes.NOT_FOUND)
    assert listed(services, member) == [gone]
    delete_image(services, owner, gone, None)
    assert share_rows(services) == 0
    assert listed(services, member) == []


def test_batch_requests_are_checked_and_all_or_nothing(
    services: Services, three: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, member, stranger = three
    good = active_image(services, owner, "good")
    queued = active_image(services, owner, "queued", status="queued")
    theirs = active_image(services, stranger, "theirs")
    bad_request = (400, codes.BAD_REQUEST)
    for body in (
        {"images": [], "projects": [member]},
        {"images": [good], "projects": "all"},
        {"images": ["../etc"], "projects": [member]},
        {"images": [good], "projects": [member.upper()]},
        {"images": [good] * 101, "projects": [member]},  # counted before duplicates go
        {"images": [good], "projects": [member], "domains": ["d"]},
        {"images": [good], "projects": [member], "extra": 1},
    ):
        assert code_of(functools.partial(member_batches.batch_add, services, owner, body)) == (
            bad_request
        ), body
    for body, code in (
        ({"images": [good, queued], "projects": [member]}, codes.STATE),
        ({"images": [good, theirs], "projects": [member]}, codes.NOT_FOUND),
        ({"images": [good], "projects": [owner]}, codes.PROJECT_UNKNOWN),
        ({"images": [good], "projects": ["0" * 32]}, codes.PROJECT_UNKNOWN),
    ):
        failed = job(services, owner, member_batches.batch_add(services, owner, body))
        assert (failed.status, failed.error_code) == ("FAIL", code), failed.fail_reason
        assert failed.image_id is None or failed.image_id == good
    assert share_rows(services) == 0  # the good image was not shared by the failed requests
    answer = {"images": [good], "project_id": owner, "status": "accepted"}
    assert code_of(lambda: member_batches.batch_update(services, member, answer)) == bad_request
    maybe = {"images": [good], "project_id": member, "status": "maybe"}
    assert code_of(lambda: member_batches.batch_update(services, member, maybe)) == bad_request
    monkeypatch.setattr(members, "MAX_MEMBERS", 1)
    two = {"images": [good], "projects": [member, stranger]}
    failed = job(services, owner, member_batches.batch_add(services, owner, two))
    assert (failed.status, failed.error_code) == ("FAIL", codes.QUOTA_EXCEEDED)
    assert members.add_member(services, owner, good, {"member": member}).status == "pending"
    assert code_of(lambda: members.add_member(services, owner, good, {"member": member})) == (
        409,
        codes.MEMBER_EXISTS,
    )
    # the batch leaves an existing share as it is (and within the cap)
    once = {"images": [good], "projects": [member]}
    assert job(services, owner, member_batches.batch_add(services, owner, once)).status == "SUCCESS"


def test_an_accepted_member_copies_the_image_into_its_project(
    services: Services, three: tuple[str, str, str]
) -> None:
    owner, member, stranger = three
    image_id = active_image(services, owner, "golden", enterprise_project_id="0")
    members.add_member(services, owner, image_id, {"member": member})
    body = {"name": "my-copy"}
    assert code_of(lambda: copy_image(services, member, image_id, body)) == (403, codes.NOT_OWNER)
    assert code_of(lambda: copy_image(services, stranger, image_id, body)) == (404, codes.NOT_FOUND)
    members.update_member(services, member, image_id, member, {"status": "accepted"})
    job_id = copy_image(services, member, image_id, body)
    run_job(services, job_id)
    done = job(services, member, job_id)
    assert done.status == "SUCCESS", done.fail_reason
    copy = image_queries.get_image(services, member, str(done.image_id))
    assert (copy.project_id, copy.status, copy.visibility, copy.name) == (
        member,
        "active",
        "private",
        "my-copy",
    )
    assert copy.properties["__originalimagename"] == image_id
    assert "enterprise_project_id" not in copy.properties  # the owner's, not the member's
    # the copy is the member's own: it survives the share and the source
    delete_image(services, owner, image_id, None)
    assert image_queries.get_image(services, member, copy.id).status == "active"


def test_a_copy_whose_share_ends_before_it_runs_fails(
    services: Services, three: tuple[str, str, str]
) -> None:
    owner, member, _ = three
    image_id = active_image(services, owner, "golden")
    members.add_member(services, owner, image_id, {"member": member})
    members.update_member(services, member, image_id, member, {"status": "accepted"})
    job_id = copy_image(services, member, image_id, {"name": "too-late"})
    members.delete_member(services, owner, image_id, member)
    run_job(services, job_id)
    failed = job(services, member, job_id)
    assert (failed.status, failed.error_code) == ("FAIL", codes.SOURCE_FILE_UNUSABLE)
    assert "no longer shared" in (failed.fail_reason or "")


def test_list_filters_never_widen_what_a_project_sees(
    services: Services, three: tuple[str, str, str]
) -> None:
    """``owner=``, ``__imagetype=shared`` and ``visibility=shared`` only narrow a list: a
    stranger and a member that has not accepted find no image of the owner with them, and a
    member cannot answer for another member."""
    owner, member, stranger = three
    other = create_project(services, "other").id
    image_id = active_image(services, owner, "golden")
    active_image(services, owner, "private")
    member_batches.batch_add(services, owner, {"images": [image_id], "projects": [member, other]})
    members.update_member(services, other, image_id, other, {"status": "accepted"})
    widening = [
        [("owner", owner)],
        [("__imagetype", "shared")],
        [("visibility", "shared")],
        [("owner", owner), ("visibility", "private")],
    ]
    for query in widening:
        assert listed(services, stranger, *query) == [], query
        assert listed(services, member, *query) == [], query  # pending: not listed
    assert listed(services, other, ("owner", owner)) == [image_id]  # accepted, and only it
    for member_id, status in ((other, "rejected"), (owner, "accepted")):
        answer = {"status": status}
        call = functools.partial(
            members.update_member, services, member, image_id, member_id, answer
        )
        assert code_of(call) == (404, codes.NOT_FOUND)
    assert members.show_member(services, owner, image_id, other).status == "accepted"
