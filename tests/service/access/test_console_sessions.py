"""Console sessions: who may open one, how long it lasts, what ends it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from imageport.service.access.authn import issue_token, token_holder
from imageport.service.access.console_sessions import (
    csrf_matches,
    csrf_value,
    resume,
    sign_in_with_key,
    sign_in_with_token,
    sign_out,
)
from imageport.service.access.projects import create_key, create_project, revoke_key
from imageport.service.context import Services
from imageport.service.errors import ServiceError, Unauthenticated
from support.service_fixtures import make_fake_services


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return make_fake_services(tmp_path, console_session_seconds=3600)


def test_a_key_and_its_secret_open_a_session_of_the_keys_project(services: Services) -> None:
    project = create_project(services, "demo")
    key = create_key(services, "demo")
    session = sign_in_with_key(services, key.access_key, key.secret_key)
    assert session.principal.project_id == project.id
    assert session.project_name == "demo"
    assert resume(services, session.token).principal == session.principal
    assert session.token not in repr(session)
    lifetime = session.expires_at - services.clock().timestamp()
    assert 3500 < lifetime <= 3600


@pytest.mark.parametrize("secret", ["", "wrong", "x" * 300])
def test_a_wrong_secret_opens_nothing(services: Services, secret: str) -> None:
    create_project(services, "demo")
    key = create_key(services, "demo")
    with pytest.raises(ServiceError) as refused:
        sign_in_with_key(services, key.access_key, secret)
    assert refused.value.status in (400, 401)


def test_a_token_session_ends_no_later_than_the_token(services: Services) -> None:
    create_project(services, "demo")
    key = create_key(services, "demo")
    principal = sign_in_with_key(services, key.access_key, key.secret_key).principal
    short, expires = issue_token(services, principal, lifetime=600)
    session = sign_in_with_token(services, short)
    assert session.token != short
    assert session.expires_at <= expires
    sign_out(services, session.token)
    with pytest.raises(Unauthenticated):
        resume(services, session.token)
    assert token_holder(services, short)[0] == principal  # the pasted token lives on


def test_an_expired_session_is_over(services: Services) -> None:
    create_project(services, "demo")
    key = create_key(services, "demo")
    session = sign_in_with_key(services, key.access_key, key.secret_key)
    now = services.clock()
    services.clock = lambda: now + timedelta(seconds=3601)
    with pytest.raises(Unauthenticated):
        resume(services, session.token)


def test_revoking_the_key_ends_its_sessions_at_once(services: Services) -> None:
    create_project(services, "demo")
    key = create_key(services, "demo")
    session = sign_in_with_key(services, key.access_key, key.secret_key)
    revoke_key(services, key.access_key)
    with pytest.raises(Unauthenticated):
        resume(services, session.token)


def test_the_anti_forgery_value_belongs_to_one_session() -> None:
    value = csrf_value("IPTone")
    assert csrf_matches("IPTone", value)
    assert not csrf_matches("IPTtwo", value)
    assert not csrf_matches("IPTone", "")
    assert not csrf_matches("IPTone", "é" * 64)
