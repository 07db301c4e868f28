"""Check a password against a crypt(3) hash from ``/etc/shadow``, without the ``crypt`` module.

Python's ``crypt`` module is deprecated (PEP 594) and gone in 3.13, so the schemes that old and
current images use are written here from their public descriptions:

- SHA-crypt (``$5$`` SHA-256, ``$6$`` SHA-512), from Ulrich Drepper's specification "Unix crypt
  using SHA-256 and SHA-512" (people.redhat.com/drepper/SHA-crypt.txt), including its
  ``rounds=`` parameter (default 5000, at least 1000) and its test vectors;
- md5-crypt (``$1$``), Poul-Henning Kamp's FreeBSD scheme, as libxcrypt documents it.

yescrypt (the default of Debian 11+, Ubuntu 22.04+, Fedora 35+), gost-yescrypt, scrypt, bcrypt
and DES are not re-implemented (yescrypt in pure Python would be far too slow): they are
computed, when the host has it, by ``mkpasswd`` (Debian's ``whois`` package, a front end to
libxcrypt) run as a separate process with the password on its standard input and the setting
string taken from the stored hash, under a time limit and a memory limit. Without it such hashes
are reported as "not audited".

A hash from the image is untrusted: the number of rounds is capped (:data:`MAX_ROUNDS`) before it
bounds a loop, and anything malformed raises our own errors.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import resource
import shutil
import subprocess
from dataclasses import dataclass

from imageport.errors import CorruptImageError, LimitExceededError, UnsupportedImageError

#: The alphabet of crypt's base-64 encoding (not RFC 4648's).
ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Most SHA-crypt rounds we compute (Drepper allows 999,999,999: minutes in pure Python).
MAX_ROUNDS = 1_000_000
#: SHA-crypt's defaults and bounds (from the specification).
SHA_DEFAULT_ROUNDS = 5000
SHA_MIN_ROUNDS = 1000
SHA_MAX_SALT = 16
MD5_MAX_SALT = 8
#: Length of a bcrypt setting (prefix, cost, salt); its hash follows without a "$".
BCRYPT_SETTING_CHARS = 29
#: Longest stored hash we look at (yescrypt settings are the longest, well under this).
MAX_HASH_CHARS = 512
#: Longest password we hash (SHA-crypt's per-round work grows with its length).
MAX_PASSWORD_BYTES = 256
#: Address-space limit of the external helper (yescrypt's default cost needs 16 MiB).
HELPER_MEMORY_BYTES = 1 << 30

_DES_HASH = re.compile(r"[./0-9A-Za-z]{13}")
_ROUNDS = re.compile(r"rounds=([0-9]+)\$")


class HashScheme(enum.Enum):
    """The crypt(3) scheme of a stored hash, named as users know it."""

    YESCRYPT = "yescrypt"
    GOST_YESCRYPT = "gost-yescrypt"
    SCRYPT = "scrypt"
    BCRYPT = "bcrypt"
    SHA512 = "sha512-crypt"
    SHA256 = "sha256-crypt"
    MD5 = "md5-crypt"
    DES = "DES"
    SHA1 = "sha1-crypt"
    UNKNOWN = "unknown"

    @property
    def weak(self) -> bool:
        """Schemes that are fast to crack today (DES, md5-crypt)."""
        return self in (HashScheme.DES, HashScheme.MD5)


_PREFIXES = (
    ("$y$", HashScheme.YESCRYPT),
    ("$gy$", HashScheme.GOST_YESCRYPT),
    ("$7$", HashScheme.SCRYPT),
    ("$2b$", HashScheme.BCRYPT),
    ("$2a$", HashScheme.BCRYPT),
    ("$2y$", HashScheme.BCRYPT),
    ("$6$", HashScheme.SHA512),
    ("$5$", HashScheme.SHA256),
    ("$1$", HashScheme.MD5),
    ("$sha1$", HashScheme.SHA1),
)


def hash_scheme(stored: str) -> HashScheme:
    """The scheme of ``stored`` (a hash field without any ``!`` lock prefix)."""
    for prefix, scheme in _PREFIXES:
        if stored.startswith(prefix):
            return scheme
    if _DES_HASH.fullmatch(stored):
        return HashScheme.DES
    return HashScheme.UNKNOWN


# --- the crypt base-64 encoding -------------------------------------------------------------


def _b64_from_24bit(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(ITOA64[w & 0x3F])
        w >>= 6
    return "".join(out)


def _encode(digest: bytes, groups: tuple[tuple[int, int, int], ...], tail: tuple[int, ...]) -> str:
    """Encode ``digest`` in the byte order a scheme prescribes (groups of three, then a tail)."""
    parts = [_b64_from_24bit(digest[a], digest[b], digest[c], 4) for a, b, c in groups]
    if len(tail) == 1:
        parts.append(_b64_from_24bit(0, 0, digest[tail[0]], 2))
    else:
        parts.append(_b64_from_24bit(0, digest[tail[0]], digest[tail[1]], 3))
    return "".join(parts)


#: Byte order of the SHA-512 result in the encoding (Drepper's specification, step 22).
_SHA512_ORDER = (
    (0, 21, 42),
    (22, 43, 1),
    (44, 2, 23),
    (3, 24, 45),
    (25, 46, 4),
    (47, 5, 26),
    (6, 27, 48),
    (28, 49, 7),
    (50, 8, 29),
    (9, 30, 51),
    (31, 52, 10),
    (53, 11, 32),
    (12, 33, 54),
    (34, 55, 13),
    (56, 14, 35),
    (15, 36, 57),
    (37, 58, 16),
    (59, 17, 38),
    (18, 39, 60),
    (40, 61, 19),
    (62, 20, 41),
)
#: Byte order of the SHA-256 result (same specification).
_SHA256_ORDER = (
    (0, 10, 20),
    (21, 1, 11),
    (12, 22, 2),
    (3, 13, 23),
    (24, 4, 14),
    (15, 25, 5),
    (6, 16, 26),
    (27, 7, 17),
    (18, 28, 8),
    (9, 19, 29),
)
#: Byte order of the md5-crypt result.
_MD5_ORDER = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))


# --- SHA-crypt --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShaSetting:
    """The parameters of a ``$5$`` / ``$6$`` setting string."""

    prefix: str  #: ``$5$`` or ``$6$``
    rounds: int  #: after clamping to the specification's minimum
    explicit_rounds: bool  #: ``rounds=`` was given (and so appears in the output)
    salt: str  #: at most 16 characters


def parse_sha_setting(setting: str) -> ShaSetting:
    """Parse ``$6$[rounds=N$]salt[$hash]``; more than :data:`MAX_ROUNDS` rounds is refused."""
    prefix = setting[:3]
    if prefix not in ("$5$", "$6$"):
        raise UnsupportedImageError(f"not a SHA-crypt hash (prefix {prefix!r})")
    rest = setting[3:]
    rounds, explicit = SHA_DEFAULT_ROUNDS, False
    match = _ROUNDS.match(rest)
    if match:
        digits = match.group(1)
        requested = int(digits) if len(digits) <= 10 else MAX_ROUNDS + 1
        if requested > MAX_ROUNDS:
            raise LimitExceededError(
                f"SHA-crypt hash asks for {digits[:12]} rounds, more than the {MAX_ROUNDS} "
                "this check computes"
            )
        rounds, explicit = max(SHA_MIN_ROUNDS, requested), True
        rest = rest[match.end() :]
    elif rest.startswith("rounds="):
        raise CorruptImageError("SHA-crypt hash with a malformed rounds= parameter")
    salt = rest.split("$", 1)[0][:SHA_MAX_SALT]
    return ShaSetting(prefix, rounds, explicit, salt)


def _sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _repeat(block: bytes, length: int) -> bytes:
    """``block`` repeated and cut to ``length`` bytes (the specification's P and S sequences)."""
    return (block * (length // len(block) + 1))[:length]


def sha_crypt(password: bytes, setting: str) -> str:
    """The full ``$5$`` or ``$6$`` hash of ``password`` with the salt and rounds of ``setting``.

    Follows the numbered steps of Drepper's specification.
    """
    params = parse_sha_setting(setting)
    if len(password) > MAX_PASSWORD_BYTES:
        raise LimitExceededError(f"password longer than {MAX_PASSWORD_BYTES} bytes")
    new = _sha512 if params.prefix == "$6$" else _sha256
    salt = params.salt.encode("utf-8", "surrogateescape")
    plen = len(password)
    # steps 4-8: digest B = H(P S P)
    b = new(password + salt + password)
    # steps 1-3, 9-12: digest A = H(P S B..., then B or P for each bit of len(P))
    bits = []
    n = plen
    while n:
        bits.append(b if n & 1 else password)
        n >>= 1
    a = new(password + salt + _repeat(b, plen) + b"".join(bits))
    # steps 13-16: the P sequence; 17-20: the S sequence
    p_seq = _repeat(new(password * plen), plen) if plen else b""
    s_seq = _repeat(new(salt * (16 + a[0])), len(salt)) if salt else b""
    # step 21: the rounds. The input of round i depends on i mod 2, 3 and 7 only, so the 42
    # patterns are built once: odd rounds hash P [S] [P] C, even rounds C [S] [P] P.
    cycle = []
    for i in range(42):
        middle = (s_seq if i % 3 else b"") + (p_seq if i % 7 else b"")
        cycle.append((bool(i & 1), p_seq + middle if i & 1 else middle + p_seq))
    c = a
    for i in range(params.rounds):
        odd, fixed = cycle[i % 42]
        c = new(fixed + c) if odd else new(c + fixed)
    encoded = (
        _encode(c, _SHA512_ORDER, (63,))
        if params.prefix == "$6$"
        else _encode(c, _SHA256_ORDER, (31, 30))
    )
    rounds_part = f"rounds={params.rounds}$" if params.explicit_rounds else ""
    return f"{params.prefix}{rounds_part}{params.salt}${encoded}"


# --- md5-crypt --------------------------------------------------------------------------------


def md5_crypt(password: bytes, setting: str) -> str:
    """The full ``$1$`` hash of ``password`` with the salt of ``setting`` (1000 fixed rounds)."""
    if not setting.startswith("$1$"):
        raise UnsupportedImageError("not an md5-crypt hash")
    if len(password) > MAX_PASSWORD_BYTES:
        raise LimitExceededError(f"password longer than {MAX_PASSWORD_BYTES} bytes")
    salt_text = setting[3:].split("$", 1)[0][:MD5_MAX_SALT]
    salt = salt_text.encode("utf-8", "surrogateescape")
    magic = b"$1$"
    alt = hashlib.md5(password + salt + password).digest()  # noqa: S324 - the scheme is MD5
    ctx = hashlib.md5(password + magic + salt)  # noqa: S324
    ctx.update(_repeat(alt, len(password)) if password else b"")
    n = len(password)
    while n:
        ctx.update(b"\0" if n & 1 else password[:1])
        n >>= 1
    final = ctx.digest()
    for i in range(1000):
        data = password if i & 1 else final
        if i % 3:
            data += salt
        if i % 7:
            data += password
        data += final if i & 1 else password
        final = hashlib.md5(data).digest()  # noqa: S324
    return f"$1${salt_text}${_encode(final, _MD5_ORDER, (11,))}"


# --- dispatch ---------------------------------------------------------------------------------


def python_crypt(password: bytes, stored: str) -> str | None:
    """``stored`` recomputed for ``password`` in pure Python; None if the scheme is not here."""
    scheme = hash_scheme(stored)
    if scheme in (HashScheme.SHA512, HashScheme.SHA256):
        return sha_crypt(password, stored)
    if scheme is HashScheme.MD5:
        return md5_crypt(password, stored)
    return None


class CryptHelper:
    """An external program that computes any crypt(3) hash libxcrypt knows: ``mkpasswd``.

    It is given the setting string (the stored hash without its last ``$`` field) with ``-S``
    and the password on standard input (never on its command line), and prints the hash.
    """

    def __init__(self, program: str) -> None:
        self.program = program

    @classmethod
    def find(cls) -> CryptHelper | None:
        """The host's ``mkpasswd``, or None when it is not installed."""
        path = shutil.which("mkpasswd")
        return cls(path) if path else None

    def compute(self, password: bytes, stored: str, timeout: float) -> str | None:
        """The hash of ``password`` in the setting of ``stored``; None if the helper failed or
        ran out of ``timeout`` seconds."""
        if b"\n" in password or b"\r" in password or b"\0" in password or timeout <= 0:
            return None
        scheme = hash_scheme(stored)
        if scheme is HashScheme.BCRYPT:
            setting = stored[:BCRYPT_SETTING_CHARS]  # $2b$NN$ + 22 salt characters, no "$"
        elif scheme is HashScheme.DES:
            setting = stored[:2]
        else:
            setting = stored[: stored.rfind("$")]
        if not setting:
            return None
        cmd = [self.program, "--stdin", "-S", setting]
        if scheme is HashScheme.DES:
            cmd[1:1] = ["-m", "descrypt"]
        try:
            proc = subprocess.run(  # noqa: S603 - fixed program, no shell, no image path
                cmd,
                input=password + b"\n",
                capture_output=True,
                timeout=timeout,
                check=False,
                preexec_fn=_limit_memory,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if proc.returncode != 0:
            return None
        return proc.stdout.decode("ascii", "replace").strip()


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (HELPER_MEMORY_BYTES, HELPER_MEMORY_BYTES))


class Unverifiable(UnsupportedImageError):
    """Neither this module nor a helper can compute the hash's scheme."""


def verify_password(
    password: str, stored: str, *, helper: CryptHelper | None = None, timeout: float = 2.0
) -> bool:
    """True when ``password`` hashes to ``stored``.

    Raises :class:`Unverifiable` when the scheme is not computed here and no helper (or a
    failing one) is available, and our errors for malformed or over-costly hashes.
    """
    if len(stored) > MAX_HASH_CHARS:
        raise LimitExceededError(f"hash longer than {MAX_HASH_CHARS} characters")
    secret = password.encode("utf-8", "surrogateescape")
    computed = python_crypt(secret, stored)
    if computed is None:
        if helper is None:
            raise Unverifiable(
                f"{hash_scheme(stored).value} hashes need mkpasswd (package "
                "whois), which is not installed"
            )
        computed = helper.compute(secret, stored, timeout)
        if computed is None:
            raise Unverifiable(
                f"mkpasswd could not compute the {hash_scheme(stored).value} hash in time"
            )
    return hmac.compare_digest(
        computed.encode("utf-8", "surrogateescape"), stored.encode("utf-8", "surrogateescape")
    )
