"""OpenSSH public keys as a key pair holds them: read strictly, made fresh, fingerprinted.

A public key reaches a server's ``authorized_keys`` (through the config drive and the metadata
service), so what a client sends is read as hostile and kept only in one shape:
``TYPE BASE64 [COMMENT]`` on one line (:meth:`PublicKey.line`).

* **Types**: ``ssh-ed25519``, ``ssh-rsa`` of :data:`RSA_MIN_BITS`-:data:`RSA_MAX_BITS` bits,
  ``ecdsa-sha2-nistp256/384/521`` (:data:`KEY_TYPES`). Refused: DSA (``ssh-dss``, too weak and
  gone from OpenSSH), security-key (``sk-...``) and certificate (``...-cert-v01@openssh.com``)
  types, and ``authorized_keys`` options in front of the type (``command="..." ssh-rsa ...``:
  the service, not the client, decides what a key may do).
* **Reading**: the text is capped (:data:`MAX_PUBLIC_KEY_CHARS`) before it is split; surrounding
  whitespace (a file's final newline) is dropped, a second line is refused (it would be a
  second key); the base64 must be strict, and the key is parsed by ``cryptography``'s
  ``load_ssh_public_key``, whose type must match the declared one. The blob must be exactly the
  canonical encoding ``cryptography`` writes back (nothing appended, no padded numbers), so
  the fingerprint is the one ``ssh-keygen`` shows for the same key.
* **Comment**: kept, for the user to recognise the key, with only the characters of
  :data:`COMMENT_CHARS` (others are dropped, whitespace runs become one space) and at most
  :data:`MAX_COMMENT_CHARS` of them.
* **Fingerprint** (:meth:`PublicKey.fingerprint`): as Nova computes it for ssh keys, the MD5 of
  the decoded blob in colon-separated hex (``aa:bb:...``, 16 pairs): what ``ssh-keygen -l -E
  md5`` prints after its ``MD5:`` prefix.
* **Generating** (:func:`generate`): an Ed25519 pair made with ``cryptography``; the private
  key in OpenSSH's own format (``-----BEGIN OPENSSH PRIVATE KEY-----``, unencrypted), as
  ``ssh`` reads it, the public key commented :data:`GENERATED_COMMENT`.

A refusal is :class:`~imageport.service.errors.RequestInvalid` with ``Ecs.0005`` naming
``public_key``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from imageport.service import codes
from imageport.service.errors import RequestInvalid

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)
"""The public key types a key pair may have."""
RSA_MIN_BITS = 2048
"""Smallest RSA key taken (smaller ones are breakable; OpenSSH refuses under 1024)."""
RSA_MAX_BITS = 16384
"""Largest RSA key taken (``ssh-keygen``'s own maximum)."""
MAX_PUBLIC_KEY_CHARS = 4096
"""Longest ``public_key`` read: a 16384-bit RSA key with a full comment fits (about 2,900)."""
MAX_COMMENT_CHARS = 128
"""Longest comment kept."""
COMMENT_CHARS = re.compile(r"[A-Za-z0-9 ._@+=:,/-]")
"""The characters a kept comment may have (``user@host`` and the like)."""
GENERATED_COMMENT = "Generated-by-imageport"
"""The comment of a generated public key (Nova writes ``Generated-by-Nova``)."""

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A public key that passed :func:`parse_public_key` (or was made by :func:`generate`)."""

    #: one of :data:`KEY_TYPES`
    key_type: str
    #: the key in SSH wire format (what the base64 of the line decodes to)
    blob: bytes
    #: the comment as kept ("" for none)
    comment: str

    @property
    def line(self) -> str:
        """``TYPE BASE64 [COMMENT]``: the one form stored and handed to servers."""
        text = f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"
        return f"{text} {self.comment}" if self.comment else text

    @property
    def fingerprint(self) -> str:
        """Nova's fingerprint of an ssh key: the blob's MD5, colon-separated hex."""
        digest = hashlib.md5(self.blob, usedforsecurity=False).hexdigest()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _refuse(why: str) -> RequestInvalid:
    return RequestInvalid(codes.ECS_INVALID, f"public_key {why}")


def parse_public_key(text: str) -> PublicKey:
    """The public key ``text`` holds, read as the module docstring says; Ecs.0005 otherwise."""
    if len(text) > MAX_PUBLIC_KEY_CHARS:
        raise _refuse(f"is longer than {MAX_PUBLIC_KEY_CHARS} characters")
    text = text.strip()
    if not text:
        raise _refuse("is empty: give an OpenSSH public key, or leave it out to have one made")
    if "\n" in text or "\r" in text:
        raise _refuse("must be one line: one key per key pair")
    parts = text.split(None, 2)
    key_type = parts[0]
    if key_type not in KEY_TYPES:
        raise _refuse(
            f"must begin with its type, one of {', '.join(KEY_TYPES)}; not "
            f"{key_type[:40]!r} (DSA, security-key and certificate types, and authorized_keys "
            "options, are not taken)"
        )
    if len(parts) < 2:
        raise _refuse(f"has no key after {key_type!r}")
    encoded = parts[1]
    if not _BASE64.fullmatch(encoded):
        raise _refuse("is not TYPE BASE64 [COMMENT]: the key is not base64")
    try:
        blob = base64.b64decode(encoded, validate=True)
        key = serialization.load_ssh_public_key(f"{key_type} {encoded}".encode("ascii"))
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:
        raise _refuse(f"is not a valid {key_type} key ({str(exc)[:80]})") from exc
    _check_strength(key_type, key)
    canonical = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    if canonical != f"{key_type} {encoded}".encode("ascii"):
        raise _refuse(f"is not a canonical {key_type} key (its encoding has extra or padded data)")
    return PublicKey(key_type, blob, clean_comment(parts[2] if len(parts) > 2 else ""))


def _check_strength(key_type: str, key: object) -> None:
    """The parsed key is of the declared kind, and an RSA key of an accepted size."""
    if key_type == "ssh-rsa":
        if not isinstance(key, rsa.RSAPublicKey):
            raise _refuse("is not an RSA key")
        if not RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
            raise _refuse(
                f"is a {key.key_size}-bit RSA key: it must have {RSA_MIN_BITS}-{RSA_MAX_BITS} bits"
            )
    elif key_type == "ssh-ed25519":
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise _refuse("is not an Ed25519 key")
    elif not isinstance(key, ec.EllipticCurvePublicKey):
        raise _refuse("is not an ECDSA key")


def clean_comment(text: str) -> str:
    """``text`` with only :data:`COMMENT_CHARS`, single spaces, at most
    :data:`MAX_COMMENT_CHARS` characters."""
    kept = "".join(COMMENT_CHARS.findall(" ".join(text[: 4 * MAX_COMMENT_CHARS].split())))
    return " ".join(kept.split())[:MAX_COMMENT_CHARS].strip()


@dataclass(frozen=True, slots=True)
class GeneratedPair:
    """A key pair made here: the public key to store, the private key to answer once."""

    public: PublicKey
    #: OpenSSH private key format, unencrypted; never stored
    private_openssh: str


def generate() -> GeneratedPair:
    """A new Ed25519 key pair."""
    private = ed25519.Ed25519PrivateKey.generate()
    private_text = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_line = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    key_type, encoded = public_line.decode("ascii").split(" ")
    return GeneratedPair(
        PublicKey(key_type, base64.b64decode(encoded), GENERATED_COMMENT), private_text
    )


__all__ = [
    "GENERATED_COMMENT",
    "KEY_TYPES",
    "MAX_PUBLIC_KEY_CHARS",
    "RSA_MAX_BITS",
    "RSA_MIN_BITS",
    "GeneratedPair",
    "PublicKey",
    "clean_comment",
    "generate",
    "parse_public_key",
]
