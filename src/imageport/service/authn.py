"""Who is calling: turn a request's signature or token into the caller's project.

Accepted credentials (requirements: every API request is authenticated):

* ``SDK-HMAC-SHA256`` signatures (the vendor SDK, image API), SigV4 and AWS/OBS v2 signatures
  (S3 clients, bucket API), verified by :mod:`imageport.auth` against the key's secret;
* presigned URLs (bucket API): SigV4 (``X-Amz-Signature``) and v2 (``Signature``, ``Expires``)
  query-string signatures. A request may carry either those or an Authorization header, not
  both (``InvalidArgument``, as S3 answers);
* ``X-Auth-Token`` tokens issued by the token endpoint (:func:`issue_token`).

An ``SDK-HMAC-SHA256`` request that changes something (not GET/HEAD) may not be replayed: the
same signature seen twice inside the clock-skew window is refused (the memory is per process and
per database). S3 signatures keep S3's own rules, which have no replay memory: S3 clients re-send
an identical signed request on retry within the same second, and PUT/DELETE are idempotent.
A presigned URL is not remembered either: like S3, it is meant to be used any number of times
until it expires (a retried upload, several downloads), so its expiry is the only limit.

Every failure is :class:`Unauthenticated` with the verifier's code, so the API layers answer in
their own dialect.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, insert, select

from imageport.adapters.db.schema import tokens
from imageport.auth import (
    SignatureError,
    SignedRequest,
    detect_query_scheme,
    detect_scheme,
    s3v2,
    sdk_hmac,
    sigv4,
    sigv4_query,
)
from imageport.service.context import Services
from imageport.service.errors import Unauthenticated
from imageport.service.projects import active_key

MAX_TOKEN = 512
"""Longest X-Auth-Token value looked up."""
REPLAY_MEMORY = 100_000
"""Most signatures remembered for replay detection (oldest forgotten first)."""
QUERY_SCHEMES = frozenset({"sigv4-query", "s3v2-query"})
"""The presigned-URL schemes (auth parameters in the query string)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    project_id: str
    access_key: str


class ReplayGuard:
    """Remembers signatures of state-changing requests for the skew window."""

    def __init__(self, window_seconds: float, capacity: int = REPLAY_MEMORY) -> None:
        self._window = window_seconds
        self._capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, signature: str, now: float | None = None) -> bool:
        """True the first time ``signature`` is seen inside the window, False on a replay."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._seen:
                oldest, seen_at = next(iter(self._seen.items()))
                if now - seen_at <= 2 * self._window and len(self._seen) < self._capacity:
                    break
                del self._seen[oldest]
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True


_GUARDS: dict[str, ReplayGuard] = {}
_GUARDS_LOCK = threading.Lock()


def _guard(services: Services) -> ReplayGuard:
    """The replay guard of the database ``services`` use: every Services object over one
    database (the API apps, a restarted app in the same process) shares it. Keyed by URL, not by
    ``id(services)``, whose value a later object may reuse."""
    key = services.settings.db_url
    with _GUARDS_LOCK:
        guard = _GUARDS.get(key)
        if guard is None:
            guard = _GUARDS[key] = ReplayGuard(services.settings.max_skew_seconds)
        return guard


def _secret_for(services: Services) -> tuple[dict[str, str], Callable[[str], str | None]]:
    projects: dict[str, str] = {}

    def secret_for(access: str) -> str | None:
        key = active_key(services, access)
        if key is None:
            return None
        projects[access] = key.project_id
        return key.secret_key

    return projects, secret_for


def _scheme_of(request: SignedRequest, schemes: frozenset[str]) -> str | None:
    """The signature scheme of ``request``: its presigned-URL query parameters when
    ``schemes`` accepts those and it has some, else its Authorization header's."""
    header_scheme = detect_scheme(request.headers)
    if schemes.isdisjoint(QUERY_SCHEMES):
        return header_scheme
    try:
        query_scheme = detect_query_scheme(request.raw_query)
    except SignatureError as exc:
        raise Unauthenticated(exc.code, exc.message) from exc
    if query_scheme is None:
        return header_scheme
    if request.header("authorization") is not None:
        raise Unauthenticated("InvalidArgument", "Only one auth mechanism allowed; only the "
                              "X-Amz-Algorithm query parameter, Signature query string "
                              "parameter or the Authorization header should be specified")
    return query_scheme


