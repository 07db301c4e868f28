"""Who is calling: turn a request's signature or token into the caller's project.

Accepted credentials (requirements: every API request is authenticated):

* ``SDK-HMAC-SHA256`` signatures (the vendor SDK, image API), SigV4 and AWS/OBS v2 signatures
  (S3 clients, bucket API), verified by :mod:`imageport.auth` against the key's secret;
* presigned URLs (bucket API): SigV4 (``X-Amz-Signature``) and v2 (``Signature``, ``Expires``)
  query-string signatures. A request may carry either those or an Authorization header, not
  both (``InvalidArgument``, as S3 answers);
* ``X-Auth-Token`` tokens issued by the token endpoint (:func:`issue_token`).

**Replays.** A signed request seen on the wire (plain HTTP, a proxy's log) must not be usable
again with another body. The replay memory (:class:`ReplayGuard`) keys on the *signature value*
(``scheme:signature``), never on the header's text, which a replayer may re-space or re-order.
A request is single-use inside the clock-skew window when it changes something (not
GET/HEAD/OPTIONS) and:

* it is signed with ``SDK-HMAC-SHA256`` (every image-API write and the token endpoint: the
  vendor's API has no idempotent retries of identical signed writes to preserve), or
* it is a bucket-API request whose *body the signature does not cover*: SigV4 with
  ``UNSIGNED-PAYLOAD`` or ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` and no signed body digest, or
  a v2 (``AWS``/``OBS``) signature over a body without ``Content-MD5``. Anyone holding such a
  request could otherwise send it again with any body.

A bucket-API request whose body *is* covered (a hex ``x-amz-content-sha256`` compared with the
body, a chunk-signed stream, a signed ``Content-MD5`` or ``x-amz-checksum-sha256``/``-sha1``
that the views verify, or no body)
keeps S3's own rule: an identical copy is the identical operation, and S3 clients (rclone's
bucket creation, any retry within the same second) re-send identical signed requests.
Presigned URLs are not remembered either: like S3's, they are bearer capabilities meant to be
used until they expire. A single-use request that then fails on the server's side (a 5xx, or
the client went away before it took effect) is forgotten again by :func:`release`, so that a
client's retry of it is not refused as a replay.

The memory is per process and per database, holds at most :data:`REPLAY_MEMORY` signatures and
at most :data:`REPLAY_PER_KEY` per access key; when either is full of signatures still inside
the window it refuses new single-use requests (``SlowDown``, retry later) instead of forgetting
an old signature, which would let that one be replayed.

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
    sigv4_streaming,
)
from imageport.auth.request import EMPTY_SHA256
from imageport.service.context import Services
from imageport.service.errors import ServiceError, Unauthenticated
from imageport.service.projects import active_key

MAX_TOKEN = 512
"""Longest X-Auth-Token value looked up."""
REPLAY_MEMORY = 200_000
"""Most signatures remembered for replay detection (about 30 MB)."""
REPLAY_PER_KEY = 20_000
"""Most signatures remembered for one access key: one key cannot fill the memory for all."""
QUERY_SCHEMES = frozenset({"sigv4-query", "s3v2-query"})
"""The presigned-URL schemes (auth parameters in the query string)."""
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_UNCOVERED_SIGV4 = frozenset({sigv4.UNSIGNED_PAYLOAD, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
#: Body digests the bucket API verifies before it acts: signed, they cover the body (CRC32 does
#: not: a body with a chosen CRC is easy to make)
_BODY_DIGESTS = ("content-md5", "x-amz-checksum-sha256", "x-amz-checksum-sha1")
_SIGNATURE_OF = {"sdk-hmac": sdk_hmac.signature_of, "sigv4": sigv4.signature_of,
                 "s3v2": s3v2.signature_of}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    project_id: str
    access_key: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    """An authenticated request: its caller, the replay-memory key it used up (None when it
    may be repeated), and for a chunk-signed upload the chain its body must verify against."""

    principal: Principal
    replay_key: str | None = None
    chunk_chain: sigv4_streaming.ChunkChain | None = None


class ReplayFull(ServiceError):
    """The replay memory cannot take another signature now (``SlowDown``, 503)."""

    status = 503


class ReplayGuard:
    """Remembers the signatures of single-use requests for twice the skew window (a signature
    is valid from its date minus the skew until its date plus the skew)."""

    def __init__(self, window_seconds: float, capacity: int = REPLAY_MEMORY,
                 per_key: int = REPLAY_PER_KEY) -> None:
        self._window = window_seconds
        self._capacity = capacity
        self._per_key = per_key
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._per_owner: dict[str, int] = {}
        self._lock = threading.Lock()

    def first_use(self, key: str, owner: str = "", now: float | None = None) -> bool:
        """True the first time ``key`` is seen inside the window (it is then remembered for
        ``owner``, an access key), False on a replay; :class:`ReplayFull` when the memory, or
        ``owner``'s share of it, is full of signatures still inside the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._expire(now)
            if key in self._seen:
                return False
            if len(self._seen) >= self._capacity or \
                    self._per_owner.get(owner, 0) >= self._per_key:
                raise ReplayFull("SlowDown", "too many signed requests in the last "
                                 f"{2 * self._window:.0f} s; retry later")
            self._seen[key] = (now, owner)
            self._per_owner[owner] = self._per_owner.get(owner, 0) + 1
            return True

    def forget(self, key: str) -> None:
        """Forget ``key`` (its request failed on the server's side; a retry is not a replay)."""
        with self._lock:
            entry = self._seen.pop(key, None)
            if entry is not None:
                self._dropped(entry[1])

    def _expire(self, now: float) -> None:
        while self._seen:
            oldest, (seen_at, owner) = next(iter(self._seen.items()))
            if now - seen_at <= 2 * self._window:
                return
            del self._seen[oldest]
            self._dropped(owner)

    def _dropped(self, owner: str) -> None:
        left = self._per_owner.get(owner, 0) - 1
        if left > 0:
            self._per_owner[owner] = left
        else:
            self._per_owner.pop(owner, None)


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


