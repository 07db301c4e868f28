"""Authentication of real signed requests to the right project, on SQLite and PostgreSQL.

Requests are signed by the clients' own signers (huaweicloudsdkcore's Signer, botocore's
S3SigV4Auth and HmacV1Auth) with keys made by the project use cases, then authenticated.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from imageport.auth import SignedRequest
from imageport.service.access.authn import (
    MAX_TOKEN,
    Principal,
    authenticate,
    authenticate_request,
    issue_token,
    release,
    single_use,
)
from imageport.service.access.projects import AccessKey, create_key, create_project, revoke_key
from imageport.service.access.replay import ReplayGuard, RetryLater, replay_key
from imageport.service.context import Services
from imageport.service.errors import ServiceError, Unauthenticated
from support.signers import from_aws, sha

pytest_plugins = ["support.db_backends"]  # db_services: each test on both backends

IMS = frozenset({"sdk-hmac", "token"})
S3 = frozenset({"sigv4", "s3v2"})
ALL = IMS | S3


def sdk_signed(
    key: AccessKey,
    method: str = "GET",
    path: str = "/v2/cloudimages",
    body: bytes = b"",
    when: datetime | None = None,
) -> SignedRequest:
    """What the server sees for a request the vendor SDK signed with ``key``."""
    headers = {
        "Content-Type": "application/json;charset=utf-8",
        "X-Project-Id": key.project_id,
        "X-Sdk-Date": (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ"),
    }
    req = SdkRequest(
        method=method,
        schema="http",
        host="127.0.0.1:8080",
        resource_path=path,
        query_params=[("limit", 10)] if method == "GET" else [],
        header_params=headers,
        body=body,
    )
    Signer(SimpleNamespace(ak=key.access_key, sk=key.secret_key)).sign(req)
    split = urlsplit(req.url)
    sent = dict(req.header_params)
    if body:
        sent["Content-Length"] = str(len(body))
    return SignedRequest(method, split.path, split.query, sent, sha(req.body or b""))


def s3_signed(
    key: AccessKey,
    method: str = "PUT",
    path: str = "/bucket/disk.qcow2",
    body: bytes = b"data",
    v2: bool = False,
) -> SignedRequest:
    req = AWSRequest(method=method, url="http://127.0.0.1:8081" + path, data=body, headers={})
    credentials = Credentials(key.access_key, key.secret_key)
    if v2:
        HmacV1Auth(credentials).add_auth(req)
    else:
        S3SigV4Auth(credentials, "s3", "local-1").add_auth(req)
    return from_aws(req)


@pytest.fixture
def two_keys(db_services: Services) -> tuple[AccessKey, AccessKey]:
    create_project(db_services, "alpha")
    create_project(db_services, "beta")
    return create_key(db_services, "alpha"), create_key(db_services, "beta")


def refused(services: Services, request: SignedRequest, schemes: frozenset[str] = ALL) -> str:
    with pytest.raises(Unauthenticated) as err:
        authenticate(services, request, schemes=schemes)
    assert err.value.status == 401
    return err.value.code


def test_each_signature_scheme_finds_the_signers_project(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    for key in two_keys:
        want = Principal(key.project_id, key.access_key)
        body = b'{"name": "img", "image_url": "b:k", "min_disk": 40}'
        assert (
            authenticate(
                db_services, sdk_signed(key, "POST", "/v2/cloudimages/action", body), schemes=IMS
            )
            == want
        )
        assert authenticate(db_services, sdk_signed(key), schemes=IMS) == want
        assert authenticate(db_services, s3_signed(key), schemes=S3) == want
        assert (
            authenticate(db_services, s3_signed(key, "GET", "/bucket?list-type=2", b""), schemes=S3)
            == want
        )
        assert authenticate(db_services, s3_signed(key, v2=True), schemes=S3) == want


def test_revoked_and_unknown_keys_are_refused(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    alpha, beta = two_keys
    revoke_key(db_services, alpha.access_key)
    assert refused(db_services, sdk_signed(alpha)) == "InvalidAccessKeyId"
    assert refused(db_services, s3_signed(alpha)) == "InvalidAccessKeyId"
    assert refused(db_services, s3_signed(alpha, v2=True)) == "InvalidAccessKeyId"
    # beta still works: revocation is per key
    assert authenticate(db_services, sdk_signed(beta), schemes=IMS).project_id == beta.project_id
    stranger = dataclasses.replace(beta, access_key="UNKNOWNKEY0000000000")
    assert refused(db_services, sdk_signed(stranger)) == "InvalidAccessKeyId"
    assert refused(db_services, s3_signed(stranger)) == "InvalidAccessKeyId"
    wrong_secret = dataclasses.replace(beta, secret_key="x" * 40)
    assert refused(db_services, sdk_signed(wrong_secret)) == "SignatureDoesNotMatch"
    assert refused(db_services, s3_signed(wrong_secret)) == "SignatureDoesNotMatch"


def test_replayed_post_refused_replayed_get_allowed(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    alpha, _ = two_keys
    post = sdk_signed(alpha, "POST", "/v2/cloudimages/action", b'{"name": "x"}')
    assert authenticate(db_services, post, schemes=IMS).access_key == alpha.access_key
    assert refused(db_services, post) == "ReplayedRequest"
    get = sdk_signed(alpha)
    for _ in range(3):
        assert authenticate(db_services, get, schemes=IMS).access_key == alpha.access_key
    # a freshly signed POST (a new date makes a new signature) is accepted
    later = sdk_signed(
        alpha,
        "POST",
        "/v2/cloudimages/action",
        b'{"name": "x"}',
        when=datetime.now(UTC) + timedelta(seconds=2),
    )
    assert authenticate(db_services, later, schemes=IMS).access_key == alpha.access_key


def test_clock_skew_window(db_services: Services, two_keys: tuple[AccessKey, AccessKey]) -> None:
    alpha, _ = two_keys
    window = timedelta(seconds=db_services.settings.max_skew_seconds)
    old = sdk_signed(alpha, when=datetime.now(UTC) - window - timedelta(minutes=1))
    assert refused(db_services, old) == "RequestTimeTooSkewed"
    recent = sdk_signed(alpha, when=datetime.now(UTC) - window + timedelta(minutes=1))
    assert authenticate(db_services, recent, schemes=IMS).access_key == alpha.access_key
    signed = s3_signed(alpha)
    db_services.clock = lambda: datetime.now(UTC) + window + timedelta(minutes=1)
    assert refused(db_services, signed) == "RequestTimeTooSkewed"
    assert refused(db_services, sdk_signed(alpha)) == "RequestTimeTooSkewed"


def test_scheme_must_be_accepted_and_present(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    alpha, _ = two_keys
    assert refused(db_services, s3_signed(alpha), IMS) == "AccessDenied"
    assert refused(db_services, sdk_signed(alpha), S3) == "AccessDenied"
    unsigned = SignedRequest("GET", "/v2/cloudimages", "", {"Host": "x"}, sha(b""))
    assert refused(db_services, unsigned) == "AccessDenied"
    bearer = SignedRequest("GET", "/v2/cloudimages", "", {"Authorization": "Bearer abc"})
    assert refused(db_services, bearer) == "AccessDenied"


def _with_token(token: str) -> SignedRequest:
    return SignedRequest("GET", "/v2/cloudimages", "", {"X-Auth-Token": token}, sha(b""))


def test_tokens(db_services: Services, two_keys: tuple[AccessKey, AccessKey]) -> None:
    alpha, beta = two_keys
    principal = Principal(alpha.project_id, alpha.access_key)
    token, expires = issue_token(db_services, principal)
    now = db_services.clock().timestamp()
    assert expires == pytest.approx(now + db_services.settings.token_lifetime_seconds, abs=5)
    assert authenticate(db_services, _with_token(token), schemes=IMS) == principal
    # the bucket API takes signatures only
    assert refused(db_services, _with_token(token), S3) == "AccessDenied"
    for garbage in ("", "IPT", token[:-1], token + "x", "x" * (MAX_TOKEN + 1), "\udcff"):
        assert refused(db_services, _with_token(garbage)) == "InvalidToken"
    # the beta token is beta's, and survives alpha's revocation
    beta_token, _ = issue_token(db_services, Principal(beta.project_id, beta.access_key))
    revoke_key(db_services, alpha.access_key)
    assert refused(db_services, _with_token(token)) == "InvalidToken"
    assert authenticate(db_services, _with_token(beta_token), schemes=IMS).project_id == (
        beta.project_id
    )
    # past its lifetime, a token is refused
    lifetime = timedelta(seconds=db_services.settings.token_lifetime_seconds)
    db_services.clock = lambda: datetime.now(UTC) + lifetime + timedelta(seconds=10)
    assert refused(db_services, _with_token(beta_token)) == "InvalidToken"


def test_signature_wins_over_a_token(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    """A signed request is judged by its signature, whatever X-Auth-Token it also carries."""
    alpha, beta = two_keys
    beta_token, _ = issue_token(db_services, Principal(beta.project_id, beta.access_key))
    signed = sdk_signed(alpha)
    both = dataclasses.replace(signed, headers={**signed.headers, "x-auth-token": beta_token})
    assert authenticate(db_services, both, schemes=IMS).project_id == alpha.project_id


def test_the_replay_memory_keys_on_the_signature_not_the_header_text(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    alpha, _ = two_keys
    post = sdk_signed(alpha, "POST", "/v2/cloudimages/action", b'{"name": "x"}')
    assert authenticate(db_services, post, schemes=IMS).access_key == alpha.access_key
    auth = post.headers["authorization"]
    for reformatted in (
        auth.replace(", ", ","),
        auth.replace(", ", " ,  "),
        auth.replace("SDK-HMAC-SHA256 ", "SDK-HMAC-SHA256 ").replace(", Signature=", ",Signature="),
    ):
        assert reformatted != auth
        again = dataclasses.replace(post, headers={**post.headers, "authorization": reformatted})
        assert refused(db_services, again) == "ReplayedRequest"


def test_s3_writes_are_single_use_only_when_their_body_is_not_signed(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    alpha, _ = two_keys
    covered = s3_signed(alpha)  # SigV4 over the body's sha256: S3's rule, repeatable
    for _ in range(2):
        assert authenticate_request(db_services, covered, schemes=S3).replay_key is None
    v2 = s3_signed(alpha, v2=True)  # v2 without Content-MD5 covers no body byte
    used = authenticate_request(db_services, v2, schemes=S3)
    assert used.replay_key is not None
    with pytest.raises(ServiceError) as err:  # S3 clients retry a 503, signing again
        authenticate_request(db_services, v2, schemes=S3)
    assert (err.value.code, err.value.status) == ("SlowDown", 503)
    # a bucket-API signature is never given back, even after a failure on our side: a copy
    # of it could carry another body
    release(db_services, used)
    with pytest.raises(ServiceError):
        authenticate_request(db_services, v2, schemes=S3)
    assert not single_use("s3v2", s3_signed(alpha, "GET", "/bucket/k", b"", v2=True))


def test_a_bodiless_uncovered_write_may_be_repeated_but_never_with_a_body(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    """The reviewer's attack: a zero-byte PUT signed over no body was repeatable, so its first
    copy *with* a body counted as a first use."""
    alpha, _ = two_keys
    empty = s3_signed(alpha, "PUT", "/bucket/empty.txt", b"", v2=True)
    assert single_use("s3v2", empty)
    for _ in range(2):  # the same bodiless operation, as S3 allows
        assert authenticate_request(db_services, empty, schemes=S3).replay_key is not None
    with_body = dataclasses.replace(
        empty, body_sha256=None, headers={**empty.headers, "content-length": "24"}
    )
    with pytest.raises(ServiceError) as err:
        authenticate_request(db_services, with_body, schemes=S3)
    assert err.value.code == "SlowDown"


def test_an_image_api_write_that_failed_on_our_side_may_be_retried(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    alpha, _ = two_keys
    post = sdk_signed(alpha, "POST", "/v2/cloudimages/action", b'{"name": "x"}')
    used = authenticate_request(db_services, post, schemes=IMS)
    release(db_services, used)  # its body is signed: a copy can only do the same
    assert authenticate(db_services, post, schemes=IMS).access_key == alpha.access_key
    assert refused(db_services, post) == "ReplayedRequest"


def test_the_replay_memory_survives_a_restart(tmp_path: Path) -> None:
    """Issue 9 review, M1: a restart (which an attacker may provoke) must not make the
    requests of the last window good again."""
    from support import service_fixtures

    made = service_fixtures.make_services(tmp_path / "d")
    create_project(made, "alpha")
    key = create_key(made, "alpha")
    post = sdk_signed(key, "POST", "/v2/cloudimages/action", b'{"name": "x"}')
    assert authenticate(made, post, schemes=IMS).access_key == key.access_key
    made.db.dispose()
    again = service_fixtures.make_services(tmp_path / "d")  # the same data dir, a new engine
    assert refused(again, post) == "ReplayedRequest"
    again.db.dispose()


def test_one_project_cannot_fill_the_memory(db_services: Services) -> None:
    guard = ReplayGuard(db_services, per_project=2)
    now = datetime.now(UTC)
    for n in range(2):
        assert guard.first_use(replay_key("s3v2", f"sig{n}"), "p1", signed_at=now, now=now)
    with pytest.raises(RetryLater) as err:
        guard.first_use(replay_key("s3v2", "sig2"), "p1", signed_at=now, now=now)
    assert (err.value.code, err.value.status) == ("SlowDown", 503)
    assert guard.first_use(replay_key("s3v2", "other"), "p2", signed_at=now, now=now)
    assert not guard.first_use(replay_key("s3v2", "sig0"), "p2", signed_at=now, now=now)
    # once its signatures have expired (their date plus the skew), the project has room again
    later = now + timedelta(seconds=db_services.settings.max_skew_seconds + 1)
    assert guard.first_use(replay_key("s3v2", "sig2"), "p1", signed_at=later, now=later)


def test_a_used_signature_stays_used_until_the_row_is_purged(db_services: Services) -> None:
    """Review of issue 9, round 2: at the instant a signature expired its row counted as gone
    while the date check (read a moment earlier) still passed it: a copy got through."""
    guard = ReplayGuard(db_services)
    now = datetime.now(UTC)
    signed = now - timedelta(seconds=db_services.settings.max_skew_seconds - 1)
    key = replay_key("sdk-hmac", "edge")
    assert guard.first_use(key, "p1", signed_at=signed, now=now)
    for late in (1, 2, 60):
        assert not guard.first_use(key, "p1", signed_at=signed, now=now + timedelta(seconds=late))


def test_one_projects_far_dated_signature_holds_back_no_other_count(db_services: Services) -> None:
    guard = ReplayGuard(db_services, per_project=1)
    now = datetime.now(UTC)
    skew = timedelta(seconds=db_services.settings.max_skew_seconds)
    assert guard.first_use(replay_key("s3v2", "ahead"), "p1", signed_at=now + skew, now=now)
    assert guard.first_use(replay_key("s3v2", "p2-1"), "p2", signed_at=now, now=now)
    later = now + skew + timedelta(seconds=1)  # p2's first entry has expired, p1's has not
    assert guard.first_use(replay_key("s3v2", "p2-2"), "p2", signed_at=later, now=later)


def test_bucket_api_posts_are_single_use_even_with_a_signed_empty_body(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    """A captured CreateMultipartUpload replayed a thousand times took the victim's places."""
    alpha, _ = two_keys
    initiate = s3_signed(alpha, "POST", "/bucket/big.raw?uploads", b"")
    assert single_use("sigv4", initiate)
    assert authenticate_request(db_services, initiate, schemes=S3).replay_key is not None
    with pytest.raises(ServiceError) as err:
        authenticate_request(db_services, initiate, schemes=S3)
    assert err.value.code == "SlowDown"


