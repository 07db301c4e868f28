"""Errors the service layer raises for the API and CLI layers to map onto responses.

::

    ImageportError                     (imageport.errors)
    └── ServiceError                   a request cannot be served; ``code`` and ``status`` say how
        ├── RequestInvalid             400: a vendor ``IMG.xxxx`` code or an S3 code
        ├── Unauthenticated            401: no, bad or expired credentials / signature
        ├── Forbidden                  403: authenticated, but not allowed (region refuses import)
        ├── NotFound                   404: missing, or owned by another project (never "forbidden")
        └── Conflict                   409: the resource exists or is busy

``code`` is what clients read: ``IMG.0009`` on the image API, ``NoSuchBucket`` on the bucket
API; ``message`` is one sentence for a person, naming the value that was wrong.
"""

from __future__ import annotations

from imageport.errors import ImageportError


class ServiceError(ImageportError):
    """A request the service refuses; the API layer renders ``code``/``message`` with ``status``."""

    status = 500

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
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
