"""Projects and access keys (what `imageport admin` manages), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from imageport.service.access.projects import (
    active_key,
    count_projects,
    create_key,
    create_project,
    find_project,
    list_keys,
    list_projects,
    revoke_key,
)
from imageport.service.context import Services
from imageport.service.errors import Conflict, NotFound, RequestInvalid

pytest_plugins = ["support.db_backends"]  # database_url / db_services: each test on both backends


def test_create_and_find_projects(db_services: Services) -> None:
    alpha = create_project(db_services, "alpha")
    beta = create_project(db_services, "beta.team_2")
    assert len(alpha.id) == 32 and alpha.id != beta.id
    assert alpha.created_at.endswith("Z") and len(alpha.created_at) == 24
    assert find_project(db_services, "alpha") == alpha
    assert find_project(db_services, beta.id) == beta
    assert [p.name for p in list_projects(db_services)] == ["alpha", "beta.team_2"]
    with pytest.raises(NotFound) as missing:
        find_project(db_services, "gamma")
    assert missing.value.code == "NoSuchProject" and missing.value.status == 404


def test_a_name_wins_over_another_projects_id(db_services: Services) -> None:
    first = create_project(db_services, "first")
    impostor = create_project(db_services, first.id)  # a name that is another project's id
    assert find_project(db_services, first.id) == impostor
    assert find_project(db_services, "first") == first


@pytest.mark.parametrize("name", ["", "a b", "-lead", "x" * 65, "é", "a/b", "a\x00b"])
def test_bad_project_names_refused(db_services: Services, name: str) -> None:
    with pytest.raises(RequestInvalid) as err:
        create_project(db_services, name)
    assert err.value.status == 400
    assert list_projects(db_services) == []


def test_duplicate_project_is_a_conflict(db_services: Services) -> None:
    create_project(db_services, "dup")
    with pytest.raises(Conflict) as err:
        create_project(db_services, "dup")
    assert err.value.code == "ProjectExists" and err.value.status == 409


def test_concurrent_creates_give_one_project(db_services: Services) -> None:
    outcomes: list[str] = []

    def create() -> None:
        try:
            create_project(db_services, "race")
            outcomes.append("created")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["created"]
    assert [p.name for p in list_projects(db_services)] == ["race"]


def test_keys_create_list_revoke(db_services: Services) -> None:
    project = create_project(db_services, "keys")
    other = create_project(db_services, "other")
    first = create_key(db_services, "keys")
    second = create_key(db_services, project.id)
    create_key(db_services, "other")
    for key in (first, second):
        assert key.project_id == project.id
        assert len(key.access_key) == 20 and key.access_key.isalnum()
        assert key.access_key.upper() == key.access_key
        assert len(key.secret_key) == 40 and key.secret_key.isalnum()
    assert first.access_key != second.access_key and first.secret_key != second.secret_key
    assert active_key(db_services, first.access_key) == first
    assert {k.access_key for k in list_keys(db_services, "keys")} == {
        first.access_key,
        second.access_key,
    }
    assert [k.project_id for k in list_keys(db_services, "other")] == [other.id]

    revoke_key(db_services, first.access_key)
    assert active_key(db_services, first.access_key) is None
    assert active_key(db_services, second.access_key) == second
    revoked = {k.access_key: k for k in list_keys(db_services, "keys")}[first.access_key]
    assert revoked.revoked_at is not None and revoked.revoked_at >= first.created_at
    with pytest.raises(NotFound):  # revoking twice: the key is no longer active
        revoke_key(db_services, first.access_key)


def test_unknown_keys_and_projects(db_services: Services) -> None:
    with pytest.raises(NotFound):
        create_key(db_services, "nobody")
    with pytest.raises(NotFound):
        list_keys(db_services, "nobody")
    for junk in ("NOPE", "", "A" * 41, "AK\x00", "ÄK"):
        assert active_key(db_services, junk) is None
        with pytest.raises(NotFound) as err:
            revoke_key(db_services, junk)
        assert err.value.code == "NoSuchKey"


def test_count_projects(db_services: Services) -> None:
    assert count_projects(db_services) == 0  # serve prints how to create the first one
    create_project(db_services, "one")
    create_project(db_services, "two")
    assert count_projects(db_services) == 2
