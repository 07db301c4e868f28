"""Glance v2 data routes, import, schemas and version discovery.

The data routes (``PUT /v2/images/{id}/file`` and ``/stage``) cannot go through
:func:`~imageport.api.ims.incoming.endpoint`, which reads a small JSON body first: they
authenticate from the headers (:func:`~imageport.api.ims.incoming.authenticate_headers`), ask
the service whether the image takes data (before a byte is read), stream the body to the
service's staging file (:mod:`imageport.api.body_file`) and hand it back to the service. A
refusal sent before the body was read closes the connection (the client may still be sending).
python-glanceclient sends the data with ``Transfer-Encoding: chunked`` and no length, so the
cap is enforced as the body arrives; openstacksdk sends a ``Content-Length``, which the body
must match.
The other views are ordinary thin views over :mod:`imageport.service.images.glance_data`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from imageport.api.body_file import receive_to_file
from imageport.api.ims import glance_schema
from imageport.api.ims.errors import error_response, nested_only, service_error
from imageport.api.ims.incoming import Call, authenticate_headers, release_call, server_side
from imageport.limits import MiB
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid, ServiceError
from imageport.service.images import glance_data

DATA_TYPE = "application/octet-stream"
READ_CHUNK = 1 * MiB
Commit = Callable[[Services, str, glance_data.UploadSlot, int], object]


def data_endpoint(
    services: Services, commit: Commit, name: str, doc: str | None
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint ``name`` (described by ``doc``) receiving image data and passing it to
    ``commit`` (answers 204)."""

    async def handle(request: Request) -> Response:
        call: Call | None = None
        try:
            call = await run_in_threadpool(authenticate_headers, services, request)
            media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != DATA_TYPE:
                raise RequestInvalid(
                    codes.BAD_REQUEST,
                    f"image data must be sent as {DATA_TYPE}, not {media[:80]!r}",
                    status=415,
                )
            declared = glance_data.declared_size(request.headers)
            slot = await run_in_threadpool(
                glance_data.open_upload,
                services,
                call.project_id,
                call.path_params["image_id"],
                declared,
            )
            size = await receive_to_file(
                request,
                slot.part,
                limit=slot.limit,
                expected=declared,
                too_large=lambda: glance_data.too_large(services),
                wrong_length=lambda size: _wrong_length(size, declared),
            )
            await run_in_threadpool(commit, services, call.project_id, slot, size)
        except ServiceError as error:
            if server_side(error):
                release_call(services, call)
            response = service_error(error, request)
            if not getattr(request.state, "body_read", False):
                response.headers["Connection"] = "close"
            return response
        except ClientDisconnect:
            release_call(services, call)
            return error_response(
                400,
                codes.BAD_REQUEST,
                "the client went away before the image data ended; nothing was kept",
                nested=nested_only(request.headers),
            )
        except BaseException:
            release_call(services, call)
            raise
        return Response(status_code=204)

    handle.__name__ = name
    handle.__doc__ = doc
    return handle


def upload_endpoint(services: Services) -> Callable[[Request], Awaitable[Response]]:
    """Glance upload (``application/octet-stream``, chunked or with Content-Length): the data is
    staged and the image's import job starts (204)."""
    return data_endpoint(
        services, glance_data.commit_upload, "upload_image_data", upload_endpoint.__doc__
    )


def stage_endpoint(services: Services) -> Callable[[Request], Awaitable[Response]]:
    """Glance stage: the data is kept for a later ``import`` (204)."""
    return data_endpoint(
        services, glance_data.commit_stage, "stage_image_data", stage_endpoint.__doc__
    )


def import_image(services: Services, call: Call) -> Response:
    """Import staged data ``{"method": {"name": "glance-direct"}}``: 202, and the same job as an
    upload runs; every other method is 400."""
    glance_data.import_staged(services, call.project_id, call.path_params["image_id"], call.json())
    return Response(status_code=202)


def import_info(services: Services, call: Call) -> Response:
    """The Glance import methods offered (``glance-direct``)."""
    return JSONResponse(glance_data.import_info())


class _OpenFile:
    """An open file read in chunks once, closed at the end or when dropped unread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __iter__(self) -> Iterator[bytes]:
        try:
            while self.fd >= 0 and (chunk := os.read(self.fd, READ_CHUNK)):
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


def download_image_data(services: Services, call: Call) -> Response:
    """The active image's stored file, streamed (204 when the image has no data).

    The file is opened here, so a delete meanwhile does not cut it."""
    found = glance_data.stored_file(services, call.project_id, call.path_params["image_id"])
    if found is None:
        return Response(status_code=204)
    path, _ = found
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return Response(status_code=204)
    size = os.fstat(fd).st_size
    return _FileResponse(_OpenFile(fd), media_type=DATA_TYPE, headers={"Content-Length": str(size)})


class _FileResponse(StreamingResponse):
    """The stored file, streamed; a HEAD request gets the headers alone, without the file
    being read (Starlette answers HEAD on every GET route)."""

    def __init__(self, data: _OpenFile, *, media_type: str, headers: dict[str, str]) -> None:
        super().__init__(data, media_type=media_type, headers=headers)
        self._data = data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method", "").upper() != "HEAD":
            await super().__call__(scope, receive, send)
            return
        self._data.close()
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def image_schema(services: Services, call: Call) -> Response:
    """Glance's schema of an image."""
    return JSONResponse(glance_schema.image_schema())


def images_schema(services: Services, call: Call) -> Response:
    """Glance's schema of an image list."""
    return JSONResponse(glance_schema.images_schema())


def _wrong_length(size: int, declared: int | None) -> RequestInvalid:
    """400 for a body that is not the declared length; one longer is stopped as soon as it
    passes it (nothing more is read), so its whole size is not known."""
    if declared is not None and size > declared:
        said = f"the body is longer than the {declared} bytes"
    else:
        said = f"the body is {size} bytes, not the {declared}"
    return RequestInvalid(codes.BAD_REQUEST, f"{said} its Content-Length declared")


async def versions(request: Request) -> Response:
    """Glance version discovery: 300 at ``/``, 200 at ``/versions``; unauthenticated, as Glance."""
    status = 200 if request.url.path.rstrip("/").endswith("/versions") else 300
    return JSONResponse(glance_schema.versions_document(str(request.base_url)), status_code=status)
