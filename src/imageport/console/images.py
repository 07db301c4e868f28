"""The images area: the project's images.

Pages show what the image API's routes return: the same service call and the same document
(:mod:`imageport.api.ims.render`), so a page can show nothing the API would not.
"""

from __future__ import annotations

from starlette.responses import Response

from imageport.api.ims.render import images_document
from imageport.console.pages import PageCall, PageRoute, render
from imageport.service.context import Services
from imageport.service.images import queries as image_queries

#: the vendor's list filters the page offers (``GET /v2/cloudimages`` query names)
FILTERS = ("name", "status", "__imagetype", "__os_type", "disk_format")


def list_images(services: Services, call: PageCall) -> Response:
    """The project's images, with the list route's filters."""
    query = [(name, value) for name, value in call.query if name in FILTERS and value]
    query.append(("__imagetype", "private")) if not call.arg("__imagetype") else None
    document = images_document(image_queries.list_images(services, call.project_id, query))
    return render(call, "images.html", images=document["images"], filters=dict(query))


PAGES = [
    PageRoute("/images", list_images),
]
