"""The image API application: the route table, every route authenticated.

Each route's view begins its docstring with what a client sees (the body it sends, the answer
it gets): ``docs/service.md``'s route table is generated from those and the routes below
(:mod:`imageport.api.route_docs`). :data:`imageport.api.iam.ROUTES` adds the token endpoint,
and version discovery at ``/`` (300) and ``/versions`` (200) is unauthenticated, as in Glance.
The two data ``PUT`` routes stream their bodies (:mod:`imageport.api.ims.glance_views`); every
other view gets a small JSON body.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route

from imageport.api import iam
from imageport.api.ecs.app import ecs_routes
from imageport.api.ims import boot_views as bv
from imageport.api.ims import export_views as ev
from imageport.api.ims import glance_views as gv
from imageport.api.ims import image_views as iv
from imageport.api.ims import job_views as jv
from imageport.api.ims import member_views as mv
from imageport.api.ims import report_views as rv
from imageport.api.ims import tag_views as tv
from imageport.api.ims.errors import http_error
from imageport.api.ims.incoming import View, endpoint
from imageport.service.context import Services

_TABLE: list[tuple[str, str, View]] = [
    ("/v2/cloudimages/action", "POST", iv.create_image),
    ("/v2.1/cloudimages/action", "POST", iv.create_image),
    ("/v1/cloudimages/dataimages/action", "POST", iv.create_data_image),
    ("/v2.1/cloudimages/dataimages/action", "POST", iv.create_data_image),
    ("/v2/cloudimages/quickimport/action", "POST", iv.quick_import),
    ("/v2.1/cloudimages/quickimport/action", "POST", iv.quick_import),
    ("/v2/cloudimages", "GET", iv.list_cloudimages),
    ("/v2/images", "POST", iv.create_glance_image),
    ("/v2/images", "GET", iv.list_glance_images),
    ("/v2/images/{image_id}", "GET", iv.show_glance_image),
    ("/v2/images/{image_id}", "DELETE", iv.delete_glance_image),
    ("/v2/images/{image_id}/file", "GET", gv.download_image_data),
    ("/v2/images/{image_id}/import", "POST", gv.import_image),
    ("/v2/info/import", "GET", gv.import_info),
    ("/v2/schemas/image", "GET", gv.image_schema),
    ("/v2/schemas/images", "GET", gv.images_schema),
    ("/v1/cloudimages/os_version", "GET", iv.list_os_versions),
    ("/v1/cloudimages/quota", "GET", iv.show_image_quota),
    ("/v1/cloudimages/{image_id}/upload", "PUT", iv.register_image),
    ("/v1/cloudimages/{image_id}/file", "POST", ev.export_image),
    ("/v1/cloudimages/{image_id}/boot-test", "POST", bv.boot_test_image),
    ("/v1/cloudimages/{image_id}/boot-test/screenshot", "GET", bv.boot_screenshot),
    ("/v1/cloudimages/job/{job_id}", "GET", jv.job_progress),
    ("/v1/cloudimages/job/{job_id}/cancel", "POST", jv.cancel_job),
    ("/v1/cloudimages/job/{job_id}/report", "GET", rv.job_report),
    ("/v1/cloudimages/{image_id}/report", "GET", rv.image_report),
    ("/v1/cloudimages/check", "POST", rv.check_object),
    ("/v1/{project_id}/jobs/{job_id}", "GET", jv.show_job),
    ("/v1/cloudimages/{image_id}/copy", "POST", iv.copy_image),
    ("/v1/cloudimages/members", "POST", mv.batch_add_members),
    ("/v1/cloudimages/members", "PUT", mv.batch_update_members),
    ("/v1/cloudimages/members", "DELETE", mv.batch_delete_members),
    ("/v2/images/{image_id}/members", "POST", mv.add_image_member),
    ("/v2/images/{image_id}/members", "GET", mv.list_image_members),
    ("/v2/images/{image_id}/members/{member_id}", "GET", mv.show_image_member),
    ("/v2/images/{image_id}/members/{member_id}", "PUT", mv.update_image_member),
    ("/v2/images/{image_id}/members/{member_id}", "DELETE", mv.delete_image_member),
    ("/v2/{project_id}/images/tags", "GET", tv.list_project_tags),
    ("/v2/{project_id}/images/resource_instances/action", "POST", tv.list_images_by_tags),
    ("/v2/{project_id}/images/{image_id}/tags", "POST", tv.add_image_tag),
    ("/v2/{project_id}/images/{image_id}/tags", "GET", tv.list_image_tags),
    ("/v2/{project_id}/images/{image_id}/tags/action", "POST", tv.batch_image_tags),
    ("/v2/{project_id}/images/{image_id}/tags/{key}", "DELETE", tv.delete_image_tag),
]


#: Routes whose body the vendor SDK sends with ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` (it
#: does for every non-JSON content type: here the JSON-patch updates); every route of
#: :data:`_TABLE` must sign its body's hash.
_UNSIGNED_BODY_TABLE: list[tuple[str, str, View]] = [
    ("/v2/cloudimages/{image_id}", "PATCH", iv.update_cloudimage),
    ("/v2/images/{image_id}", "PATCH", iv.update_glance_image),
]


def ims_routes(services: Services) -> list[BaseRoute]:
    """The image API's routes (a path with several methods has one Route per method; the
    router answers 405 when none of them takes the request's method)."""
    return [
        Route("/", gv.versions, methods=["GET"]),
        Route("/versions", gv.versions, methods=["GET"]),
        Route("/v2/images/{image_id}/file", gv.upload_endpoint(services), methods=["PUT"]),
        Route("/v2/images/{image_id}/stage", gv.stage_endpoint(services), methods=["PUT"]),
        *(
            Route(path, endpoint(services, view), methods=[method], name=view.__name__)
            for path, method, view in _TABLE
        ),
        *(
            Route(
                path,
                endpoint(services, view, unsigned_payload=True),
                methods=[method],
                name=view.__name__,
            )
            for path, method, view in _UNSIGNED_BODY_TABLE
        ),
    ]


def build_ims_app(services: Services) -> Starlette:
    """The image API over ``services`` (the token endpoint included; it finds the services in
    ``app.state.services``)."""
    app = Starlette(
        routes=[*iam.ROUTES, *ims_routes(services), *ecs_routes(services)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.services = services
    return app