def _verify(
    scheme: str,
    request: SignedRequest,
    secret_for: Callable[[str], str | None],
    services: Services,
    virtual_bucket: str | None,
) -> str:
    """The access key that signed ``request`` with ``scheme``; SignatureError otherwise."""
    now = services.clock()
    skew = timedelta(seconds=services.settings.max_skew_seconds)
    if scheme == "sdk-hmac":
        return sdk_hmac.verify(request, secret_for, now, max_skew=skew)
    if scheme == "sigv4":
        return sigv4.verify(request, secret_for, now, max_skew=skew)
    if scheme == "sigv4-query":
        return sigv4_query.verify(request, secret_for, now, max_skew=skew)
    if scheme == "s3v2-query":
        return s3v2.verify_query(request, secret_for, now, virtual_bucket=virtual_bucket)
    return s3v2.verify(request, secret_for, now, max_skew=skew, virtual_bucket=virtual_bucket)


def authenticate(
    services: Services,
    request: SignedRequest,
    *,
    schemes: frozenset[str],
    virtual_bucket: str | None = None,
) -> Principal:
    """The caller of ``request`` if it carries a valid credential of one of ``schemes``
    (``"sdk-hmac"``, ``"sigv4"``, ``"s3v2"``, ``"sigv4-query"``, ``"s3v2-query"``,
    ``"token"``); :class:`Unauthenticated` otherwise."""
    token = request.header("x-auth-token")
    scheme = _scheme_of(request, schemes)
    if scheme is None and token is not None:
        if "token" not in schemes:
            raise Unauthenticated("AccessDenied", "tokens are not accepted here; sign the request")
        return _from_token(services, token)
    if scheme is None:
        raise Unauthenticated("AccessDenied", "the request is not signed and carries no token")
    if scheme not in schemes:
        raise Unauthenticated("AccessDenied", f"{scheme} signatures are not accepted here")
    projects, secret_for = _secret_for(services)
    try:
        access = _verify(scheme, request, secret_for, services, virtual_bucket)
    except SignatureError as exc:
        raise Unauthenticated(exc.code, exc.message) from exc
    if request.method not in ("GET", "HEAD") and scheme == "sdk-hmac":
        auth = request.header("authorization") or ""
        if not _guard(services).first_use(auth):
            raise Unauthenticated("ReplayedRequest",
                                  "this signed request was already used; sign it again")
    return Principal(projects[access], access)


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _from_token(services: Services, token: str) -> Principal:
    if not token or len(token) > MAX_TOKEN:
        raise Unauthenticated("InvalidToken", "the token is malformed")
    with services.db.connect() as conn:
        row = conn.execute(select(tokens).where(
            tokens.c.token_sha256 == _token_digest(token))).first()
    if row is None or row.expires_at < services.clock().timestamp():
        raise Unauthenticated("InvalidToken", "the token is unknown or has expired")
    if active_key(services, row.access_key) is None:
        raise Unauthenticated("InvalidToken", "the key that issued this token was revoked")
    return Principal(row.project_id, row.access_key)


def issue_token(services: Services, principal: Principal) -> tuple[str, float]:
    """A new token for ``principal`` and its expiry (epoch seconds); expired ones are purged."""
    token = "IPT" + secrets.token_urlsafe(48)
    now = services.clock().timestamp()
    expires = now + services.settings.token_lifetime_seconds
    with services.db.begin() as conn:
        conn.execute(delete(tokens).where(tokens.c.expires_at < now))
        conn.execute(insert(tokens).values(token_sha256=_token_digest(token),
                                           project_id=principal.project_id,
                                           access_key=principal.access_key,
                                           expires_at=expires))
    return token, expires