class _Secrets:
    """``secret_for`` for the verifiers, remembering each key's project and secret."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self.projects: dict[str, str] = {}
        self.secrets: dict[str, str] = {}

    def __call__(self, access: str) -> str | None:
        key = active_key(self._services, access)
        if key is None:
            return None
        self.projects[access] = key.project_id
        self.secrets[access] = key.secret_key
        return key.secret_key


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
    unsigned_payload: bool,
) -> str:
    """The access key that signed ``request`` with ``scheme``; SignatureError otherwise."""
    now = services.clock()
    skew = timedelta(seconds=services.settings.max_skew_seconds)
    if scheme == "sdk-hmac":
        return sdk_hmac.verify(request, secret_for, now, max_skew=skew,
                               unsigned_payload=unsigned_payload)
    if scheme == "sigv4":
        return sigv4.verify(request, secret_for, now, max_skew=skew)
    if scheme == "sigv4-query":
        return sigv4_query.verify(request, secret_for, now, max_skew=skew)
    if scheme == "s3v2-query":
        return s3v2.verify_query(request, secret_for, now, virtual_bucket=virtual_bucket)
    return s3v2.verify(request, secret_for, now, max_skew=skew, virtual_bucket=virtual_bucket)


def _has_body(request: SignedRequest) -> bool:
    if request.body_sha256 is not None:
        return request.body_sha256 != EMPTY_SHA256
    length = request.header("content-length")
    if length is not None:
        return length.strip() != "0"
    return request.header("transfer-encoding") is not None


def single_use(scheme: str, request: SignedRequest) -> bool:
    """Whether ``request``, signed with ``scheme``, may be accepted only once (see the module
    docstring: writes of the image API, and bucket-API writes whose body is not signed)."""
    if request.method.upper() in _READS or scheme in QUERY_SCHEMES:
        return False
    if scheme == "sdk-hmac":
        return True
    if not _has_body(request):
        return False
    if scheme == "sigv4":
        if request.header("x-amz-content-sha256") not in _UNCOVERED_SIGV4:
            return False
        signed = set(sigv4.authorization_parts(request)[2])
    else:
        signed = {"content-md5"}  # v2 always signs the Content-MD5 line
    # a signed digest of the body, which the views verify, covers it as well as a signed hash
    return not any(name in signed and request.header(name) is not None
                   for name in _BODY_DIGESTS)


def _streaming_mode(request: SignedRequest) -> str | None:
    declared = request.header("x-amz-content-sha256")
    if declared in sigv4_streaming.REFUSED_MODES:
        raise ServiceError("NotImplemented", f"x-amz-content-sha256: {declared} is not "
                           f"supported; send {sigv4_streaming.SIGNED_CHUNKS}, a hex sha256 or "
                           "UNSIGNED-PAYLOAD", status=501)
    return declared


def authenticate_request(
    services: Services,
    request: SignedRequest,
    *,
    schemes: frozenset[str],
    virtual_bucket: str | None = None,
    unsigned_payload: bool = False,
) -> Authenticated:
    """Authenticate ``request`` with one of ``schemes`` (``"sdk-hmac"``, ``"sigv4"``,
    ``"s3v2"``, ``"sigv4-query"``, ``"s3v2-query"``, ``"token"``) and use up its signature
    when it is single-use; :class:`Unauthenticated` otherwise. ``unsigned_payload``: the route
    takes an SDK-HMAC ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` (data uploads)."""
    token = request.header("x-auth-token")
    scheme = _scheme_of(request, schemes)
    if scheme is None and token is not None:
        if "token" not in schemes:
            raise Unauthenticated("AccessDenied", "tokens are not accepted here; sign the request")
        return Authenticated(_from_token(services, token))
    if scheme is None:
        raise Unauthenticated("AccessDenied", "the request is not signed and carries no token")
    if scheme not in schemes:
        raise Unauthenticated("AccessDenied", f"{scheme} signatures are not accepted here")
    mode = _streaming_mode(request) if scheme.startswith("sigv4") else None
    found = _Secrets(services)
    try:
        access = _verify(scheme, request, found, services, virtual_bucket, unsigned_payload)
        chain = (sigv4_streaming.chain_for(request, found.secrets[access])
                 if scheme == "sigv4" and mode == sigv4_streaming.SIGNED_CHUNKS else None)
        replay_key = (f"{scheme}:{_SIGNATURE_OF[scheme](request)}"
                      if single_use(scheme, request) else None)
    except SignatureError as exc:
        raise Unauthenticated(exc.code, exc.message) from exc
    if replay_key is not None and not _guard(services).first_use(replay_key, access):
        raise Unauthenticated("ReplayedRequest",
                              "this signed request was already used; sign it again")
    return Authenticated(Principal(found.projects[access], access), replay_key, chain)


def authenticate(
    services: Services,
    request: SignedRequest,
    *,
    schemes: frozenset[str],
    virtual_bucket: str | None = None,
    unsigned_payload: bool = False,
) -> Principal:
    """The caller of ``request`` (:func:`authenticate_request` without the request facts)."""
    return authenticate_request(services, request, schemes=schemes,
                                virtual_bucket=virtual_bucket,
                                unsigned_payload=unsigned_payload).principal


def release(services: Services, authenticated: Authenticated) -> None:
    """Forget the signature ``authenticated`` used up: its request failed on the server's side
    or the client went away before it took effect, and a retry must not be a replay."""
    if authenticated.replay_key is not None:
        _guard(services).forget(authenticated.replay_key)


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
