"""docs/client.md describes the client as the code has it: every ``IMAGEPORT_*`` variable that the
code, scripts, tests or benchmarks read is named there or in docs/settings.md, every client
setting has its key, flag and variable in the page's table, every client command is in the
command table, and the README links the page."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from imageport.cli import remote
from imageport.client.config import SETTINGS, env_name
from support import builders

REPO = builders.REPO
PAGE = REPO / "docs" / "client.md"
VARIABLE = re.compile(r"IMAGEPORT_[A-Z][A-Z0-9_]*[A-Z0-9]")
SOURCES = ("src", "scripts", "tests", "bench")


def _source_files() -> list[Path]:
    files: list[Path] = []
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or ".egg-info" in str(path):
                continue
            if path.suffix in (".py", ".md", ".sh", "") or path.parent.name == "scripts":
                files.append(path)
    return files


def _variables_in_code() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in _source_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for name in VARIABLE.findall(text):
            found.setdefault(name, path)
    return found


def test_every_variable_read_anywhere_is_documented() -> None:
    found = _variables_in_code()
    assert "IMAGEPORT_ENDPOINT" in found and "IMAGEPORT_TEST_CACHE" in found  # the scan works
    documented = PAGE.read_text() + (REPO / "docs" / "settings.md").read_text()
    missing = {
        name: str(path.relative_to(REPO))
        for name, path in found.items()
        if f"`{name}`" not in documented
    }
    assert not missing, f"add these to docs/client.md (or settings.md): {missing}"


def test_the_page_gives_key_flag_and_variable_of_every_client_setting() -> None:
    page = PAGE.read_text()
    for setting in SETTINGS:
        flag = "(none)" if setting == "region" else f"`--{setting.replace('_', '-')}`"
        assert f"| `{setting}` | {flag} | `{env_name(setting)}` |" in page, setting
    for where in ("`--config FILE`", "`$IMAGEPORT_CONFIG`", "~/.config/imageport/client.toml"):
        assert where in page


def _actions(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    """Every leaf command under ``parser``, as ``"image tag add"``."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [prefix]
    leaves: list[str] = []
    for name, child in subs[0].choices.items():
        leaves += _actions(child, f"{prefix} {name}".strip())
    return leaves


def test_every_client_command_is_in_the_command_table() -> None:
    parser = argparse.ArgumentParser()
    remote.register(parser.add_subparsers())
    commands = _actions(parser, "")
    assert "image tag add" in commands and "job cancel" in commands
    table = PAGE.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    missing = [c for c in commands if f"`{c}" not in table]
    assert not missing, f"describe these in docs/client.md's command table: {missing}"


def test_the_readme_links_the_page() -> None:
    assert "docs/client.md" in (REPO / "README.md").read_text()
