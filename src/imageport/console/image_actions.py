"""The forms of the image page: each parses its fields, calls the service function of the image
API's route that does the same, and sends the browser back to the image (303); a refusal
shows the image page again with the refusal's code and message at the form (and at its field),
the values typed kept, and the route's status.

==================================  ==========================================================
form                                the route whose service it calls
==================================  ==========================================================
add a tag / delete one              ``POST /v2/{project_id}/images/{id}/tags``, ``DELETE
                                    .../tags/{key}``
share with a project / stop         ``POST /v2/images/{id}/members``, ``DELETE
                                    .../members/{member_id}``
accept or reject a share (member)   ``PUT /v2/images/{id}/members/{member_id}``
export to a bucket                  ``POST /v1/cloudimages/{id}/file``
copy                                ``POST /v1/cloudimages/{id}/copy``
boot-test                           ``POST /v1/cloudimages/{id}/boot-test``
delete (after a confirmation page)  ``DELETE /v2/images/{id}``
==================================  ==========================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from starlette.responses import Response

from imageport.console.image_models import refuse
from imageport.console.image_page import Refusal, image_page
from imageport.console.pages import PageCall, PageRoute, redirect, render, segment, url
from imageport.numbers import whole_number
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.images import lifecycle, members
from imageport.service.images import queries as image_queries
from imageport.service.images import tags as image_tags
from imageport.service.jobs import boot_request, copy_job, export_request, manage

MAX_FIELD = 1024
"""Longest value of a form field (names, descriptions and object keys are far shorter)."""


def form_values(call: PageCall, allowed: frozenset[str]) -> dict[str, str]:
    """The form's fields but ``csrf``; a field not in ``allowed``, given twice or too long is
    refused (IMG.0001), never dropped."""
    found: dict[str, str] = {}
    for name, value in call.form:
        if name == "csrf":
            continue
        if name not in allowed or name in found:
            raise refuse(name, "this form has no such field (or it was sent twice)")
        if len(value) > MAX_FIELD:
            raise refuse(name, f"at most {MAX_FIELD} characters")
        found[name] = value
    return found


def image_url(image_id: str, done: str, anchor: str = "") -> str:
    return url(f"/images/{segment(image_id)}", done=done) + (f"#{anchor}" if anchor else "")


def _act(
    services: Services,
    call: PageCall,
    form: str,
    fields: frozenset[str],
    act: Callable[[dict[str, str]], str],
) -> Response:
    """Run ``act`` on the form's values; 303 to the URL it returns, or the image page with the
    refusal at ``form``."""
    values: dict[str, str] = {}
    try:
        values = form_values(call, fields)
        return redirect(act(values))
    except ServiceError as error:
        return image_page(services, call, refused=Refusal.of(form, error), values=values)


def add_tag(services: Services, call: PageCall) -> Response:
    """Add a tag (key and value) to the image, or replace the key's value."""
    image_id = call.path_params["image_id"]

    def act(v: Mapping[str, str]) -> str:
        tag = {"key": v.get("key", ""), "value": v.get("value", "")}
        image_tags.add_tag(services, call.project_id, call.project_id, image_id, {"tag": tag})
        return image_url(image_id, "tag-added", "tags")

    return _act(services, call, "tag", frozenset({"key", "value"}), act)


def delete_tag(services: Services, call: PageCall) -> Response:
    """Delete the image's tag with the form's key."""
    image_id = call.path_params["image_id"]

    def act(v: Mapping[str, str]) -> str:
        image_tags.delete_tag(
            services, call.project_id, call.project_id, image_id, v.get("key", "")
        )
        return image_url(image_id, "tag-deleted", "tags")

    return _act(services, call, "tags", frozenset({"key"}), act)


def add_member(services: Services, call: PageCall) -> Response:
    """Share the image with a project (its id): the share is pending until that project
    accepts it."""
    image_id = call.path_params["image_id"]

    def act(v: Mapping[str, str]) -> str:
        member = v.get("member", "").strip()
        members.add_member(services, call.project_id, image_id, {"member": member})
        return image_url(image_id, "member-added", "members")

    return _act(services, call, "member", frozenset({"member"}), act)


def remove_member(services: Services, call: PageCall) -> Response:
    """Stop sharing the image with the form's project."""
    image_id = call.path_params["image_id"]

    def act(v: Mapping[str, str]) -> str:
        members.delete_member(services, call.project_id, image_id, v.get("member", ""))
        return image_url(image_id, "member-removed", "members")

    return _act(services, call, "members", frozenset({"member"}), act)


