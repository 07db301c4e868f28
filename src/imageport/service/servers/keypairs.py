"""SSH key pairs of a project: the Nova ``os-keypairs`` routes the vendor's SDK calls, and the
public key a new server is given.

* **Create** (:func:`create_keypair`, ``POST /v2.1/{project_id}/os-keypairs``
  ``{"keypair": {"name", "public_key"?, "type"?, "user_id"?}}``): without ``public_key`` the
  service makes an Ed25519 pair and answers its private key once, in OpenSSH format; it is
  never stored nor logged, and cannot be shown again. With ``public_key`` the key is imported,
  read strictly by :mod:`.ssh_keys` and kept as ``TYPE BASE64 [COMMENT]``.
* **List** (``limit`` 1-:data:`MAX_LIMIT`, ``marker`` the last name of the page before), **show**
  and **delete**: the caller's key pairs by name, in name order. Deleting a key pair leaves the
  servers made with it as they are (their ``authorized_keys`` holds the key), as Nova does.

The rules, Nova's where the vendor's API is Nova's:

* a name has 1-:data:`MAX_NAME_CHARS` characters, letters, digits, ``-``, ``_`` and spaces
  (Nova's safe characters), and does not begin or end with a space (Nova's schema); Nova takes
  up to 255, the vendor's key pair table here holds 64;
* ``type`` is ``ssh`` (the default); ``x509`` (Nova's certificates for Windows) is refused;
* a project has at most ``keypair_quota`` key pairs (Nova's default, 100); one more is refused
  403 ``Ecs.0001``, counted with the project's row locked so concurrent creations count in
  turn; a name the project already has is refused 409 (``Ecs.KEYPAIR_EXISTS``); a name it does
  not have is 404 ``Ecs.0314``;
* key pairs belong to the project: this service has no users within a project, so the
  ``user_id`` a key pair shows is its project id (:func:`owner_of`). A ``user_id`` in a body or
  query (Nova's admin option, to act for another user) is accepted only when it is that id and
  refused 403 ``Ecs.0003`` otherwise: never ignored;
* every other field or query parameter is refused (``Ecs.0005``), and so is a path naming
  another project (``Ecs.0023``, :func:`~.ecs_requests.require_own_project`).

The ``OpenStack-API-Version`` header (``compute 2.2`` when the SDK is told to send it) changes
nothing: the answers are the same for every version, ``type`` always included.
:func:`public_key_of` gives server creation the public key of a key pair by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, Forbidden, NotFound, RequestInvalid
from imageport.service.servers import ssh_keys
from imageport.service.servers.ecs_requests import json_body
from imageport.service.tables import keypairs, projects

MAX_NAME_CHARS = 64
"""Longest key pair name (the ``keypairs`` table's column)."""
NAME = re.compile(r"[A-Za-z0-9_ -]{1,64}")
"""What a key pair name may be made of (Nova's safe characters)."""
MAX_LIMIT = 1000
"""Most key pairs one list page may ask for."""
SSH = "ssh"
"""The one key pair ``type`` offered."""
CREATE_FIELDS = frozenset({"name", "public_key", "type", "user_id"})


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A stored key pair (only its public half is ever stored)."""

    name: str
    #: ``TYPE BASE64 [COMMENT]``
    public_key: str
    #: MD5, colon-separated hex (Nova's)
    fingerprint: str
    #: ``ssh``
    key_type: str
    created_at: str
    #: the owner as Nova names it: here the project id (see the module docstring)
    user_id: str

    @classmethod
    def from_row(cls, row: Row[Any]) -> KeyPair:
        return cls(
            row.name,
            row.public_key,
            row.fingerprint,
            row.key_type,
            row.created_at,
            owner_of(row.project_id),
        )


@dataclass(frozen=True, slots=True)
class CreatedKeyPair:
    """What a creation answers: the key pair, and the private key when the service made it."""

    keypair: KeyPair
    private_key: str | None


def owner_of(project_id: str) -> str:
    """The ``user_id`` of a project's key pairs: the project id itself (no users here)."""
    return project_id


# -- the routes ---------------------------------------------------------------------------------


def create_keypair(services: Services, project_id: str, body: bytes) -> CreatedKeyPair:
    """``POST /v2.1/{project_id}/os-keypairs``: make or import a key pair (module docstring)."""
    option = _create_option(json_body(body))
    name = check_name(option.get("name"))
    key_type = option.get("type", SSH)
    if key_type != SSH:
        raise RequestInvalid(
            codes.ECS_INVALID,
            f"type {str(key_type)[:16]!r} is not offered: only ssh key pairs (x509 certificates "
            "are not)",
        )
    _check_user(option.get("user_id"), project_id, "user_id")
    generated: ssh_keys.GeneratedPair | None = None
    if "public_key" in option:
        text = option["public_key"]
        if not isinstance(text, str):
            raise RequestInvalid(codes.ECS_INVALID, "public_key must be a string")
        public = ssh_keys.parse_public_key(text)
    else:
        generated = ssh_keys.generate()
        public = generated.public
    now = time_text(services.clock())
    with services.db.begin() as conn:
        _admit(conn, services.settings.keypair_quota, project_id, name)
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(keypairs).values(
                        project_id=project_id,
                        name=name,
                        public_key=public.line,
                        fingerprint=public.fingerprint,
                        key_type=SSH,
                        created_at=now,
                    )
                )
        except IntegrityError as exc:
            raise _exists(name) from exc
        record = _keypair(conn, project_id, name)
    return CreatedKeyPair(record, generated.private_openssh if generated else None)


