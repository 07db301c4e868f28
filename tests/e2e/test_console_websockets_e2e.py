"""End-to-end: the console WebSockets on a real ``imageport serve`` process.

What only the real process shows: its image API listener takes WebSocket handshakes (the
bucket API's does not), a refused console answers the handshake with the API's JSON error and
a request id, and the process's log has the console as one access line with its token masked
and nowhere else (uvicorn's own lines, which carry the query, stay quiet). Opening a real
console needs a running server: the server tests do that with QEMU.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from imageport.service import codes
from support.server_process import ServeProcess, serve_process

FORGED_TOKEN = "Sup3rForgedTokenThatMustNotBeLogged0123456789"  # noqa: S105 - not a secret


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("console-e2e"), tenants=("alpha",)) as server:
        yield server


def _refused(url: str, origin: str | None = None) -> tuple[int, dict[str, str], str]:
    """Status, JSON body and request id of a refused handshake."""
    with pytest.raises(InvalidStatus) as refused:
        with connect(url, origin=Origin(origin) if origin else None, open_timeout=10):
            pass
    response = refused.value.response
    body = json.loads(response.body or b"{}")
    return response.status_code, body, response.headers.get("x-request-id", "")


def test_a_console_with_a_bad_token_is_refused_and_logged_masked(serve: ServeProcess) -> None:
    ws = "ws" + serve.ims_url.removeprefix("http")
    status, body, request_id = _refused(f"{ws}/vnc/websockify?token={FORGED_TOKEN}")
    assert (status, body["error_code"]) == (403, codes.ECS_FORBIDDEN)
    assert len(request_id) == 32
    status, body, _ = _refused(f"{ws}/serial/websocket?token={FORGED_TOKEN}", "http://evil.example")
    assert (status, body["error_code"]) == (403, codes.ECS_FORBIDDEN)
    assert "Origin" in body["error_msg"]
    # the listener still serves HTTP
    assert httpx.get(f"{serve.ims_url}/health", timeout=10).status_code == 200

    lines = [
        line
        for line in serve.log_lines()
        if line.get("logger") == "imageport.access" and line.get("websocket")
    ]
    assert [(line["path"], line["status"], line["query"]) for line in lines[:2]] == [
        ("/vnc/websockify", 403, "token=***"),
        ("/serial/websocket", 403, "token=***"),
    ]
    assert lines[0]["request_id"] == request_id
    assert FORGED_TOKEN not in serve.output()


def test_the_bucket_api_takes_no_websocket(serve: ServeProcess) -> None:
    ws = "ws" + serve.s3_url.removeprefix("http")
    with pytest.raises(InvalidStatus) as refused:
        with connect(f"{ws}/vnc/websockify?token=x", open_timeout=10):
            pass
    assert refused.value.response.status_code != 101
