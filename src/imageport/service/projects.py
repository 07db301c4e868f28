"""Projects and their access keys (AK/SK): what ``imageport admin`` manages.

A project owns buckets, images and jobs; everything a request can see is scoped to the project
its credentials belong to. An access key is 20 upper-case letters and digits, its secret 40
characters, as the vendor's are.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from imageport.adapters.db.schema import access_keys, projects
from imageport.service.clock import new_id, time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, NotFound, RequestInvalid

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_AK_ALPHABET = string.ascii_uppercase + string.digits
_SK_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    created_at: str


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key: str
    secret_key: str
    project_id: str
    created_at: str
    revoked_at: str | None = None


def create_project(services: Services, name: str) -> Project:
    """A new project called ``name`` (letters, digits, ``_.-``; unique)."""
    if not _NAME.match(name):
        raise RequestInvalid("InvalidProjectName",
                             f"project name {name!r} must be 1-64 letters, digits, '_', '.', '-'")
    project = Project(new_id(), name, time_text(services.clock()))
    with services.db.begin() as conn:
        if conn.execute(select(projects.c.id).where(projects.c.name == name)).first():
            raise Conflict("ProjectExists", f"project {name!r} already exists")
        conn.execute(insert(projects).values(id=project.id, name=name,
                                             created_at=project.created_at))
    return project


def find_project(services: Services, name_or_id: str) -> Project:
    """The project with this name or id; NotFound otherwise."""
    with services.db.connect() as conn:
        row = conn.execute(select(projects).where(
            (projects.c.name == name_or_id) | (projects.c.id == name_or_id))).first()
    if row is None:
        raise NotFound("NoSuchProject", f"no project {name_or_id!r}")
    return Project(row.id, row.name, row.created_at)


def create_key(services: Services, project: str) -> AccessKey:
    """A new AK/SK pair for the project named (or with id) ``project``."""
    owner = find_project(services, project)
    key = AccessKey(
        access_key="".join(secrets.choice(_AK_ALPHABET) for _ in range(20)),
        secret_key="".join(secrets.choice(_SK_ALPHABET) for _ in range(40)),
        project_id=owner.id,
        created_at=time_text(services.clock()),
    )
    with services.db.begin() as conn:
        conn.execute(insert(access_keys).values(
            access_key=key.access_key, secret_key=key.secret_key,
            project_id=key.project_id, created_at=key.created_at))
    return key


def revoke_key(services: Services, access_key: str) -> None:
    """Revoke ``access_key``: requests signed with it fail from now on."""
    with services.db.begin() as conn:
        done = conn.execute(update(access_keys)
                            .where(access_keys.c.access_key == access_key)
                            .where(access_keys.c.revoked_at.is_(None))
                            .values(revoked_at=time_text(services.clock())))
    if done.rowcount == 0:
        raise NotFound("NoSuchKey", f"no active access key {access_key!r}")


def active_key(services: Services, access_key: str) -> AccessKey | None:
    """The key record if ``access_key`` exists and is not revoked."""
    with services.db.connect() as conn:
        row = conn.execute(select(access_keys)
                           .where(access_keys.c.access_key == access_key)
                           .where(access_keys.c.revoked_at.is_(None))).first()
    if row is None:
        return None
    return AccessKey(row.access_key, row.secret_key, row.project_id, row.created_at)
