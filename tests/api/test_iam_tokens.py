"""The token endpoint over real HTTP: uvicorn on loopback, requests signed by huaweicloudsdkcore.

``POST /v3/auth/tokens`` is mounted in a bare Starlette app (as the image API mounts it) served
by a real uvicorn; the token it returns in ``X-Subject-Token`` is then used as ``X-Auth-Token``.
Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from imageport.api.iam import ROUTES
from imageport.auth import SignedRequest
from imageport.service.access.authn import Principal, authenticate
from imageport.service.access.projects import AccessKey, create_key, create_project, revoke_key
from imageport.service.context import Services
from imageport.service.errors import Unauthenticated
from support.sdk_requests import sdk_signed

pytest_plugins = ["support.db_backends"]  # db_services: each test on both backends

PATH = "/v3/auth/tokens"
TOKEN_ONLY = frozenset({"token"})


@dataclass
class Endpoint:
    base: str
    services: Services
    alpha: AccessKey
    beta: AccessKey

    def signed_post(
        self,
        key: AccessKey,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        when: datetime | None = None,
    ) -> httpx.Response:
        """POST the token path signed by the vendor SDK's signer with ``key``."""
        req = sdk_signed(
            self.base, key.access_key, key.secret_key, "POST", PATH, body, headers, when=when
        )
        return self.send(req.header_params, body)

    def send(self, headers: dict[str, str], body: bytes) -> httpx.Response:
        return httpx.post(self.base + PATH, content=body, headers=headers, timeout=10)

    def iam_body_post(
        self, access: str, secret: str, scope: dict[str, str] | None = None
    ) -> httpx.Response:
        document: dict[str, Any] = {
            "auth": {
                "identity": {
                    "methods": ["hw_ak_sk"],
                    "hw_ak_sk": {"access": {"key": access}, "secret": {"key": secret}},
                }
            }
        }
        if scope is not None:
            document["auth"]["scope"] = {"project": scope}
        return self.send({"Content-Type": "application/json"}, json.dumps(document).encode())


@contextmanager
def serve(app: Starlette, db_services: Services) -> Iterator[Endpoint]:
    """``app`` on a real uvicorn at a free loopback port, with keys of projects alpha, beta."""
    create_project(db_services, "alpha")
    create_project(db_services, "beta")
    alpha, beta = create_key(db_services, "alpha"), create_key(db_services, "beta")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield Endpoint(f"http://127.0.0.1:{port}", db_services, alpha, beta)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def endpoint(db_services: Services) -> Iterator[Endpoint]:
    """The token routes alone in a Starlette app, as the image API mounts them."""
    app = Starlette(routes=ROUTES)
    app.state.services = db_services
    with serve(app, db_services) as running:
        yield running


def token_request(token: str) -> SignedRequest:
    """A later API call carrying the token."""
    return SignedRequest(
        "GET", "/v2/cloudimages", "", {"X-Auth-Token": token}, hashlib.sha256(b"").hexdigest()
    )


