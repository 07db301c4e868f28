"""Sharing images with other projects: the image's members (the vendor's "Image Sharing").

The owner of an active private image adds another project as a *member*; the share is
``pending`` until the member project accepts or rejects it (:class:`MemberStatus`). The Glance
routes are here: ``POST /v2/images/{id}/members {"member"}`` (:func:`add_member`), ``GET`` the
list (:func:`list_members`), ``GET``/``PUT {"status"}``/``DELETE``
``/v2/images/{id}/members/{member_id}`` (:func:`show_member`, :func:`update_member`,
:func:`delete_member`); the vendor's batch routes (``/v1/cloudimages/members``) are in
:mod:`imageport.service.images.member_batches`, over the same checks and rows.

Who may do what:

* only the owner adds and removes members (a member is refused ``IMG.0092``, 403), and only
  an ``active`` ``private`` image can be shared (``IMG.STATE``, 409); a project is a member
  once (``IMG.MEMBER_EXISTS`` from Glance; the batch leaves an existing share as it is); an
  image has at most :data:`MAX_MEMBERS` members (``IMG.0015``); the projects must exist and
  not be the owner (``IMG.PROJECT``);
* only the member sets its own status (``accepted`` or ``rejected``; the owner is refused
  ``IMG.0092``), and may change its mind later;
* the owner sees every member; a member sees (and shows) only its own membership, in any
  status; any other project gets 404 for the image, as if it did not exist.

What a member sees of the image (:func:`visible_image`, :func:`shared_images`): with a
``pending`` or ``accepted`` share it can show the image (``GET /v2/images/{id}``) and read its
check report, shown as the vendor shows shared images: ``visibility`` ``shared`` and
``__imagetype`` ``shared``, ``owner`` the owner's project. Lists hold the images shared with the
caller and ``accepted`` (the vendor's rule: an accepted image is in the list, a rejected one is
not); ``member_status=pending|accepted|rejected`` lists the shares in that status instead (and
no own image). With an ``accepted`` share the member can copy the image into its own project
(:func:`copy_source`; ``POST /v1/cloudimages/{id}/copy``). Every other use case of the image
(update, delete, export, upload, tags, download, sharing) is the owner's: a member is refused
``IMG.0092`` (403) by :func:`imageport.service.images.records.image_row`, and a project with a
``rejected`` share, a removed one or none at all gets 404. Deleting an image deletes its
members (:func:`delete_members_of`), so an id reused later starts with none.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, Forbidden, NotFound, RequestInvalid
from imageport.service.images import validation as v
from imageport.service.images.records import (
    IMAGE_COLUMNS,
    ImageRecord,
    image_row,
    member_status,
)
from imageport.service.statuses import VISIBLE_MEMBER, ImageStatus, MemberStatus
from imageport.service.tables import image_members, images, projects

MAX_MEMBERS = 256
"""Most projects one image may be shared with (the vendor's limit for disk images)."""
MEMBER_SCHEMA = "/v2/schemas/member"
MEMBERS_SCHEMA = "/v2/schemas/members"
SHARED = "shared"
"""``visibility`` and ``__imagetype`` of an image as its members see it."""
ANSWERS = (MemberStatus.ACCEPTED, MemberStatus.REJECTED)
"""The statuses a member may set."""

PROJECT_ID = re.compile(r"[0-9a-f]{32}")
"""What a project id is."""


@dataclass(frozen=True, slots=True)
class Member:
    """One share of an image with a project."""

    image_id: str
    member_id: str
    status: str
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Row[Any]) -> Member:
        return cls(row.image_id, row.member_id, row.status, row.created_at, row.updated_at)


@dataclass(frozen=True, slots=True)
class MemberPage:
    """The members a caller may see, one page; ``next_marker`` is set when more follow."""

    members: Sequence[Member]
    next_marker: str | None


# -- what members see ------------------------------------------------------------------------


def shared_view(record: ImageRecord) -> ImageRecord:
    """``record`` as a member sees it: ``visibility`` and ``__imagetype`` ``shared``."""
    return dataclasses.replace(
        record,
        visibility=SHARED,
        properties={**record.properties, "__imagetype": SHARED},
    )