def list_keypairs(
    services: Services, project_id: str, query: Sequence[tuple[str, str]]
) -> list[KeyPair]:
    """``GET /v2.1/{project_id}/os-keypairs[?limit=N&marker=NAME]``: one page, by name."""
    params = _query(query, ("limit", "marker", "user_id"), project_id)
    limit = MAX_LIMIT
    if "limit" in params:
        number = whole_number(params["limit"])
        if number is None or not 1 <= number <= MAX_LIMIT:
            raise RequestInvalid(codes.ECS_INVALID, f"limit must be 1-{MAX_LIMIT}")
        limit = number
    where = [keypairs.c.project_id == project_id]
    with services.db.connect() as conn:
        if "marker" in params:
            marker = params["marker"]
            if _row(conn, project_id, marker) is None:
                raise RequestInvalid(
                    codes.ECS_INVALID, f"marker {marker[:64]!r} is not a key pair of the project"
                )
            where.append(keypairs.c.name > marker)
        rows = conn.execute(
            select(keypairs).where(*where).order_by(keypairs.c.name).limit(limit)
        ).all()
    return [KeyPair.from_row(r) for r in rows]


def show_keypair(
    services: Services, project_id: str, name: str, query: Sequence[tuple[str, str]] = ()
) -> KeyPair:
    """``GET /v2.1/{project_id}/os-keypairs/{name}``: the key pair (404 ``Ecs.0314``)."""
    _query(query, ("user_id",), project_id)
    with services.db.connect() as conn:
        return _keypair(conn, project_id, name)


def delete_keypair(
    services: Services, project_id: str, name: str, query: Sequence[tuple[str, str]] = ()
) -> None:
    """``DELETE /v2.1/{project_id}/os-keypairs/{name}`` (404 ``Ecs.0314`` when there is none)."""
    _query(query, ("user_id",), project_id)
    with services.db.begin() as conn:
        removed = 0
        if _may_exist(name):
            removed = conn.execute(
                delete(keypairs).where(keypairs.c.project_id == project_id, keypairs.c.name == name)
            ).rowcount
    if removed != 1:
        raise _unknown(name)


def public_key_of(services: Services, project_id: str, name: str) -> str | None:
    """The public key line (``TYPE BASE64 [COMMENT]``) of the project's key pair ``name``;
    None when it has none of that name."""
    with services.db.connect() as conn:
        row = _row(conn, project_id, name)
    return None if row is None else str(row.public_key)


# -- checks -------------------------------------------------------------------------------------


def check_name(value: object) -> str:
    """A key pair name as the module docstring defines it; ``Ecs.0005`` otherwise."""
    if not isinstance(value, str):
        raise RequestInvalid(codes.ECS_INVALID, "name must be a string: the key pair's name")
    if not NAME.fullmatch(value):
        raise RequestInvalid(
            codes.ECS_INVALID,
            f"name {value[:80]!r} must have 1-{MAX_NAME_CHARS} characters, each a letter, a "
            "digit, '-', '_' or a space",
        )
    if value != value.strip(" "):
        raise RequestInvalid(
            codes.ECS_INVALID, f"name {value!r} must not begin or end with a space"
        )
    return value


