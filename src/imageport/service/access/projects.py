"""Projects and their access keys (AK/SK): what ``imageport admin`` manages.

A project owns buckets, images and jobs; everything a request can see is scoped to the project
its credentials belong to. An access key is 20 upper-case letters and digits, its secret 40
characters, as the vendor's are.

These use cases touch only the database and the clock, so they take any :class:`Identity`
(a :class:`~imageport.service.context.Services` is one); ``imageport admin`` passes a small
context without an object store or an image worker.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from imageport.service.clock import new_id, time_text
from imageport.service.errors import Conflict, NotFound, RequestInvalid
from imageport.service.tables import access_keys, projects

MAX_ACCESS_KEY = 40
"""Longest access key looked up (the column's width); longer ones are unknown at once."""


def _plausible_key(access_key: str) -> bool:
    """Worth a lookup: printable ASCII of the column's width (PostgreSQL refuses NUL bytes)."""
    return (
        0 < len(access_key) <= MAX_ACCESS_KEY and access_key.isascii() and access_key.isprintable()
    )


class Identity(Protocol):
    """What the project and key use cases need: the database and the clock."""

    @property
    def db(self) -> Engine: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_AK_ALPHABET = string.ascii_uppercase + string.digits
_SK_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Project:
    """A tenant: owns buckets, images, jobs and access keys."""

    id: str
    name: str
    created_at: str


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An AK/SK pair of one project; ``revoked_at`` is set once it may no longer sign."""

    access_key: str
    secret_key: str
    project_id: str
    created_at: str
    revoked_at: str | None = None


def create_project(services: Identity, name: str) -> Project:
    """A new project called ``name`` (letters, digits, ``_.-``; unique)."""
    if not _NAME.match(name):
        raise RequestInvalid(
            "InvalidProjectName",
            f"project name {name!r} must be 1-64 letters, digits, '_', '.', '-'",
        )
    project = Project(new_id(), name, time_text(services.clock()))
    exists = Conflict("ProjectExists", f"project {name!r} already exists")
    try:
        with services.db.begin() as conn:
            if conn.execute(select(projects.c.id).where(projects.c.name == name)).first():
                raise exists
            conn.execute(
                insert(projects).values(id=project.id, name=name, created_at=project.created_at)
            )
    except IntegrityError as exc:  # the same name created concurrently
        raise exists from exc
    return project


def list_projects(services: Identity) -> list[Project]:
    """Every project, by name."""
    with services.db.connect() as conn:
        rows = conn.execute(select(projects).order_by(projects.c.name)).all()
    return [Project(row.id, row.name, row.created_at) for row in rows]


def count_projects(services: Identity) -> int:
    """How many projects there are (``imageport serve`` says how to create the first)."""
    with services.db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(projects)).scalar_one())


def find_project(services: Identity, name_or_id: str) -> Project:
    """The project with this name, else the one with this id; NotFound otherwise.

    A name wins over an id, so a project named like another's id is still found by its name."""
    with services.db.connect() as conn:
        row = conn.execute(select(projects).where(projects.c.name == name_or_id)).first()
        if row is None:
            row = conn.execute(select(projects).where(projects.c.id == name_or_id)).first()
    if row is None:
        raise NotFound("NoSuchProject", f"no project {name_or_id!r}")
    return Project(row.id, row.name, row.created_at)


def create_key(services: Identity, project: str) -> AccessKey:
    """A new AK/SK pair for the project named (or with id) ``project``."""
    owner = find_project(services, project)
    key = AccessKey(
        access_key="".join(secrets.choice(_AK_ALPHABET) for _ in range(20)),
        secret_key="".join(secrets.choice(_SK_ALPHABET) for _ in range(40)),
        project_id=owner.id,
        created_at=time_text(services.clock()),
    )
    with services.db.begin() as conn:
        conn.execute(
            insert(access_keys).values(
                access_key=key.access_key,
                secret_key=key.secret_key,
                project_id=key.project_id,
                created_at=key.created_at,
            )
        )
    return key


def list_keys(services: Identity, project: str) -> list[AccessKey]:
    """The keys of the project named (or with id) ``project``, revoked ones included, oldest
    first. Callers that show them must not print ``secret_key``."""
    owner = find_project(services, project)
    with services.db.connect() as conn:
        rows = conn.execute(
            select(access_keys)
            .where(access_keys.c.project_id == owner.id)
            .order_by(access_keys.c.created_at, access_keys.c.access_key)
        ).all()
    return [
        AccessKey(row.access_key, row.secret_key, row.project_id, row.created_at, row.revoked_at)
        for row in rows
    ]


def revoke_key(services: Identity, access_key: str) -> None:
    """Revoke ``access_key``: requests signed with it, and tokens issued to it, fail from now
    on."""
    if not _plausible_key(access_key):
        raise NotFound("NoSuchKey", f"no active access key {access_key[:MAX_ACCESS_KEY]!r}")
    with services.db.begin() as conn:
        done = conn.execute(
            update(access_keys)
            .where(access_keys.c.access_key == access_key)
            .where(access_keys.c.revoked_at.is_(None))
            .values(revoked_at=time_text(services.clock()))
        )
    if done.rowcount == 0:
        raise NotFound("NoSuchKey", f"no active access key {access_key!r}")


def active_key(services: Identity, access_key: str) -> AccessKey | None:
    """The key record if ``access_key`` exists and is not revoked."""
    if not _plausible_key(access_key):
        return None
    with services.db.connect() as conn:
        row = conn.execute(
            select(access_keys)
            .where(access_keys.c.access_key == access_key)
            .where(access_keys.c.revoked_at.is_(None))
        ).first()
    if row is None:
        return None
    return AccessKey(row.access_key, row.secret_key, row.project_id, row.created_at)