def visible_row(conn: Connection, project_id: str, image_id: str) -> tuple[Row[Any], bool]:
    """The image row the caller may read, and whether it is shared with it (not its own):
    its own image, or one shared with it ``pending`` or ``accepted``; NotFound otherwise."""
    if len(image_id) <= 64:
        row = conn.execute(select(*IMAGE_COLUMNS).where(images.c.id == image_id)).first()
        if row is not None:
            if row.project_id == project_id:
                return row, False
            if member_status(conn, project_id, image_id) in VISIBLE_MEMBER:
                return row, True
    raise NotFound(codes.NOT_FOUND, f"image {image_id[:64]!r} not found")


def visible_image(conn: Connection, project_id: str, image_id: str) -> ImageRecord:
    """The image as the caller sees it (see :func:`visible_row`)."""
    row, shared = visible_row(conn, project_id, image_id)
    record = ImageRecord.from_row(row)
    return shared_view(record) if shared else record


def shared_images(conn: Connection, project_id: str, statuses: Iterable[str]) -> list[ImageRecord]:
    """The images shared with ``project_id`` whose share is in ``statuses``, as it sees them."""
    rows = conn.execute(
        select(*IMAGE_COLUMNS)
        .join(image_members, image_members.c.image_id == images.c.id)
        .where(
            image_members.c.member_id == project_id,
            image_members.c.status.in_(list(statuses)),
            images.c.project_id != project_id,
        )
    ).all()
    return [shared_view(ImageRecord.from_row(r)) for r in rows]


def copy_source(conn: Connection, project_id: str, image_id: str) -> Row[Any]:
    """The row of an image the caller may copy: its own, or one shared with it and accepted.
    A ``pending`` share is refused (``IMG.0092``, 403: accept it first); otherwise 404."""
    row, shared = visible_row(conn, project_id, image_id)
    if shared and member_status(conn, project_id, image_id) != MemberStatus.ACCEPTED:
        raise Forbidden(
            codes.NOT_OWNER,
            f"image {image_id} is shared with this project but not accepted yet: accept it "
            "(PUT /v2/images/{id}/members/{project}) before copying it",
        )
    return row


def accepted_by(conn: Connection, project_id: str, image_id: str) -> bool:
    """Whether ``project_id`` has accepted the share of ``image_id`` (for the copy job)."""
    return member_status(conn, project_id, image_id) == MemberStatus.ACCEPTED


def delete_members_of(conn: Connection, image_id: str) -> None:
    """Remove every share of the image (before the image row itself is deleted)."""
    conn.execute(delete(image_members).where(image_members.c.image_id == image_id))


# -- checks (also for member_batches) -----------------------------------------------------------


def check_project_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not PROJECT_ID.fullmatch(value):
        shown = str(value)[:64] if isinstance(value, str) else type(value).__name__
        raise RequestInvalid(
            codes.BAD_REQUEST, f"{field}: {shown!r} is not a project id (32 hex characters)"
        )
    return value


def check_answer(value: object) -> MemberStatus:
    if value not in ANSWERS:
        raise RequestInvalid(
            codes.BAD_REQUEST, f"status must be {' or '.join(ANSWERS)}, not {str(value)[:32]!r}"
        )
    return MemberStatus(str(value))


def refuse_unoffered(doc: Mapping[str, object], fields: Sequence[str], why: str) -> None:
    for name in fields:
        if doc.get(name) not in (None, []):
            raise RequestInvalid(codes.BAD_REQUEST, f"{name} is not offered: {why}")


def shareable_row(conn: Connection, project_id: str, image_id: str) -> Row[Any]:
    """The caller's image, if it may be shared (owner: else 403/404; active and private)."""
    row = image_row(conn, project_id, image_id)
    if row.status != ImageStatus.ACTIVE or row.visibility != "private":
        raise Conflict(
            codes.STATE,
            f"image {image_id} is {row.status} ({row.visibility}); only an active private "
            "image can be shared",
        )
    return row