def issued(response: httpx.Response, key: AccessKey) -> str:
    """Check the 201 answer's shape; the token."""
    assert response.status_code == 201, response.text
    token = response.headers["X-Subject-Token"]
    body = response.json()["token"]
    assert body["methods"] == ["hw_ak_sk"]
    assert body["project"]["id"] == key.project_id
    assert body["project"]["name"] in ("alpha", "beta")
    issued_at = datetime.fromisoformat(body["issued_at"].replace("Z", "+00:00"))
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert abs(issued_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert expires_at - issued_at == pytest.approx(timedelta(hours=24), abs=timedelta(seconds=2))
    assert token not in response.text  # the token travels in the header only
    return token


def refused(response: httpx.Response, status: int = 401) -> str:
    """Check the vendor error shape; the code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == body["error_code"]
    assert body["error"]["message"] == body["error_msg"] and body["error_msg"]
    assert "X-Subject-Token" not in response.headers
    code: str = body["error_code"]
    return code


def test_signed_request_gets_a_token_that_authenticates(endpoint: Endpoint) -> None:
    token = issued(endpoint.signed_post(endpoint.alpha), endpoint.alpha)
    assert authenticate(endpoint.services, token_request(token), schemes=TOKEN_ONLY) == (
        Principal(endpoint.alpha.project_id, endpoint.alpha.access_key)
    )
    # the SDK's X-Project-Id header and an IAM body scope, when they name the key's project
    scoped = json.dumps({"auth": {"scope": {"project": {"id": endpoint.beta.project_id}}}})
    beta_token = issued(
        endpoint.signed_post(
            endpoint.beta, scoped.encode(), headers={"X-Project-Id": endpoint.beta.project_id}
        ),
        endpoint.beta,
    )
    assert (
        authenticate(endpoint.services, token_request(beta_token), schemes=TOKEN_ONLY).project_id
        == endpoint.beta.project_id
    )
    assert beta_token != token


def test_signed_request_refusals(endpoint: Endpoint) -> None:
    alpha = endpoint.alpha
    wrong = json.dumps({"auth": {"scope": {"project": {"id": endpoint.beta.project_id}}}})
    assert refused(endpoint.signed_post(alpha, wrong.encode())) == "ScopeMismatch"
    assert (
        refused(endpoint.signed_post(alpha, headers={"X-Project-Id": endpoint.beta.project_id}))
        == "ScopeMismatch"
    )
    forged = AccessKey(alpha.access_key, "f" * 40, alpha.project_id, alpha.created_at)
    assert refused(endpoint.signed_post(forged)) == "SignatureDoesNotMatch"
    old = datetime.now(UTC) - timedelta(hours=1)
    assert refused(endpoint.signed_post(alpha, when=old)) == "RequestTimeTooSkewed"
    # the same signed POST sent twice: the second is a replay
    req = sdk_signed(
        endpoint.base,
        alpha.access_key,
        alpha.secret_key,
        "POST",
        PATH,
        headers={"Content-Type": "application/json"},
        when=datetime.now(UTC) + timedelta(seconds=3),
    )
    issued(endpoint.send(dict(req.header_params), b""), alpha)
    assert refused(endpoint.send(dict(req.header_params), b"")) == "ReplayedRequest"
    revoke_key(endpoint.services, alpha.access_key)
    assert refused(endpoint.signed_post(alpha)) == "InvalidAccessKeyId"


def test_iam_body_gets_a_token(endpoint: Endpoint) -> None:
    beta = endpoint.beta
    token = issued(
        endpoint.iam_body_post(beta.access_key, beta.secret_key, {"id": beta.project_id}), beta
    )
    assert authenticate(endpoint.services, token_request(token), schemes=TOKEN_ONLY) == (
        Principal(beta.project_id, beta.access_key)
    )
    issued(endpoint.iam_body_post(beta.access_key, beta.secret_key, {"name": "beta"}), beta)
    issued(endpoint.iam_body_post(beta.access_key, beta.secret_key), beta)  # no scope: its own


def test_iam_body_refusals(endpoint: Endpoint) -> None:
    alpha, beta = endpoint.alpha, endpoint.beta
    assert refused(endpoint.iam_body_post(alpha.access_key, beta.secret_key)) == (
        "InvalidCredentials"
    )
    assert refused(endpoint.iam_body_post("NOSUCHKEY00000000000", alpha.secret_key)) == (
        "InvalidCredentials"
    )
    assert (
        refused(endpoint.iam_body_post(alpha.access_key, alpha.secret_key, {"id": beta.project_id}))
        == "ScopeMismatch"
    )
    assert (
        refused(endpoint.iam_body_post(alpha.access_key, alpha.secret_key, {"name": "beta"}))
        == "ScopeMismatch"
    )
    revoke_key(endpoint.services, alpha.access_key)
    assert refused(endpoint.iam_body_post(alpha.access_key, alpha.secret_key)) == (
        "InvalidCredentials"
    )
    # malformed requests are 400, oversized ones 413, and neither yields a token
    for body in (
        b"",
        b"not json",
        b"[]",
        b'{"auth": {"identity": {"methods": ["password"]}}}',
        json.dumps(
            {
                "auth": {
                    "identity": {
                        "methods": ["hw_ak_sk"],
                        "hw_ak_sk": {"access": {"key": 5}, "secret": {"key": "x"}},
                    }
                }
            }
        ).encode(),
    ):
        assert refused(endpoint.send({"Content-Type": "application/json"}, body), 400)
    assert refused(endpoint.send({}, b"{" * 20_000), 413) == "RequestBodyTooLarge"
    assert httpx.get(endpoint.base + PATH, timeout=10).status_code == 405


def test_tokens_stop_working(endpoint: Endpoint) -> None:
    """Expired, revoked and garbage tokens are refused when used."""
    services = endpoint.services
    alpha_token = issued(endpoint.signed_post(endpoint.alpha), endpoint.alpha)
    beta_token = issued(
        endpoint.iam_body_post(endpoint.beta.access_key, endpoint.beta.secret_key), endpoint.beta
    )
    revoke_key(services, endpoint.alpha.access_key)
    for bad in (alpha_token, "garbage", beta_token[:-2], ""):
        with pytest.raises(Unauthenticated) as err:
            authenticate(services, token_request(bad), schemes=TOKEN_ONLY)
        assert err.value.code == "InvalidToken" and err.value.status == 401
    assert authenticate(services, token_request(beta_token), schemes=TOKEN_ONLY).project_id == (
        endpoint.beta.project_id
    )
    services.clock = lambda: datetime.now(UTC) + timedelta(hours=24, minutes=1)
    with pytest.raises(Unauthenticated) as expired:
        authenticate(services, token_request(beta_token), schemes=TOKEN_ONLY)
    assert expired.value.code == "InvalidToken"


def test_token_works_on_the_image_api(db_services: Services) -> None:
    """Through the real image API app: the token endpoint needs no credentials, and the token
    it gives lists the caller's images; without it, or with a revoked key's, 401."""
    from imageport.api.ims.app import build_ims_app

    with serve(build_ims_app(db_services), db_services) as api:
        beta = api.beta
        token = issued(
            api.iam_body_post(beta.access_key, beta.secret_key, {"id": beta.project_id}), beta
        )
        listed = httpx.get(
            api.base + "/v2/cloudimages", headers={"X-Auth-Token": token}, timeout=10
        )
        assert listed.status_code == 200, listed.text
        assert listed.json()["images"] == []
        assert refused(httpx.get(api.base + "/v2/cloudimages", timeout=10)) == "AccessDenied"
        revoke_key(db_services, beta.access_key)
        assert refused(
            httpx.get(api.base + "/v2/cloudimages", headers={"X-Auth-Token": token}, timeout=10)
        ) == ("InvalidToken")
