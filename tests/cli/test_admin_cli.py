"""`imageport admin` as an operator runs it: the installed entry point, a real data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imageport.service.access.projects import AccessKey, active_key
from support import pg_server

pytest_plugins = ["support.db_backends"]  # postgres_server

IMAGEPORT = Path(sys.executable).parent / "imageport"


def admin(
    *args: str,
    data_dir: Path | None = None,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    if not IMAGEPORT.exists():
        pytest.fail(f"{IMAGEPORT} is missing: install the package (pip install -e .)")
    argv = [str(IMAGEPORT), "admin"]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    if database_url is not None:
        argv += ["--database-url", database_url]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPORT_")}
    full_env.update(env or {})
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=60, env=full_env, check=False
    )


def key_record(data: Path, access_key: str) -> AccessKey | None:
    """The key as the service reads it from the same data dir."""
    from support.db_backends import db_only_services

    services = db_only_services(data, None)
    try:
        return active_key(services, access_key)
    finally:
        services.db.dispose()


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON the command printed (a JSON value: Any, as json.loads gives it)."""
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_project_and_key_lifecycle(tmp_path: Path) -> None:
    data = tmp_path / "data"
    project = ok_json(admin("project", "create", "team-a", "--json", data_dir=data))
    assert isinstance(project, dict) and len(project["id"]) == 32
    key = ok_json(admin("key", "create", "--project", "team-a", "--json", data_dir=data))
    assert isinstance(key, dict)
    assert set(key) == {"access_key", "secret_key", "project_id"}
    assert key["project_id"] == project["id"]
    assert len(key["access_key"]) == 20 and len(key["secret_key"]) == 40
    # the key works against the database the service will open from the same data dir
    found = key_record(data, key["access_key"])
    assert found is not None and found.secret_key == key["secret_key"]

    listed = admin("key", "ls", "--project", "team-a", data_dir=data)
    assert listed.returncode == 0 and key["access_key"] in listed.stdout
    assert key["secret_key"] not in listed.stdout
    as_json = ok_json(admin("key", "ls", "--project", project["id"], "--json", data_dir=data))
    assert as_json == [
        {
            "access_key": key["access_key"],
            "project_id": project["id"],
            "created_at": as_json[0]["created_at"],
            "revoked_at": None,
            "active": True,
        }
    ]
    assert key["secret_key"] not in json.dumps(as_json)

    revoked = admin("key", "revoke", key["access_key"], data_dir=data)
    assert revoked.returncode == 0, revoked.stderr
    assert key_record(data, key["access_key"]) is None
    after = ok_json(admin("key", "ls", "--project", "team-a", "--json", data_dir=data))
    assert isinstance(after, list) and after[0]["active"] is False and after[0]["revoked_at"]


def test_plain_text_output(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = admin("project", "create", "plain", data_dir=data)
    assert created.returncode == 0 and "plain" in created.stdout
    key = admin("key", "create", "--project", "plain", data_dir=data)
    assert key.returncode == 0
    assert "access key:" in key.stdout and "secret key:" in key.stdout
    listing = admin("project", "ls", data_dir=data)
    assert "plain" in listing.stdout
    projects = ok_json(admin("project", "ls", "--json", data_dir=data))
    assert [p["name"] for p in projects] == ["plain"]


def test_refusals_exit_2_with_a_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert admin("project", "create", "dup", data_dir=data).returncode == 0
    dup = admin("project", "create", "dup", "--json", data_dir=data)
    assert dup.returncode == 2 and "already exists" in dup.stderr and dup.stdout == ""
    unknown = admin("key", "create", "--project", "nobody", data_dir=data)
    assert unknown.returncode == 2 and "no project 'nobody'" in unknown.stderr
    assert admin("key", "ls", "--project", "nobody", data_dir=data).returncode == 2
    gone = admin("key", "revoke", "AKNOTAKEY0000000000X", data_dir=data)
    assert gone.returncode == 2 and "AKNOTAKEY0000000000X" in gone.stderr
    bad = admin("project", "create", "no spaces", data_dir=data)
    assert bad.returncode == 2 and "project name" in bad.stderr
    usage = admin("key", "create", data_dir=data)  # --project missing: argparse usage error
    assert usage.returncode == 2 and "--project" in usage.stderr


def test_settings_from_environment_and_database_url(tmp_path: Path) -> None:
    by_env = tmp_path / "env-data"
    made = ok_json(
        admin("project", "create", "from-env", "--json", env={"IMAGEPORT_DATA_DIR": str(by_env)})
    )
    assert (by_env / "imageport.db").exists()
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    ok_json(admin("project", "create", "by-url", "--json", database_url=url))
    assert (tmp_path / "elsewhere.db").exists()
    listed = ok_json(admin("project", "ls", "--json", data_dir=by_env))
    assert listed == [
        {
            "id": made["id"],
            "name": "from-env",
            "created_at": listed[0]["created_at"],
        }
    ]


def test_admin_on_postgresql(postgres_server: pg_server.PostgresServer) -> None:
    url = postgres_server.fresh_database()
    try:
        project = ok_json(admin("project", "create", "pg-team", "--json", database_url=url))
        key = ok_json(admin("key", "create", "--project", "pg-team", "--json", database_url=url))
        assert key["project_id"] == project["id"]
        dup = admin("project", "create", "pg-team", database_url=url)
        assert dup.returncode == 2 and "already exists" in dup.stderr
    finally:
        postgres_server.drop_database(url)
