"""Issue 9, finding 6: guests whose login, identity, mount or boot files cannot be read
(a dangling symbolic link, a symbolic link loop, a directory where a file belongs) passed
``imageport check`` as if the files were simply absent, and ended up active.

Each case is the cloud-ready synthetic guest (which passes) with one file broken; the real CLI
must exit 1 naming the rule that depends on the file, and the file.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from support import guest_fixtures as gf
from support.guest_fixtures import Symlink
from support.server_process import IMAGEPORT

BOOT = {"grub/grub.cfg": gf.READY_GRUB_CFG}


def _broken(path: str, kind: str) -> dict[str, str | bytes | Symlink | None]:
    """The tree entries that make ``path`` dangle, loop or be a directory."""
    if kind == "dangling":
        return {path: Symlink("/nonexistent/file")}
    if kind == "loop":
        return {path: Symlink(path.rsplit("/", 1)[-1])}
    return {path: None, f"{path}/inside": ""}


CASES = [
    # (file in the guest, rule that needs it)
    ("etc/passwd", "IMG-LOGIN"),
    ("etc/shadow", "IMG-LOGIN"),
    ("etc/os-release", "IMG-SYSTEM-DISK"),
    ("etc/fstab", "IMG-FSTAB-DATA-DISK"),
    ("boot:grub/grub.cfg", "IMG-BOOT-MODE"),
]


def _guest(path: str, kind: str) -> str:
    root = dict(gf.CLOUD_READY)
    boot: dict[str, str | bytes | Symlink | None] = dict(BOOT)
    if path.startswith("boot:"):
        boot.update(_broken(path.removeprefix("boot:"), kind))
    else:
        root.update(_broken(path, kind))
    if path == "etc/os-release":  # nothing else identifies the system
        root["usr/lib/os-release"] = None
    name = f"unreadable-{path.replace('/', '-').replace(':', '-')}-{kind}"
    return str(gf.build_guest(name, root=root, boot=boot))


def _check(image: str) -> tuple[int, dict[str, Any]]:
    """The exit code and the JSON report (its values as json.loads gives them)."""
    proc = subprocess.run(
        [str(IMAGEPORT), "check", "--json", image],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_the_cloud_ready_guest_passes() -> None:
    code, report = _check(str(gf.synthetic_guest()))
    assert code == 0, report["findings"]


@pytest.mark.parametrize("kind", ["dangling", "loop", "dir"])
@pytest.mark.parametrize(("path", "rule"), CASES)
def test_an_unreadable_file_fails_the_rule_that_needs_it(path: str, rule: str, kind: str) -> None:
    code, report = _check(_guest(path, kind))
    findings = report["findings"]
    assert isinstance(findings, list)
    mine = [f for f in findings if f["rule_id"] == rule and f["severity"] == "error"]
    assert code == 1 and mine, findings
    shown = (
        "/" + path.removeprefix("boot:").replace("grub/", "boot/grub/", 1)
        if path.startswith("boot:")
        else "/" + path
    )
    assert any(shown in line for f in mine for line in [f["message"], *f["evidence"]]), mine


def test_login_files_broken_fail_even_with_cloud_init() -> None:
    """cloud-init injects keys and passwords through the account files: with /etc/passwd
    unreadable it cannot, so its presence does not save the verdict."""
    code, report = _check(_guest("etc/passwd", "dangling"))
    login = [f for f in report["findings"] if f["rule_id"] == "IMG-LOGIN"]
    assert code == 1 and login
    assert "dangling" in " ".join(login[0]["evidence"])


def test_a_directory_is_no_cloud_init_program() -> None:
    code, report = _check(
        str(
            gf.build_guest(
                "unreadable-cloud-init-dir",
                boot=BOOT,
                root={**gf.CLOUD_READY, "usr/bin/cloud-init": None, "usr/bin/cloud-init/x": ""},
            )
        )
    )
    rules = {f["rule_id"] for f in report["findings"]}
    assert code == 1 and "IMG-LOGIN" in rules, report["findings"]
