"""A small client of the server API (vendor ECS-compatible), signed like the image API's.

What ``imageport server`` needs: create servers, list and show them, start, stop, reboot and
delete them, read their console log, list flavors, and wait for the server jobs these return
(``GET /v1/{project_id}/jobs/{job_id}``, the ECS job shape). Paths and bodies are those the
vendor's ECS SDK sends; errors decode as the image API's do (``Ecs.xxxx`` codes).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from imageport.client.errors import ClientError
from imageport.client.ims import ImsClient, _query

#: Servers asked for per page when listing (the API's maximum is 1000).
PAGE = 100
#: Job statuses that end a job.
ENDED = ("SUCCESS", "FAIL")


class ServersClient(ImsClient):
    """Calls to the server API of one endpoint for ``credentials`` (project id required)."""

    def _servers(self, suffix: str = "") -> str:
        return f"/v1/{quote(self.credentials.project_id, safe='')}/cloudservers{suffix}"

    def create_servers(
        self, server: Mapping[str, object], *, client_token: str | None = None
    ) -> tuple[str, list[str]]:
        """``POST /v1/{project_id}/cloudservers``: the job id and the new servers' ids.
        ``client_token`` (``X-Client-Token``, the vendor's idempotency key; a fresh one by
        default): the same token sent again gets the same job, so a retry makes no second
        server, and two identical creates in one second are two requests, not a replay."""
        token = client_token or uuid.uuid4().hex
        doc = self._call(
            "POST", self._servers(), {"server": dict(server)}, headers={"X-Client-Token": token}
        )
        ids = doc.get("serverIds")
        job_id = doc.get("job_id")
        if not isinstance(job_id, str) or not isinstance(ids, list):
            raise ClientError("the server API did not return a job_id and serverIds")
        return job_id, [str(i) for i in ids]

    def list_servers(self, filters: Sequence[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        """Every server matching ``filters`` (``name``, ``status`` ...), page by page."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            query = _query([*filters, ("limit", PAGE), ("offset", page)])
            doc = self._call("GET", self._servers("/detail") + query)
            servers = doc.get("servers")
            batch = [s for s in servers if isinstance(s, dict)] if isinstance(servers, list) else []
            found += batch
            if len(batch) < PAGE:
                return found
            page += 1

    def show_server(self, server_id: str) -> dict[str, Any]:
        """``GET /v1/{project_id}/cloudservers/{id}``: the server (``ServerDetail``)."""
        doc = self._call("GET", self._servers(f"/{quote(server_id, safe='')}"))
        server = doc.get("server")
        if not isinstance(server, dict):
            raise ClientError("the server API's reply has no server")
        return server

    def server_action(self, action: str, server_ids: Sequence[str], kind: str | None) -> str:
        """``os-start``, ``os-stop`` or ``reboot`` (``kind`` SOFT/HARD) on servers: the job id."""
        option: dict[str, object] = {"servers": [{"id": s} for s in server_ids]}
        if kind is not None:
            option["type"] = kind
        return _job(self._call("POST", self._servers("/action"), {action: option}))

    def delete_servers(self, server_ids: Sequence[str]) -> str:
        """``POST /v1/{project_id}/cloudservers/delete``: the job id."""
        body = {"servers": [{"id": s} for s in server_ids], "delete_volume": True}
        return _job(self._call("POST", self._servers("/delete"), body))

    def console_output(self, server_id: str, length: int | None) -> str:
        """The last ``length`` lines of the server's serial console (-1: all that is kept)."""
        query = "" if length is None else _query([("length", length)])
        doc = self._call(
            "GET", self._servers(f"/{quote(server_id, safe='')}/console-output") + query
        )
        output = doc.get("output")
        return output if isinstance(output, str) else ""

    def list_flavors(self) -> list[dict[str, Any]]:
        """``GET /v1/{project_id}/cloudservers/flavors``."""
        flavors = self._call("GET", self._servers("/flavors")).get("flavors")
        return [f for f in flavors if isinstance(f, dict)] if isinstance(flavors, list) else []

    def wait_job(
        self,
        job_id: str,
        *,
        timeout: float,
        interval: float = 2.0,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until it ends; the last answer. :class:`ClientError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.show_job(job_id)
            if on_poll is not None:
                on_poll(job)
            if job.get("status") in ENDED:
                return job
            if time.monotonic() >= deadline:
                raise ClientError(f"job {job_id} did not end within {timeout:.0f} s")
            time.sleep(interval)


def _job(doc: Mapping[str, Any]) -> str:
    job_id = doc.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ClientError("the server API did not return a job_id")
    return job_id
