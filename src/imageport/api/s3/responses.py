"""Responses of the bucket API: S3 error documents, XML replies, object headers and bodies.

Every response carries ``Content-Length`` (none on 204) and ``x-amz-request-id``; ETags are
quoted; ``Last-Modified`` is RFC 1123. Object bodies are sent from the open file in
:data:`SEND_CHUNK` slices read in a worker thread, so a download never sits in memory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from email.utils import format_datetime
from typing import BinaryIO

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from imageport.api.s3.ranges import RangeNotSatisfiable
from imageport.api.s3.xml import Child, render
from imageport.limits import MiB
from imageport.service.buckets.checks import storage_class_name
from imageport.service.clock import new_id, parse_time_text
from imageport.service.errors import ServiceError
from imageport.service.ports import ObjectInfo

SEND_CHUNK = 1 * MiB
XML_TYPE = "application/xml"
SANDBOX_POLICY = "sandbox; default-src 'none'"
"""The ``Content-Security-Policy`` of every answer: an object is whatever its uploader stored
(an HTML page, under any content type a presigned URL asks for), and the bucket API is the same
site as the web console (the same host on another port; cookies ignore ports). Sandboxed, such
a page runs no script, has an opaque origin (no cookies to read or set) and loads nothing."""


def request_id(request: Request) -> str:
    """The middleware's request id, or a fresh one when the app runs without it."""
    found = getattr(request.state, "request_id", "")
    if not found:
        found = new_id()[:16].upper()
        request.state.request_id = found
    return str(found)


def base_headers(request: Request) -> dict[str, str]:
    return {"x-amz-request-id": request_id(request)}


def xml_response(
    request: Request,
    root: str,
    items: Sequence[Child],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    out = base_headers(request)
    out.update(headers or {})
    return Response(render(root, items), status_code=status, headers=out, media_type=XML_TYPE)


def empty_response(
    request: Request, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    out = base_headers(request)
    out.update(headers or {})
    return Response(b"", status_code=status, headers=out)


def error_response(request: Request, error: ServiceError, resource: str) -> Response:
    """``<Error><Code/><Message/><Resource/><RequestId/></Error>`` with the error's status
    (headers only for HEAD, which has no body)."""
    rid = request_id(request)
    headers = {"x-amz-request-id": rid}
    if isinstance(error, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{error.size}"
    if request.method == "HEAD":
        return Response(b"", status_code=error.status, headers=headers)
    items: list[Child] = [("Code", error.code), ("Message", error.message)]
    header = getattr(error, "header", None)
    if isinstance(header, str):  # NotImplemented names the header, as S3's does
        items.append(("Header", header))
    body = render("Error", [*items, ("Resource", resource), ("RequestId", rid)], namespace=False)
    return Response(body, status_code=error.status, headers=headers, media_type=XML_TYPE)


def http_date(time_text: str) -> str:
    """RFC 1123 (``Wed, 06 Nov 2024 06:21:08 GMT``) from the database's time text."""
    return format_datetime(parse_time_text(time_text), usegmt=True)


#: what a browser may make of an object it opens: only its declared type (no sniffing); the
#: bucket API's handler sandboxes every answer besides (:data:`SANDBOX_POLICY`).
STORED_CONTENT_HEADERS = {"X-Content-Type-Options": "nosniff"}


def object_headers(info: ObjectInfo, dialect: str) -> dict[str, str]:
    """ETag, Last-Modified, Content-Type, storage class and user metadata of an object, and
    :data:`STORED_CONTENT_HEADERS`."""
    prefix = "x-obs-" if dialect == "obs" else "x-amz-"
    headers = {
        **STORED_CONTENT_HEADERS,
        "ETag": info.etag,
        "Last-Modified": http_date(info.created_at),
        "Content-Type": info.content_type or "binary/octet-stream",
        "Accept-Ranges": "bytes",
        f"{prefix}storage-class": storage_class_name(info.storage_class, dialect),
        "x-imageport-sha256": info.sha256,
    }
    for name, value in info.metadata.items():
        headers[f"{prefix}meta-{name}"] = value
    return headers


class FileSliceResponse(Response):
    """``length`` bytes of ``file`` from ``start``, streamed; the file is closed afterwards."""

    def __init__(
        self,
        file: BinaryIO,
        start: int,
        length: int,
        *,
        status_code: int,
        headers: Mapping[str, str],
        send_body: bool,
    ) -> None:
        super().__init__(
            b"", status_code=status_code, headers={**headers, "Content-Length": str(length)}
        )
        self._file = file
        self._start = start
        self._length = length
        self._send_body = send_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if not self._send_body or self._length == 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            fd = self._file.fileno()
            offset, end = self._start, self._start + self._length
            while offset < end:
                chunk = await anyio.to_thread.run_sync(
                    os.pread, fd, min(SEND_CHUNK, end - offset), offset
                )
                if not chunk:
                    raise OSError("object file shorter than its record")
                offset += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": offset < end})
        finally:
            self._file.close()
