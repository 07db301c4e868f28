"""OpenSSH public keys as key pairs read them: the types taken, the ones refused and why, the
fingerprint against ``ssh-keygen -l -E md5``, and generated pairs that OpenSSH itself reads."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from imageport.service import codes
from imageport.service.errors import RequestInvalid
from imageport.service.servers import ssh_keys
from support.ssh_keygen import make_key, md5_fingerprint, public_of_private


def refusal(text: str) -> str:
    with pytest.raises(RequestInvalid) as info:
        ssh_keys.parse_public_key(text)
    assert (info.value.status, info.value.code) == (400, codes.ECS_INVALID)
    assert info.value.message.startswith("public_key ")
    return info.value.message


@pytest.mark.parametrize(
    ("key_type", "bits", "declared"),
    [
        ("ed25519", None, "ssh-ed25519"),
        ("rsa", 2048, "ssh-rsa"),
        ("rsa", 4096, "ssh-rsa"),
        ("ecdsa", 256, "ecdsa-sha2-nistp256"),
        ("ecdsa", 384, "ecdsa-sha2-nistp384"),
        ("ecdsa", 521, "ecdsa-sha2-nistp521"),
    ],
)
def test_keys_made_by_ssh_keygen_are_taken_with_its_fingerprint(
    tmp_path: Path, key_type: str, bits: int | None, declared: str
) -> None:
    private = make_key(tmp_path, key_type, bits, comment="alice@laptop")
    line = private.with_suffix(".pub").read_text()
    key = ssh_keys.parse_public_key(line)  # the file as it is, final newline included
    assert key.key_type == declared
    assert key.line == line.strip()
    assert key.fingerprint == md5_fingerprint(private.with_suffix(".pub"))
    assert len(key.fingerprint.split(":")) == 16


def test_surrounding_whitespace_goes_and_a_missing_comment_stays_missing(tmp_path: Path) -> None:
    private = make_key(tmp_path, "ed25519")
    key_type, encoded = private.with_suffix(".pub").read_text().split()[:2]
    key = ssh_keys.parse_public_key(f"\n  {key_type}\t{encoded}  \r\n")
    assert key.line == f"{key_type} {encoded}" and key.comment == ""


def test_the_comment_keeps_only_harmless_characters(tmp_path: Path) -> None:
    private = make_key(tmp_path, "ed25519")
    key_type, encoded = private.with_suffix(".pub").read_text().split()[:2]
    hostile = 'bob@host  $(reboot) "x"\t\x1b[31mred;`id`  ' + "a" * 300
    key = ssh_keys.parse_public_key(f"{key_type} {encoded} {hostile}")
    assert key.comment.startswith("bob@host reboot x 31mredid a")
    assert len(key.comment) == ssh_keys.MAX_COMMENT_CHARS
    assert key.line == f"{key_type} {encoded} {key.comment}"
    assert ssh_keys.clean_comment("\x00\x07") == ""


def test_weak_and_unoffered_key_types_are_refused(tmp_path: Path) -> None:
    small = make_key(tmp_path, "rsa", 1024).with_suffix(".pub").read_text()
    assert "1024-bit RSA key: it must have 2048-16384 bits" in refusal(small)
    ed = make_key(tmp_path, "ed25519").with_suffix(".pub").read_text().split()
    for text in (
        f"ssh-dss {ed[1]}",
        f"sk-ssh-ed25519@openssh.com {ed[1]}",
        f"ssh-ed25519-cert-v01@openssh.com {ed[1]}",
        f'command="/bin/sh" {ed[0]} {ed[1]}',
        f"no-pty,{ed[0]} {ed[1]}",
    ):
        assert "must begin with its type, one of ssh-ed25519, ssh-rsa" in refusal(text)


def test_a_key_whose_body_is_not_its_declared_type_is_refused(tmp_path: Path) -> None:
    ed = make_key(tmp_path, "ed25519").with_suffix(".pub").read_text().split()
    assert "is not a valid ssh-rsa key" in refusal(f"ssh-rsa {ed[1]}")
    ec = make_key(tmp_path, "ecdsa", 384).with_suffix(".pub").read_text().split()
    assert "is not a valid ecdsa-sha2-nistp256 key" in refusal(f"ecdsa-sha2-nistp256 {ec[1]}")


def test_malformed_keys_are_refused_before_and_by_the_parser(tmp_path: Path) -> None:
    ed = make_key(tmp_path, "ed25519").with_suffix(".pub").read_text().split()
    blob = base64.b64decode(ed[1])
    appended = base64.b64encode(blob + b"\x00\x00\x00\x00").decode()
    assert "is not a valid ssh-ed25519 key" in refusal(f"ssh-ed25519 {appended}")
    assert "not base64" in refusal(f"ssh-ed25519 {ed[1][:-4]}!!!!")
    assert "not base64" in refusal(f"ssh-ed25519 {ed[1]}====")
    assert "has no key after" in refusal("ssh-ed25519")
    assert "is empty" in refusal("   \n")
    assert "must be one line" in refusal(f"{ed[0]} {ed[1]}\n{ed[0]} {ed[1]}")
    assert "must be one line" in refusal(f"{ed[0]} {ed[1]} a\rb")
    long = f"{ed[0]} {ed[1]} " + "c" * ssh_keys.MAX_PUBLIC_KEY_CHARS
    assert f"is longer than {ssh_keys.MAX_PUBLIC_KEY_CHARS} characters" in refusal(long)


def test_an_rsa_key_with_a_padded_number_is_refused(tmp_path: Path) -> None:
    """The same key with a non-minimal exponent encoding: ssh-keygen never writes it, and its
    fingerprint would not be the one of the key the user has."""
    line = make_key(tmp_path, "rsa", 2048).with_suffix(".pub").read_text().split()
    blob = base64.b64decode(line[1])
    # ssh-rsa blob: string "ssh-rsa", mpint e (3 bytes: 01 00 01), mpint n
    head = 4 + 7
    assert blob[head : head + 7] == b"\x00\x00\x00\x03\x01\x00\x01"
    padded = blob[:head] + b"\x00\x00\x00\x04\x00\x01\x00\x01" + blob[head + 7 :]
    text = f"ssh-rsa {base64.b64encode(padded).decode()}"
    message = refusal(text)
    assert "is not a canonical ssh-rsa key" in message or "is not a valid ssh-rsa key" in message


def test_a_generated_pair_is_read_by_openssh_and_matches_its_public_key(tmp_path: Path) -> None:
    made = ssh_keys.generate()
    assert made.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert made.public.key_type == "ssh-ed25519"
    assert made.public.comment == ssh_keys.GENERATED_COMMENT
    private = tmp_path / "id_ed25519"
    private.write_text(made.private_openssh)
    private.chmod(0o600)
    derived = public_of_private(private)
    assert derived.split()[:2] == made.public.line.split()[:2]
    public = tmp_path / "id_ed25519.pub"
    public.write_text(made.public.line + "\n")
    assert made.public.fingerprint == md5_fingerprint(public)
    assert ssh_keys.parse_public_key(made.public.line) == made.public
    assert ssh_keys.generate().public.blob != made.public.blob