def _create_option(doc: object) -> Mapping[str, object]:
    """The ``keypair`` object of a creation body, with only :data:`CREATE_FIELDS`."""
    if not isinstance(doc, dict) or set(doc) != {"keypair"}:
        raise RequestInvalid(
            codes.ECS_INVALID, 'the body must be {"keypair": {"name": ..., ...}} and nothing else'
        )
    option = doc["keypair"]
    if not isinstance(option, dict):
        raise RequestInvalid(codes.ECS_INVALID, "keypair must be an object")
    unknown = sorted(k for k in option if k not in CREATE_FIELDS)
    if unknown:
        raise RequestInvalid(
            codes.ECS_INVALID,
            f"keypair.{unknown[0][:64]} is not offered (only {', '.join(sorted(CREATE_FIELDS))})",
        )
    if option.get("name") is None:
        raise RequestInvalid(codes.ECS_INVALID, "keypair.name is missing")
    return option


def _check_user(value: object, project_id: str, where: str) -> None:
    """A ``user_id`` must be the caller's own (:func:`owner_of`); 403 ``Ecs.0003`` otherwise."""
    if value is None:
        return
    if value != owner_of(project_id):
        raise Forbidden(
            codes.ECS_FORBIDDEN,
            f"{where} {str(value)[:64]!r} is not the caller: key pairs belong to the project, "
            "whose user_id is its project id; another user's key pairs cannot be managed here",
        )


def _query(
    query: Sequence[tuple[str, str]], allowed: Sequence[str], project_id: str
) -> dict[str, str]:
    """The query parameters, each in ``allowed`` and given once (``Ecs.0005``); a
    ``user_id`` is checked and dropped."""
    params: dict[str, str] = {}
    for name, value in query:
        if name not in allowed or name in params:
            raise RequestInvalid(
                codes.ECS_INVALID,
                f"query parameter {name[:64]!r} is not offered here, or is given twice "
                f"(offered: {', '.join(allowed)})",
            )
        params[name] = value[:256]
    _check_user(params.pop("user_id", None), project_id, "user_id")
    return params


def _admit(conn: Connection, quota: int, project_id: str, name: str) -> None:
    """Refuse the new key pair ``name`` when the project has it or is at its quota (inside the
    creating transaction, with the project's row locked until it ends)."""
    # a write to the project's row: PostgreSQL locks the row, SQLite takes its write lock
    conn.execute(update(projects).where(projects.c.id == project_id).values(name=projects.c.name))
    if _row(conn, project_id, name) is not None:
        raise _exists(name)
    count = conn.execute(
        select(func.count()).select_from(keypairs).where(keypairs.c.project_id == project_id)
    ).scalar_one()
    if count >= quota:
        raise Forbidden(
            codes.ECS_QUOTA,
            f"the project has {count} key pairs, the most it may have (keypair_quota {quota}); "
            "delete one first",
        )


def _may_exist(name: str) -> bool:
    """Whether ``name`` could be a stored key pair's name (others are not looked up)."""
    return bool(NAME.fullmatch(name))


def _row(conn: Connection, project_id: str, name: str) -> Row[Any] | None:
    if not _may_exist(name):
        return None
    return conn.execute(
        select(keypairs).where(keypairs.c.project_id == project_id, keypairs.c.name == name)
    ).first()


def _keypair(conn: Connection, project_id: str, name: str) -> KeyPair:
    row = _row(conn, project_id, name)
    if row is None:
        raise _unknown(name)
    return KeyPair.from_row(row)


def _unknown(name: str) -> NotFound:
    return NotFound(codes.ECS_KEYPAIR_UNKNOWN, f"key pair {name[:80]!r} does not exist")


def _exists(name: str) -> Conflict:
    return Conflict(codes.ECS_KEYPAIR_EXISTS, f"key pair {name!r} already exists")


__all__ = [
    "MAX_LIMIT",
    "MAX_NAME_CHARS",
    "CreatedKeyPair",
    "KeyPair",
    "check_name",
    "create_keypair",
    "delete_keypair",
    "list_keypairs",
    "owner_of",
    "public_key_of",
    "show_keypair",
]
