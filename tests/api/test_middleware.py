"""The request-context middleware on a real uvicorn server, around stand-in apps: request ids
on every response, streaming bodies and ``Expect: 100-continue`` intact, metrics, log lines."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from imageport import logs, metrics
from imageport.api.middleware import RequestContext, masked_query
from imageport.logs import JsonFormatter
from support.server_process import running_app

HEX32 = re.compile(r"^[0-9a-f]{32}$")
first_chunk_seen = threading.Event()


async def echo(request: Request) -> Response:
    return JSONResponse({"request_id": request.state.request_id})


async def whoami(request: Request) -> Response:
    request.state.project_id = "0123456789abcdef0123456789abcdef"
    request.state.access_key = "AKTESTAKTESTAKTEST00"
    return PlainTextResponse("you")


async def upload(request: Request) -> Response:
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if chunk:
            first_chunk_seen.set()
    return JSONResponse({"bytes": total})


def handler_that_logs(_request: Request) -> Response:
    """A sync endpoint: Starlette runs it in its thread pool."""
    logging.getLogger("imageport.test.inside").warning("inside the handler")
    return PlainTextResponse("logged")


async def boom(_request: Request) -> Response:
    raise RuntimeError("kaput")


STAND_IN = Starlette(
    routes=[
        Route("/echo", echo),
        Route("/whoami", whoami),
        Route("/upload", upload, methods=["PUT"]),
        Route("/boom", boom),
        Route("/logs", handler_that_logs),
    ]
)


async def raw_boom(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("no response at all")


@pytest.fixture(scope="module")
def ims_url() -> Iterator[str]:
    with running_app(RequestContext(STAND_IN, api="ims")) as url:
        yield url


def test_every_response_has_a_request_id_and_the_app_sees_it(ims_url: str) -> None:
    ok = httpx.get(f"{ims_url}/echo")
    assert HEX32.match(ok.headers["x-request-id"])
    assert ok.json() == {"request_id": ok.headers["x-request-id"]}
    missing = httpx.get(f"{ims_url}/nowhere")
    assert missing.status_code == 404
    assert HEX32.match(missing.headers["x-request-id"])
    assert missing.headers["x-request-id"] != ok.headers["x-request-id"]


def test_a_sane_client_request_id_is_kept_and_an_odd_one_replaced(ims_url: str) -> None:
    kept = httpx.get(f"{ims_url}/echo", headers={"X-Request-Id": "client-Trace-42"})
    assert kept.headers["x-request-id"] == "client-Trace-42"
    assert kept.json()["request_id"] == "client-Trace-42"
    for odd in ("a" * 65, "has space", "semi;colon", "ünï"):
        answer = httpx.get(f"{ims_url}/echo", headers={b"X-Request-Id": odd.encode()})
        assert HEX32.match(answer.headers["x-request-id"]), odd
    # only one X-Request-Id header comes back, even when the app set its own
    assert len(kept.headers.get_list("x-request-id")) == 1


def test_server_errors_carry_the_request_id_and_no_traceback(ims_url: str) -> None:
    answer = httpx.get(f"{ims_url}/boom")
    assert answer.status_code == 500
    assert HEX32.match(answer.headers["x-request-id"])
    assert "kaput" not in answer.text and "Traceback" not in answer.text


@pytest.mark.parametrize(
    ("api", "content_type", "code"),
    [
        ("ims", "application/json", "IMG.0001"),
        ("s3", "application/xml", "<Code>InternalError</Code>"),
    ],
)
def test_an_app_that_fails_before_answering_gets_a_500_in_the_api_shape(
    api: str, content_type: str, code: str
) -> None:
    with running_app(RequestContext(raw_boom, api=api)) as url:
        answer = httpx.get(f"{url}/anything")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == content_type
    assert code in answer.text
    assert answer.headers["x-request-id"] in answer.text


def _raw_request(url: str, head: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(head.encode())
    return sock


def test_expect_100_continue_is_answered_and_bodies_stream_unbuffered(ims_url: str) -> None:
    size = 4 << 20
    first_chunk_seen.clear()
    sock = _raw_request(
        ims_url,
        f"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
        "Expect: 100-continue\r\n\r\n",
    )
    with sock:
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        sock.sendall(b"x" * 65536)
        # the app reads the first bytes while most of the body has not been sent yet
        assert first_chunk_seen.wait(10), "the middleware buffered the request body"
        sock.sendall(b"x" * (size - 65536))
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"x-request-id: " in head.lower()
    assert json.loads(body) == {"bytes": size}


def _requests(api: str, method: str, status: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "imageport_http_requests_total", {"api": api, "method": method, "status": status}
    )
    return value or 0.0


def test_requests_are_counted_by_api_method_and_status(ims_url: str) -> None:
    before_ok, before_missing = _requests("ims", "GET", "200"), _requests("ims", "GET", "404")
    latency_before = (
        metrics.REGISTRY.get_sample_value(
            "imageport_http_request_duration_seconds_count", {"api": "ims"}
        )
        or 0.0
    )
    httpx.get(f"{ims_url}/echo")
    httpx.get(f"{ims_url}/echo")
    httpx.get(f"{ims_url}/nowhere")
    assert _requests("ims", "GET", "200") == before_ok + 2
    assert _requests("ims", "GET", "404") == before_missing + 1
    assert (
        metrics.REGISTRY.get_sample_value(
            "imageport_http_request_duration_seconds_count", {"api": "ims"}
        )
        == latency_before + 3
    )
    # a made-up method does not create its own metric series
    httpx.request("BREW", f"{ims_url}/echo")
    assert _requests("ims", "BREW", "405") == 0
    assert _requests("ims", "OTHER", "405") >= 1


def test_one_json_log_line_per_request_with_project_and_no_secrets(
    ims_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imageport.access")
    answer = httpx.get(
        f"{ims_url}/whoami?X-Amz-Signature=deadbeef&X-Amz-Credential=AK%2F1&prefix=disk%2F"
    )
    rid = answer.headers["x-request-id"]
    records = [r for r in caplog.records if getattr(r, "request_id", None) == rid]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == rid
    assert line["api"] == "ims" and line["method"] == "GET" and line["path"] == "/whoami"
    assert line["status"] == 200 and line["level"] == "info"
    assert isinstance(line["duration_ms"], float)
    assert line["project"] == "0123456789abcdef0123456789abcdef"
    assert "deadbeef" not in json.dumps(line) and "AK%2F1" not in json.dumps(line)
    assert line["query"] == "X-Amz-Signature=***&X-Amz-Credential=***&prefix=disk/"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", str(line["ts"]))


def test_lines_logged_while_handling_a_request_carry_its_id(ims_url: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("imageport.test.inside")
    logger.addHandler(handler)
    try:
        answer = httpx.get(f"{ims_url}/logs")
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["msg"] == "inside the handler"
    assert line["request_id"] == answer.headers["x-request-id"]


def test_masked_query_hides_every_credential_form() -> None:
    shown = masked_query(
        b"Signature=s&AWSAccessKeyId=AK&x-obs-security-token=t&token=t2"
        b"&uploadId=U&partNumber=3&uploads"
    )
    assert shown == (
        "Signature=***&AWSAccessKeyId=***&x-obs-security-token=***&token=***"
        "&uploadId=U&partNumber=3&uploads"
    )


def test_job_log_lines_carry_the_job_id() -> None:
    record = logging.LogRecord(
        "imageport.jobs", logging.WARNING, __file__, 1, "job %s failed", ("j1",), None
    )
    record.job_id = "f" * 32
    record.unrelated = object()
    line = json.loads(JsonFormatter().format(record))
    assert line == {
        "ts": line["ts"],
        "level": "warning",
        "logger": "imageport.jobs",
        "msg": "job j1 failed",
        "job_id": "f" * 32,
    }
    plain = logging.LogRecord("imageport.check", logging.INFO, __file__, 1, "probing", (), None)
    with logs.bound(job_id="e" * 32):
        assert json.loads(JsonFormatter().format(plain))["job_id"] == "e" * 32
    assert "job_id" not in json.loads(JsonFormatter().format(plain))
