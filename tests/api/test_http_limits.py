"""The HTTP limits protocol (imageport.api.http_protocol) on a fake transport: what a client sees
on the wire for heads at and over the caps, pipelining, keep-alive, ``100-continue``, chunked
bodies, each timeout, and the connection caps."""

from __future__ import annotations

import asyncio
import json
import re
import resource
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from imageport.api import http_limits, http_protocol
from imageport.api.http_limits import HttpLimits, client_key
from imageport.api.http_protocol import LimitedHttpToolsProtocol, protocol_class
from imageport.settings import load_settings

KiB = 1024
LIMITS = HttpLimits(
    max_url_bytes=2 * KiB,
    max_header_bytes=4 * KiB,
    head_timeout=0.3,
    body_timeout=0.3,
    max_connections=8,
    max_connections_per_client=3,
    min_body_bytes=4,
)
RESPONSE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n((?:[^\r]+\r\n)*)\r\n")


async def counting_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body and answers its size (or ``pause`` seconds later, first; or
    ``listen`` seconds after the body, while waiting for a disconnect as starlette's streaming
    responses do: that ``receive()`` asks uvicorn to read on)."""
    size = 0
    query = scope.get("query_string", b"")
    if query.startswith(b"pause="):
        await asyncio.sleep(float(query[6:]))
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    listener = None
    if query.startswith(b"listen="):
        listener = asyncio.ensure_future(receive())
        await asyncio.sleep(float(query[7:]))
    body = str(size).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
    if listener is not None:
        await listener


class FakeTransport(asyncio.Transport):
    """Collects what the server writes; ``close()`` ends the connection at once unless
    ``stuck`` (a peer that reads nothing: the last bytes never leave)."""

    def __init__(self, protocol: LimitedHttpToolsProtocol, peer: str, stuck: bool) -> None:
        super().__init__()
        self.protocol = protocol
        self.peer = peer
        self.stuck = stuck
        self.written = bytearray()
        self.closing = False
        self.aborted = False
        self.reading = True
        self.lost = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": (self.peer, 50000), "sockname": ("127.0.0.1", 8081)}.get(name, default)

    def write(self, data: Any) -> None:
        assert not self.lost
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if not self.stuck:
                asyncio.get_running_loop().call_soon(self._lose)

    def abort(self) -> None:
        self.closing = self.aborted = True
        asyncio.get_running_loop().call_soon(self._lose)

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(None)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def responses(self) -> list[tuple[int, bytes]]:
        """(status, body) of each response written so far."""
        out = []
        data = bytes(self.written)
        while data:
            match = RESPONSE.match(data)
            assert match, data[:200]
            found = re.search(rb"content-length: (\d+)", match.group(2).lower())
            length = int(found.group(1)) if found else 0
            out.append((int(match.group(1)), data[match.end() : match.end() + length]))
            data = data[match.end() + length :]
        return out

    def statuses(self) -> list[int]:
        return [status for status, _ in self.responses()]


class Listener:
    """One listener's protocol class, serving :func:`counting_app` on fake connections."""

    def __init__(self, limits: HttpLimits = LIMITS, api: http_limits.Api = "s3") -> None:
        self.cls = protocol_class(limits, api)
        self.config = uvicorn.Config(
            counting_app,
            http=self.cls,
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
        )
        self.config.load()
        self.state = ServerState()

    def connect(self, peer: str = "192.0.2.1", *, stuck: bool = False) -> FakeTransport:
        protocol = self.cls(
            config=self.config,
            server_state=self.state,
            app_state={},
            _loop=asyncio.get_running_loop(),
        )
        transport = FakeTransport(protocol, peer, stuck)
        protocol.connection_made(transport)
        return transport


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def settle(seconds: float = 0.02) -> None:
    await asyncio.sleep(seconds)


async def send(transport: FakeTransport, data: bytes, piece: int | None = None) -> None:
    """Hand ``data`` to the server in pieces of ``piece`` bytes (all at once when None)."""
    step = piece or len(data) or 1
    for start in range(0, len(data), step):
        if transport.closing:
            return
        transport.protocol.data_received(data[start : start + step])
        await asyncio.sleep(0)
    await settle()


