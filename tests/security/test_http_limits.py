"""Issue 9, finding 3: a client that never authenticates cannot exhaust the server's memory or
hold connections for ever, on either listener (a real ``imageport serve`` process).

Before the fix: four ``GET /health`` carrying a 256 MiB header line grew the server from 286 MiB
to 1.45 GiB, a 1 MiB header was answered 200, a head sent a byte at a time or a body that
stopped half-way kept its connection open for ever, and connections were not counted; eight
connections that each pipelined 4 MiB of ``GET /health`` and read no answer took the server from
66 MiB to 2.4 GiB.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.e2e_clients import s3_client
from support.server_process import ServeProcess, serve_process

KiB = 1024
MiB = 1024 * KiB
TIMEOUT = 2  # seconds: head and body timeouts of the servers below
SHORT_TIMEOUTS = {
    "IMAGEPORT_HTTP_HEAD_TIMEOUT_SECONDS": str(TIMEOUT),
    "IMAGEPORT_HTTP_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
}
STATUS = re.compile(rb"^HTTP/1\.1 (\d{3}) ")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(
        tmp_path_factory.mktemp("limits"), tenants=("alpha",), env=SHORT_TIMEOUTS
    ) as started:
        yield started


# -- helpers --------------------------------------------------------------------------------------


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def connect(url: str, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(address(url))
    return sock


def read_answer(sock: socket.socket, seconds: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (or ``seconds`` pass; or it
    resets the connection: what came before)."""
    sock.settimeout(seconds)
    data = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            piece = sock.recv(64 * KiB)
            if not piece:
                break
            data += piece
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def status_of(answer: bytes) -> int | None:
    match = STATUS.match(answer)
    return int(match.group(1)) if match else None


def vm_kib(server: ServeProcess, field: str) -> int:
    """``VmHWM`` (peak resident memory) or ``VmRSS`` of the server process, in KiB."""
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


