"""imageport: check and import Linux disk images as private cloud images.

The public API is small on purpose; see ``__all__``.
"""

from imageport.errors import (
    CorruptImageError,
    ImageportError,
    LimitExceededError,
    SourceError,
    TruncatedImageError,
)

__version__ = "0.1.0"

__all__ = [
    "CorruptImageError",
    "ImageportError",
    "LimitExceededError",
    "SourceError",
    "TruncatedImageError",
    "__version__",
]