def check_projects(conn: Connection, owner: str, project_ids: Sequence[str]) -> None:
    """Each project exists and is not the owner's (``IMG.PROJECT``)."""
    if owner in project_ids:
        raise RequestInvalid(
            codes.PROJECT_UNKNOWN, "an image cannot be shared with its own project"
        )
    found = set(
        conn.execute(select(projects.c.id).where(projects.c.id.in_(list(project_ids)))).scalars()
    )
    for project_id in project_ids:
        if project_id not in found:
            raise RequestInvalid(codes.PROJECT_UNKNOWN, f"project {project_id} does not exist")


def add_shares(conn: Connection, image_id: str, new: Sequence[str], now: str) -> None:
    """Share the image with the projects of ``new`` not yet members (``IMG.0015`` past
    :data:`MAX_MEMBERS`)."""
    existing = set(
        conn.execute(
            select(image_members.c.member_id).where(image_members.c.image_id == image_id)
        ).scalars()
    )
    fresh = [p for p in new if p not in existing]
    if len(existing) + len(fresh) > MAX_MEMBERS:
        raise RequestInvalid(
            codes.QUOTA_EXCEEDED,
            f"image {image_id} would have {len(existing) + len(fresh)} members; "
            f"an image can be shared with at most {MAX_MEMBERS} projects",
        )
    if fresh:
        conn.execute(
            insert(image_members),
            [
                dict(
                    image_id=image_id,
                    member_id=p,
                    status=MemberStatus.PENDING,
                    created_at=now,
                    updated_at=now,
                )
                for p in fresh
            ],
        )


# -- the Glance routes --------------------------------------------------------------------------


def add_member(services: Services, project_id: str, image_id: str, body: object) -> Member:
    """``POST /v2/images/{id}/members {"member": project_id}``: the new ``pending`` share."""
    doc = v.require_object(body, frozenset({"member"}))
    member = check_project_id(doc.get("member"), "member")
    now = time_text(services.clock())
    with services.db.begin() as conn:
        shareable_row(conn, project_id, image_id)
        check_projects(conn, project_id, [member])
        if member_status(conn, image_id=image_id, project_id=member) is not None:
            raise Conflict(
                codes.MEMBER_EXISTS, f"project {member} is already a member of image {image_id}"
            )
        try:
            with conn.begin_nested():
                add_shares(conn, image_id, [member], now)
        except IntegrityError as exc:
            raise Conflict(
                codes.MEMBER_EXISTS, f"project {member} is already a member of image {image_id}"
            ) from exc
        return _member(conn, image_id, member)


def list_members(
    services: Services, project_id: str, image_id: str, query: Sequence[tuple[str, str]]
) -> MemberPage:
    """``GET /v2/images/{id}/members`` (``limit`` 1-:data:`MAX_MEMBERS`, ``marker`` a member
    id): every member for the owner, its own membership for a member."""
    params: dict[str, str] = {}
    for name, value in query:
        if name not in ("limit", "marker") or name in params:
            raise RequestInvalid(
                codes.BAD_REQUEST, f"query parameter {name[:64]!r} is not supported (once)"
            )
        params[name] = value[:64]
    limit = MAX_MEMBERS
    if "limit" in params:
        number = whole_number(params["limit"])
        if number is None or not 1 <= number <= MAX_MEMBERS:
            raise RequestInvalid(codes.BAD_REQUEST, f"limit must be 1-{MAX_MEMBERS}")
        limit = number
    with services.db.connect() as conn:
        owner = _owner_or_member(conn, project_id, image_id)
        where = [image_members.c.image_id == image_id]
        if not owner:
            where.append(image_members.c.member_id == project_id)
        rows = conn.execute(
            select(image_members)
            .where(*where)
            .order_by(image_members.c.created_at, image_members.c.member_id)
        ).all()
    found = [Member.from_row(r) for r in rows]
    start = 0
    if "marker" in params:
        index = next((i for i, m in enumerate(found) if m.member_id == params["marker"]), None)
        if index is None:
            raise RequestInvalid(codes.BAD_REQUEST, "marker is not a member of this listing")
        start = index + 1
    page = found[start : start + limit]
    more = start + limit < len(found)
    return MemberPage(page, page[-1].member_id if more and page else None)


