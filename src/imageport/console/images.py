"""The images area: the project's images, each image's page, and what can be done with it.

Pages show what the image API's routes return: the same service calls and the same documents
(:mod:`imageport.api.ims.render`), so a page can show nothing the API would not, to nobody the
API would not show it to. This module holds the list and the two routes its script reads;
:mod:`.image_page` the image's page, :mod:`.image_actions` the forms that change an image.
Their routes are all in :data:`PAGES`.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ims.render import image_document, job_document
from imageport.console import image_actions, image_page
from imageport.console.image_models import (
    DISK_FORMATS,
    IMAGE_TYPES,
    LIMITS,
    MAX_SEARCHED,
    OS_TYPES,
    POLL_MS,
    STATUSES,
    ListQuery,
    human_bytes,
    job_view,
    script_texts,
    search_page,
)
from imageport.console.pages import PageCall, PageRoute, render
from imageport.service.context import Services
from imageport.service.images import queries as image_queries
from imageport.service.images.records import ImageRecord
from imageport.service.jobs import manage
from imageport.service.jobs.image_jobs import unfinished_jobs

#: Most images shared with the project and waiting for its answer listed above the list.
MAX_PENDING = 50
#: the notices the list shows after a change (``?done=``)
NOTICES = ("deleted",)


def list_images(services: Services, call: PageCall) -> Response:
    """The project's images (status, OS, size, created, type) with the list route's filters
    (status, OS type, disk format, private or shared), a search in their names and pages
    (``marker``, ``limit`` 1-100); an image being imported shows its job's phase, percent and
    bytes, kept up to date by the page's script; images shared with the project and waiting
    for its answer are listed above, to accept or reject."""
    query_items = [(k, v) for k, v in call.query if k != "done"]
    done = call.arg("done")
    query = ListQuery.parse(query_items)
    records, next_marker, searched_all = _page(services, call, query)
    pending: list[ImageRecord] = []
    if not query.marker:
        pending = list(
            image_queries.list_images(
                services,
                call.project_id,
                [("member_status", "pending"), ("limit", str(MAX_PENDING))],
            ).images
        )
    jobs = unfinished_jobs(services, call.project_id, [r.id for r in records])
    return render(
        call,
        "images.html",
        nav="images",
        images=[image_document(r) for r in records],
        progress={
            image_id: job_view(call.lang, job_document(job, progress=True))
            for image_id, job in jobs.items()
        },
        pending=[image_document(r) for r in pending],
        query=query,
        next_marker=next_marker,
        searched_all=searched_all,
        statuses=STATUSES,
        os_types=OS_TYPES,
        disk_formats=DISK_FORMATS,
        image_types=IMAGE_TYPES,
        limits=LIMITS,
        notice=done if done in NOTICES else "",
        texts=script_texts(call.lang),
        poll_ms=POLL_MS,
        size_text=human_bytes,
    )


def _page(
    services: Services, call: PageCall, query: ListQuery
) -> tuple[list[ImageRecord], str | None, bool]:
    """One page of the list: the route's own paging, or for a search the newest
    :data:`MAX_SEARCHED` images matching the filters searched by name and paged here (and
    whether those were all of them)."""
    if query.search:
        every = image_queries.list_images(
            services, call.project_id, [*query.filters, ("limit", str(MAX_SEARCHED))]
        )
        found, marker = search_page(every.images, query.search, query.marker, query.limit)
        return found, marker, every.next_marker is None
    route_query = [*query.filters, ("limit", str(query.limit))]
    if query.marker:
        route_query.append(("marker", query.marker))
    page = image_queries.list_images(services, call.project_id, route_query)
    return list(page.images), page.next_marker, True


def job_progress(services: Services, call: PageCall) -> Response:
    """A job with its progress, the document of ``GET /v1/cloudimages/job/{job_id}`` (for the
    pages' progress script)."""
    record = manage.show_job(services, call.project_id, call.path_params["job_id"])
    return JSONResponse(job_document(record, progress=True))


def image_json(services: Services, call: PageCall) -> Response:
    """An image, the document of ``GET /v2/images/{image_id}`` (for the progress script, when
    a job has ended)."""
    record = image_queries.get_image(services, call.project_id, call.path_params["image_id"])
    return JSONResponse(image_document(record))


PAGES = [
    PageRoute("/images", list_images),
    PageRoute("/images/job/{job_id}", job_progress, as_json=True),
    PageRoute("/images/{image_id}/document", image_json, as_json=True),
    *image_page.PAGES,
    *image_actions.PAGES,
]
