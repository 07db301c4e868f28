"""The bucket API's Starlette app: one catch-all route, dispatched on method, path depth
(service / bucket / object) and sub-resource, as S3's REST API is (path-style, and
virtual-host style under the ``s3_domain`` setting).

Order of work for each request: parse the request line; answer the unauthenticated OBS probe
(``HEAD /?apiversion``, ``HEAD /bucket?apiversion``, ``HEAD /?apiversion`` with
``Host: bucket.domain`` -> 200 ``x-obs-api: 3.0``); authenticate
(before reading any body); choose the view; refuse headers asking for features this service
does not have (:mod:`~imageport.api.s3.request_features`: 501 ``NotImplemented``, never
ignored); run the view; map :class:`ServiceError` to an S3 error document. ``OPTIONS`` is the
web console's CORS preflight, answered for the console's origin only (:mod:`.cors`), which
may also read the answers to its part uploads. Every other answer is sandboxed
(:data:`~.responses.SANDBOX_POLICY`): a stored web page opened in a browser runs nothing.
A single-use signature (see :mod:`imageport.service.access.authn`) is never given back: a client
that retries signs again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from imageport.api.s3 import bucket_views, cors, multipart_views, object_views
from imageport.api.s3.body import body_left_unread
from imageport.api.s3.request import Ctx, S3Call, authenticate_call, parse_call
from imageport.api.s3.request_features import check_request
from imageport.api.s3.responses import SANDBOX_POLICY, empty_response, error_response
from imageport.service.context import Services
from imageport.service.errors import ServiceError

View = Callable[[Ctx], Awaitable[Response]]
log = logging.getLogger("imageport.api.s3")

_UNSUPPORTED = frozenset(
    {
        "acl",
        "cors",
        "policy",
        "tagging",
        "versioning",
        "lifecycle",
        "website",
        "logging",
        "notification",
        "replication",
        "encryption",
        "requestPayment",
        "object-lock",
        "retention",
        "legal-hold",
        "torrent",
        "restore",
        "select",
        "accelerate",
        "analytics",
        "inventory",
        "metrics",
        "ownershipControls",
        "publicAccessBlock",
        "intelligent-tiering",
        "versions",
        "storageClass",
        "storagePolicy",
        "append",
        "attributes",
    }
)
"""Sub-resources this service does not implement (501 unless a view below answers them)."""

_READ = frozenset(
    {
        # sub-resources the views serve
        "location",
        "policy",
        "cors",
        "lifecycle",
        "tagging",
        "website",
        "uploads",
        "acl",
        "versioning",
        "delete",
        "uploadId",
        "partNumber",
        "apiversion",
        "versionId",
        # listing and paging
        "prefix",
        "delimiter",
        "marker",
        "max-keys",
        "list-type",
        "continuation-token",
        "start-after",
        "encoding-type",
        "fetch-owner",
        "max-uploads",
        "key-marker",
        "upload-id-marker",
        "max-parts",
        "part-number-marker",
        "max-buckets",
        "bucket-region",
        # response overrides of a GET
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        # presigned URLs' authentication (SigV4 and v2)
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "AWSAccessKeyId",
        "Signature",
        "Expires",
        # botocore names the operation in the query of some calls (``?x-id=PutObject``)
        "x-id",
    }
)
"""Query names the bucket API reads. Any other (``?annotation``, ``?metadataTable``, ...:
S3 keeps adding sub-resources) answers 501: routed by method and path alone, a PUT or DELETE
of an unknown sub-resource would overwrite or delete the object or bucket itself.
``x-amz-*``/``x-obs-*`` names are judged as headers (:mod:`.request_features`)."""


QUERY_NAMES = _READ | _UNSUPPORTED
"""Every query name the bucket API knows, served or refused (its route table in
``docs/service.md`` is what :func:`route` answers for each)."""


def _not_implemented(call: S3Call) -> ServiceError:
    names = sorted(_UNSUPPORTED.intersection(call.query))
    what = f"?{names[0]}" if names else f"{call.method} here"
    return ServiceError("NotImplemented", f"{what} is not implemented", status=501)


def _not_allowed(call: S3Call) -> ServiceError:
    return ServiceError(
        "MethodNotAllowed", f"{call.method} is not allowed on this resource", status=405
    )


def _service_view(call: S3Call) -> View:
    if call.method == "GET":
        return bucket_views.list_all_buckets
    raise _not_allowed(call)


def _bucket_get(call: S3Call) -> View:
    q = call.query
    if "location" in q:
        return bucket_views.get_location
    if "policy" in q:
        return partial(
            bucket_views.no_configuration, code="NoSuchBucketPolicy", what="bucket policy"
        )
    if "cors" in q:
        return partial(
            bucket_views.no_configuration, code="NoSuchCORSConfiguration", what="CORS configuration"
        )
    if "lifecycle" in q:
        return partial(
            bucket_views.no_configuration,
            code="NoSuchLifecycleConfiguration",
            what="lifecycle configuration",
        )
    if "tagging" in q:
        return partial(bucket_views.no_configuration, code="NoSuchTagSet", what="tags")
    if "website" in q:
        return partial(
            bucket_views.no_configuration,
            code="NoSuchWebsiteConfiguration",
            what="website configuration",
        )
    if "uploads" in q:
        return bucket_views.list_uploads
    if "acl" in q:
        return bucket_views.bucket_acl
    if "versioning" in q:
        return bucket_views.get_versioning
    if _UNSUPPORTED.intersection(q):
        raise _not_implemented(call)
    return bucket_views.list_objects


def _bucket_view(call: S3Call) -> View:
    method, q = call.method, call.query
    if method == "GET":
        return _bucket_get(call)
    if _UNSUPPORTED.intersection(q):
        raise _not_implemented(call)
    if method == "PUT":
        return bucket_views.create_bucket
    if method == "HEAD":
        return bucket_views.head_bucket
    if method == "DELETE":
        return bucket_views.delete_bucket
    if method == "POST" and "delete" in q:
        return bucket_views.delete_objects
    raise _not_allowed(call)


def _object_view(call: S3Call) -> View:
    method, q = call.method, call.query
    if method == "GET" and "acl" in q:
        return object_views.object_acl
    if _UNSUPPORTED.intersection(q):
        raise _not_implemented(call)
    upload = "uploadId" in q
    if method == "PUT":
        return multipart_views.upload_part if upload else object_views.put_object
    if method == "GET":
        return multipart_views.list_parts if upload else object_views.get_object
    if method == "HEAD":
        return object_views.head_object
    if method == "DELETE":
        return multipart_views.abort if upload else object_views.delete_object
    if method == "POST" and "uploads" in q:
        return multipart_views.initiate
    if method == "POST" and upload:
        return multipart_views.complete
    raise _not_allowed(call)


def _unknown_parameter(call: S3Call) -> str | None:
    for name in sorted(call.query):
        if (
            name not in _READ
            and name not in _UNSUPPORTED
            and not name.lower().startswith(("x-amz-", "x-obs-"))
        ):
            return name
    return None


def route(call: S3Call) -> View:
    """The view for ``call`` (ServiceError 405/501 when there is none)."""
    unknown = _unknown_parameter(call)
    if unknown is not None:
        raise ServiceError("NotImplemented", f"?{unknown[:64]} is not implemented", status=501)
    if not call.bucket:
        return _service_view(call)
    if not call.key:
        return _bucket_view(call)
    return _object_view(call)


async def handle(request: Request) -> Response:
    console: cors.ConsoleOrigin = request.app.state.console_origin
    if request.method == "OPTIONS":
        return cors.preflight(request, console)
    response = await _respond(request)
    response.headers["Content-Security-Policy"] = SANDBOX_POLICY
    cors.allow_reading(request, response, console)
    if body_left_unread(request):
        response.headers["Connection"] = "close"
    return response


async def _respond(request: Request) -> Response:
    services: Services = request.app.state.services
    resource = request.url.path
    try:
        call = parse_call(request, services.settings.s3_domain)
        resource = call.resource
        if call.method == "HEAD" and "apiversion" in call.query and not call.key:
            return empty_response(request, headers={"x-obs-api": "3.0"})
        principal = (await authenticate_call(services, request, call)).principal
        request.state.project_id = principal.project_id
        request.state.access_key = principal.access_key
        view = route(call)
        check_request(call, request.headers, principal.project_id)
        return await view(Ctx(services, principal, request, call))
    except ServiceError as exc:
        return error_response(request, exc, resource)
    except ClientDisconnect:
        return error_response(
            request,
            ServiceError("IncompleteBody", "the client closed the connection", status=400),
            resource,
        )
    except Exception:  # an unexpected failure must still be an S3 error, and be logged
        log.exception("bucket API request failed: %s %s", request.method, resource)
        return error_response(
            request,
            ServiceError(
                "InternalError", "we encountered an internal error; please try again", status=500
            ),
            resource,
        )


def build_s3_app(services: Services, console: cors.ConsoleOrigin | None = None) -> Starlette:
    """The bucket API for ``services`` (mount it on its own port); ``console``: whose pages may
    upload parts to it from a browser (default: the setting ``console_origin`` only)."""
    methods = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"]
    app = Starlette(routes=[Route("/{path:path}", handle, methods=methods)])
    app.state.services = services
    app.state.console_origin = console or cors.ConsoleOrigin(
        origin=services.settings.console_origin
    )
    return app
