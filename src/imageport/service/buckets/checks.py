"""The pure checks of bucket-API requests: bucket names, keys, storage classes, user metadata,
Content-MD5, sizes, conditions, and the opaque paging tokens; with the limits S3 sets on them."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from datetime import datetime

from imageport.limits import GiB, MiB, TiB
from imageport.service.clock import parse_time_text
from imageport.service.errors import RequestInvalid, ServiceError

MAX_KEY_BYTES = 1024
"""Longest object key (UTF-8 bytes), as S3."""
MAX_PUT_BYTES = 5 * GiB
"""Largest single PUT and largest part (S3's limits); bigger files use multipart."""
MAX_OBJECT_BYTES = 5 * TiB
"""Largest object a multipart upload may produce (S3's limit)."""
MAX_COPY_BYTES = 5 * GiB
"""Largest object copied by ``x-amz-copy-source`` (S3's limit)."""
MAX_KEYS = 1000
"""Most keys + common prefixes in one list reply (the cap on ``max-keys``)."""
MAX_INT32 = 2**31 - 1
"""Largest ``max-keys``/``max-uploads``/``max-parts``/marker S3 accepts (larger: 400)."""
MAX_METADATA_BYTES = 2048
"""Total size of user metadata names and values (S3's limit)."""
MAX_METADATA_ITEMS = 64
MAX_DELETE_KEYS = 1000
"""Most keys in one multi-object delete (S3's limit)."""
MAX_BUCKETS_LISTED = 10_000
"""Most buckets in one ListBuckets reply (S3's cap on ``max-buckets``)."""
COPY_CHUNK = 8 * MiB

STORAGE_CLASSES = ("STANDARD", "WARM", "COLD")
"""Canonical storage classes (the OBS names), as stored in the database."""
_CLASS_ALIASES = {
    "STANDARD": "STANDARD",
    "WARM": "WARM",
    "STANDARD_IA": "WARM",
    "COLD": "COLD",
    "GLACIER": "COLD",
    "DEEP_ARCHIVE": "COLD",
}
_AMZ_NAMES = {"STANDARD": "STANDARD", "WARM": "STANDARD_IA", "COLD": "GLACIER"}

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_META_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
LAST_CHAR = "\U0010ffff"
"""The greatest character: ``prefix + LAST_CHAR`` sorts after every key under ``prefix``."""


# -- names, classes, metadata, digests (pure checks) -------------------------------------------


def validate_bucket_name(name: str) -> None:
    """S3's rules: 3-63 of ``a-z 0-9 . -``, starting and ending with a letter or digit, no
    ``..`` or ``.-``/``-.``, not an IPv4 address, no ``xn--`` prefix or ``-s3alias`` suffix."""
    if (
        not _BUCKET.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IPV4.match(name)
        or name.startswith(("xn--", "sthree-"))
        or name.endswith(("-s3alias", "--ol-s3"))
    ):
        raise RequestInvalid(
            "InvalidBucketName",
            f"bucket name {name[:80]!r} is not valid: use 3-63 lower-case "
            "letters, digits, '.' and '-', starting and ending with a letter "
            "or digit",
        )


def validate_key(key: str) -> None:
    """Non-empty, at most 1024 bytes of UTF-8, no NUL."""
    if not key:
        raise RequestInvalid("InvalidArgument", "the object key is empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise RequestInvalid("InvalidArgument", "the object key is not valid UTF-8") from exc
    if size > MAX_KEY_BYTES:
        raise RequestInvalid(
            "KeyTooLongError", f"the object key is {size} bytes; at most {MAX_KEY_BYTES}"
        )
    if "\x00" in key:
        raise RequestInvalid("InvalidArgument", "the object key contains a NUL character")


def parse_storage_class(value: str | None, default: str = "STANDARD") -> str:
    """The canonical class (STANDARD, WARM, COLD) for any accepted spelling; ``default`` when
    none is given."""
    if value is None or not value.strip():
        return default
    canonical = _CLASS_ALIASES.get(value.strip().upper())
    if canonical is None:
        raise RequestInvalid(
            "InvalidStorageClass",
            f"storage class {value[:40]!r} is not one of STANDARD, WARM "
            "(STANDARD_IA), COLD (GLACIER, DEEP_ARCHIVE)",
        )
    return canonical


def storage_class_name(canonical: str, dialect: str) -> str:
    """``canonical`` as the client's dialect spells it: ``amz`` (STANDARD_IA, GLACIER) or
    ``obs`` (WARM, COLD)."""
    return _AMZ_NAMES.get(canonical, canonical) if dialect == "amz" else canonical


def user_metadata(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """User metadata from ``(name, value)`` pairs whose names had the ``x-amz-meta-`` or
    ``x-obs-meta-`` prefix removed; names lower-cased, size and count capped."""
    out: dict[str, str] = {}
    total = 0
    for name, value in pairs:
        lowered = name.lower()
        if not _META_NAME.match(lowered):
            raise RequestInvalid("InvalidArgument", f"metadata name {name[:40]!r} is not valid")
        total += len(lowered.encode()) + len(value.encode("utf-8", "replace"))
        out[lowered] = f"{out[lowered]},{value}" if lowered in out else value
    if total > MAX_METADATA_BYTES or len(out) > MAX_METADATA_ITEMS:
        raise RequestInvalid(
            "MetadataTooLarge",
            f"user metadata is {total} bytes in {len(out)} items; at most "
            f"{MAX_METADATA_BYTES} bytes and {MAX_METADATA_ITEMS} items",
        )
    return out


def check_content_md5(content_md5: str | None, md5_hex: str) -> None:
    """Compare a ``Content-MD5`` header (base64 of the binary digest) with the body's md5."""
    if content_md5 is None:
        return
    try:
        given = base64.b64decode(content_md5.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestInvalid("InvalidDigest", "Content-MD5 is not base64") from exc
    if len(given) != 16:
        raise RequestInvalid("InvalidDigest", "Content-MD5 is not an MD5 digest")
    if given.hex() != md5_hex:
        raise RequestInvalid(
            "BadDigest", "the Content-MD5 you specified did not match what we received"
        )


def check_put_size(size: int | None) -> None:
    """Refuse a single PUT or part larger than S3 allows, before any byte is read."""
    if size is not None and size > MAX_PUT_BYTES:
        raise RequestInvalid(
            "EntityTooLarge",
            f"{size} bytes is more than {MAX_PUT_BYTES} in one request; use a multipart upload",
        )


def precondition_failed(what: str = "") -> ServiceError:
    """412 ``PreconditionFailed``, S3's answer when a condition the client set does not hold."""
    return ServiceError(
        "PreconditionFailed",
        "at least one of the preconditions you specified "
        f"did not hold{': ' + what if what else ''}",
        status=412,
    )


def etag_matches(wanted: str, etag: str) -> bool:
    """An ``If-Match``-style value (``*``, one ETag or a comma-separated list, quoted or not)
    against the object's ETag."""
    bare = etag.strip('"')
    return any(
        item.strip() in ("*", etag) or item.strip().strip('"') == bare for item in wanted.split(",")
    )


def same_second(time_text: str, when: datetime) -> bool:
    """The database time ``time_text`` and ``when`` name the same second (HTTP dates carry
    no fraction, listings show milliseconds: both are compared to the second)."""
    return parse_time_text(time_text).replace(microsecond=0) == when.replace(microsecond=0)


# -- paging tokens ----


def encode_token(resume_after: str) -> str:
    """The opaque token that resumes a listing after ``resume_after``."""
    return base64.urlsafe_b64encode(resume_after.encode("utf-8", "surrogatepass")).decode()


def decode_token(token: str) -> str:
    """The name a token resumes after (400 ``InvalidArgument`` for a token not of ours)."""
    try:
        if len(token) > 4 * MAX_KEY_BYTES:
            raise ValueError(token)
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeError) as exc:
        raise RequestInvalid("InvalidArgument", "the continuation token is not valid") from exc
