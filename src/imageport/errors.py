"""The one exception tree of imageport.

::

    ImageportError                  anything imageport raises on purpose
    ├── SourceError                 the file itself cannot be opened or read (missing, a FIFO, EIO)
    ├── CorruptImageError           the bytes do not form a valid structure of the detected format
    │   ├── TruncatedImageError     a structure runs past the end of the file
    │   └── LimitExceededError      a number from the image is beyond a cap in ``imageport.limits``
    ├── UnsafeImageError            valid tables that must not be converted: shared or
    │                               over-referenced host data, absurd compression (IMG-SAFE)
    └── UnsupportedImageError       valid, but uses a feature no reader here implements

Readers and parsers raise only these. Anything else escaping a parser is a bug; the check
service turns it into a finding rather than a crash, and the fuzz tests fail on it.
"""

from __future__ import annotations


class ImageportError(Exception):
    """Base of every error imageport raises on purpose."""


class SourceError(ImageportError):
    """The image file cannot be opened or read at all (not a statement about its content)."""


class CorruptImageError(ImageportError):
    """The image's structures are invalid for the format it claims to be."""


class TruncatedImageError(CorruptImageError):
    """A structure the image declares lies (partly) beyond the end of the file."""


class LimitExceededError(CorruptImageError):
    """A size, count or offset from the image exceeds a cap in :mod:`imageport.limits`."""


class UnsafeImageError(ImageportError):
    """The tables can be read, but reading them as they are would amplify a small file.

    Raised by the storage audit (:mod:`imageport.disk.audit`): guest ranges that share host
    bytes, qcow2 refcounts that disagree with the tables, packed data whose expansion is beyond
    :data:`imageport.limits.MAX_PACKED_RATIO`. The check reports it as a hazard of the
    container (IMG-SAFE): ``kind`` is the hazard slug, the message is the evidence.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class UnsupportedImageError(ImageportError):
    """A well-formed image uses a feature that imageport cannot read (named in the message)."""
