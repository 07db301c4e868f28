"""``imageport image register --tags/--type/--architecture`` and ``imageport image ls`` with
filters and sorting, against the real image API on loopback: what the user sees is the image the
server shows and the list the command prints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.cli.image_commands import SORT_KEYS
from imageport.service.images.queries import SORT_KEYS as SERVER_SORT_KEYS
from support import import_fixtures as fx
from support.live_apis import Live, live_apis

UBUNTU = "Ubuntu 22.04 server 64bit"
DEBIAN = "Debian GNU/Linux 12.0.0 64bit"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_apis(tmp_path) as apis:
        apis.cli_ok("bucket", "create", "images")
        apis.cli_ok("upload", str(fx.good_image("qcow2")), "images/good.qcow2")
        yield apis


def _register(live: Live, name: str, *extra: str) -> tuple[str, dict[str, object]]:
    """Register ``images:good.qcow2`` as ``name`` (the job not run): its job id and the image
    the server shows."""
    made = json.loads(
        live.cli_ok("image", "register", name, "images:good.qcow2", "--json", *extra).stdout
    )
    job = json.loads(live.cli_ok("job", "show", made["job_id"], "--json").stdout)
    image_id = job["entities"]["image_id"]
    shown = json.loads(live.cli_ok("image", "show", image_id, "--json").stdout)
    assert isinstance(shown, dict)
    return str(made["job_id"]), shown


def _names(live: Live, *args: str) -> list[str]:
    return [i["name"] for i in json.loads(live.cli_ok("image", "ls", "--json", *args).stdout)]


def test_the_sort_keys_offered_are_the_servers() -> None:
    assert set(SORT_KEYS) == SERVER_SORT_KEYS


def test_register_sends_tags_type_and_architecture(live: Live) -> None:
    _, image = _register(
        live,
        "tagged",
        "--tags",
        "team=core,env=dev",
        "--tags",
        "empty=",
        "--type",
        "FusionCompute",
        "--architecture",
        "arm",
    )
    assert image["tags"] == ["team=core", "env=dev", "empty="]
    assert image["virtual_env_type"] == "FusionCompute"
    assert (image["architecture"], image["hw_firmware_type"]) == ("aarch64", "uefi")

    made = json.loads(
        live.cli_ok(
            "image",
            "register",
            "glance-tagged",
            "images:good.qcow2",
            "--uninitialized",
            "--tags",
            "k=v",
            "--json",
        ).stdout
    )
    glance = json.loads(live.cli_ok("image", "show", made["image_id"], "--json").stdout)
    assert glance["tags"] == ["k=v"]

    # the type reaches the server, which judges it: an ISO needs its OS named (IMG.0166)
    iso = live.cli("image", "register", "iso", "images:good.qcow2", "--type", "IsoImage")
    assert iso.returncode == 2 and "HTTP 400 IMG.0166" in iso.stderr
    bms = live.cli("image", "register", "bms", "images:good.qcow2", "--type", "BMS")
    assert bms.returncode == 2 and "HTTP 400 IMG.0024" in bms.stderr
    assert "type BMS images are not offered here" in bms.stderr
    unknown = live.cli("image", "register", "x", "images:good.qcow2", "--type", "Nonsense")
    assert unknown.returncode == 2 and "IMG.0024" in unknown.stderr
    bad = live.cli("image", "register", "x", "images:good.qcow2", "--tags", "team")
    assert bad.returncode == 2 and "--tags: tag 'team' is not KEY=VALUE" in bad.stderr
    badkey = live.cli("image", "register", "x", "images:good.qcow2", "--tags", "a.b=1")
    assert badkey.returncode == 2 and "HTTP 400 IMG.0001" in badkey.stderr
    glance_type = live.cli(
        "image", "register", "x", "images:good.qcow2", "--uninitialized", "--type", "ECS"
    )
    assert glance_type.returncode == 2 and "not --uninitialized" in glance_type.stderr


def test_ls_filters_and_sorts(live: Live) -> None:
    _register(live, "beta", "--tags", "team=core,env=prod", "--os-version", DEBIAN)
    _register(live, "alpha", "--tags", "team=core", "--os-version", UBUNTU)
    gamma_job, _ = _register(live, "gamma")
    live.cli_ok("job", "cancel", gamma_job)  # its image is killed

    assert _names(live, "--sort", "name") == ["alpha", "beta", "gamma"]
    assert _names(live, "--sort", "name", "--desc") == ["gamma", "beta", "alpha"]
    assert _names(live, "--desc") == ["gamma", "alpha", "beta"]  # newest first
    assert _names(live, "--status", "killed") == ["gamma"]
    assert _names(live, "--status", "queued", "--sort", "name") == ["alpha", "beta"]
    assert _names(live, "--status", "active") == []
    assert _names(live, "--name", "beta") == ["beta"]
    assert _names(live, "--tag", "team=core", "--sort", "name") == ["alpha", "beta"]
    assert _names(live, "--tag", "team=core", "--tag", "env=prod") == ["beta"]
    assert _names(live, "--os", UBUNTU) == ["alpha"]
    table = live.cli_ok("image", "ls", "--status", "killed").stdout.splitlines()
    assert table[0].startswith("ID") and len(table) == 2 and table[1].endswith("gamma")

    bad_status = live.cli("image", "ls", "--status", "gone")
    assert bad_status.returncode == 2 and "invalid choice: 'gone'" in bad_status.stderr
    bad_sort = live.cli("image", "ls", "--sort", "owner")
    assert bad_sort.returncode == 2 and "invalid choice: 'owner'" in bad_sort.stderr
    bad_tag = live.cli("image", "ls", "--tag", "team")
    assert bad_tag.returncode == 2 and "--tag: tag 'team' is not KEY=VALUE" in bad_tag.stderr
