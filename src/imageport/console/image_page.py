"""An image's page: its properties, its jobs' progress, its check report with the change record
of automatic configuration and the boot-test verdicts and screenshots, its tags and members,
and the forms of what can be done with it (:mod:`.image_actions` handles them, and renders
this page again with a refusal at its form).

What it reads are the service calls of the image API's routes: ``GET /v2/images/{id}`` (the
image), ``GET /v1/cloudimages/{id}/report``, ``GET /v2/{project_id}/images/{id}/tags``, ``GET
/v2/images/{id}/members``, ``GET /v1/cloudimages/{id}/boot-test/screenshot``, and the image's
recent jobs as ``GET /v1/cloudimages/job/{job_id}`` shows each. A member of a shared image sees
what those routes show it (the image, its report and screenshots, its own membership), and
only the forms it may use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.responses import Response

from imageport.api.ims.render import image_document, job_document
from imageport.console.image_models import (
    POLL_MS,
    boot_view,
    configuration_view,
    field_of,
    job_view,
    only_args,
    property_rows,
    script_texts,
)
from imageport.console.pages import PageCall, PageRoute, render, segment, url
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid, ServiceError
from imageport.service.images import boot_results, members, reports
from imageport.service.images import queries as image_queries
from imageport.service.images import tags as image_tags
from imageport.service.jobs.boot_request import check_boot_offered
from imageport.service.jobs.export_request import EXPORT_FORMATS
from imageport.service.jobs.image_jobs import recent_jobs
from imageport.service.statuses import ImageStatus

#: the notices the page shows after a change (``?done=``)
NOTICES = (
    "tag-added",
    "tag-deleted",
    "member-added",
    "member-removed",
    "accepted",
    "rejected",
    "export",
    "copy",
    "boot-test",
    "registered",
)
#: jobs of the image listed
RECENT_JOBS = 5


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the service refused a form: shown at the form, and at its field when the code is
    about one (:func:`.image_models.field_of`)."""

    form: str
    code: str
    message: str
    field: str | None
    #: the answer's HTTP status, as the API's route would give it
    status: int

    @classmethod
    def of(cls, form: str, error: ServiceError) -> Refusal:
        return cls(form, error.code, error.message, field_of(form, error.code), error.status)


def show_image(services: Services, call: PageCall) -> Response:
    """The image page: properties, the progress of its jobs (live), the check report with the
    change record of automatic configuration and the boot-test verdicts and screenshots, tags,
    members, and the forms to boot-test, export, copy, share and delete it; another project's
    image is "not found"."""
    done = only_args(call.query, frozenset({"done"})).get("done", "")
    return image_page(services, call, notice=done if done in NOTICES else "")


def image_page(
    services: Services,
    call: PageCall,
    *,
    refused: Refusal | None = None,
    values: Mapping[str, str] | None = None,
    notice: str = "",
) -> Response:
    """The page of ``call``'s image, with ``refused`` at its form and the form's ``values``
    kept (the status is the refusal's). After a form's POST the page's own links (the
    language switch) lead back to the image page, not to the form's route."""
    project_id = call.project_id
    image_id = call.path_params["image_id"]
    call = dataclasses.replace(call, here=url(f"/images/{segment(image_id)}"))
    record = image_queries.get_image(services, project_id, image_id)  # NotFound: 404 page
    owner = record.project_id == project_id
    report = _report(services, project_id, image_id)
    active = record.status == ImageStatus.ACTIVE
    jobs = (
        [
            job_view(call.lang, job_document(job, progress=True))
            for job in recent_jobs(services, project_id, image_id, RECENT_JOBS)
        ]
        if owner
        else []
    )
    return render(
        call,
        "image.html",
        status=200 if refused is None else refused.status,
        nav="images",
        image=image_document(record),
        owner=owner,
        active=active,
        properties=property_rows(call.lang, image_document(record)),
        report=report,
        configuration=configuration_view(report) if report else None,
        boot=boot_view(report) if report else None,
        jobs=jobs,
        tags=image_tags.list_tags(services, project_id, project_id, image_id) if owner else [],
        members=members.list_members(services, project_id, image_id, ()).members,
        boot_offered=owner and active and boot_tests_offered(services),
        export_formats=[(f, f) for f in EXPORT_FORMATS],
        refused=refused,
        values=values or {},
        notice=notice,
        texts=script_texts(call.lang),
        poll_ms=POLL_MS,
    )


def _report(services: Services, project_id: str, image_id: str) -> dict[str, object] | None:
    """The image's check report; None before its file has been checked."""
    try:
        return reports.image_report(services, project_id, image_id)
    except NotFound as missing:
        if missing.code != codes.NO_REPORT:
            raise
        return None


def boot_tests_offered(services: Services) -> bool:
    """Whether this server boot-tests images (the check ``POST .../boot-test`` makes first)."""
    try:
        check_boot_offered(services, ())
    except RequestInvalid:
        return False
    return True


def boot_screenshot(services: Services, call: PageCall) -> Response:
    """The display of the image's last boot under ``?firmware=bios`` (or ``uefi``), as
    ``image/png``: ``GET /v1/cloudimages/{image_id}/boot-test/screenshot``."""
    data = boot_results.read_screenshot(
        services, call.project_id, call.path_params["image_id"], call.query
    )
    return Response(data, media_type="image/png")


PAGES = [
    PageRoute("/images/{image_id}", show_image),
    PageRoute("/images/{image_id}/boot-test/screenshot", boot_screenshot),
]