def get(path: str = "/", headers: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"


def header_of_size(total: int) -> bytes:
    """One ``X-Fill`` header line making a request head (apart from the URL ``/``) ``total``
    bytes long with :func:`get`."""
    fixed = len(get("/")) - 1  # "/" is the URL
    filler = total - fixed - len(b"X-Fill: \r\n")
    return b"X-Fill: " + b"f" * filler + b"\r\n"


# -- head size ------------------------------------------------------------------------------------


@pytest.mark.parametrize("piece", [None, 1, 17, 4096])
def test_head_at_the_cap_is_served_and_one_byte_more_is_refused_431(piece: int | None) -> None:
    async def scenario() -> None:
        listener = Listener()
        at_cap = listener.connect()
        await send(at_cap, get("/", header_of_size(LIMITS.max_header_bytes)), piece)
        assert at_cap.statuses() == [200]
        assert not at_cap.closing
        over = listener.connect()
        await send(over, get("/", header_of_size(LIMITS.max_header_bytes + 1)), piece)
        assert over.statuses() == [431]
        assert b"connection: close" in over.written
        assert over.closing

    run(scenario)


def test_endless_header_is_cut_off_after_the_cap() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        held_before = transport.protocol.parser
        await send(transport, b"GET / HTTP/1.1\r\nX-Big: ")
        fed = 0
        while not transport.closing:
            transport.protocol.data_received(b"a" * 1000)
            fed += 1000
            assert fed < 2 * LIMITS.max_header_bytes
        await settle()
        assert transport.statuses() == [431]
        assert held_before is not None

    run(scenario)


def test_url_over_the_cap_is_refused_414_and_at_the_cap_served() -> None:
    async def scenario() -> None:
        listener = Listener()
        fits = listener.connect()
        await send(fits, get("/" + "u" * (LIMITS.max_url_bytes - 1)), 100)
        assert fits.statuses() == [200]
        too_long = listener.connect()
        await send(too_long, get("/" + "u" * LIMITS.max_url_bytes), 100)
        assert too_long.statuses() == [414]
        assert b"<Code>InvalidURI</Code>" in too_long.responses()[0][1]

    run(scenario)


def test_long_url_does_not_eat_into_the_header_cap() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        await send(
            transport,
            get("/" + "u" * (LIMITS.max_url_bytes - 1), header_of_size(LIMITS.max_header_bytes)),
        )
        assert transport.statuses() == [200]

    run(scenario)


def test_too_many_header_lines_are_refused_431_in_the_image_api_shape() -> None:
    async def scenario() -> None:
        listener = Listener(api="ims")
        hundred = listener.connect()
        lines = b"".join(b"X-%d: 1\r\n" % n for n in range(99))  # and Host
        await send(hundred, get("/", lines))
        assert hundred.statuses() == [200]
        more = listener.connect()
        await send(more, get("/", lines + b"X-Last: 1\r\n"))
        [(status, body)] = more.responses()
        assert status == 431
        assert json.loads(body)["error_code"] == "IMG.HTTP431"

    run(scenario)


def test_malformed_request_is_answered_400_and_closed() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        await send(transport, b"GET / HTTP/1.1\nHost: x\n\n")
        assert transport.statuses() == [400]
        assert transport.closing

    run(scenario)


def test_upgrade_request_is_answered_as_plain_http_and_its_connection_ends() -> None:
    """uvicorn left such a connection open with a parser that reads nothing more."""

    async def scenario() -> None:
        transport = Listener().connect()
        await send(
            transport,
            get("/", b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
            + b"garbage that is not HTTP" * 1000,
        )
        assert transport.statuses() == [200]
        assert transport.closing

    run(scenario)


# -- keep-alive, pipelining, bodies ---------------------------------------------------------------


def test_pipelined_requests_are_each_answered_in_order_on_one_connection() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        await send(transport, get("/?pause=0.05") + post + get("/") + post)
        await settle(0.2)
        assert transport.responses() == [(200, b"0"), (200, b"5"), (200, b"0"), (200, b"5")]
        assert not transport.closing
        await send(transport, get("/"))  # keep-alive: the connection serves more
        assert transport.statuses() == [200] * 5

    run(scenario)


def test_each_pipelined_head_is_counted_on_its_own() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        near_cap = get("/", header_of_size(LIMITS.max_header_bytes))
        await send(transport, near_cap * 3, 1000)
        assert transport.statuses() == [200, 200, 200]

    run(scenario)


def test_oversized_head_pipelined_behind_a_request_is_refused_after_its_response() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        await send(transport, get("/?pause=0.05") + get("/", header_of_size(8 * KiB)))
        await settle(0.2)
        assert transport.statuses() == [200, 431]
        assert transport.closing

    run(scenario)


@pytest.mark.parametrize("first", ["/?pause=0.1", "/?listen=0.1"])
def test_one_request_at_most_waits_and_reading_stays_paused_until_its_turn(first: str) -> None:
    """uvicorn parsed all it received and queued every request (~2 KB each for ~32 bytes), and
    each ``receive()`` of the request being served read on: memory without bound."""

    async def scenario() -> None:
        transport = Listener().connect()
        post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        await send(transport, get(first) + (get("/") + post) * 100)
        protocol = transport.protocol
        assert len(protocol.pipeline) == 1
        assert not transport.reading
        await settle(0.2)
        assert transport.responses() == [(200, b"0")] + [(200, b"0"), (200, b"5")] * 100
        assert transport.reading and not protocol.pipeline
        assert not transport.closing

    run(scenario)


@pytest.mark.parametrize("piece", [None, 1, 5, 64 * KiB])
def test_requests_pipelined_after_a_chunked_body_wait_one_at_a_time(piece: int | None) -> None:
    """The heads behind a chunked body are not parsed in the same slice as its end (they were,
    up to 64 KiB of them); chunk data that looks like the end does not end it."""

    async def scenario() -> None:
        transport = Listener().connect()
        chunked = (
            b"PUT /?pause=0.1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"6;ext=1\r\n\r\n\r\nab\r\n" + b"A\r\n\r\n0\r\n\r\nxyz\r\n"
            b"0\r\nX-Trailer: 1\r\n\r\n"
        )
        await send(transport, chunked + get("/") * 100, piece)
        assert len(transport.protocol.pipeline) <= 1
        await settle(0.2)
        assert transport.responses() == [(200, b"16")] + [(200, b"0")] * 100

    run(scenario)


def test_client_gone_while_a_request_waits_is_not_written_to(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """uvicorn told only the request waiting that the client had gone: the one being served
    wrote to the closed transport (uvloop raises) and an error was logged."""

    async def scenario() -> None:
        transport = Listener().connect()
        await send(transport, get("/?pause=0.1") + get("/"))
        transport.close()
        await settle(0.2)
        assert transport.written == b""

    run(scenario)
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


@pytest.mark.parametrize("piece", [None, 7, 64 * KiB])
def test_chunked_body_of_tiny_chunks_passes_and_big_trailers_are_refused(piece: int | None) -> None:
    async def scenario() -> None:
        listener = Listener()
        head = b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        tiny = listener.connect()
        await send(tiny, head + b"1\r\nx\r\n" * 20000 + b"0\r\nX-Trailer: 1\r\n\r\n", piece)
        await settle(0.1)
        assert tiny.responses() == [(200, b"20000")]
        trailers = listener.connect()
        await send(
            trailers, head + b"3\r\nabc\r\n0\r\nX-T: " + b"t" * (200 * KiB) + b"\r\n\r\n", piece
        )
        assert trailers.statuses() == [431]

    run(scenario)


def test_expect_100_continue_is_sent_when_the_app_reads_even_after_the_body_timeout() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        await send(
            transport,
            b"PUT /?pause=0.5 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Expect: 100-continue\r\n\r\n",
        )
        await settle(0.6)  # longer than the body timeout: the server, not the client, waited
        assert transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
        await send(transport, b"abc")
        assert transport.responses()[-1] == (200, b"3")

    run(scenario)


# -- timeouts -------------------------------------------------------------------------------------


def test_silent_connection_is_closed_after_the_head_timeout_without_an_answer() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        await settle(0.2)
        assert not transport.closing
        await settle(0.2)
        assert transport.closing
        assert transport.written == b""

    run(scenario)


def test_head_trickled_in_is_answered_408_after_the_head_timeout() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\n":
            if transport.closing:
                break
            transport.protocol.data_received(bytes([byte]))
            await settle(0.03)
        assert transport.statuses() == [408]

    run(scenario)


def test_idle_keep_alive_connection_gets_a_fresh_head_timeout_per_request() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        for _ in range(3):
            await settle(0.2)
            await send(transport, get("/"))
        assert transport.statuses() == [200, 200, 200]
        assert not transport.closing

    run(scenario)


def test_stalled_or_trickled_body_is_answered_408_but_a_slow_steady_one_is_not() -> None:
    async def scenario() -> None:
        listener = Listener()
        head = b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n"
        slow = listener.connect()
        await send(slow, head)
        for _ in range(10):  # 4 bytes (min_body_bytes) per 0.1 s for 1 s: 3 body timeouts
            await send(slow, b"slow")
            await settle(0.08)
        assert slow.responses() == [(200, b"40")]
        trickled = listener.connect()
        await send(trickled, head)
        for _ in range(10):  # a byte per 0.1 s: 3 per body timeout, less than min_body_bytes
            await send(trickled, b"t")
            await settle(0.08)
        assert trickled.statuses() == [408]
        stalled = listener.connect()
        await send(stalled, head + b"abc")
        await settle(0.5)
        [(status, body)] = stalled.responses()
        assert status == 408
        assert b"<Code>RequestTimeout</Code>" in body
        assert stalled.closing

    run(scenario)


def test_body_held_back_by_a_slow_application_is_not_timed_out() -> None:
    async def scenario() -> None:
        transport = Listener().connect()
        size = 200 * KiB  # more than uvicorn buffers: reading is paused until the app reads
        await send(
            transport,
            b"PUT /?pause=0.5 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
            + b"b" * size,
            16 * KiB,
        )
        assert not transport.reading
        await settle(0.7)
        assert transport.responses() == [(200, str(size).encode())]

    run(scenario)


def test_client_that_reads_nothing_is_cut_off_after_the_body_timeout() -> None:
    async def scenario() -> None:
        reader = Listener().connect()
        await send(reader, get("/?pause=5"))  # a response on its way (no head timeout then)
        reader.protocol.pause_writing()
        await settle(0.2)
        reader.protocol.resume_writing()  # it read some: the clock starts again
        reader.protocol.pause_writing()
        await settle(0.2)
        assert not reader.aborted
        await settle(0.2)
        assert reader.aborted

    run(scenario)


def test_connection_that_does_not_take_its_last_bytes_is_aborted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_protocol, "CLOSE_GRACE_SECONDS", 0.1)

    async def scenario() -> None:
        transport = Listener().connect(stuck=True)
        await send(transport, get("/", header_of_size(10 * KiB)))
        assert transport.statuses() == [431]
        assert transport.closing and not transport.aborted
        await settle(0.2)
        assert transport.aborted

    run(scenario)


# -- connection caps ------------------------------------------------------------------------------


def test_connections_over_the_per_client_and_total_caps_are_answered_503() -> None:
    async def scenario() -> None:
        listener = Listener()
        first = [listener.connect("192.0.2.1") for _ in range(3)]
        refused = listener.connect("192.0.2.1")
        assert refused.statuses() == [503] and refused.closing
        assert b"<Code>SlowDown</Code>" in refused.written
        await settle()
        others = [listener.connect(f"192.0.2.{n}") for n in range(2, 7)]  # 8 open in all
        await settle()
        assert not any(t.closing for t in first + others)
        beyond = listener.connect("192.0.2.99")
        assert beyond.statuses() == [503]
        first[0].close()
        await settle()
        again = listener.connect("192.0.2.1")
        assert not again.closing
        await send(again, get("/"))
        assert again.statuses() == [200]
        # what a refused connection sends is dropped
        await send(refused, get("/"))
        assert refused.statuses() == [503]

    run(scenario)


def test_each_listener_counts_its_own_connections() -> None:
    async def scenario() -> None:
        image_api, bucket_api = Listener(api="ims"), Listener()
        for _ in range(3):
            image_api.connect()
        assert not bucket_api.connect().closing

    run(scenario)


def test_ipv6_clients_are_counted_by_their_64_network() -> None:
    assert (
        client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    )
    assert client_key("2001:db8:1:3::5") != client_key("2001:db8:1:2::5")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") == "192.0.2.7"


# -- settings -------------------------------------------------------------------------------------


def test_limits_come_from_settings_and_every_accepted_request_target_fits() -> None:
    from imageport.auth.request import MAX_PATH, MAX_QUERY

    settings = load_settings(
        {
            "IMAGEPORT_HTTP_HEAD_TIMEOUT_SECONDS": "7",
            "IMAGEPORT_HTTP_MAX_CONNECTIONS_PER_CLIENT": "0",
        }
    )
    limits = HttpLimits.from_settings(settings)
    assert limits.head_timeout == 7.0
    assert limits.max_connections_per_client == 0
    # the signature checks accept a 16 KiB path and a 16 KiB query: the URL cap takes both
    assert limits.max_url_bytes >= MAX_PATH + 1 + MAX_QUERY
    with pytest.raises(ValueError, match="http_body_timeout_seconds"):
        load_settings({"IMAGEPORT_HTTP_BODY_TIMEOUT_SECONDS": "0"})
    with pytest.raises(ValueError, match="http_max_connections"):
        load_settings({"IMAGEPORT_HTTP_MAX_CONNECTIONS": "-1"})


def test_open_file_limit_is_raised_to_fit_full_listeners(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A systemd service starts with 1024 open files: two full listeners of 512 connections
    and the database would run out, and accept() and file opens would fail for everyone."""
    limits = HttpLimits.from_settings(load_settings({}))
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "setrlimit", lambda _, value: calls.append(value))
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1 << 20))
    http_limits.fit_open_file_limit(limits, listeners=2)
    assert calls == [(2 * 512 + http_limits.FD_RESERVE, 1 << 20)]
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1500))
    http_limits.fit_open_file_limit(limits, listeners=2)
    assert calls[-1] == (1500, 1500)
    assert "lower http_max_connections" in caplog.text
