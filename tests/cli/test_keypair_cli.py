"""``imageport keypair create|ls|show|rm``: real CLI processes against the real image API (which
serves the key pair routes) on loopback. The private keys the service makes are checked with
``ssh-keygen`` itself, and imported keys against its fingerprints."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.service import codes
from support.live_apis import Live, live_apis
from support.ssh_keygen import make_key, md5_fingerprint, public_of_private


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_apis(tmp_path) as apis:
        yield apis


def names(live: Live) -> list[str]:
    return [k["name"] for k in json.loads(live.cli_ok("keypair", "ls", "--json").stdout)]


def test_a_made_private_key_goes_to_a_new_0600_file_and_is_never_overwritten(
    live: Live, tmp_path: Path
) -> None:
    out = tmp_path / "cli.pem"
    done = live.cli_ok("keypair", "create", "cli key", "--private-key-out", str(out))
    shown = json.loads(live.cli_ok("keypair", "show", "cli key", "--json").stdout)
    assert done.stdout.strip() == (
        f"created key pair cli key (fingerprint {shown['fingerprint']}); its private key is in "
        f"{out} and cannot be shown again"
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert public_of_private(out).split() == shown["public_key"].split()[:2]
    assert shown["type"] == "ssh" and shown["user_id"] == live.project_id

    before = out.read_bytes()
    again = live.cli("keypair", "create", "second", "--private-key-out", str(out))
    assert again.returncode == 2 and "exists; it is never overwritten" in again.stderr
    assert out.read_bytes() == before
    assert names(live) == ["cli key"]  # refused before anything was sent


def test_without_a_file_the_private_key_is_printed_alone(live: Live, tmp_path: Path) -> None:
    done = live.cli_ok("keypair", "create", "piped")
    assert done.stdout.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert done.stdout.endswith("-----END OPENSSH PRIVATE KEY-----\n")
    assert "created key pair piped" in done.stderr and "only this once" in done.stderr
    redirected = tmp_path / "piped.pem"
    redirected.write_text(done.stdout)
    redirected.chmod(0o600)
    public = public_of_private(redirected)
    assert json.loads(live.cli_ok("keypair", "show", "piped", "--json").stdout)[
        "public_key"
    ].startswith(public)
    # the private key is not kept: showing the pair again has none
    assert "PRIVATE" not in live.cli_ok("keypair", "show", "piped").stdout


def test_import_list_show_and_remove(live: Live, tmp_path: Path) -> None:
    private = make_key(tmp_path, "ed25519", comment="dave@work")
    public = private.with_suffix(".pub")
    fingerprint = md5_fingerprint(public)
    done = live.cli_ok("keypair", "create", "dave", "--public-key", str(public))
    assert done.stdout.strip() == f"imported key pair dave (fingerprint {fingerprint})"
    live.cli_ok("keypair", "create", "another")

    table = live.cli_ok("keypair", "ls").stdout.splitlines()
    assert table[0].split() == ["NAME", "FINGERPRINT", "TYPE", "KEY"]
    assert table[2].split() == ["dave", fingerprint, "ssh", "ssh-ed25519", "dave@work"]
    assert [row.split()[0] for row in table[1:]] == ["another", "dave"]
    shown = live.cli_ok("keypair", "show", "dave").stdout.splitlines()
    assert shown[0:3] == ["name: dave", f"fingerprint: {fingerprint}", "type: ssh"]
    assert shown[4] == f"public key: {public.read_text().strip()}"

    assert live.cli_ok("keypair", "rm", "dave").stdout.strip() == "removed key pair dave"
    gone = live.cli("keypair", "show", "dave")
    assert gone.returncode == 2
    assert f"HTTP 404 {codes.ECS_KEYPAIR_UNKNOWN}: key pair 'dave' does not exist" in gone.stderr
    assert names(live) == ["another"]


def test_refusals_say_what_is_wrong(live: Live, tmp_path: Path) -> None:
    private = make_key(tmp_path, "ed25519")
    as_public = live.cli("keypair", "create", "oops", "--public-key", str(private))
    assert as_public.returncode == 2 and "is a private key; give its public key" in as_public.stderr
    both = live.cli(
        "keypair",
        "create",
        "both",
        "--public-key",
        str(private.with_suffix(".pub")),
        "--private-key-out",
        str(tmp_path / "x.pem"),
    )
    assert both.returncode == 2 and "--private-key-out goes with a made key pair" in both.stderr
    weak = make_key(tmp_path, "rsa", 1024).with_suffix(".pub")
    refused = live.cli("keypair", "create", "weak", "--public-key", str(weak))
    assert refused.returncode == 2
    assert f"HTTP 400 {codes.ECS_INVALID}: public_key is a 1024-bit RSA key" in refused.stderr
    assert names(live) == []

    # imported first, so that the generating request below is not the same signed request
    # sent twice in one second (which the replay check refuses before the name is looked at)
    (tmp_path / "taken").mkdir()
    taken = make_key(tmp_path / "taken", "ed25519")
    live.cli_ok("keypair", "create", "taken", "--public-key", f"{taken}.pub")
    clash = live.cli("keypair", "create", "taken", "--private-key-out", str(tmp_path / "u.pem"))
    assert clash.returncode == 2
    assert f"HTTP 409 {codes.ECS_KEYPAIR_EXISTS}: key pair 'taken' already exists" in clash.stderr
    assert not (tmp_path / "u.pem").exists()  # the refused creation leaves no empty key file
