"""The one exception tree of imageport.

::

    ImageportError                  anything imageport raises on purpose
    ├── SourceError                 the file itself cannot be opened or read (missing, a FIFO, EIO)
    ├── CorruptImageError           the bytes do not form a valid structure of the detected format
    │   ├── TruncatedImageError     a structure runs past the end of the file
    │   └── LimitExceededError      a number from the image is beyond a cap in ``imageport.limits``
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


class UnsupportedImageError(ImageportError):
    """A well-formed image uses a feature that imageport cannot read (named in the message)."""
