"""A small client of the image API (vendor IMS-compatible), signed with SDK-HMAC-SHA256.

Only what the CLI needs: register an image from a bucket object (normal path, fast import, or
the uninitialized Glance path), list (filtered and sorted), show, update, tag, copy, boot-test
and delete images, share them with other projects (and answer a share), read and cancel jobs,
and find a server and its serial console's URL. Replies are JSON; error replies are decoded from
either the vendor's ``{"error": {"code", "message"}}`` or the SDK's ``{"error_code",
"error_msg"}`` shape.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Self
from urllib.parse import quote

from imageport.client.errors import ClientError
from imageport.client.signing import Credentials, sdk_hmac_headers
from imageport.client.transport import Signer, Timeouts, Transport

JSON_TYPE = "application/json;charset=utf-8"
PAGE = 100
"""Images asked for per page when listing."""
NONCE_HEADER = "X-Imageport-Nonce"
"""A random value signed with every request (the signer signs every header), so that the same
command run twice within one second (the signature date's resolution) sends two different
signatures: the service refuses a signed write whose signature it has seen (a replay). The
service reads nothing else from it."""


def ims_error(status: int, body: bytes, request_id: str) -> ClientError:
    """The server's JSON error body as a ClientError."""
    code, message = "", ""
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        doc = {}
    if isinstance(doc, dict):
        inner = doc.get("error")
        if isinstance(inner, dict):
            code, message = str(inner.get("code") or ""), str(inner.get("message") or "")
        code = code or str(doc.get("error_code") or doc.get("errorCode") or "")
        message = message or str(doc.get("error_msg") or doc.get("errorMsg") or "")
    return ClientError(
        message or f"the image API answered {status}",
        status=status,
        code=code,
        request_id=request_id,
    )


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ClientError(f"the image API's reply to {what} is not JSON") from exc
    if not isinstance(doc, dict):
        raise ClientError(f"the image API's reply to {what} is not a JSON object")
    return doc


def _query(params: Mapping[str, str | int] | Sequence[tuple[str, str | int]]) -> str:
    pairs = params.items() if isinstance(params, Mapping) else params
    items = [f"{quote(k, safe='~')}={quote(str(v), safe='~')}" for k, v in pairs]
    return "?" + "&".join(items) if items else ""


class ImsClient:
    """Calls to one image API endpoint for ``credentials`` (project id required)."""

    def __init__(
        self, endpoint: str, credentials: Credentials, *, timeouts: Timeouts | None = None
    ) -> None:
        if not credentials.project_id:
            raise ClientError("the image API needs a project id")
        self.credentials = credentials
        self.transport = Transport(endpoint, ims_error, timeouts=timeouts, pool=2)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        doc: object = None,
        *,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body = b"" if doc is None else json.dumps(doc).encode()
        ctype = JSON_TYPE if doc is not None else "application/json"

        def sign(m: str, url: str, headers: dict[str, str]) -> dict[str, str]:
            return sdk_hmac_headers(m, url, headers, body, self.credentials)

        signer: Signer = sign
        reply = self.transport.send(
            method,
            path,
            signer,
            headers={"Content-Type": ctype, NONCE_HEADER: uuid.uuid4().hex, **(headers or {})},
            body=body,
            ok=ok,
        )
        if not reply.body.strip():
            return {}
        return _object(reply.body, f"{method} {path}")

    # registration
    def create_image(self, body: Mapping[str, object]) -> str:
        """``POST /v2/cloudimages/action``: the job id."""
        return _job_id(self._call("POST", "/v2/cloudimages/action", dict(body)))

    def create_data_image(self, body: Mapping[str, object]) -> str:
        """``POST /v1/cloudimages/dataimages/action`` (a data image from a file): the job id."""
        return _job_id(self._call("POST", "/v1/cloudimages/dataimages/action", dict(body)))

    def quick_import(self, body: Mapping[str, object]) -> str:
        """``POST /v2/cloudimages/quickimport/action`` (fast import of RAW + bitmap or ZVHD2):
        the job id."""
        return _job_id(self._call("POST", "/v2/cloudimages/quickimport/action", dict(body)))

    def create_glance_image(self, body: Mapping[str, object]) -> dict[str, Any]:
        """``POST /v2/images`` (queued, no data yet): the image object."""
        return self._call("POST", "/v2/images", dict(body))

    def upload_image(self, image_id: str, image_url: str, boot_test: bool | None = None) -> str:
        """``PUT /v1/cloudimages/{id}/upload`` from ``bucket:key`` (``boot_test``: ours, end
        the import with a boot test; None: as the server's default): the job id."""
        path = f"/v1/cloudimages/{quote(image_id, safe='')}/upload"
        body: dict[str, object] = {"image_url": image_url}
        if boot_test is not None:
            body["boot_test"] = boot_test
        return _job_id(self._call("PUT", path, body))

    def export_image(
        self, image_id: str, bucket_url: str, file_format: str | None, quick: bool = False
    ) -> str:
        """``POST /v1/cloudimages/{id}/file`` to ``bucket:key`` (``file_format`` None: a quick
        export's stored format): the job id."""
        body: dict[str, object] = {"bucket_url": bucket_url, "is_quick_export": quick}
        if file_format is not None:
            body["file_format"] = file_format
        return _job_id(self._call("POST", f"/v1/cloudimages/{quote(image_id, safe='')}/file", body))

    def boot_test_image(self, image_id: str, body: Mapping[str, object]) -> str:
        """``POST /v1/cloudimages/{id}/boot-test`` (ours; ``{"firmware"?, "timeout"?}``): the
        job id."""
        path = f"/v1/cloudimages/{quote(image_id, safe='')}/boot-test"
        return _job_id(self._call("POST", path, dict(body)))

    def boot_screenshot(self, image_id: str, firmware: str) -> bytes:
        """The PNG of the image's last boot under ``firmware`` (ours); ClientError 404
        ``IMG.NO_REPORT`` when none has run."""
        path = f"/v1/cloudimages/{quote(image_id, safe='')}/boot-test/screenshot" + _query(
            {"firmware": firmware}
        )

        def sign(m: str, url: str, headers: dict[str, str]) -> dict[str, str]:
            return sdk_hmac_headers(m, url, headers, b"", self.credentials)

        reply = self.transport.send("GET", path, sign, headers={}, body=b"", ok=(200,))
        if not reply.body.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ClientError("the screenshot the image API sent is not a PNG")
        return reply.body

    # images
    def list_images(
        self, filters: Sequence[tuple[str, str]] = (), **paging: str
    ) -> Iterator[dict[str, Any]]:
        """Every private image (``GET /v2/cloudimages``, page by page with ``marker``) that
        matches every one of ``filters`` (the vendor's query parameters, e.g. ``("status",
        "active")``; a name may repeat, as ``tag``), in the order of ``paging``'s ``sort_key``
        and ``sort_dir``; ``paging`` may replace ``__imagetype`` (``shared``: the images other
        projects share with this one)."""
        params: dict[str, str | int] = {"__imagetype": "private", "limit": PAGE, **paging}
        seen: set[str] = set()
        while True:
            doc = self._call("GET", "/v2/cloudimages" + _query([*params.items(), *filters]))
            images = doc.get("images")
            if not isinstance(images, list):
                raise ClientError("the image list reply has no 'images' list")
            fresh = [i for i in images if isinstance(i, dict) and i.get("id") not in seen]
            yield from fresh
            seen.update(str(i.get("id")) for i in fresh)
            if len(images) < int(params["limit"]) or not fresh:
                return
            params["marker"] = str(fresh[-1].get("id"))

    def show_image(self, image_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v2/images/{quote(image_id, safe='')}")

    def delete_image(self, image_id: str) -> None:
        self._call("DELETE", f"/v2/images/{quote(image_id, safe='')}")

    def update_image(self, image_id: str, ops: Sequence[Mapping[str, object]]) -> dict[str, Any]:
        """``PATCH /v2/cloudimages/{id}`` with the JSON-patch ``ops``: the updated image."""
        path = f"/v2/cloudimages/{quote(image_id, safe='')}"
        return self._call("PATCH", path, [dict(op) for op in ops])

    def copy_image(self, image_id: str, body: Mapping[str, object]) -> str:
        """``POST /v1/cloudimages/{id}/copy`` (a copy in the region, ``{"name", ...}``): the
        job id."""
        path = f"/v1/cloudimages/{quote(image_id, safe='')}/copy"
        return _job_id(self._call("POST", path, dict(body)))

    # tags
    def _tags_path(self, image_id: str) -> str:
        project = quote(self.credentials.project_id, safe="")
        return f"/v2/{project}/images/{quote(image_id, safe='')}/tags"

    def add_tags(self, image_id: str, tags: Sequence[tuple[str, str]]) -> None:
        """``POST /v2/{project_id}/images/{id}/tags/action`` ``create``: add the tags, or
        replace their keys' (all or none)."""
        doc = {"action": "create", "tags": [{"key": k, "value": v} for k, v in tags]}
        self._call("POST", f"{self._tags_path(image_id)}/action", doc)

    def delete_tag(self, image_id: str, key: str) -> None:
        """``DELETE /v2/{project_id}/images/{id}/tags/{key}``."""
        self._call("DELETE", f"{self._tags_path(image_id)}/{quote(key, safe='')}")

    def list_tags(self, image_id: str) -> list[dict[str, Any]]:
        """``GET /v2/{project_id}/images/{id}/tags``: ``[{"key", "value"}]``."""
        tags = self._call("GET", self._tags_path(image_id)).get("tags")
        if not isinstance(tags, list):
            raise ClientError("the tag list reply has no 'tags' list")
        return [t for t in tags if isinstance(t, dict)]

    # sharing
    def add_members(self, images: list[str], projects: list[str]) -> str:
        """``POST /v1/cloudimages/members``: share every image with every project; the job id
        (of a job that has already ended)."""
        body = {"images": images, "projects": projects}
        return _job_id(self._call("POST", "/v1/cloudimages/members", body))

    def answer_share(self, images: list[str], status: str) -> str:
        """``PUT /v1/cloudimages/members``: this project accepts or rejects the images shared
        with it (``status`` ``accepted`` or ``rejected``); the job id."""
        body = {"images": images, "project_id": self.credentials.project_id, "status": status}
        return _job_id(self._call("PUT", "/v1/cloudimages/members", body))

    def delete_members(self, images: list[str], projects: list[str]) -> str:
        """``DELETE /v1/cloudimages/members``: stop sharing the images with the projects; the
        job id."""
        body = {"images": images, "projects": projects}
        return _job_id(self._call("DELETE", "/v1/cloudimages/members", body))

    def list_members(self, image_id: str) -> list[dict[str, Any]]:
        """``GET /v2/images/{id}/members``: the image's members (for a member: itself)."""
        doc = self._call("GET", f"/v2/images/{quote(image_id, safe='')}/members")
        found = doc.get("members")
        if not isinstance(found, list):
            raise ClientError("the member list reply has no 'members' list")
        return [m for m in found if isinstance(m, dict)]

    # jobs
    def show_job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/{project_id}/jobs/{job_id}``."""
        project = quote(self.credentials.project_id, safe="")
        return self._call("GET", f"/v1/{project}/jobs/{quote(job_id, safe='')}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/cloudimages/job/{job_id}/cancel`` (ours): the job as it is now."""
        return self._call("POST", f"/v1/cloudimages/job/{quote(job_id, safe='')}/cancel")

    def job_progress(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/cloudimages/job/{job_id}`` (status plus phase and percent)."""
        return self._call("GET", f"/v1/cloudimages/job/{quote(job_id, safe='')}")

    def image_report(self, image_id: str) -> dict[str, Any]:
        """The check report the image keeps (``imageport.check/1``); ClientError 404
        ``IMG.NO_REPORT`` before its file has been checked."""
        return self._call("GET", f"/v1/cloudimages/{quote(image_id, safe='')}/report")

    def check_object(self, body: Mapping[str, object]) -> dict[str, Any]:
        """``POST /v1/cloudimages/check``: the check report of an object in a bucket
        (``{"image_url": "bucket:key", ...}``), nothing stored."""
        return self._call("POST", "/v1/cloudimages/check", dict(body))

    def job_report(self, job_id: str) -> dict[str, Any]:
        """The check report of the image the job made (``imageport.check/1``)."""
        return self._call("GET", f"/v1/cloudimages/job/{quote(job_id, safe='')}/report")

    # servers (the server API answers on the same endpoint)
    def _servers_path(self) -> str:
        return f"/v1/{quote(self.credentials.project_id, safe='')}/cloudservers"

    def servers_named(self, name: str) -> list[dict[str, Any]]:
        """``GET /v1/{project_id}/cloudservers/detail?name=NAME``: the servers whose name is
        exactly ``name`` (the vendor's filter may match more loosely)."""
        doc = self._call("GET", f"{self._servers_path()}/detail" + _query({"name": name}))
        found = doc.get("servers")
        if not isinstance(found, list):
            raise ClientError("the server list reply has no 'servers' list")
        return [s for s in found if isinstance(s, dict) and s.get("name") == name]

    def serial_console_url(self, server_id: str) -> str:
        """``POST /v1/{project_id}/cloudservers/{id}/actions/serial-console``: the URL of the
        server's serial console WebSocket (for one connection, within 10 minutes)."""
        path = f"{self._servers_path()}/{quote(server_id, safe='')}/actions/serial-console"
        console = self._call("POST", path).get("serial_console")
        url = console.get("url") if isinstance(console, dict) else None
        if not isinstance(url, str) or not url:
            raise ClientError("the serial-console reply has no 'serial_console.url'")
        return url


def _job_id(doc: Mapping[str, Any]) -> str:
    job_id = doc.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ClientError("the image API did not return a job_id")
    return job_id