def answer_share(services: Services, call: PageCall) -> Response:
    """Accept or reject an image another project shared with this one (``status``)."""
    image_id = call.path_params["image_id"]

    def act(v: Mapping[str, str]) -> str:
        status = v.get("status", "")
        members.update_member(
            services, call.project_id, image_id, call.project_id, {"status": status}
        )
        if status == "rejected":  # the image is hidden from the project now
            return url("/images", type="shared")
        return image_url(image_id, "accepted")

    return _act(services, call, "answer", frozenset({"status"}), act)


def export_image(services: Services, call: PageCall) -> Response:
    """Export the image to an object of one of the project's buckets, in a format."""
    image_id = call.path_params["image_id"]

    def act(v: Mapping[str, str]) -> str:
        body: dict[str, object] = {
            "bucket_url": f"{v.get('bucket', '').strip()}:{v.get('key', '').strip()}",
            "file_format": v.get("file_format") or None,
            "is_quick_export": v.get("quick") == "1",
        }
        if "quick" in v and v["quick"] != "1":
            raise refuse("quick", "must be 1 when given")
        export_request.export_image(services, call.project_id, image_id, body)
        return image_url(image_id, "export", "jobs")

    return _act(services, call, "export", frozenset({"bucket", "key", "file_format", "quick"}), act)


def copy_image(services: Services, call: PageCall) -> Response:
    """Copy the image into a new private image (name and description) and show the copy."""
    image_id = call.path_params["image_id"]

    def act(v: Mapping[str, str]) -> str:
        body = {"name": v.get("name", ""), "description": v.get("description", "")}
        job_id = copy_job.copy_image(services, call.project_id, image_id, body)
        copy = manage.show_job(services, call.project_id, job_id).image_id or image_id
        return image_url(copy, "copy", "jobs")

    return _act(services, call, "copy", frozenset({"name", "description"}), act)


def boot_test(services: Services, call: PageCall) -> Response:
    """Boot-test the image in a throw-away machine: each firmware it claims, or the one
    chosen; the timeout per firmware in seconds (empty: the server's default)."""
    image_id = call.path_params["image_id"]

    def act(v: Mapping[str, str]) -> str:
        body: dict[str, object] = {}
        if v.get("firmware"):
            body["firmware"] = v["firmware"]
        timeout = v.get("timeout", "").strip()
        if timeout:
            number = whole_number(timeout)
            body["timeout"] = timeout if number is None else number  # the service refuses text
        boot_request.boot_test_image(services, call.project_id, image_id, body)
        return image_url(image_id, "boot-test", "jobs")

    return _act(services, call, "boot", frozenset({"firmware", "timeout"}), act)


def confirm_delete(services: Services, call: PageCall) -> Response:
    """The confirmation step before deleting an image: it names the image."""
    image = image_queries.get_image(services, call.project_id, call.path_params["image_id"])
    return render(call, "image_delete.html", nav="images", image=image, refused=None)


def delete_image(services: Services, call: PageCall) -> Response:
    """Delete the image and its stored file (after the confirmation step)."""
    image_id = call.path_params["image_id"]
    try:
        form_values(call, frozenset())
        lifecycle.delete_image(services, call.project_id, image_id, None)
    except ServiceError as error:
        image = image_queries.get_image(services, call.project_id, image_id)
        return render(
            dataclasses.replace(call, here=url(f"/images/{segment(image_id)}/delete")),
            "image_delete.html",
            status=error.status,
            nav="images",
            image=image,
            refused=Refusal.of("delete", error),
        )
    return redirect(url("/images", done="deleted"))


PAGES = [
    PageRoute("/images/{image_id}/tags", add_tag, ("POST",)),
    PageRoute("/images/{image_id}/tags/delete", delete_tag, ("POST",)),
    PageRoute("/images/{image_id}/members", add_member, ("POST",)),
    PageRoute("/images/{image_id}/members/delete", remove_member, ("POST",)),
    PageRoute("/images/{image_id}/answer", answer_share, ("POST",)),
    PageRoute("/images/{image_id}/export", export_image, ("POST",)),
    PageRoute("/images/{image_id}/copy", copy_image, ("POST",)),
    PageRoute("/images/{image_id}/boot-test", boot_test, ("POST",)),
    PageRoute("/images/{image_id}/delete", confirm_delete),
    PageRoute("/images/{image_id}/delete", delete_image, ("POST",)),
]
