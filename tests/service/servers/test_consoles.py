"""Console URLs' tokens: what they open, for whom, how long and how often (the service layer,
on a real database and the fake server host)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imageport.service import codes
from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.servers import consoles
from imageport.service.servers.console_tokens import (
    MAX_TOKENS_PER_PROJECT,
    TOKEN_SECONDS,
    ConsoleTokens,
)
from support import service_fixtures
from support.console_servers import add_server
from support.fakes import FakeServerHost

VNC_BODY = b'{"remote_console": {"protocol": "vnc", "type": "novnc"}}'
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def host() -> FakeServerHost:
    return FakeServerHost()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(tmp_path: Path, host: FakeServerHost, clock: Clock) -> Iterator[Services]:
    made = service_fixtures.make_fake_services(tmp_path / "data")
    made.host = host
    made.clock = clock
    yield made
    made.db.dispose()


@pytest.fixture
def alpha(services: Services) -> str:
    return create_project(services, "alpha").id


@pytest.fixture
def beta(services: Services) -> str:
    return create_project(services, "beta").id


def _refused(code: str, status: int) -> pytest.RaisesExc[ServiceError]:
    return pytest.raises(ServiceError, check=lambda e: (e.code, e.status) == (code, status))


def _vnc_token(services: Services, project_id: str, server_id: str) -> str:
    return consoles.remote_console(services, project_id, project_id, server_id, VNC_BODY).token


def test_a_display_token_opens_its_servers_socket_once(
    services: Services, host: FakeServerHost, alpha: str
) -> None:
    server_id = add_server(services, host, alpha)
    host.vnc_sockets[server_id] = Path("/run/test/vnc.sock")
    ticket = consoles.remote_console(services, alpha, alpha, server_id, VNC_BODY)
    assert len(ticket.token) >= 43  # 256 random bits, URL-safe base64
    assert ticket.expires_at == T0 + timedelta(seconds=TOKEN_SECONDS)

    target = consoles.open_display(services, ticket.token)
    assert (target.grant.server_id, target.grant.project_id) == (server_id, alpha)
    assert target.socket == Path("/run/test/vnc.sock")
    with _refused(codes.ECS_FORBIDDEN, 403):
        consoles.open_display(services, ticket.token)  # single use


def test_each_url_gets_its_own_token_and_only_the_hash_is_kept(
    services: Services, host: FakeServerHost, alpha: str
) -> None:
    server_id = add_server(services, host, alpha)
    first, second = (_vnc_token(services, alpha, server_id) for _ in range(2))
    assert first != second
    kept = repr(vars(services.console_tokens))
    assert first not in kept and second not in kept
    consoles.open_display(services, second)
    consoles.open_display(services, first)


def test_a_token_expires_after_ten_minutes(
    services: Services, host: FakeServerHost, alpha: str, clock: Clock
) -> None:
    server_id = add_server(services, host, alpha)
    late = _vnc_token(services, alpha, server_id)
    in_time = _vnc_token(services, alpha, server_id)
    clock.now = T0 + timedelta(seconds=TOKEN_SECONDS - 1)
    consoles.open_display(services, in_time)
    clock.now = T0 + timedelta(seconds=TOKEN_SECONDS)
    with _refused(codes.ECS_FORBIDDEN, 403):
        consoles.open_display(services, late)


def test_a_token_opens_only_its_own_kind_of_console(
    services: Services, host: FakeServerHost, alpha: str
) -> None:
    server_id = add_server(services, host, alpha)
    serial = consoles.serial_console(services, alpha, alpha, server_id, b"").token
    display = _vnc_token(services, alpha, server_id)
    with _refused(codes.ECS_FORBIDDEN, 403):
        consoles.open_display(services, serial)
    with _refused(codes.ECS_FORBIDDEN, 403):
        consoles.open_serial(services, display)
    # each was burnt by its wrong use
    with _refused(codes.ECS_FORBIDDEN, 403):
        consoles.open_serial(services, serial)


def test_unknown_and_oversized_tokens_are_refused(services: Services) -> None:
    for token in ("", "x", "A" * 43, "A" * 10_000):
        with _refused(codes.ECS_FORBIDDEN, 403):
            consoles.open_display(services, token)


def test_another_projects_server_has_no_console_for_the_caller(
    services: Services, host: FakeServerHost, alpha: str, beta: str
) -> None:
    theirs = add_server(services, host, beta)
    with _refused(codes.ECS_NOT_FOUND, 404):
        consoles.remote_console(services, alpha, alpha, theirs, VNC_BODY)
    with _refused(codes.ECS_NOT_FOUND, 404):
        consoles.serial_console(services, alpha, alpha, theirs, b"")
    with _refused(codes.ECS_NOT_FOUND, 404):
        consoles.serial_console(services, alpha, alpha, "no-such-server", b"")
    # the path's project must be the caller's (even naming the server's owner)
    with _refused(codes.ECS_PROJECT_MISMATCH, 400):
        consoles.remote_console(services, alpha, beta, theirs, VNC_BODY)


def test_a_console_needs_an_active_server(
    services: Services, host: FakeServerHost, alpha: str
) -> None:
    stopped = add_server(services, host, alpha, vm_state="stopped")
    building = add_server(services, host, alpha, vm_state="building")
    for server_id in (stopped, building):
        with _refused(codes.ECS_STATE, 400):
            consoles.remote_console(services, alpha, alpha, server_id, VNC_BODY)
        with _refused(codes.ECS_STATE, 400):
            consoles.serial_console(services, alpha, alpha, server_id, b"")


def test_a_token_of_a_server_that_stopped_since_opens_nothing(
    services: Services, host: FakeServerHost, alpha: str
) -> None:
    server_id = add_server(services, host, alpha)
    display = _vnc_token(services, alpha, server_id)
    serial = consoles.serial_console(services, alpha, alpha, server_id, b"").token
    host.stop(server_id, hard=True, timeout=0)
    with _refused(codes.ECS_STATE, 400):
        consoles.open_display(services, display)
    with _refused(codes.ECS_STATE, 400):
        consoles.open_serial(services, serial)


def test_a_serial_token_attaches_the_serial_console(
    services: Services, host: FakeServerHost, alpha: str
) -> None:
    server_id = add_server(services, host, alpha)
    target = consoles.open_serial(
        services, consoles.serial_console(services, alpha, alpha, server_id, b"{}").token
    )
    assert ("attach_console", server_id) in host.calls
    assert target.session is host.consoles[-1]
    assert consoles.machine_running(services, target.grant)
    host.guest_powered_off(server_id)
    assert not consoles.machine_running(services, target.grant)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", codes.ECS_BAD_REQUEST),
        (b"{not json", codes.ECS_BAD_REQUEST),
        (b'{"remote_console": {"protocol": "vnc", "type": "novnc"}, "x": 1}', codes.ECS_INVALID),
        (b'{"remote_console": {"protocol": "spice", "type": "novnc"}}', codes.ECS_INVALID),
        (b'{"remote_console": {"protocol": "vnc", "type": "xvpvnc"}}', codes.ECS_INVALID),
        (b'{"remote_console": {"protocol": "vnc"}}', codes.ECS_INVALID),
        (b'{"remote_console": {"protocol": "vnc", "type": "novnc", "y": 2}}', codes.ECS_INVALID),
        (b'{"remote_console": "vnc"}', codes.ECS_INVALID),
    ],
)
def test_remote_console_takes_only_vnc_and_novnc(
    services: Services, host: FakeServerHost, alpha: str, body: bytes, code: str
) -> None:
    server_id = add_server(services, host, alpha)
    with _refused(code, 400):
        consoles.remote_console(services, alpha, alpha, server_id, body)


def test_the_serial_console_action_takes_no_body(
    services: Services, host: FakeServerHost, alpha: str
) -> None:
    server_id = add_server(services, host, alpha)
    with _refused(codes.ECS_INVALID, 400):
        consoles.serial_console(services, alpha, alpha, server_id, b'{"serial_console": {}}')


def test_a_project_holds_a_bounded_number_of_unused_tokens(
    services: Services, host: FakeServerHost, alpha: str, beta: str
) -> None:
    mine = add_server(services, host, alpha)
    theirs = add_server(services, host, beta)
    their_token = _vnc_token(services, beta, theirs)
    tokens = [_vnc_token(services, alpha, mine) for _ in range(MAX_TOKENS_PER_PROJECT + 5)]
    assert services.console_tokens.held() == MAX_TOKENS_PER_PROJECT + 1
    for dropped in tokens[:5]:  # the oldest went
        with _refused(codes.ECS_FORBIDDEN, 403):
            consoles.open_display(services, dropped)
    consoles.open_display(services, tokens[-1])
    consoles.open_display(services, their_token)  # another project's were kept


def test_a_restarted_service_accepts_no_earlier_token(
    services: Services, host: FakeServerHost, alpha: str
) -> None:
    server_id = add_server(services, host, alpha)
    token = _vnc_token(services, alpha, server_id)
    services.console_tokens = ConsoleTokens()  # what a new process starts with
    with _refused(codes.ECS_FORBIDDEN, 403):
        consoles.open_display(services, token)
