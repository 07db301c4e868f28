"""Who is calling: turn a request's signature or token into the caller's project.

Accepted credentials (every API request is authenticated; ``docs/security.md`` lists the few
routes that answer without credentials):

* ``SDK-HMAC-SHA256`` signatures (the vendor SDK, image API), SigV4 and AWS/OBS v2 signatures
  (S3 clients, bucket API), verified by :mod:`imageport.auth` against the key's secret;
* presigned URLs (bucket API): SigV4 (``X-Amz-Signature``) and v2 (``Signature``, ``Expires``)
  query-string signatures. A request may carry either those or an Authorization header, not
  both (``InvalidArgument``, as S3 answers);
* ``X-Auth-Token`` tokens issued by the token endpoint (:func:`issue_token`).

**Replays.** A signed request seen on the wire (plain HTTP, a proxy's log) must not be usable
again with another body. A request is *single-use* inside its signature's validity when it
changes something (not GET/HEAD/OPTIONS) and:

* it is signed with ``SDK-HMAC-SHA256`` (every image-API write and the token endpoint: the
  vendor's API has no idempotent retries of identical signed writes to preserve), or
* it is a bucket-API POST (initiate, complete, batch delete: each creates or ends something),
  or a bucket-API request whose *body the signature does not cover*, with or without a
  body: SigV4 with ``UNSIGNED-PAYLOAD`` or ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` and no signed
  body digest (``Content-MD5``, ``x-amz-checksum-sha256``/``-sha1``, which the views verify), or
  a v2 (``AWS``/``OBS``) signature without ``Content-MD5``. Anyone holding such a request could
  otherwise send it again with any body; only a bodiless copy of a bodiless first use is let
  through (the same operation).

The replay memory (:mod:`imageport.service.access.replay`, in the database) keys on the signature
value. A bucket-API request whose body *is* covered keeps S3's own rule: an identical copy is
the identical operation, and S3 clients (rclone's bucket creation, any retry within the same
second) re-send identical signed requests. Presigned URLs are not remembered either: like S3's,
they are bearer capabilities meant to be used until they expire.

A replay is answered as the API's clients best take it: on the bucket API 503 ``SlowDown``
(SDKs retry it, signing again with a new date, so a client's own retry of a request that failed
succeeds and an attacker's copy never does); on the image API 401 ``ReplayedRequest``. An
image-API write that fails on the server's side (5xx) or whose client went away is forgotten
again by :func:`release` when its body hash is signed (not ``UNSIGNED-PAYLOAD``), so that a
copy can only repeat the same operation.

Every failure is :class:`Unauthenticated` with the verifier's code, so the API layers answer in
their own dialect.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select

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
from imageport.auth.request import declares_body
from imageport.service.access.projects import active_key
from imageport.service.access.replay import guard_of, replay_key
from imageport.service.context import Services
from imageport.service.errors import ServiceError, Unauthenticated
from imageport.service.tables import tokens

MAX_TOKEN = 512
"""Longest X-Auth-Token value looked up."""
MAX_TOKENS_PER_KEY = 100
"""Live tokens one access key may have; a new one ends the oldest beyond them."""
QUERY_SCHEMES = frozenset({"sigv4-query", "s3v2-query"})
"""The presigned-URL schemes (auth parameters in the query string)."""
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_UNCOVERED_SIGV4 = frozenset({sigv4.UNSIGNED_PAYLOAD, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
#: Body digests the bucket API verifies before it acts: signed, they cover the body (CRC32 does
#: not: a body with a chosen CRC is easy to make)
_BODY_DIGESTS = ("content-md5", "x-amz-checksum-sha256", "x-amz-checksum-sha1")
_SIGNATURE_OF = {
    "sdk-hmac": sdk_hmac.signature_of,
    "sigv4": sigv4.signature_of,
    "s3v2": s3v2.signature_of,
}
_SIGNED_AT = {"sdk-hmac": sdk_hmac.signed_at, "sigv4": sigv4.signed_at, "s3v2": s3v2.signed_at}


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
    #: the replay key may be given back when the request fails on our side (its body is signed)
    releasable: bool = False


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
        raise Unauthenticated(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the "
            "X-Amz-Algorithm query parameter, Signature query string "
            "parameter or the Authorization header should be specified",
        )
    return query_scheme


def _verify(
    scheme: str,
    request: SignedRequest,
    secret_for: Callable[[str], str | None],
    services: Services,
    virtual_bucket: str | None,
    unsigned_payload: bool,
    now: datetime,
) -> str:
    """The access key that signed ``request`` with ``scheme`` (its date checked against
    ``now``); SignatureError otherwise."""
    skew = timedelta(seconds=services.settings.max_skew_seconds)
    if scheme == "sdk-hmac":
        return sdk_hmac.verify(
            request, secret_for, now, max_skew=skew, unsigned_payload=unsigned_payload
        )
    if scheme == "sigv4":
        return sigv4.verify(request, secret_for, now, max_skew=skew)
    if scheme == "sigv4-query":
        return sigv4_query.verify(request, secret_for, now, max_skew=skew)
    if scheme == "s3v2-query":
        return s3v2.verify_query(request, secret_for, now, virtual_bucket=virtual_bucket)
    return s3v2.verify(request, secret_for, now, max_skew=skew, virtual_bucket=virtual_bucket)


def single_use(scheme: str, request: SignedRequest) -> bool:
    """Whether ``request``, signed with ``scheme``, may be accepted only once (see the module
    docstring: writes of the image API, and bucket-API writes whose body is not signed),
    whether or not it has a body: a bodiless original must not become a copy with one."""
    method = request.method.upper()
    if method in _READS or scheme in QUERY_SCHEMES:
        return False
    if scheme == "sdk-hmac" or method == "POST":
        # every bucket-API POST creates or ends something (an upload, a completion, a batch
        # delete): a copy of a captured one would take the victim's open-upload places
        return True
    if scheme == "sigv4":
        if request.header("x-amz-content-sha256") not in _UNCOVERED_SIGV4:
            return False
        signed = set(sigv4.authorization_parts(request)[2])
    else:
        signed = {"content-md5"}  # v2 always signs the Content-MD5 line
    # a signed digest of the body, which the views verify, covers it as well as a signed hash
    return not any(name in signed and request.header(name) is not None for name in _BODY_DIGESTS)


def _use_up(
    services: Services,
    scheme: str,
    request: SignedRequest,
    project_id: str,
    key: str,
    now: datetime,
) -> None:
    """Record the single-use ``request``'s signature ``key``, or refuse it as a replay
    (``now``: the time its date was checked against)."""
    signed_at: datetime = _SIGNED_AT[scheme](request)
    first = guard_of(services).first_use(
        key,
        project_id,
        signed_at=signed_at,
        now=now,
        bodiless=not declares_body(request),
        repeatable_bodiless=scheme != "sdk-hmac" and request.method.upper() != "POST",
    )
    if first:
        return
    if scheme == "sdk-hmac":
        raise Unauthenticated(
            "ReplayedRequest", "this signed request was already used; sign it again"
        )
    raise ServiceError(
        "SlowDown", "this signed request was already used; sign it again and retry", status=503
    )


def _streaming_mode(request: SignedRequest) -> str | None:
    declared = request.header("x-amz-content-sha256")
    if declared in sigv4_streaming.REFUSED_MODES:
        raise ServiceError(
            "NotImplemented",
            f"x-amz-content-sha256: {declared} is not "
            f"supported; send {sigv4_streaming.SIGNED_CHUNKS}, a hex sha256 or "
            "UNSIGNED-PAYLOAD",
            status=501,
        )
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
    now = services.clock()  # one reading for the date check and the replay memory
    try:
        access = _verify(scheme, request, found, services, virtual_bucket, unsigned_payload, now)
        chain = (
            sigv4_streaming.chain_for(request, found.secrets[access])
            if scheme == "sigv4" and mode == sigv4_streaming.SIGNED_CHUNKS
            else None
        )
        key = (
            replay_key(scheme, _SIGNATURE_OF[scheme](request))
            if single_use(scheme, request)
            else None
        )
        if key is not None:
            _use_up(services, scheme, request, found.projects[access], key, now)
    except SignatureError as exc:
        raise Unauthenticated(exc.code, exc.message) from exc
    # given back after a failure only when a copy could do nothing else: an SDK-HMAC request
    # whose body hash is signed (never one sent with UNSIGNED-PAYLOAD)
    releasable = (
        scheme == "sdk-hmac" and request.header("x-sdk-content-sha256") != sdk_hmac.UNSIGNED_PAYLOAD
    )
    return Authenticated(
        Principal(found.projects[access], access), key, chain, releasable=releasable
    )


def authenticate(
    services: Services,
    request: SignedRequest,
    *,
    schemes: frozenset[str],
    virtual_bucket: str | None = None,
    unsigned_payload: bool = False,
) -> Principal:
    """The caller of ``request`` (:func:`authenticate_request` without the request facts)."""
    return authenticate_request(
        services,
        request,
        schemes=schemes,
        virtual_bucket=virtual_bucket,
        unsigned_payload=unsigned_payload,
    ).principal


def release(services: Services, authenticated: Authenticated) -> None:
    """Forget the signature an image-API write used up: it failed on the server's side or the
    client went away before it took effect, and a retry must not be a replay (its body is
    signed, so a copy can only repeat the same operation). Bucket-API requests are never
    released: a copy of one whose body is not signed could carry another body."""
    if authenticated.replay_key is not None and authenticated.releasable:
        guard_of(services).forget(authenticated.replay_key)


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _from_token(services: Services, token: str) -> Principal:
    return token_holder(services, token)[0]


def token_holder(services: Services, token: str) -> tuple[Principal, float]:
    """The principal a live token stands for and when it expires (epoch seconds); 401
    ``InvalidToken`` when it is malformed, unknown, expired or its key was revoked."""
    if not token or len(token) > MAX_TOKEN:
        raise Unauthenticated("InvalidToken", "the token is malformed")
    with services.db.connect() as conn:
        row = conn.execute(
            select(tokens).where(tokens.c.token_sha256 == _token_digest(token))
        ).first()
    if row is None or row.expires_at < services.clock().timestamp():
        raise Unauthenticated("InvalidToken", "the token is unknown or has expired")
    if active_key(services, row.access_key) is None:
        raise Unauthenticated("InvalidToken", "the key that issued this token was revoked")
    return Principal(row.project_id, row.access_key), float(row.expires_at)


def revoke_token(services: Services, token: str) -> None:
    """End ``token`` now (nothing happens for an unknown one)."""
    if token and len(token) <= MAX_TOKEN:
        with services.db.begin() as conn:
            conn.execute(delete(tokens).where(tokens.c.token_sha256 == _token_digest(token)))


def issue_token(
    services: Services,
    principal: Principal,
    *,
    lifetime: float | None = None,
    not_after: float | None = None,
) -> tuple[str, float]:
    """A new token for ``principal`` and its expiry (epoch seconds; ``lifetime`` seconds from
    now, at most the setting ``token_lifetime_seconds``, and never after ``not_after``);
    expired ones are purged,
    and so are the oldest of the key's live ones beyond :data:`MAX_TOKENS_PER_KEY` (a client
    that asks for a token per call, or a flood of token requests, cannot grow the table)."""
    token = "IPT" + secrets.token_urlsafe(48)
    now = services.clock().timestamp()
    longest = services.settings.token_lifetime_seconds
    expires = now + (longest if lifetime is None else max(0.0, min(lifetime, longest)))
    if not_after is not None:
        expires = min(expires, not_after)
    with services.db.begin() as conn:
        conn.execute(delete(tokens).where(tokens.c.expires_at < now))
        kept = (
            select(tokens.c.token_sha256)
            .where(tokens.c.access_key == principal.access_key)
            .order_by(tokens.c.expires_at.desc())
            .limit(MAX_TOKENS_PER_KEY - 1)
        )
        conn.execute(
            delete(tokens).where(
                tokens.c.access_key == principal.access_key, tokens.c.token_sha256.not_in(kept)
            )
        )
        conn.execute(
            insert(tokens).values(
                token_sha256=_token_digest(token),
                project_id=principal.project_id,
                access_key=principal.access_key,
                expires_at=expires,
            )
        )
    return token, expires
