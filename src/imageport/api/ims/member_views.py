"""Image sharing routes: each view parses, calls one function of
:mod:`imageport.service.images.members` (Glance) or
:mod:`imageport.service.images.member_batches` (the batch routes) and renders the vendor's
document."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.service.context import Services
from imageport.service.images import member_batches, members
from imageport.service.images.members import MEMBER_SCHEMA, MEMBERS_SCHEMA, Member


def member_document(member: Member) -> dict[str, object]:
    """One share, as Glance and the vendor's SDK show it."""
    return {
        "status": member.status,
        "created_at": member.created_at,
        "updated_at": member.updated_at,
        "image_id": member.image_id,
        "member_id": member.member_id,
        "member_type": "project",
        "schema": MEMBER_SCHEMA,
    }


def batch_add_members(services: Services, call: Call) -> Response:
    """Share images with projects ``{"images": [...], "projects": [...]}``: ``{"job_id"}`` of an
    ``imsAddImageMembersJob`` job, already SUCCESS (every share made) or FAIL (none made)."""
    job_id = member_batches.batch_add(services, call.project_id, call.json())
    return JSONResponse({"job_id": job_id})


def batch_update_members(services: Services, call: Call) -> Response:
    """The member project accepts or rejects shared images ``{"images", "project_id",
    "status": "accepted" | "rejected"}``: ``{"job_id"}`` of an ``imsUpdateImageMembersJob``
    job, already ended."""
    job_id = member_batches.batch_update(services, call.project_id, call.json())
    return JSONResponse({"job_id": job_id})


def batch_delete_members(services: Services, call: Call) -> Response:
    """Stop sharing images with projects ``{"images", "projects"}``: ``{"job_id"}`` of an
    ``imsDelImageMembersJob`` job, already ended."""
    job_id = member_batches.batch_delete(services, call.project_id, call.json())
    return JSONResponse({"job_id": job_id})


def add_image_member(services: Services, call: Call) -> Response:
    """Glance: share the owner's active image with a project ``{"member": project_id}``: the
    ``pending`` member."""
    return JSONResponse(
        member_document(
            members.add_member(services, call.project_id, call.path_params["image_id"], call.json())
        )
    )


def list_image_members(services: Services, call: Call) -> Response:
    """Glance: the image's members (the owner sees all, a member itself), ``limit``/``marker``
    paging: ``{"members", "schema", "page_info"}``."""
    page = members.list_members(services, call.project_id, call.path_params["image_id"], call.query)
    return JSONResponse(
        {
            "members": [member_document(m) for m in page.members],
            "schema": MEMBERS_SCHEMA,
            "page_info": {"next_marker": page.next_marker, "current_count": len(page.members)},
        }
    )


def show_image_member(services: Services, call: Call) -> Response:
    """Glance: one member of the image (a member may show only itself)."""
    return JSONResponse(
        member_document(
            members.show_member(
                services,
                call.project_id,
                call.path_params["image_id"],
                call.path_params["member_id"],
            )
        )
    )


def update_image_member(services: Services, call: Call) -> Response:
    """Glance: the member accepts or rejects the share ``{"status": "accepted" | "rejected"}``:
    the member."""
    return JSONResponse(
        member_document(
            members.update_member(
                services,
                call.project_id,
                call.path_params["image_id"],
                call.path_params["member_id"],
                call.json(),
            )
        )
    )


def delete_image_member(services: Services, call: Call) -> Response:
    """Glance: the owner stops sharing the image with the project (204)."""
    members.delete_member(
        services, call.project_id, call.path_params["image_id"], call.path_params["member_id"]
    )
    return Response(status_code=204)