def test_an_unsigned_payload_write_is_never_given_back(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    """Round 2, H1: a Glance upload sent with UNSIGNED-PAYLOAD whose connection dropped was
    released, and its copy carried the attacker's image."""
    alpha, _ = two_keys
    headers = {
        "Content-Type": "application/octet-stream",
        "X-Project-Id": alpha.project_id,
        "X-Sdk-Date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
    }
    req = SdkRequest(
        method="PUT",
        schema="http",
        host="127.0.0.1:8080",
        resource_path="/v2/images/5d87/file",
        query_params=[],
        header_params=headers,
        body=b"image data",
    )
    Signer(SimpleNamespace(ak=alpha.access_key, sk=alpha.secret_key)).sign(req)
    assert req.header_params["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    split = urlsplit(req.url)
    upload = SignedRequest(
        "PUT", split.path, split.query, {**req.header_params, "Content-Length": "10"}, None
    )
    used = authenticate_request(db_services, upload, schemes=IMS, unsigned_payload=True)
    assert used.replay_key is not None and not used.releasable
    release(db_services, used)  # the API layer calls it when the body does not arrive
    with pytest.raises(Unauthenticated) as err:
        authenticate_request(db_services, upload, schemes=IMS, unsigned_payload=True)
    assert err.value.code == "ReplayedRequest"


def test_a_key_holds_a_bounded_number_of_live_tokens(
    db_services: Services, two_keys: tuple[AccessKey, AccessKey]
) -> None:
    """Round 2 of the review: 3000 tokens in 8 s, each kept a day, from one key."""
    from sqlalchemy import func, select

    from imageport.service.access.authn import MAX_TOKENS_PER_KEY
    from imageport.service.tables import tokens

    alpha, beta = two_keys
    who = Principal(alpha.project_id, alpha.access_key)
    issued = [issue_token(db_services, who)[0] for _ in range(MAX_TOKENS_PER_KEY + 20)]
    other = issue_token(db_services, Principal(beta.project_id, beta.access_key))[0]
    with db_services.db.connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(tokens).where(tokens.c.access_key == alpha.access_key)
        ).scalar_one()
    assert count == MAX_TOKENS_PER_KEY
    assert (
        authenticate(
            db_services, SignedRequest("GET", "/", "", {"X-Auth-Token": issued[-1]}), schemes=IMS
        ).access_key
        == alpha.access_key
    )
    assert (
        authenticate(
            db_services, SignedRequest("GET", "/", "", {"X-Auth-Token": other}), schemes=IMS
        ).access_key
        == beta.access_key
    )
