"""``adminPass``: the vendor's password rules, and where a password waits for its machine.

A create request's ``adminPass`` must follow the vendor's rules for Linux servers
(:func:`check_admin_pass`, ``Ecs.0011``): 8-26 characters, each a letter, a digit or one of
:data:`SPECIALS`, of at least three of the four kinds, and without the user name ``root`` or its
reverse in any case.

The password is never written down: not in the database, a job's params or a log. Between the
request and the job that makes the machine it waits in this process's memory
(:class:`PasswordVault`, :data:`VAULT`), keyed by the server's id; the job takes it out and
puts it only into the machine's metadata (``admin_pass``, :mod:`.metadata`). The job queue runs
in the process that took the request, so the job finds it; if the service restarts in
between, it is gone, and the job fails the server (``Ecs.0204``) saying so, rather than make a
server whose password nobody knows.
"""

from __future__ import annotations

import threading

from imageport.service import codes
from imageport.service.errors import RequestInvalid

MIN_LENGTH = 8
MAX_LENGTH = 26
SPECIALS = "!@$%^-_=+[{}]:,./?~#*"
_FORBIDDEN_WORDS = ("root", "toor")


def check_admin_pass(value: object) -> str:
    """``value`` if it is a password the rules of the module docstring allow (``Ecs.0011``
    otherwise; the message never repeats the password)."""
    if not isinstance(value, str):
        raise RequestInvalid(codes.ECS_PASSWORD, "adminPass must be a string")
    if not MIN_LENGTH <= len(value) <= MAX_LENGTH:
        raise RequestInvalid(
            codes.ECS_PASSWORD, f"adminPass must be {MIN_LENGTH}-{MAX_LENGTH} characters long"
        )
    kinds = [
        any(c.isascii() and c.isupper() for c in value),
        any(c.isascii() and c.islower() for c in value),
        any(c.isascii() and c.isdigit() for c in value),
        any(c in SPECIALS for c in value),
    ]
    if any(not (c.isascii() and c.isalnum()) and c not in SPECIALS for c in value):
        raise RequestInvalid(
            codes.ECS_PASSWORD,
            f"adminPass may hold only letters, digits and the characters {SPECIALS}",
        )
    if sum(kinds) < 3:
        raise RequestInvalid(
            codes.ECS_PASSWORD,
            "adminPass must hold three of: upper-case letters, lower-case letters, digits, "
            f"special characters ({SPECIALS})",
        )
    if any(word in value.lower() for word in _FORBIDDEN_WORDS):
        raise RequestInvalid(
            codes.ECS_PASSWORD, "adminPass must not contain the user name root or its reverse"
        )
    return value


class PasswordVault:
    """Passwords waiting for their server's create job, in memory only (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}

    def hold(self, server_id: str, password: str) -> None:
        with self._lock:
            self._held[server_id] = password

    def take(self, server_id: str) -> str | None:
        """The server's password, forgotten at once (None: none is held)."""
        with self._lock:
            return self._held.pop(server_id, None)

    def forget(self, server_id: str) -> None:
        with self._lock:
            self._held.pop(server_id, None)


#: The process's vault (one process takes the requests and runs the jobs).
VAULT = PasswordVault()

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "SPECIALS", "VAULT", "PasswordVault", "check_admin_pass"]
