"""The replay memory: which signatures of single-use requests have been used, until they expire.

A signature is valid from its date minus the clock skew until its date plus the skew
(:mod:`imageport.auth`); a single-use request's signature is remembered until then, keyed on
the signature value (a 16-byte digest of ``scheme:signature``), never on the Authorization
header's text, which whoever re-sends a captured request may re-space or re-order. The memory
is the database's ``used_signatures`` table, so it survives a restart (which an attacker might
provoke to have a window of captured requests accepted again) and is shared by every server on
the database; a second use is a primary-key conflict.

A second use is refused, with one exception: an *uncovered* bucket-API write (its body is not
signed) that had no body the first time and has none again is the same operation repeated, as S3
allows; the first use is recorded as bodiless so that a copy *with* a body is still refused.

One project may hold at most :data:`PER_PROJECT` live entries per server process (more than 100
single-use writes a second over a signature's 15 minutes); beyond that its single-use requests
answer :class:`RetryLater` instead of growing the table without end. Expired entries are deleted
as new ones come.
"""

from __future__ import annotations

import hashlib
import heapq
import threading
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.tables import used_signatures as table

PER_PROJECT = 100_000
"""Most live signatures one project may have in the memory (per server process)."""
PURGE_EVERY = 1000
"""Expired rows are deleted once every this many new ones..."""
PURGE_MARGIN = 600.0
"""...once they have been expired this many seconds: a row is never deleted while a signature
it names could still pass a server's date check (a server with a later clock may purge)."""


class RetryLater(ServiceError):
    """A single-use request that cannot be accepted now though, signed anew and sent later, it
    could be: its project has too many live signatures (503 ``SlowDown``: SDKs retry it)."""

    status = 503

    def __init__(self, message: str) -> None:
        super().__init__("SlowDown", message)


def replay_key(scheme: str, signature: str) -> str:
    """The memory's key for ``signature`` made with ``scheme`` (32 hex digits)."""
    return hashlib.blake2b(
        f"{scheme}:{signature}".encode("utf-8", "surrogatepass"), digest_size=16
    ).hexdigest()


class _ProjectCounts:
    """Live entries per project that this process added, expiring with them (a min-heap of
    expiries per project: one entry dated far ahead holds back no other)."""

    def __init__(self) -> None:
        self._expiries: dict[str, list[float]] = {}

    def count(self, project_id: str, now: float) -> int:
        heap = self._expiries.get(project_id)
        if heap is None:
            return 0
        while heap and heap[0] <= now:
            heapq.heappop(heap)
        if not heap:
            del self._expiries[project_id]
        return len(heap)

    def add(self, project_id: str, expires: float) -> None:
        heapq.heappush(self._expiries.setdefault(project_id, []), expires)


class ReplayGuard:
    """The used signatures of one database (see the module docstring)."""

    def __init__(self, services: Services, *, per_project: int = PER_PROJECT) -> None:
        self._services = services
        self.engine = services.db
        self._skew = services.settings.max_skew_seconds
        self._per_project = per_project
        self._counts = _ProjectCounts()
        self._added = 0
        self._lock = threading.Lock()

    def first_use(
        self,
        key: str,
        project_id: str,
        *,
        signed_at: datetime,
        now: datetime,
        bodiless: bool = False,
        repeatable_bodiless: bool = False,
    ) -> bool:
        """True when the request whose signature is ``key`` may be accepted (it is then
        remembered until its signature expires), False on a replay. ``repeatable_bodiless``:
        a bodiless repeat of a bodiless first use is not a replay. :class:`RetryLater` when
        ``project_id`` has too many live signatures."""
        expires = signed_at.timestamp() + self._skew
        clock = now.timestamp()
        with self._lock:
            if self._counts.count(project_id, clock) >= self._per_project:
                raise RetryLater(
                    f"too many signed requests in the last {2 * self._skew:.0f} s; retry later"
                )
            self._added += 1
            purge = self._added % PURGE_EVERY == 0
        with self._services.db.begin() as conn:
            if purge:  # well after expiry: servers' clocks may differ by a little
                conn.execute(delete(table).where(table.c.expires_at < clock - PURGE_MARGIN))
            seen = conn.execute(
                select(table.c.bodiless).where(table.c.signature_digest == key)
            ).first()
            if seen is not None:  # used, however close to its expiry
                return repeatable_bodiless and bodiless and bool(seen.bodiless)
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(table).values(
                            signature_digest=key,
                            project_id=project_id,
                            expires_at=expires,
                            bodiless=bodiless,
                        )
                    )
            except IntegrityError:  # the same signature, used at this very moment
                return False
        with self._lock:
            self._counts.add(project_id, expires)
        return True

    def forget(self, key: str) -> None:
        """Forget ``key``: its request failed on the server's side (an image-API write, whose
        body the signature covers: a retry can only repeat the same operation)."""
        with self._services.db.begin() as conn:
            conn.execute(delete(table).where(table.c.signature_digest == key))


_GUARDS: dict[str, ReplayGuard] = {}
_GUARDS_LOCK = threading.Lock()


def guard_of(services: Services) -> ReplayGuard:
    """The replay guard of the database ``services`` use (one per database in this process,
    keyed by URL: its per-project counts are shared by every Services object over it)."""
    key = services.settings.db_url
    with _GUARDS_LOCK:
        guard = _GUARDS.get(key)
        if guard is None or guard.engine is not services.db:
            guard = _GUARDS[key] = ReplayGuard(services)
        return guard
