"""Errors the service layer raises for the API and CLI layers to map onto responses.

:class:`ServiceError` carries a ``code`` and an HTTP ``status``; each subclass here fixes the
status (400 :class:`RequestInvalid`, 401 :class:`Unauthenticated`, 403 :class:`Forbidden`, 404
:class:`NotFound`: missing, or owned by another project, never "forbidden"; 409
:class:`Conflict`). Their place in the one tree is drawn in :mod:`imageport.errors`.

``code`` is what clients read: ``IMG.0009`` on the image API, ``NoSuchBucket`` on the bucket
API; ``message`` is one sentence for a person, naming the value that was wrong. ``field``, when
set, names that value in a machine-readable way: the request body's field (``name``,
``min_disk``, ``image_url``...) the refusal is about, so that a form (the web console's) can
show the error at its input. The APIs' error bodies do not carry it (the vendor's have no such
member); the message names the field for their clients.
"""

from __future__ import annotations

from imageport.errors import ImageportError


class ServiceError(ImageportError):
    """A request the service refuses; the API layer renders ``code``/``message`` with ``status``."""

    status = 500

    def __init__(
        self, code: str, message: str, *, status: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        #: the request field the error is about (see the module docstring), or None
        self.field = field
        if status is not None:
            self.status = status


class RequestInvalid(ServiceError):
    status = 400


class Unauthenticated(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409
