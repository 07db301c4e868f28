"""Where a RAW image's bitmap file lives in a bucket: beside it, same base name, ``.mf``.

One rule for the import job (which looks for the bitmap) and the client (which uploads it), so
the two never disagree: ``dir/disk.raw`` -> ``dir/disk.mf``, ``disk`` -> ``disk.mf``,
``dir.v2/disk`` -> ``dir.v2/disk.mf``. Only the last ``/``-separated segment's extension is
replaced. A key that is itself a ``.mf`` has no bitmap (it is never its own).
"""

from __future__ import annotations

import posixpath

#: Extension of a RAW image's bitmap file (docs/bitmap-format.md).
BITMAP_SUFFIX = ".mf"


def bitmap_key_for(key: str) -> str | None:
    """The key of the bitmap file that goes with object ``key`` (see the module docstring);
    None for a key that names a ``.mf`` or has no base name."""
    name = posixpath.basename(key)
    if not name or name.lower().endswith(BITMAP_SUFFIX):
        return None
    base, _ext = posixpath.splitext(key)
    return base + BITMAP_SUFFIX
