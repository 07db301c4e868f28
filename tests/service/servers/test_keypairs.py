"""Key pair use cases on SQLite and PostgreSQL: generate and import, the name and field rules,
the quota, duplicates, paging, and that a project sees only its own key pairs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from imageport.service import codes
from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.servers import keypairs, ssh_keys
from imageport.service.tables import keypairs as keypair_table
from support.db_backends import db_only_services
from support.ssh_keygen import make_key, md5_fingerprint


@pytest.fixture
def services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    """Services with a database only, and a quota of 3 key pairs per project."""
    made = db_only_services(tmp_path / "data", database_url, keypair_quota=3)
    try:
        yield made
    finally:
        made.db.dispose()


@pytest.fixture
def project(services: Services) -> str:
    return create_project(services, "keys").id


def body(**option: object) -> bytes:
    return json.dumps({"keypair": option}).encode()


def refused(call: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(ServiceError) as info:
        call()
    return info.value.status, info.value.code, info.value.message


def test_a_generated_pair_answers_its_private_key_once_and_stores_none(
    services: Services, project: str
) -> None:
    created = keypairs.create_keypair(services, project, body(name="made here"))
    assert created.private_key is not None
    assert created.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    pair = created.keypair
    assert (pair.name, pair.key_type, pair.user_id) == ("made here", "ssh", project)
    assert pair.public_key.startswith("ssh-ed25519 ")
    assert pair.public_key.endswith(f" {ssh_keys.GENERATED_COMMENT}")
    assert pair.fingerprint == ssh_keys.parse_public_key(pair.public_key).fingerprint
    assert keypairs.show_keypair(services, project, "made here") == pair
    with services.db.connect() as conn:
        stored = conn.execute(select(keypair_table)).one()
    assert "PRIVATE" not in repr(tuple(stored))
    assert created.private_key.splitlines()[1] not in repr(tuple(stored))
    assert keypairs.public_key_of(services, project, "made here") == pair.public_key


def test_an_imported_key_is_kept_as_type_base64_comment_with_ssh_keygens_fingerprint(
    services: Services, project: str, tmp_path: Path
) -> None:
    private = make_key(tmp_path, "rsa", 3072, comment="ops@bastion")
    line = private.with_suffix(".pub").read_text()
    created = keypairs.create_keypair(
        services, project, body(name="ops", public_key=line, type="ssh", user_id=project)
    )
    assert created.private_key is None
    assert created.keypair.public_key == line.strip()
    assert created.keypair.fingerprint == md5_fingerprint(private.with_suffix(".pub"))
    status, code, message = refused(
        lambda: keypairs.create_keypair(services, project, body(name="bad", public_key="ssh-rsa x"))
    )
    assert (status, code) == (400, codes.ECS_INVALID) and message.startswith("public_key ")


@pytest.mark.parametrize("name", ["a", "my key_1-x", "Z" * 64, "0"])
def test_names_of_nova_safe_characters_are_taken(
    services: Services, project: str, name: str
) -> None:
    assert keypairs.create_keypair(services, project, body(name=name)).keypair.name == name


@pytest.mark.parametrize("name", ["", "x" * 65, "a/b", "a.b", "é", " lead", "trail ", "a\tb", 7])
def test_other_names_are_refused(services: Services, project: str, name: object) -> None:
    status, code, message = refused(
        lambda: keypairs.create_keypair(services, project, body(name=name))
    )
    assert (status, code) == (400, codes.ECS_INVALID) and message.startswith("name ")


def test_fields_that_are_not_offered_are_refused_never_ignored(
    services: Services, project: str
) -> None:
    other_user = "0" * 32

    def create(raw: bytes) -> tuple[int, str, str]:
        return refused(lambda: keypairs.create_keypair(services, project, raw))

    assert create(body(name="k", type="x509"))[:2] == (400, codes.ECS_INVALID)
    assert "only ssh key pairs" in create(body(name="k", type="x509"))[2]
    assert create(body(name="k", user_id=other_user))[:2] == (403, codes.ECS_FORBIDDEN)
    assert create(body(name="k", public_key=None))[:2] == (400, codes.ECS_INVALID)
    assert create(body(name="k", comment="x"))[2].startswith("keypair.comment is not offered")
    assert create(body(public_key="ssh-ed25519 AAAA"))[2] == "keypair.name is missing"
    assert create(json.dumps({"keypair": {"name": "k"}, "x": 1}).encode())[1] == codes.ECS_INVALID
    assert create(json.dumps({"keypair": "k"}).encode())[1] == codes.ECS_INVALID
    assert create(b"")[:2] == (400, codes.ECS_BAD_REQUEST)
    assert create(b'{"keypair": {"name": "a", "name": "b"}}')[:2] == (400, codes.ECS_BAD_REQUEST)
    assert keypairs.list_keypairs(services, project, []) == []


def test_a_duplicate_name_is_409_and_the_quota_403(services: Services, project: str) -> None:
    for name in ("k1", "k2", "k3"):
        keypairs.create_keypair(services, project, body(name=name))
    status, code, message = refused(
        lambda: keypairs.create_keypair(services, project, body(name="k1"))
    )
    assert (status, code, message) == (
        409,
        codes.ECS_KEYPAIR_EXISTS,
        "key pair 'k1' already exists",
    )
    status, code, message = refused(
        lambda: keypairs.create_keypair(services, project, body(name="k4"))
    )
    assert (status, code) == (403, codes.ECS_QUOTA) and "keypair_quota 3" in message
    keypairs.delete_keypair(services, project, "k2")
    keypairs.create_keypair(services, project, body(name="k4"))
    # another project has its own quota and its own names
    other = create_project(services, "other").id
    assert keypairs.create_keypair(services, other, body(name="k1")).keypair.name == "k1"


def test_a_quota_of_zero_allows_no_key_pair(database_url: str, tmp_path: Path) -> None:
    services = db_only_services(tmp_path / "data", database_url, keypair_quota=0)
    try:
        project = create_project(services, "none").id
        status, code, _ = refused(
            lambda: keypairs.create_keypair(services, project, body(name="k"))
        )
        assert (status, code) == (403, codes.ECS_QUOTA)
    finally:
        services.db.dispose()


def test_lists_page_by_name(services: Services, project: str) -> None:
    for name in ("b", "c", "a"):
        keypairs.create_keypair(services, project, body(name=name))

    def names(*query: tuple[str, str]) -> list[str]:
        return [k.name for k in keypairs.list_keypairs(services, project, list(query))]

    assert names() == ["a", "b", "c"]
    assert names(("limit", "2")) == ["a", "b"]
    assert names(("limit", "2"), ("marker", "b")) == ["c"]
    assert names(("marker", "c")) == []
    assert names(("user_id", project)) == ["a", "b", "c"]
    for query, status, code in (
        ([("limit", "0")], 400, codes.ECS_INVALID),
        ([("limit", "1001")], 400, codes.ECS_INVALID),
        ([("limit", "x")], 400, codes.ECS_INVALID),
        ([("marker", "zz")], 400, codes.ECS_INVALID),
        ([("sort_key", "name")], 400, codes.ECS_INVALID),
        ([("limit", "1"), ("limit", "2")], 400, codes.ECS_INVALID),
        ([("user_id", "someone")], 403, codes.ECS_FORBIDDEN),
    ):
        assert refused(lambda q=query: names(*q))[:2] == (status, code), query  # type: ignore[misc]


def test_a_project_sees_and_deletes_only_its_own(services: Services, project: str) -> None:
    keypairs.create_keypair(services, project, body(name="mine"))
    other = create_project(services, "stranger").id
    assert keypairs.list_keypairs(services, other, []) == []
    for call in (
        lambda: keypairs.show_keypair(services, other, "mine"),
        lambda: keypairs.delete_keypair(services, other, "mine"),
        lambda: keypairs.show_keypair(services, project, "x" * 500),
        lambda: keypairs.delete_keypair(services, project, "a/b"),
    ):
        status, code, _ = refused(call)
        assert (status, code) == (404, codes.ECS_KEYPAIR_UNKNOWN)
    assert keypairs.public_key_of(services, other, "mine") is None
    assert keypairs.public_key_of(services, project, "x" * 500) is None
    status, code, _ = refused(
        lambda: keypairs.show_keypair(services, project, "mine", [("user_id", other)])
    )
    assert (status, code) == (403, codes.ECS_FORBIDDEN)
    keypairs.delete_keypair(services, project, "mine", [("user_id", project)])
    status, code, message = refused(lambda: keypairs.delete_keypair(services, project, "mine"))
    assert (status, code, message) == (
        404,
        codes.ECS_KEYPAIR_UNKNOWN,
        "key pair 'mine' does not exist",
    )
    assert keypairs.public_key_of(services, project, "mine") is None
