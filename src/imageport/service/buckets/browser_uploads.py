"""Multipart uploads sent by a browser (the web console's upload page).

They are the bucket API's own multipart uploads (:mod:`.multipart`): the console starts one
for the signed-in project and the browser sends each part straight to the bucket API. What a
browser cannot do itself is done here:

* **sign**: :func:`presign_parts` makes a SigV4 presigned URL per part for the session's
  access key (:func:`imageport.auth.sigv4_query.presign`), valid :data:`PART_URL_SECONDS`,
  with the part's SHA-256 as a signed ``x-amz-checksum-sha256`` header, which the bucket API
  verifies against the body: a URL uploads those bytes and no others, to that part of that
  upload, so a URL seen by someone else (a proxy's log) is worth nothing to them. The key's
  secret is read here and never leaves the service;
* **choose the part size** as the CLI does (:func:`part_size_for`: at least 5 MiB, at most
  5 GiB, raised until 10,000 parts cover the file);
* **complete from what the server holds** (:func:`complete_from_server`): the parts are listed
  here and must be exactly the plan's, 1..N with the planned sizes, before the upload is
  completed with their ETags; a part missing or of another size is named in the error, so a
  page can send it again.

Keys are checked as the bucket API checks them, and also refused when a browser would rewrite
their URL (a ``.`` or ``..`` path segment, which URL parsers remove before sending) or the
bucket API could not take it (a line feed).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from imageport.auth.sigv4_query import presign
from imageport.service.access.authn import Principal
from imageport.service.access.projects import active_key
from imageport.service.buckets import multipart
from imageport.service.buckets.checks import (
    MAX_OBJECT_BYTES,
    MAX_PUT_BYTES,
    validate_key,
)
from imageport.service.buckets.objects import NewObject
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid, Unauthenticated
from imageport.service.ports import ObjectInfo

MiB = 1024 * 1024
PART_URL_SECONDS = 300
"""Validity of a part's presigned URL: the page asks for each part's URL just before sending
it, and a URL is checked when the request starts (a slow body does not outlive it)."""
DEFAULT_PART_SIZE = 16 * MiB
"""The browser's part size unless the page asks for another: a browser hashes each part in
memory before sending it (its SHA-256 is signed into its URL), with up to four in flight, and a
dropped connection costs at most one part each."""
MAX_URLS = 16
"""Most part URLs handed out by one request."""
_URL_PATH_SAFE = "/-_.~"


@dataclass(frozen=True, slots=True)
class PartPlan:
    """One planned part: 1-based ``number`` and its ``size`` in bytes."""

    number: int
    size: int


@dataclass(frozen=True, slots=True)
class BrowserUpload:
    """A started upload as the page needs it."""

    upload_id: str
    key: str
    part_size: int
    parts: int


def part_size_for(file_size: int, requested: int = DEFAULT_PART_SIZE) -> int:
    """``requested`` clamped to 5 MiB..5 GiB, raised (to whole MiB) so that no more than
    10,000 parts cover ``file_size``: the CLI's rule
    (:func:`imageport.client.upload.choose_part_size`)."""
    size = min(max(requested, multipart.MIN_PART_BYTES), MAX_PUT_BYTES)
    needed = -(-file_size // multipart.MAX_PART_NUMBER)
    if needed > size:
        size = -(-needed // MiB) * MiB
    if size > MAX_PUT_BYTES:
        raise RequestInvalid(
            "EntityTooLarge", f"a file of {file_size} bytes needs parts over {MAX_PUT_BYTES} bytes"
        )
    return size


def plan_parts(file_size: int, part_size: int) -> list[PartPlan]:
    """The parts covering ``file_size`` bytes (one empty part for an empty file)."""
    if file_size == 0:
        return [PartPlan(1, 0)]
    return [
        PartPlan(i + 1, min(part_size, file_size - offset))
        for i, offset in enumerate(range(0, file_size, part_size))
    ]


def check_browser_key(key: str) -> None:
    """The bucket API's key rules, and no ``.``/``..`` segment (a browser would drop it from
    the URL: ``a/../b`` is sent as ``b``), and no line feed (the bucket API's route does not
    take a path holding one, so no part could be sent): 400 ``InvalidArgument``."""
    validate_key(key)
    if "\n" in key:
        raise RequestInvalid(
            "InvalidArgument",
            "a key with a line feed cannot be uploaded from a browser; choose another key",
        )
    if any(segment in (".", "..") for segment in key.split("/")):
        raise RequestInvalid(
            "InvalidArgument",
            "a key with a '.' or '..' segment cannot be uploaded from a browser "
            "(browsers rewrite such URLs); choose another key",
        )


def check_file_size(file_size: int) -> None:
    """0..5 TiB (S3's largest object): 400 ``EntityTooLarge`` beyond."""
    if not 0 <= file_size <= MAX_OBJECT_BYTES:
        raise RequestInvalid("EntityTooLarge", f"objects are at most {MAX_OBJECT_BYTES} bytes")


def start_upload(
    services: Services,
    project_id: str,
    bucket: str,
    key: str,
    file_size: int,
    requested_part_size: int = DEFAULT_PART_SIZE,
) -> BrowserUpload:
    """A new multipart upload of ``key`` (the bucket's storage class), planned for a file of
    ``file_size`` bytes."""
    check_browser_key(key)
    check_file_size(file_size)
    part_size = part_size_for(file_size, requested_part_size)
    upload = multipart.create_upload(services, project_id, bucket, key, NewObject())
    return BrowserUpload(upload.upload_id, key, part_size, len(plan_parts(file_size, part_size)))


def bucket_api_base(url: str) -> tuple[str, str]:
    """``(scheme, host[:port])`` of the bucket API's root URL as browsers reach it, the port
    left out when it is the scheme's default (a browser's ``Host`` header leaves it out, and
    the signature covers it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the bucket API's URL {url[:100]!r} is not an http(s) URL")
    default = {"http": 80, "https": 443}[parts.scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = parts.port
    return parts.scheme, host if port in (None, default) else f"{host}:{port}"


def part_url(base_url: str, bucket: str, key: str, upload_id: str, number: int) -> str:
    """The (unsigned) path-style URL of part ``number`` of ``upload_id``."""
    scheme, netloc = bucket_api_base(base_url)
    path = "/" + quote(bucket, safe="") + "/" + quote(key, safe=_URL_PATH_SAFE)
    return f"{scheme}://{netloc}{path}?partNumber={number}&uploadId={quote(upload_id, safe='')}"


def parse_sha256(value: str) -> str:
    """A part's SHA-256 as ``x-amz-checksum-sha256`` carries it: base64 of 32 bytes (400
    ``InvalidArgument`` otherwise)."""
    try:
        ok = len(value) == 44 and len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise RequestInvalid("InvalidArgument", "a part's sha256 must be base64 of 32 bytes")
    return value


def presign_parts(
    services: Services,
    principal: Principal,
    base_url: str,
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[tuple[int, str]],
) -> dict[int, str]:
    """A presigned PUT URL for each ``(part number, base64 sha256)`` of the caller's upload
    (see the module docstring), signed with the principal's access key; 401 when that key
    was revoked meanwhile."""
    if not 1 <= len(parts) <= MAX_URLS:
        raise RequestInvalid("InvalidArgument", f"ask for 1-{MAX_URLS} part URLs at a time")
    multipart.prepare_part(services, principal.project_id, bucket, key, upload_id, None)
    key_pair = active_key(services, principal.access_key)
    if key_pair is None or key_pair.project_id != principal.project_id:
        raise Unauthenticated("InvalidAccessKeyId", "the session's access key was revoked")
    now = services.clock()
    urls: dict[int, str] = {}
    for number, sha256 in parts:
        if not 1 <= number <= multipart.MAX_PART_NUMBER:
            raise RequestInvalid("InvalidArgument", "partNumber must be an integer 1-10000")
        if number in urls:  # one URL per part: the other would be dropped
            raise RequestInvalid("InvalidArgument", f"part {number} is asked for twice")
        urls[number] = presign(
            "PUT",
            part_url(base_url, bucket, key, upload_id, number),
            key_pair.access_key,
            key_pair.secret_key,
            region=services.settings.region,
            now=now,
            expires=PART_URL_SECONDS,
            headers={"x-amz-checksum-sha256": parse_sha256(sha256)},
        )
    return urls


def stored_parts(
    services: Services, project_id: str, bucket: str, key: str, upload_id: str
) -> list[PartPlan]:
    """The parts of the caller's upload the server holds, by number (404 ``NoSuchUpload``
    when it was completed or aborted)."""
    _upload, parts = multipart.list_parts(services, project_id, bucket, key, upload_id)
    return [PartPlan(p.number, p.size) for p in sorted(parts, key=lambda p: p.number)]


def complete_from_server(
    services: Services,
    project_id: str,
    bucket: str,
    key: str,
    upload_id: str,
    file_size: int,
    part_size: int,
) -> ObjectInfo:
    """Complete the upload with the parts the server holds, once they are exactly the plan of
    a ``file_size`` file in ``part_size`` parts (400 ``InvalidPart`` naming the first part
    missing or of another size, or an extra one)."""
    check_file_size(file_size)
    if part_size != part_size_for(file_size, part_size):
        raise RequestInvalid("InvalidArgument", f"a part size of {part_size} bytes is not usable")
    _upload, held = multipart.list_parts(services, project_id, bucket, key, upload_id)
    stored = {p.number: p for p in held}
    plan = plan_parts(file_size, part_size)
    for part in plan:
        found = stored.get(part.number)
        if found is None:
            raise RequestInvalid("InvalidPart", f"part {part.number} is not on the server yet")
        if found.size != part.size:
            raise RequestInvalid(
                "InvalidPart",
                f"part {part.number} has {found.size} bytes on the server, {part.size} expected",
            )
    extra = sorted(set(stored) - {p.number for p in plan})
    if extra:
        raise RequestInvalid(
            "InvalidPart", f"part {extra[0]} is beyond the file's {len(plan)} parts"
        )
    named = [(p.number, stored[p.number].etag) for p in plan]
    return multipart.complete_upload(
        services, project_id, bucket, key, upload_id, named, expected_size=file_size
    )


def abort_upload(
    services: Services, project_id: str, bucket: str, key: str, upload_id: str
) -> None:
    """Abort the caller's upload (its parts are deleted)."""
    multipart.abort_upload(services, project_id, bucket, key, upload_id)
