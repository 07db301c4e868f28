"""Web console sign-in: a browser session is an API token of its own, kept in a cookie.

A user signs in with an access key and its secret (checked as the token endpoint checks the IAM
body: :func:`~imageport.service.access.tokens.key_holder`), or with a token from the token
endpoint. Either way the console gets a *new* token, issued for the session only
(:func:`~imageport.service.access.authn.issue_token`), which the console keeps in an ``HttpOnly``
cookie and nowhere else; the database holds its SHA-256 only, as for every token. Signing out
ends that token and no other: a token the user pasted stays valid for their other clients.

A session lasts ``console_session_seconds`` (8 h by default), never longer than the token it was
opened with, and ends at once when its access key is revoked (every page looks the token up).

The console protects its forms against cross-site requests with a value derived from the session
token (:func:`csrf_value`): a page can only know it by having been served to the holder of the
cookie, and it changes with every sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from imageport.service.access.authn import Principal, issue_token, revoke_token, token_holder
from imageport.service.access.projects import find_project
from imageport.service.access.tokens import MAX_FIELD, key_holder
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid

_CSRF_PURPOSE = b"imageport-console-csrf"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in browser: its token (the cookie's value), who it is and until when."""

    token: str
    principal: Principal
    project_name: str
    expires_at: float

    def __repr__(self) -> str:  # never print the token
        return (
            f"ConsoleSession(project={self.principal.project_id}, key={self.principal.access_key})"
        )

    @property
    def csrf(self) -> str:
        return csrf_value(self.token)


def _field(value: str, what: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_FIELD:
        raise RequestInvalid("InvalidCredentials", f"the {what} must be 1-{MAX_FIELD} characters")
    return value


def _open(services: Services, principal: Principal, longest: float | None) -> ConsoleSession:
    lifetime = float(services.settings.console_session_seconds)
    token, expires = issue_token(services, principal, lifetime=lifetime, not_after=longest)
    project = find_project(services, principal.project_id)
    return ConsoleSession(token, principal, project.name, expires)


def sign_in_with_key(services: Services, access_key: str, secret_key: str) -> ConsoleSession:
    """A session for the holder of an access key and its secret (401 ``InvalidCredentials``)."""
    principal = key_holder(
        services, _field(access_key, "access key"), _field(secret_key, "secret key")
    )
    return _open(services, principal, None)


def sign_in_with_token(services: Services, token: str) -> ConsoleSession:
    """A session for the holder of a live API token, ending no later than it does (401
    ``InvalidToken``)."""
    principal, expires = token_holder(services, _field(token, "token"))
    return _open(services, principal, expires)


def resume(services: Services, token: str) -> ConsoleSession:
    """The session a cookie's token stands for (401 ``InvalidToken`` when it ended)."""
    principal, expires = token_holder(services, token)
    project = find_project(services, principal.project_id)
    return ConsoleSession(token, principal, project.name, expires)


def sign_out(services: Services, token: str) -> None:
    """End the session's token (and nothing else)."""
    revoke_token(services, token)


def csrf_value(token: str) -> str:
    """The anti-forgery value of the session holding ``token`` (hex HMAC-SHA256)."""
    return hmac.new(
        token.encode("utf-8", "surrogatepass"), _CSRF_PURPOSE, hashlib.sha256
    ).hexdigest()


def csrf_matches(token: str, offered: str) -> bool:
    """Whether ``offered`` is the session's anti-forgery value (compared in constant time)."""
    return hmac.compare_digest(csrf_value(token).encode(), offered.encode("utf-8", "replace"))
