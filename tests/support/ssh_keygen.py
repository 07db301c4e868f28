"""Real OpenSSH keys for the key pair tests, made and fingerprinted by ``ssh-keygen`` itself
(the reference the service's fingerprints and generated keys are checked against).

A missing ``ssh-keygen`` fails the test with the fix (``apt-get install openssh-client``):
these tests must not pass by skipping.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        pytest.fail("ssh-keygen is missing: apt-get install openssh-client", pytrace=False)
    return found


def make_key(folder: Path, key_type: str, bits: int | None = None, comment: str = "") -> Path:
    """A new unencrypted key pair ``folder/<type>-<bits>`` (and ``.pub``); the private key's
    path. ``key_type`` is ssh-keygen's ``-t`` (ed25519, rsa, ecdsa, dsa)."""
    path = folder / f"{key_type}-{bits or 'default'}"
    command = [_ssh_keygen(), "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)]
    if bits is not None:
        command[4:4] = ["-b", str(bits)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return path


def md5_fingerprint(path: Path) -> str:
    """``ssh-keygen -l -E md5 -f PATH``'s fingerprint without its ``MD5:`` prefix."""
    done = subprocess.run(
        [_ssh_keygen(), "-l", "-E", "md5", "-f", str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    field = done.stdout.split()[1]
    assert field.startswith("MD5:"), done.stdout
    return field.removeprefix("MD5:")


def public_of_private(path: Path) -> str:
    """``ssh-keygen -y -f PATH``: the public key OpenSSH derives from a private key file (it
    fails on a file ssh cannot read)."""
    done = subprocess.run(
        [_ssh_keygen(), "-y", "-f", str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip()