def metric(server: ServeProcess, name: str, **labels: str) -> float:
    """One sample of the server's /metrics (0 when it has none yet)."""
    text = httpx.get(f"{server.ims_url}/metrics", timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == f"{name}{{{wanted}}}":
            return float(value)
    return 0.0


@dataclass
class Streamed:
    sent: int
    status: int | None
    seconds: float


def stream_header(url: str, size: int, piece: int = 256 * KiB) -> Streamed:
    """``GET /health`` with one header line of ``size`` bytes, streamed as fast as the server
    takes it; how much got sent and the status the server answered."""
    started = time.monotonic()
    sock = connect(url)
    sent = 0
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        filler = b"a" * piece
        while sent < size:
            sock.sendall(filler)
            sent += piece
        sock.sendall(b"\r\n\r\n")
    except OSError:  # the server closed the connection (reset or broken pipe)
        pass
    answer = read_answer(sock)
    sock.close()
    return Streamed(sent, status_of(answer), time.monotonic() - started)


def refused_at_once(sock: socket.socket) -> bool:
    """Whether the server answered this new connection 503 or closed it without a request."""
    answer = read_answer(sock, seconds=1.0)
    return answer == b"" or status_of(answer) == 503


def still_open(sock: socket.socket) -> bool:
    sock.settimeout(0.3)
    try:
        return sock.recv(1) != b""
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False


# -- head size ------------------------------------------------------------------------------------


def test_huge_header_lines_are_cut_off_and_server_memory_stays_flat(server: ServeProcess) -> None:
    for _ in range(3):
        assert httpx.get(f"{server.ims_url}/health", timeout=10).status_code == 200
    baseline = vm_kib(server, "VmHWM")
    size = 64 * MiB
    results: list[Streamed] = []
    threads = [
        threading.Thread(target=lambda: results.append(stream_header(server.ims_url, size)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    grown = vm_kib(server, "VmHWM") - baseline
    assert len(results) == 4
    for result in results:
        # the server stopped reading after the cap: the rest never left the client's buffers
        assert result.sent < size // 4, result
        assert result.status in (431, None), result
    assert any(result.status == 431 for result in results), results
    assert grown < 16 * KiB, f"the server's peak memory grew by {grown} KiB"
    assert httpx.get(f"{server.ims_url}/health", timeout=10).status_code == 200


@pytest.mark.parametrize("listener", ["ims", "s3"])
def test_one_mib_header_is_refused_431(server: ServeProcess, listener: str) -> None:
    url = server.ims_url if listener == "ims" else server.s3_url
    assert stream_header(url, 1 * MiB, piece=16 * KiB).status == 431


def send_and_read(url: str, head: bytes) -> bytes:
    sock = connect(url)
    try:
        sock.sendall(head)
    except OSError:
        pass
    answer = read_answer(sock)
    sock.close()
    return answer


def test_request_target_over_the_cap_is_refused_414(server: ServeProcess) -> None:
    target = b"/bucket/key?" + b"q" * (40 * KiB)
    answer = send_and_read(server.s3_url, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(answer) == 414
    assert b"<Code>InvalidURI</Code>" in answer
    assert b"connection: close" in answer


def test_too_many_header_lines_are_refused_431(server: ServeProcess) -> None:
    lines = b"".join(b"X-H%d: 1\r\n" % n for n in range(101))
    answer = send_and_read(server.ims_url, b"GET /health HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    assert status_of(answer) == 431
    assert b'"error_code": "IMG.HTTP431"' in answer


def test_largest_legitimate_request_still_fits(server: ServeProcess) -> None:
    """A 16 KiB query (what the signature checks accept, presigned URLs fit in it) and an 8 KiB
    header value (the longest a signature covers) pass the HTTP layer."""
    answer = httpx.get(
        f"{server.ims_url}/health?q={'a' * (16 * KiB - 2)}",
        headers={"X-Long": "b" * (8 * KiB)},
        timeout=10,
    )
    assert answer.status_code == 200


# -- timeouts -------------------------------------------------------------------------------------


def test_head_sent_a_byte_at_a_time_is_closed_after_the_head_timeout(server: ServeProcess) -> None:
    sock = connect(server.ims_url)
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    with contextlib.suppress(OSError):
        # a byte every 0.5 s, until the server answers
        while time.monotonic() - started < TIMEOUT * 4:
            if select.select([sock], [], [], 0.5)[0]:
                break
            sock.sendall(b"a")
    answer = read_answer(sock, seconds=TIMEOUT * 2)
    assert status_of(answer) == 408, answer
    assert TIMEOUT * 0.9 < time.monotonic() - started < TIMEOUT * 3
    sock.close()


def test_connection_that_sends_nothing_is_closed_after_the_head_timeout(
    server: ServeProcess,
) -> None:
    sock = connect(server.s3_url)
    started = time.monotonic()
    assert read_answer(sock, seconds=TIMEOUT * 4) == b""
    assert TIMEOUT * 0.9 < time.monotonic() - started < TIMEOUT * 3
    sock.close()


@pytest.mark.parametrize("trickle", [False, True])
def test_stalled_or_trickled_json_body_is_closed_after_the_body_timeout(
    server: ServeProcess, trickle: bool
) -> None:
    """The image API reads a JSON body before it checks its signature: a body that stops
    arriving, or comes a byte at a time, must not keep the connection (and its buffer)."""
    sock = connect(server.ims_url)
    started = time.monotonic()
    sock.sendall(
        b"POST /v2/cloudimages/action HTTP/1.1\r\nHost: x\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"name": '
    )
    with contextlib.suppress(OSError):
        # a byte every 0.25 s, until the server answers
        while trickle and time.monotonic() - started < TIMEOUT * 4:
            if select.select([sock], [], [], 0.25)[0]:
                break
            sock.sendall(b" ")
    answer = read_answer(sock, seconds=TIMEOUT * 4)
    assert status_of(answer) == 408, answer
    assert TIMEOUT * 0.9 < time.monotonic() - started < TIMEOUT * 3
    sock.close()


def test_stalled_object_upload_is_closed_after_the_body_timeout(server: ServeProcess) -> None:
    s3 = s3_client(server, server.keys["alpha"])
    s3.create_bucket(Bucket="stall")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "stall", "Key": "k"})
    target = url.removeprefix(server.s3_url).encode()
    sock = connect(server.s3_url)
    started = time.monotonic()
    sock.sendall(
        b"PUT "
        + target
        + b" HTTP/1.1\r\nHost: "
        + server.s3_url[7:].encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % MiB
        + b"x" * (64 * KiB)
    )
    answer = read_answer(sock, seconds=TIMEOUT * 4)
    assert status_of(answer) == 408, answer
    assert b"<Code>RequestTimeout</Code>" in answer
    assert TIMEOUT * 0.9 < time.monotonic() - started < TIMEOUT * 3
    sock.close()
    assert "Contents" not in s3.list_objects_v2(Bucket="stall")


def test_client_that_reads_nothing_of_a_download_is_cut_off(server: ServeProcess) -> None:
    s3 = s3_client(server, server.keys["alpha"])
    s3.create_bucket(Bucket="slow-reader")
    s3.put_object(Bucket="slow-reader", Key="big", Body=b"z" * (64 * MiB))  # Expect: 100-continue
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "slow-reader", "Key": "big"})
    before = metric(server, "imageport_http_refused_total", api="s3", reason="send_timeout")
    sock = connect(server.s3_url)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
    sock.sendall(
        b"GET "
        + url.removeprefix(server.s3_url).encode()
        + b" HTTP/1.1\r\nHost: "
        + server.s3_url[7:].encode()
        + b"\r\n\r\n"
    )
    deadline = time.monotonic() + TIMEOUT * 4
    while time.monotonic() < deadline:
        time.sleep(0.25)
        after = metric(server, "imageport_http_refused_total", api="s3", reason="send_timeout")
        if after > before:
            break
    assert after == before + 1
    sock.close()


# -- connection caps ------------------------------------------------------------------------------


def test_connections_beyond_the_caps_are_refused_and_service_recovers(tmp_path: Path) -> None:
    env = {"IMAGEPORT_HTTP_MAX_CONNECTIONS": "6", "IMAGEPORT_HTTP_MAX_CONNECTIONS_PER_CLIENT": "4"}
    with serve_process(tmp_path, tenants=("alpha",), env=env) as server:
        held = [connect(server.s3_url) for _ in range(4)]
        extra = connect(server.s3_url)  # a 5th from 127.0.0.1
        assert refused_at_once(extra)
        held += [connect(server.s3_url, "127.0.0.2") for _ in range(2)]  # 6 in all
        beyond = connect(server.s3_url, "127.0.0.3")
        assert refused_at_once(beyond)
        assert all(still_open(sock) for sock in held)
        # each listener counts its own connections: the image API still answers
        assert httpx.get(f"{server.ims_url}/health", timeout=10).status_code == 200
        assert (
            metric(server, "imageport_http_refused_total", api="s3", reason="connection_limit") == 2
        )
        assert metric(server, "imageport_http_open_connections", api="s3") == 6
        for sock in [*held, extra, beyond]:
            sock.close()
        deadline = time.monotonic() + 5
        while metric(server, "imageport_http_open_connections", api="s3") > 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        s3 = s3_client(server, server.keys["alpha"])
        s3.create_bucket(Bucket="after")
        s3.put_object(Bucket="after", Key="k", Body=b"fine")
        assert s3.get_object(Bucket="after", Key="k")["Body"].read() == b"fine"


# -- pipelining -----------------------------------------------------------------------------------

PIPELINED = {
    "ims": b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",  # 200
    "s3": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}  # anonymous ListBuckets: 403


def pipeline_unread(url: str, request: bytes, size: int, seconds: float) -> socket.socket:
    """A connection that sends ``size`` bytes of ``request`` pipelined (for at most
    ``seconds``) and reads nothing back, with a small receive window so that the answers back
    up at the server; left open."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * KiB)
    sock.settimeout(seconds)
    sock.connect(address(url))
    with contextlib.suppress(OSError):  # the server stopped reading (timeout) or cut it off
        sock.sendall(request * (size // len(request)))
    return sock


def pipelined_answers(url: str, request: bytes, count: int) -> list[int]:
    """The statuses of ``count`` copies of ``request`` pipelined on one connection (read
    back as they come)."""
    sock = connect(url)
    sock.sendall(request * count)
    data = b""
    with contextlib.suppress(TimeoutError):
        while data.count(b"HTTP/1.1 ") < count:
            piece = sock.recv(64 * KiB)
            if not piece:
                break
            data += piece
    sock.close()
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


@pytest.mark.parametrize("api", ["ims", "s3"])
def test_pipelined_requests_left_unread_do_not_grow_server_memory(tmp_path: Path, api: str) -> None:
    """Four connections each pipeline 2 MiB of tiny requests and read no answer. Before the
    fix uvicorn parsed everything it received and queued a request object (~2 KB) for each
    ~32 bytes: the server's peak grew by 365 MiB (image API) and 321 MiB (bucket API) here,
    now by about 1 MiB."""
    with serve_process(tmp_path, tenants=()) as server:
        url = server.ims_url if api == "ims" else server.s3_url
        request = PIPELINED[api]
        expected = 200 if api == "ims" else 403
        # legitimate pipelining: every request answered (and the server warmed up)
        assert pipelined_answers(url, request, 200) == [expected] * 200
        baseline = vm_kib(server, "VmHWM")
        socks: list[socket.socket] = []
        threads = [
            threading.Thread(
                target=lambda: socks.append(pipeline_unread(url, request, 2 * MiB, seconds=10))
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        time.sleep(3)  # the server parses what it read
        grown = vm_kib(server, "VmHWM") - baseline
        for sock in socks:
            sock.close()
        assert len(socks) == 4
        assert grown < 16 * KiB, f"the server's peak memory grew by {grown} KiB"
        assert pipelined_answers(url, request, 3) == [expected] * 3


def test_a_client_gone_mid_body_is_no_server_error(server: ServeProcess) -> None:
    """A client that leaves in the middle of a JSON body used to end in a 500 and an error
    traceback in the log (one per connection, for anyone to cause)."""
    before = [line for line in server.log_lines() if line.get("level") == "error"]
    sock = connect(server.ims_url)
    sock.sendall(
        b"POST /v2/cloudimages/action HTTP/1.1\r\nHost: x\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"name": '
    )
    time.sleep(0.2)
    sock.close()
    time.sleep(0.5)
    errors = [line for line in server.log_lines() if line.get("level") == "error"]
    assert errors == before, errors[len(before) :]
    assert httpx.get(f"{server.ims_url}/health", timeout=10).status_code == 200