def show_member(services: Services, project_id: str, image_id: str, member_id: str) -> Member:
    """``GET /v2/images/{id}/members/{member_id}``: for the owner any member, for a member
    only itself."""
    with services.db.connect() as conn:
        owner = _owner_or_member(conn, project_id, image_id)
        if not owner and member_id != project_id:
            raise NotFound(codes.NOT_FOUND, f"member {member_id[:64]!r} not found")
        return _member(conn, image_id, member_id)


def update_member(
    services: Services, project_id: str, image_id: str, member_id: str, body: object
) -> Member:
    """``PUT /v2/images/{id}/members/{member_id} {"status"}``: the member accepts or rejects
    (the owner is refused ``IMG.0092``)."""
    doc = v.require_object(body, frozenset({"status", "vault_id"}))
    refuse_unoffered(doc, ("vault_id",), "there are no CBR vaults (full-server images) here")
    status = check_answer(doc.get("status"))
    now = time_text(services.clock())
    with services.db.begin() as conn:
        owner = _owner_or_member(conn, project_id, image_id)
        if owner:
            raise Forbidden(
                codes.NOT_OWNER,
                "only the member project accepts or rejects a share, not the image's owner",
            )
        if member_id != project_id:
            raise NotFound(codes.NOT_FOUND, f"member {member_id[:64]!r} not found")
        set_status(conn, image_id, project_id, status, now)
        return _member(conn, image_id, member_id)


def delete_member(services: Services, project_id: str, image_id: str, member_id: str) -> None:
    """``DELETE /v2/images/{id}/members/{member_id}``: the owner stops sharing the image with
    the project."""
    with services.db.begin() as conn:
        image_row(conn, project_id, image_id)
        remove_share(conn, image_id, member_id)


# -- rows (also for member_batches) -------------------------------------------------------------


def _owner_or_member(conn: Connection, project_id: str, image_id: str) -> bool:
    """True for the image's owner, False for a member (any status); NotFound otherwise."""
    if len(image_id) <= 64:
        owner = conn.execute(select(images.c.project_id).where(images.c.id == image_id)).scalar()
        if owner == project_id:
            return True
        if owner is not None and member_status(conn, project_id, image_id) is not None:
            return False
    raise NotFound(codes.NOT_FOUND, f"image {image_id[:64]!r} not found")


def require_membership(conn: Connection, project_id: str, image_id: str) -> None:
    """NotFound unless the image is shared with the caller (in any status); its owner is not
    a member of it."""
    if _owner_or_member(conn, project_id, image_id):
        raise NotFound(
            codes.NOT_FOUND, f"image {image_id} is this project's own, not shared with it"
        )


def _member(conn: Connection, image_id: str, member_id: str) -> Member:
    row = conn.execute(
        select(image_members).where(
            image_members.c.image_id == image_id, image_members.c.member_id == member_id
        )
    ).first()
    if row is None:
        raise NotFound(codes.NOT_FOUND, f"member {member_id[:64]!r} not found")
    return Member.from_row(row)


def set_status(
    conn: Connection, image_id: str, member_id: str, status: MemberStatus, now: str
) -> None:
    conn.execute(
        update(image_members)
        .where(image_members.c.image_id == image_id, image_members.c.member_id == member_id)
        .values(status=status, updated_at=now)
    )


def remove_share(conn: Connection, image_id: str, member_id: str) -> None:
    removed = conn.execute(
        delete(image_members).where(
            image_members.c.image_id == image_id, image_members.c.member_id == member_id
        )
    ).rowcount
    if removed != 1:
        raise NotFound(
            codes.NOT_FOUND, f"project {member_id[:64]!r} is not a member of image {image_id}"
        )


__all__ = [
    "MAX_MEMBERS",
    "PROJECT_ID",
    "Member",
    "MemberPage",
    "accepted_by",
    "add_member",
    "add_shares",
    "check_answer",
    "check_project_id",
    "check_projects",
    "copy_source",
    "delete_member",
    "delete_members_of",
    "list_members",
    "refuse_unoffered",
    "remove_share",
    "require_membership",
    "set_status",
    "shareable_row",
    "shared_images",
    "shared_view",
    "show_member",
    "update_member",
    "visible_image",
    "visible_row",
]
