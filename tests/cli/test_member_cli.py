"""``imageport image share|members|accept|reject|unshare`` and ``image ls --shared``: real CLI
processes against the real image API on loopback, as two projects (the owner the CLI is
configured for, and a member with its own key)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.service.access.projects import create_key, create_project
from support.live_apis import Live, live_apis
from support.shared_images import active_image


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_apis(tmp_path) as apis:
        yield apis


def member_env(live: Live) -> dict[str, str]:
    """The CLI's environment for a second project, ``member``."""
    key = create_key(live.services, create_project(live.services, "member").id)
    return {
        **live.env,
        "IMAGEPORT_ACCESS_KEY": key.access_key,
        "IMAGEPORT_SECRET_KEY": key.secret_key,
        "IMAGEPORT_PROJECT_ID": key.project_id,
    }


def as_member(live: Live, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    saved, live.env = live.env, env
    try:
        done = live.cli(*args)
    finally:
        live.env = saved
    return done.returncode, done.stdout, done.stderr


def test_share_accept_reject_and_unshare(live: Live) -> None:
    env = member_env(live)
    member = env["IMAGEPORT_PROJECT_ID"]
    image_id = active_image(live.services, live.project_id, "golden")

    shared = live.cli_ok("image", "share", image_id, "--project", member)
    assert f"shared image {image_id} with {member}: pending" in shared.stdout
    listed = json.loads(live.cli_ok("image", "members", image_id, "--json").stdout)
    assert [(m["member_id"], m["status"]) for m in listed] == [(member, "pending")]
    table = live.cli_ok("image", "members", image_id).stdout.splitlines()
    assert table[0].split()[:2] == ["PROJECT", "STATUS"] and table[1].split()[:2] == [
        member,
        "pending",
    ]

    # the member finds the pending share, accepts it, and sees the image as shared
    code, out, _ = as_member(live, env, "image", "ls", "--shared", "--json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = as_member(
        live, env, "image", "ls", "--shared", "--member-status", "pending", "--json"
    )
    assert [i["id"] for i in json.loads(out)] == [image_id]
    code, out, err = as_member(live, env, "image", "accept", image_id)
    assert code == 0 and f"accepted image {image_id}" in out, err
    code, out, _ = as_member(live, env, "image", "ls", "--shared", "--json")
    assert [(i["id"], i["visibility"], i["owner"]) for i in json.loads(out)] == [
        (image_id, "shared", live.project_id)
    ]
    code, out, err = as_member(live, env, "image", "show", image_id)
    assert code == 0 and "visibility: shared" in out and "check report: none" not in out, err
    code, out, _ = as_member(live, env, "image", "members", image_id, "--json")
    assert [m["member_id"] for m in json.loads(out)] == [member]
    # ...but cannot delete it, nor share it on
    code, _, err = as_member(live, env, "image", "rm", image_id)
    assert code == 2 and "IMG.0092" in err
    code, _, err = as_member(live, env, "image", "share", image_id, "--project", live.project_id)
    assert code == 1 and "FAIL: IMG.0092" in err

    code, out, err = as_member(live, env, "image", "reject", image_id)
    assert code == 0 and f"rejected image {image_id}" in out, err
    code, _, err = as_member(live, env, "image", "show", image_id)
    assert code == 2 and "IMG.NOT_FOUND" in err
    code, out, _ = as_member(
        live, env, "image", "ls", "--shared", "--member-status", "rejected", "--json"
    )
    assert [i["id"] for i in json.loads(out)] == [image_id]

    live.cli_ok("image", "unshare", image_id, "--project", member)
    assert json.loads(live.cli_ok("image", "members", image_id, "--json").stdout) == []
    code, out, _ = as_member(
        live, env, "image", "ls", "--shared", "--member-status", "rejected", "--json"
    )
    assert json.loads(out) == []
    # the owner's own list never held it as shared
    own = json.loads(live.cli_ok("image", "ls", "--json").stdout)
    assert [(i["id"], i["visibility"]) for i in own] == [(image_id, "private")]


def test_refusals_say_why(live: Live) -> None:
    image_id = active_image(live.services, live.project_id, "golden")
    nobody = "0" * 32
    done = live.cli("image", "share", image_id, "--project", nobody)
    assert done.returncode == 1 and "IMG.PROJECT" in done.stderr and nobody in done.stderr
    done = live.cli("image", "share", image_id, "--project", "not-a-project")
    assert done.returncode == 2 and "IMG.0001" in done.stderr
    done = live.cli("image", "unshare", image_id, "--project", nobody)
    assert done.returncode == 1 and "not a member" in done.stderr
    done = live.cli("image", "accept", image_id)  # its own image is not shared with it
    assert done.returncode == 1 and "IMG.NOT_FOUND" in done.stderr
    done = live.cli("image", "ls", "--member-status", "pending")
    assert done.returncode == 2 and "--member-status goes with --shared" in done.stderr
    assert "not shared with any project" in live.cli_ok("image", "members", image_id).stderr
