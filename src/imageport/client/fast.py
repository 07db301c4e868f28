"""Fast import from the client side: put a RAW image's bitmap file beside it in the bucket.

Fast import of a RAW image needs its bitmap file (``docs/bitmap-format.md``) in the same bucket,
same base name, extension ``.mf`` (:func:`imageport.fastimport.naming.bitmap_key_for`). A ZVHD2
needs none. Used by::

    imageport image register NAME BUCKET:KEY --fast [--source FILE]
    imageport upload FILE BUCKET/KEY --bitmap

The local file is probed with imageport's own format registry (the file is the user's own, on
their machine); the bitmap is built reading only the file's allocated bytes and sent in one
PUT with its Content-MD5 (it is at most 64 MiB + 96 bytes). Nothing is written to disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from imageport.client.errors import ClientError
from imageport.client.s3 import S3Client
from imageport.client.signing import content_md5
from imageport.errors import ImageportError
from imageport.fastimport.naming import bitmap_key_for
from imageport.limits import GiB

#: Formats fast import takes.
FAST_FORMATS = ("raw", "zvhd2")


@dataclass(frozen=True, slots=True)
class BitmapOutcome:
    """What :func:`ensure_bitmap` found or did.

    ``action``: ``uploaded`` (made and sent now), ``present`` (already in the bucket),
    ``not-needed`` (the file is ZVHD2), ``missing`` (no bitmap and no local file to make one
    from), ``unsupported`` (the local file is neither RAW nor ZVHD2). ``message`` says it in
    words; ``warning`` is true when the import will probably fail.
    """

    action: str
    bitmap_key: str | None
    message: str
    warning: bool = False


MIN_DISK_GIB = 40
"""The platform's smallest system disk (IMG-DISK-SIZE)."""


def local_format(path: str) -> str:
    """The format of the local file ``path`` (``raw``, ``zvhd2``, ``qcow2`` ...)."""
    from imageport.formats.registry import probe
    from imageport.source import FileSource

    try:
        with FileSource(path) as source:
            return probe(source).format
    except ImageportError as exc:
        raise ClientError(f"cannot read {path}: {exc}") from exc


def min_disk_for(path: str) -> int:
    """The smallest ``min_disk`` (GiB) that holds the local image ``path``'s virtual disk:
    its virtual size rounded up to whole GiB, and at least the platform's 40 GiB."""
    from imageport.formats.registry import probe
    from imageport.source import FileSource

    try:
        with FileSource(path) as source:
            virtual = probe(source).virtual_size
    except ImageportError as exc:
        raise ClientError(f"cannot read {path}: {exc}") from exc
    return max(MIN_DISK_GIB, -(-(virtual or 0) // GiB))


def _key_of_bitmap(key: str) -> str:
    mf_key = bitmap_key_for(key)
    if mf_key is None:
        raise ClientError(f"{key!r} names a bitmap file; give the key of the image itself")
    return mf_key


def upload_bitmap(
    s3: S3Client,
    path: str,
    bucket: str,
    key: str,
    progress: Callable[[int, int], None] | None = None,
) -> BitmapOutcome:
    """Build the bitmap of the RAW file ``path`` and store it as ``<base>.mf`` beside ``key``
    (replacing any)."""
    from imageport.fastimport.bitmap import scan_raw

    mf_key = _key_of_bitmap(key)
    try:
        result = scan_raw(path, progress=progress)
    except ImageportError as exc:
        raise ClientError(f"cannot make the bitmap of {path}: {exc}") from exc
    data = result.bitmap.encode()
    md5_hex, md5_b64 = content_md5(data)
    etag = s3.put_object(bucket, mf_key, len(data), md5_b64, lambda: [data])
    if etag and etag != md5_hex:
        raise ClientError(
            f"the server stored {bucket}/{mf_key} with ETag {etag}, not the bitmap's MD5 {md5_hex}"
        )
    bm = result.bitmap
    return BitmapOutcome(
        "uploaded",
        mf_key,
        (
            f"uploaded bitmap {bucket}/{mf_key}: {len(data)} bytes, {bm.set_bits} of "
            f"{bm.block_count} blocks ({bm.block_size // 1024} KiB each) hold data"
        ),
    )


def ensure_bitmap(
    s3: S3Client,
    bucket: str,
    key: str,
    source: str | None,
    progress: Callable[[int, int], None] | None = None,
) -> BitmapOutcome:
    """Make sure object ``bucket/key`` can be fast-imported as far as its bitmap goes.

    With ``source`` (the local file that was uploaded as ``key``; it must have the object's
    size): a RAW whose bitmap is not in the bucket yet gets one made and uploaded; a ZVHD2
    needs none; any other format is reported (the job would fail). Without ``source``, only
    whether the bitmap is there can be said.
    """
    mf_key = _key_of_bitmap(key)
    if source is None:
        if s3.head_object(bucket, mf_key) is not None:
            return BitmapOutcome("present", mf_key, f"using bitmap {bucket}/{mf_key}")
        return BitmapOutcome(
            "missing",
            None,
            (
                f"no bitmap {bucket}/{mf_key}: a RAW image fails fast import (IMG-FAST-RAW) "
                "without one; give --source FILE to make and upload it (a ZVHD2 needs none)"
            ),
            warning=True,
        )
    if not os.path.isfile(source):
        raise ClientError(f"{source} is not a readable file")
    obj = s3.head_object(bucket, key)
    if obj is None:
        raise ClientError(
            f"{bucket}/{key} does not exist; upload it first "
            f"(imageport upload {source} {bucket}/{key} --bitmap)"
        )
    size = os.path.getsize(source)
    if obj.size != size:
        raise ClientError(
            f"{bucket}/{key} is {obj.size} bytes but {source} is {size}: "
            "not the file that was uploaded"
        )
    fmt = local_format(source)
    if fmt == "zvhd2":
        return BitmapOutcome("not-needed", None, f"{source} is ZVHD2: no bitmap needed")
    if fmt != "raw":
        return BitmapOutcome(
            "unsupported",
            None,
            (
                f"{source} is {fmt}: fast import takes RAW (with a bitmap) or ZVHD2 only, so the "
                f"job will fail (convert it: imageport convert {source} OUT.zvhd2)"
            ),
            warning=True,
        )
    if s3.head_object(bucket, mf_key) is not None:
        return BitmapOutcome(
            "present",
            mf_key,
            f"using bitmap {bucket}/{mf_key} (already "
            "in the bucket; the import job verifies it against the image)",
        )
    return upload_bitmap(s3, source, bucket, key, progress)
