"""Password hashes: our SHA-crypt and md5-crypt against Drepper's vectors and the real tools
(openssl passwd, mkpasswd), the mkpasswd helper for yescrypt/bcrypt/DES, and the caps."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imageport.errors import CorruptImageError, LimitExceededError
from imageport.guest.facts.password_hashes import (
    MAX_ROUNDS,
    CryptHelper,
    HashScheme,
    Unverifiable,
    hash_scheme,
    md5_crypt,
    parse_sha_setting,
    sha_crypt,
    verify_password,
)

#: From Drepper's "Unix crypt using SHA-256 and SHA-512" (the $5$ one confirmed with openssl).
DREPPER_VECTORS = [
    ("$5$saltstring", "Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"),
    (
        "$6$saltstring",
        "Hello world!",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFC"
        "oEOfaS35inz1",
    ),
    (
        "$5$rounds=10000$saltstringsaltstring",
        "Hello world!",
        "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
    ),
    (
        "$6$rounds=10000$saltstringsaltstring",
        "Hello world!",
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8v"
        "OuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
    # fewer than 1000 rounds are raised to the minimum, and the output says so
    (
        "$6$rounds=10$roundstoolow",
        "the minimum number is still observed",
        "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4Z"
        "EQpyUNGc0dqbpBYYBaHHrsX.",
    ),
]
PASSWORDS = [
    "Passw0rd!",
    "",
    "x",
    "a" * 33,
    "Hüàwei@123",
    "sixteen-chars-ab",
    "p" * 64,
    "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed; run scripts/install --test (package "
            f"{'whois' if name == 'mkpasswd' else name})"
        )
    return path


def _openssl(flag: str, salt: str, password: str) -> str:
    proc = subprocess.run(
        [_tool("openssl"), "passwd", flag, "-salt", salt, "-stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def _mkpasswd(method: str, password: str, *extra: str) -> str:
    proc = subprocess.run(
        [_tool("mkpasswd"), "-s", "-m", method, *extra],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


@pytest.mark.parametrize(("setting", "password", "expected"), DREPPER_VECTORS)
def test_drepper_vectors(setting: str, password: str, expected: str) -> None:
    assert sha_crypt(password.encode(), setting) == expected
    assert verify_password(password, expected)
    assert not verify_password(password + ".", expected)


@pytest.mark.parametrize("password", [p for p in PASSWORDS if p])
@pytest.mark.parametrize(
    ("flag", "salt"), [("-6", "Xq7.zP/9aBcDeFgH"), ("-5", "abc"), ("-1", "8charsal"), ("-1", "s")]
)
def test_matches_openssl_passwd(flag: str, salt: str, password: str) -> None:
    expected = _openssl(flag, salt, password)
    compute = md5_crypt if flag == "-1" else sha_crypt
    assert compute(password.encode(), expected) == expected
    assert verify_password(password, expected)
    assert not verify_password(password.swapcase() + "!", expected)


def test_matches_mkpasswd_with_rounds_and_an_empty_password() -> None:
    for method, rounds in (("sha512crypt", "1000"), ("sha256crypt", "7777")):
        for password in ("", "Admin@123"):
            stored = _mkpasswd(method, password, "-R", rounds, "-S", "SaltSaltSaltSalt")
            assert f"rounds={rounds}$" in stored
            assert verify_password(password, stored)
    stored = _mkpasswd("md5crypt", "", "-S", "abcdefgh")
    assert md5_crypt(b"", stored) == stored


def test_hash_schemes_are_named_by_prefix() -> None:
    cases = {
        "$y$j9T$a$b": HashScheme.YESCRYPT,
        "$gy$j9T$a$b": HashScheme.GOST_YESCRYPT,
        "$7$CU..$a$b": HashScheme.SCRYPT,
        "$2b$05$" + "a" * 53: HashScheme.BCRYPT,
        "$2a$05$x": HashScheme.BCRYPT,
        "$2y$05$x": HashScheme.BCRYPT,
        "$6$s$h": HashScheme.SHA512,
        "$5$s$h": HashScheme.SHA256,
        "$1$s$h": HashScheme.MD5,
        "abJnggxhB/yWI": HashScheme.DES,
        "$sha1$4000$s$h": HashScheme.SHA1,
        "$argon2id$v=19$x": HashScheme.UNKNOWN,
        "abJnggxhB/yW": HashScheme.UNKNOWN,
    }
    assert {k: hash_scheme(k) for k in cases} == cases
    assert HashScheme.DES.weak and HashScheme.MD5.weak and not HashScheme.YESCRYPT.weak


def test_rounds_are_capped_before_they_bound_a_loop() -> None:
    assert parse_sha_setting(f"$6$rounds={MAX_ROUNDS}$salt$x").rounds == MAX_ROUNDS
    with pytest.raises(LimitExceededError, match="rounds"):
        verify_password("x", f"$6$rounds={MAX_ROUNDS + 1}$salt$hash")
    with pytest.raises(LimitExceededError):
        verify_password("x", "$6$rounds=99999999999999999999$salt$hash")
    with pytest.raises(CorruptImageError):
        verify_password("x", "$6$rounds=many$salt$hash")
    with pytest.raises(LimitExceededError):
        verify_password("x", "$6$" + "s" * 600)
    params = parse_sha_setting("$5$" + "s" * 40 + "$hash")
    assert params.salt == "s" * 16 and params.rounds == 5000 and not params.explicit_rounds


def test_other_schemes_need_the_helper() -> None:
    stored = _mkpasswd("yescrypt", "Huawei@123")
    with pytest.raises(Unverifiable, match="mkpasswd"):
        verify_password("Huawei@123", stored, helper=None)
    helper = CryptHelper(_tool("mkpasswd"))
    assert verify_password("Huawei@123", stored, helper=helper)
    assert not verify_password("huawei@123", stored, helper=helper)


@pytest.mark.parametrize("method", ["yescrypt", "gost-yescrypt", "bcrypt", "descrypt"])
def test_helper_verifies_what_libxcrypt_knows(method: str) -> None:
    helper = CryptHelper(_tool("mkpasswd"))
    stored = _mkpasswd(method, "root")
    assert verify_password("root", stored, helper=helper)
    assert not verify_password("toor", stored, helper=helper)


def test_helper_gets_no_password_it_cannot_take_and_stops_on_time(tmp_path: Path) -> None:
    helper = CryptHelper(_tool("mkpasswd"))
    stored = _mkpasswd("yescrypt", "a")
    assert helper.compute(b"a\nb", stored, 5.0) is None  # stdin is line-based
    slow = tmp_path / "slow-mkpasswd"
    slow.write_text("#!/bin/sh\nsleep 5\n")
    slow.chmod(0o755)
    with pytest.raises(Unverifiable, match="in time"):
        verify_password("a", stored, helper=CryptHelper(str(slow)), timeout=0.2)
    with pytest.raises(Unverifiable):
        verify_password("a", stored, helper=CryptHelper(str(tmp_path / "missing")))
