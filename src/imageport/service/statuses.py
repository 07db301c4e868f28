"""The statuses of images and jobs, and how they move together.

Both are :class:`enum.StrEnum`: a member *is* its string, so the database rows, the JSON
documents and the metrics labels hold exactly the strings the vendor's API shows (``active``,
``FAIL`` ...), and a status read back from a row compares equal to its member.

An image and the job that makes it move in one transaction (see
:mod:`imageport.service.jobs.state`, and :mod:`imageport.service.jobs.recovery` for a restart)::

    job     INIT ──claimed──▶ RUNNING ──▶ SUCCESS
             │  ◀──restarted──┘   └─────▶ FAIL     error_code and fail_reason say why
             └──cancelled before it started──▶ FAIL (IMG.CANCELLED)
    image   queued ──────────▶ saving ──▶ active
             │  ◀──restarted──┘   │
             └───────────────────┴─────▶ killed   its job failed, or was cancelled

An export job leaves its image (``active``) as it is.
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    """Where a job is; ``jobs.status``, and ``status`` of ``GET /v1/{project_id}/jobs/{id}``."""

    #: Accepted, waiting for a worker to claim it.
    INIT = "INIT"
    #: Claimed by a worker, which reports its progress.
    RUNNING = "RUNNING"
    #: Ended well: its image is ``active`` (an export: its object is written).
    SUCCESS = "SUCCESS"
    #: Ended badly or was cancelled: ``error_code`` and ``fail_reason`` say why.
    FAIL = "FAIL"


#: The statuses of a job that still works on (or waits to work on) its image.
UNFINISHED_JOB = (JobStatus.INIT, JobStatus.RUNNING)
#: The statuses of a job that has ended.
ENDED_JOB = (JobStatus.SUCCESS, JobStatus.FAIL)


class ImageStatus(enum.StrEnum):
    """Where an image is; ``images.status`` and the ``status`` of every image document."""

    #: Registered, waiting for its job (or its data, on the Glance routes).
    QUEUED = "queued"
    #: Its job runs: the file is being checked and converted.
    SAVING = "saving"
    #: Its file is stored and checked; it can be exported and copied.
    ACTIVE = "active"
    #: Its job failed (or the service stopped while it ran); ``fail_reason`` says why.
    KILLED = "killed"


#: The statuses of an image whose file is still to come.
IMAGE_IN_PROGRESS = (ImageStatus.QUEUED, ImageStatus.SAVING)


class MemberStatus(enum.StrEnum):
    """Where a share stands for its member project; ``image_members.status`` and the
    ``status`` of a member document (``/v2/images/{id}/members``)."""

    #: Shared by the owner; the member has not answered. The member can show the image.
    PENDING = "pending"
    #: The member accepted: the image is in its lists, and it can read and copy it.
    ACCEPTED = "accepted"
    #: The member rejected: the image is hidden from it (404) except in a list filtered
    #: ``member_status=rejected``, and it can still accept it later.
    REJECTED = "rejected"


#: The statuses of a share whose image its member can show (and is refused changes to, 403).
VISIBLE_MEMBER = (MemberStatus.PENDING, MemberStatus.ACCEPTED)
