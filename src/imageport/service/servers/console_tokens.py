"""The tokens of console URLs: random, short-lived, single use, kept in this process only.

A token is what authenticates a console WebSocket (a browser cannot sign one with SDK-HMAC):
whoever holds the URL may open the console, once, within :data:`TOKEN_SECONDS` (the vendor's
10 minutes). So a token is

* 256 random bits (``secrets.token_urlsafe(32)``), never stored: the store keys on its sha256,
  so a dump of the process's memory lists no usable token;
* bound to one server, its project and one kind of console (:class:`ConsoleKind`): a display
  token does not open the serial console;
* used up by the first connection that presents it, whether or not that connection then
  succeeds (a token that leaked from a log or a browser history is worth nothing once the
  console was opened; a client that needs another connection asks for another URL); only a
  connection refused before the token is redeemed (its Origin, its subprotocol, the number of
  consoles open) leaves it unused;
* forgotten when the process ends: the store is in memory, not in the database, so a restarted
  ``imageport serve`` accepts no token it did not issue (the console sessions died with the
  process anyway).

A project holds at most :data:`MAX_TOKENS_PER_PROJECT` unused tokens: asking for one more drops
its oldest, so a client asking in a loop cannot grow the store.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

TOKEN_SECONDS = 600
"""How long a console URL may be used (the vendor's remote console URL lasts 10 minutes)."""
MAX_TOKENS_PER_PROJECT = 32
"""Unused tokens one project may hold; a new one drops the project's oldest."""
MAX_TOKEN_CHARS = 128
"""Longer strings are not looked up (a token is 43 characters)."""


class ConsoleKind(enum.StrEnum):
    #: the machine's display, through the VNC WebSocket proxy
    VNC = "vnc"
    #: the machine's serial console
    SERIAL = "serial"


@dataclass(frozen=True, slots=True)
class ConsoleGrant:
    """What a token opens, for whom, until when."""

    server_id: str
    project_id: str
    kind: ConsoleKind
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class ConsoleTokens:
    """The store (see the module docstring); safe to use from several threads."""

    def __init__(self, per_project: int = MAX_TOKENS_PER_PROJECT) -> None:
        self._per_project = per_project
        self._lock = threading.Lock()
        # sha256 of the token -> grant, oldest first
        self._grants: OrderedDict[str, ConsoleGrant] = OrderedDict()

    def issue(self, grant: ConsoleGrant, now: datetime) -> str:
        """A new token for ``grant`` (expired grants are dropped on the way)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._drop_expired(now)
            held = [d for d, g in self._grants.items() if g.project_id == grant.project_id]
            for digest in held[: max(0, len(held) - self._per_project + 1)]:
                del self._grants[digest]
            self._grants[_digest(token)] = grant
        return token

    def redeem(self, token: str, kind: ConsoleKind, now: datetime) -> ConsoleGrant | None:
        """The grant of ``token`` if it is known, unexpired and of ``kind``; the token is used
        up whatever the answer (a token shown on the wrong route is burnt too)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        with self._lock:
            grant = self._grants.pop(_digest(token), None)
        if grant is None or grant.kind != kind or grant.expires_at <= now:
            return None
        return grant

    def project_of(self, token: str) -> str | None:
        """The project of ``token`` while it is in the store (expired or not), without using it
        up; None when it is not there."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        with self._lock:
            grant = self._grants.get(_digest(token))
        return None if grant is None else grant.project_id

    def held(self) -> int:
        """Unused tokens in the store (expired ones included until the next issue)."""
        with self._lock:
            return len(self._grants)

    def _drop_expired(self, now: datetime) -> None:
        for digest in [d for d, g in self._grants.items() if g.expires_at <= now]:
            del self._grants[digest]


def expiry(now: datetime) -> datetime:
    """When a token issued at ``now`` stops working."""
    return now + timedelta(seconds=TOKEN_SECONDS)
