"""Issue API tokens (``POST /v3/auth/tokens``): trade an access key for an ``X-Auth-Token``.

Two ways in, as the vendor's IAM accepts AK/SK:

* the request itself is signed with ``SDK-HMAC-SHA256`` (any body, usually empty): the
  signature proves the key, exactly as on every other API call (same skew window, same replay
  refusal of a re-sent POST);
* the IAM body names the key and its secret::

      {"auth": {"identity": {"methods": ["hw_ak_sk"],
                             "hw_ak_sk": {"access": {"key": AK}, "secret": {"key": SK}}},
                "scope": {"project": {"id": PROJECT_ID}}}}

  The secret is compared in constant time, and an unknown key costs the same comparison.

A scope (``scope.project.id`` or ``.name`` in the body, or the SDK's ``X-Project-Id`` header)
must name the key's own project; without one the token is scoped to that project anyway, since
a key belongs to exactly one. Failures are :class:`Unauthenticated` (401); a body that is not
the IAM shape is :class:`RequestInvalid` (400).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imageport.auth import SignedRequest, detect_scheme
from imageport.service.access.authn import Principal, authenticate, issue_token
from imageport.service.access.projects import active_key, find_project
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid, Unauthenticated

MAX_BODY = 16 * 1024
"""Largest token request body read (an IAM body is a few hundred bytes)."""
MAX_FIELD = 256
"""Longest key, secret or project name/id taken from the body."""
METHOD = "hw_ak_sk"
_DUMMY_SECRET = "0" * 40


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token and what the IAM response tells about it (times in the vendor's form)."""

    token: str
    issued_at: str
    expires_at: str
    methods: tuple[str, ...]
    project_id: str
    project_name: str


def create_token(services: Services, request: SignedRequest, body: bytes) -> IssuedToken:
    """A token for the access key proven by ``request``'s signature or by its IAM ``body``."""
    if len(body) > MAX_BODY:
        raise RequestInvalid("RequestBodyTooLarge", f"the body is larger than {MAX_BODY} bytes")
    signed = detect_scheme(request.headers) is not None
    document = _parse(body, required=not signed)
    if signed:
        principal = authenticate(services, request, schemes=frozenset({"sdk-hmac"}))
    else:
        principal = _from_body(services, document)
    scopes = [_body_scope(document)]
    header_project = request.header("x-project-id")
    if signed and header_project is not None:
        scopes.append(("id", header_project))
    project = find_project(services, principal.project_id)
    for kind, value in scopes:
        if kind and value != (project.id if kind == "id" else project.name):
            raise Unauthenticated(
                "ScopeMismatch", f"the access key does not belong to project {value[:64]!r}"
            )
    issued = services.clock()
    token, expires = issue_token(services, principal)
    return IssuedToken(
        token=token,
        issued_at=time_text(issued),
        expires_at=time_text(datetime.fromtimestamp(expires, UTC)),
        methods=(METHOD,),
        project_id=project.id,
        project_name=project.name,
    )


def _parse(body: bytes, *, required: bool) -> dict[str, Any]:
    """The body as a JSON object; ``{}`` when it may be anything (signed) and is not one."""
    try:
        document = json.loads(body) if body.strip() else None
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict):
        return document
    if required:
        raise RequestInvalid(
            "InvalidRequestBody",
            'the body must be {"auth": {"identity": ..., "scope": ...}} '
            "or the request must be signed with SDK-HMAC-SHA256",
        )
    return {}


def _member(document: object, *path: str) -> object:
    """``document[path[0]][path[1]]...``, or None where a level is missing or not an object."""
    for name in path:
        if not isinstance(document, dict):
            return None
        document = document.get(name)
    return document


def _text(document: object, *path: str) -> str | None:
    value = _member(document, *path)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
        raise RequestInvalid(
            "InvalidRequestBody", f"{'.'.join(path)} must be a string of 1-{MAX_FIELD} characters"
        )
    return value


def _body_scope(document: dict[str, Any]) -> tuple[str, str]:
    """``("id", value)`` / ``("name", value)`` from ``auth.scope.project``, or ``("", "")``."""
    project_id = _text(document, "auth", "scope", "project", "id")
    if project_id is not None:
        return "id", project_id
    name = _text(document, "auth", "scope", "project", "name")
    return ("name", name) if name is not None else ("", "")


def _from_body(services: Services, document: dict[str, Any]) -> Principal:
    methods = _member(document, "auth", "identity", "methods")
    if not isinstance(methods, list) or METHOD not in methods:
        raise RequestInvalid(
            "InvalidRequestBody",
            f'auth.identity.methods must include "{METHOD}" '
            "(the only method this service supports)",
        )
    access = _text(document, "auth", "identity", METHOD, "access", "key")
    secret = _text(document, "auth", "identity", METHOD, "secret", "key")
    if access is None or secret is None:
        raise RequestInvalid(
            "InvalidRequestBody", f"auth.identity.{METHOD} needs access.key and secret.key"
        )
    return key_holder(services, access, secret)


def key_holder(services: Services, access: str, secret: str) -> Principal:
    """The principal of access key ``access`` when ``secret`` is its secret (compared in
    constant time; an unknown key costs the same comparison); 401 ``InvalidCredentials``."""
    key = active_key(services, access)
    expected = key.secret_key if key is not None else _DUMMY_SECRET
    matches = hmac.compare_digest(
        expected.encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass")
    )
    if key is None or not matches:
        raise Unauthenticated(
            "InvalidCredentials", "the access key is unknown or revoked, or the secret is wrong"
        )
    return Principal(key.project_id, key.access_key)
