"""Key pairs driven by the vendor's ECS SDK (huaweicloudsdkecs, unmodified) over real HTTP: a
real uvicorn serving the image API's application (which carries the server API's routes) over
SQLite, two projects. The SDK signs ``OpenStack-API-Version`` when told to send it; the test
records the requests to show that header was signed and accepted."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkecs.v2 import EcsClient
from huaweicloudsdkecs.v2 import model as m
from starlette.types import ASGIApp, Receive, Scope, Send

from imageport.api.ims.app import build_ims_app
from imageport.api.middleware import RequestContext
from imageport.service import codes
from support import sdk_clients, server_process, service_fixtures
from support.sdk_requests import sdk_signed
from support.ssh_keygen import make_key, md5_fingerprint, public_of_private

# the SDK marks every nova_* operation deprecated but still sends it
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '.*' of EcsClient is deprecated:DeprecationWarning"
)
QUOTA = 5


@dataclass
class Recorder:
    """ASGI wrapper keeping the ``Authorization`` header of every request it passes on."""

    app: ASGIApp
    authorizations: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            self.authorizations.append(headers.get(b"authorization", b"").decode())
        await self.app(scope, receive, send)


@dataclass
class Api(sdk_clients.EcsApi):
    recorder: Recorder


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    services = service_fixtures.make_services(
        tmp_path_factory.mktemp("keypairs") / "data", keypair_quota=QUOTA
    )
    keys = sdk_clients.projects_with_keys(services, "alpha", "beta")
    recorder = Recorder(RequestContext(build_ims_app(services), "ims"))
    try:
        with server_process.running_app(recorder) as base:
            yield Api(base, services, keys[0], keys[1], recorder)
    finally:
        services.db.dispose()


def sdk_error(call: Callable[[], object]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def create(
    ecs: EcsClient, name: str, public_key: str | None = None, **option: str
) -> m.NovaCreateKeypairResponse:
    return ecs.nova_create_keypair(
        m.NovaCreateKeypairRequest(
            body=m.NovaCreateKeypairRequestBody(
                keypair=m.NovaCreateKeypairOption(name=name, public_key=public_key, **option)
            ),
            open_stack_api_version="compute 2.2",
        )
    )


def test_generate_import_list_show_and_delete_through_the_sdk(api: Api, tmp_path: Path) -> None:
    ecs = api.client(api.alpha)
    project = api.alpha.project_id

    made = create(ecs, "sdk-made", type="ssh").keypair
    assert (made.name, made.type, made.user_id) == ("sdk-made", "ssh", project)
    assert made.public_key.startswith("ssh-ed25519 ")
    signed = api.recorder.authorizations[-1].split("SignedHeaders=")[1].split(",")[0]
    assert "openstack-api-version" in signed.split(";")
    # the private key is answered once, and OpenSSH reads it as this public key's
    private = tmp_path / "sdk-made"
    private.write_text(made.private_key)
    private.chmod(0o600)
    assert public_of_private(private).split()[:2] == made.public_key.split()[:2]

    user_key = make_key(tmp_path, "ecdsa", 256, comment="carol@desk")
    line = user_key.with_suffix(".pub").read_text()
    imported = create(ecs, "sdk-imported", line).keypair
    assert imported.private_key is None
    assert imported.public_key == line.strip()
    assert imported.fingerprint == md5_fingerprint(user_key.with_suffix(".pub"))

    listed = ecs.nova_list_keypairs(m.NovaListKeypairsRequest()).keypairs
    assert [(k.keypair.name, k.keypair.type, k.keypair.fingerprint) for k in listed] == [
        ("sdk-imported", "ssh", imported.fingerprint),
        ("sdk-made", "ssh", made.fingerprint),
    ]
    page = ecs.nova_list_keypairs(
        m.NovaListKeypairsRequest(
            limit=1, marker="sdk-imported", open_stack_api_version="compute 2.2"
        )
    ).keypairs
    assert [k.keypair.public_key for k in page] == [made.public_key]

    shown = ecs.nova_show_keypair(
        m.NovaShowKeypairRequest(keypair_name="sdk-made", open_stack_api_version="compute 2.2")
    ).keypair
    assert (shown.name, shown.public_key, shown.fingerprint, shown.user_id, shown.type) == (
        "sdk-made",
        made.public_key,
        made.fingerprint,
        project,
        "ssh",
    )
    assert isinstance(shown.created_at, datetime) and shown.deleted is False
    assert shown.deleted_at is None

    deleted = ecs.nova_delete_keypair(m.NovaDeleteKeypairRequest(keypair_name="sdk-made"))
    assert deleted.status_code == 204
    gone = sdk_error(
        lambda: ecs.nova_show_keypair(m.NovaShowKeypairRequest(keypair_name="sdk-made"))
    )
    assert (gone.status_code, gone.error_code) == (404, codes.ECS_KEYPAIR_UNKNOWN)
    assert gone.error_msg == "key pair 'sdk-made' does not exist" and gone.request_id
    ecs.nova_delete_keypair(m.NovaDeleteKeypairRequest(keypair_name="sdk-imported"))
    assert ecs.nova_list_keypairs(m.NovaListKeypairsRequest()).keypairs == []


def test_refusals_reach_the_sdk_with_their_codes(api: Api, tmp_path: Path) -> None:
    ecs, other = api.client(api.alpha), api.client(api.beta)
    create(ecs, "taken")
    # (the same request again in the same second would be a replay of the signed first one)
    again = functools.partial(create, ecs, "taken", type="ssh")
    refusals: list[tuple[Callable[[], object], int, str, str]] = [
        (again, 409, codes.ECS_KEYPAIR_EXISTS, "key pair 'taken' already exists"),
        (functools.partial(create, ecs, "a/b"), 400, codes.ECS_INVALID, "name 'a/b' must have"),
        (
            functools.partial(create, ecs, "cert", type="x509"),
            400,
            codes.ECS_INVALID,
            "x509 certificates are not",
        ),
        (
            functools.partial(
                create, ecs, "weak", make_key(tmp_path, "rsa", 1024).with_suffix(".pub").read_text()
            ),
            400,
            codes.ECS_INVALID,
            "1024-bit RSA key",
        ),
        (
            functools.partial(create, ecs, "for-bob", user_id="b" * 32),
            403,
            codes.ECS_FORBIDDEN,
            "is not the caller",
        ),
        (
            lambda: ecs.nova_delete_keypair(m.NovaDeleteKeypairRequest(keypair_name="none")),
            404,
            codes.ECS_KEYPAIR_UNKNOWN,
            "does not exist",
        ),
        (  # another project's key pair is as missing as one that does not exist
            lambda: other.nova_show_keypair(m.NovaShowKeypairRequest(keypair_name="taken")),
            404,
            codes.ECS_KEYPAIR_UNKNOWN,
            "does not exist",
        ),
        (
            lambda: ecs.nova_list_keypairs(m.NovaListKeypairsRequest(limit=5000)),
            400,
            codes.ECS_INVALID,
            "limit must be 1-1000",
        ),
    ]
    for call, status, code, words in refusals:
        error = sdk_error(call)
        assert (error.status_code, error.error_code) == (status, code), error.error_msg
        assert words in error.error_msg
    assert other.nova_list_keypairs(m.NovaListKeypairsRequest()).keypairs == []

    for n in range(QUOTA - 1):
        create(ecs, f"fill-{n}")
    full = sdk_error(functools.partial(create, ecs, "one-more"))
    assert (full.status_code, full.error_code) == (403, codes.ECS_QUOTA)
    for n in range(QUOTA - 1):
        ecs.nova_delete_keypair(m.NovaDeleteKeypairRequest(keypair_name=f"fill-{n}"))
    ecs.nova_delete_keypair(m.NovaDeleteKeypairRequest(keypair_name="taken"))


def test_a_path_naming_another_project_is_refused(api: Api) -> None:
    unsigned = httpx.get(f"{api.base}/v2.1/{api.alpha.project_id}/os-keypairs", timeout=10)
    assert unsigned.status_code == 401
    # the SDK with another project's id sends it in X-Project-Id too: refused before the route
    stray = sdk_clients.ecs_client(api.base, api.alpha, api.beta.project_id)
    error = sdk_error(lambda: stray.nova_list_keypairs(m.NovaListKeypairsRequest()))
    assert (error.status_code, error.error_code) == (403, "ProjectMismatch")
    # a path alone naming another project (no X-Project-Id) is the route's refusal
    for method, path in (
        ("GET", f"/v2.1/{api.beta.project_id}/os-keypairs"),
        ("POST", f"/v2.1/{api.beta.project_id}/os-keypairs"),
        ("DELETE", f"/v2.1/{api.beta.project_id}/os-keypairs/k"),
    ):
        body = b'{"keypair": {"name": "k"}}' if method == "POST" else b""
        req = sdk_signed(api.base, api.alpha.access_key, api.alpha.secret_key, method, path, body)
        answer = httpx.request(
            method, api.base + path, headers=req.header_params, content=body, timeout=10
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error_code"] == codes.ECS_PROJECT_MISMATCH
    assert api.services.settings.keypair_quota == QUOTA
