"""Request headers and query parameters that ask for S3 features, and what this service does
with each: honour it, or refuse it. None is silently ignored, because a client that sent one
believes it took effect (data encrypted, an object public, a retention set).

Refused with 501 ``NotImplemented`` naming the header (S3's answer for "a header you provided
implies functionality that is not implemented"), on every route, before any body byte is read:

============================================== ===============================================
header                                          why
============================================== ===============================================
``x-amz-server-side-encryption*``, the          objects are stored as sent: nothing is
``x-amz-copy-source-server-side-encryption-*``  encrypted at rest with a key of the client's
SSE-C headers and the ``x-obs-`` equivalents    (SSE-C) or ours (SSE-S3/KMS)
``x-amz-acl`` / ``x-obs-acl`` other than        every bucket and object is private to its
``private``, ``bucket-owner-full-control``,     project; these three mean exactly that here
``bucket-owner-read``                           (the writer is always the bucket's owner)
``x-amz-grant-*``, ``x-obs-grant-*``            no grants to anyone else
``x-amz-tagging``                               object tags are not kept
``x-amz-object-lock-*``, ``x-amz-bucket-        no retention or legal hold
object-lock-enabled: true``
``x-amz-website-redirect-location``             no website hosting
``x-amz-mfa``                                   no MFA delete (no versioning)
``x-amz-checksum-crc32c``, ``-crc64nvme``       not verified here (the others are, see
(and an ``x-amz-sdk-checksum-algorithm`` of     :mod:`imageport.api.s3.checksum_headers`)
those)
``If-Modified-Since``/``If-Unmodified-Since``   S3 itself honours only ``If-Match`` and
on a PUT, ``If-None-Match`` other than ``*``    ``If-None-Match: *`` on writes
``Cache-Control``, ``Content-Disposition``,     only the content type and user metadata are
``Content-Language``, ``Expires``, a            stored with an object (``response-*``
``Content-Encoding`` other than                 overrides set these on a GET)
``aws-chunked``, on PutObject, CopyObject and
CreateMultipartUpload
============================================== ===============================================

The same headers given as ``x-amz-*`` query parameters of a presigned URL (S3 reads them as
headers) are refused too, as is any other ``x-amz-*``/``x-obs-*`` query parameter apart from the
signature's own: nothing here reads them there.

Honoured: ``x-amz-expected-bucket-owner`` and ``x-amz-source-expected-bucket-owner`` (403
``AccessDenied`` unless they name the caller's project, the owner ID every listing shows);
``versionId`` (buckets are unversioned: only ``null`` names the object, any other id is 400
``InvalidArgument``, as S3 answers on an unversioned bucket); ``x-amz-request-payer`` and
``x-amz-bypass-governance-retention`` (accepted: nothing is billed and nothing is retained, as
on an S3 bucket without requester-pays or object lock); ``x-amz-object-ownership`` on
CreateBucket (every setting means the same here: one owner).
"""

from __future__ import annotations

from collections.abc import Mapping

from imageport.api.s3.checksum_headers import ALGORITHMS, HEADER_PREFIX
from imageport.api.s3.request import S3Call
from imageport.service.errors import Forbidden, RequestInvalid, ServiceError

PRIVATE_ACLS = frozenset({"private", "bucket-owner-full-control", "bucket-owner-read"})
"""Canned ACLs that mean "private to the bucket's project" here (the only writer of an
object is its bucket's owner, so the bucket-owner grants add nobody)."""

_REFUSED_PREFIXES = (
    ("x-amz-server-side-encryption", "server-side encryption"),
    ("x-amz-copy-source-server-side-encryption", "server-side encryption"),
    ("x-obs-server-side-encryption", "server-side encryption"),
    ("x-obs-copy-source-server-side-encryption", "server-side encryption"),
    ("x-amz-grant-", "access grants"),
    ("x-obs-grant-", "access grants"),
    ("x-amz-object-lock-", "object lock"),
    ("x-obs-object-lock-", "object lock"),
)
_REFUSED = {
    "x-amz-tagging": "object tags",
    "x-obs-tagging": "object tags",
    "x-amz-website-redirect-location": "website redirects",
    "x-obs-website-redirect-location": "website redirects",
    "x-amz-mfa": "MFA delete",
    "x-amz-checksum-crc32c": "CRC32C checksums",
    "x-amz-checksum-crc64nvme": "CRC64NVME checksums",
}
_UNVERIFIED_ALGORITHMS = frozenset({"crc32c", "crc64nvme"})
_ACL_HEADERS = ("x-amz-acl", "x-obs-acl")
_OWNER_HEADERS = ("x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner")
_SIGNATURE_QUERY = frozenset({
    "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
    "x-amz-signedheaders", "x-amz-signature", "x-amz-security-token"})
"""The presigned-URL parameters of a SigV4 query signature (read by the authentication)."""
_WRITE_CONDITIONS = ("if-modified-since", "if-unmodified-since")
_STORED_HEADERS = ("cache-control", "content-disposition", "content-language", "expires")
"""Headers S3 stores with an object and sends back on GET; not stored here (only the content
type and user metadata are), so refused on writes rather than dropped."""


class HeaderNotImplemented(ServiceError):
    """501 ``NotImplemented``; the error document names the header in ``<Header>``."""

    status = 501

    def __init__(self, header: str, what: str) -> None:
        super().__init__("NotImplemented", f"a header you provided implies functionality "
                         f"that is not implemented: {header} ({what} are not offered here)")
        self.header = header


def _refused(name: str) -> str | None:
    """What the header ``name`` (lower case) asks for, when it is one refused whatever its
    value."""
    for prefix, what in _REFUSED_PREFIXES:
        if name.startswith(prefix):
            return what
    return _REFUSED.get(name)


def _writes_object(call: S3Call) -> bool:
    """PutObject, CopyObject and CreateMultipartUpload: where S3 stores the headers of
    :data:`_STORED_HEADERS` with the object (UploadPart takes none)."""
    if not call.key:
        return False
    if call.method == "PUT":
        return "uploadId" not in call.query
    return call.method == "POST" and "uploads" in call.query


def _takes_body_checksum(call: S3Call, headers: Mapping[str, str]) -> bool:
    """Requests whose body is read and checked against a declared checksum
    (:mod:`imageport.api.s3.checksum_headers`): every PUT and POST with a body (PutObject,
    UploadPart, CreateBucket, DeleteObjects, CompleteMultipartUpload), not a copy and not
    CreateMultipartUpload, which have none."""
    copy = "x-amz-copy-source" in headers or "x-obs-copy-source" in headers
    initiate = call.method == "POST" and "uploads" in call.query
    return call.method in ("PUT", "POST") and not copy and not initiate


def refuse_unsupported(call: S3Call, headers: Mapping[str, str]) -> None:
    """Raise :class:`HeaderNotImplemented` for the first header (in name order) that asks
    for a feature this service does not have (see the module docstring)."""
    for name in sorted(headers.keys()):
        what = _refused(name)
        if what is not None:
            raise HeaderNotImplemented(name, what)
    for name in _ACL_HEADERS:
        value = headers.get(name)
        if value is not None and value.strip().lower() not in PRIVATE_ACLS:
            raise HeaderNotImplemented(name, f"canned ACLs other than private ({value[:40]!r})")
    lock = headers.get("x-amz-bucket-object-lock-enabled")
    if lock is not None and lock.strip().lower() != "false":
        raise HeaderNotImplemented("x-amz-bucket-object-lock-enabled", "object lock")
    for trailer in headers.get("x-amz-trailer", "").split(","):
        name = trailer.strip().lower()
        if name and name.removeprefix(HEADER_PREFIX) not in ALGORITHMS:
            raise HeaderNotImplemented("x-amz-trailer", f"the trailer {name[:64]!r} (only "
                                       "CRC32, SHA-1 and SHA-256 checksums are verified)")
    for name in ("x-amz-sdk-checksum-algorithm", "x-amz-checksum-algorithm"):
        algorithm = headers.get(name, "").strip().lower()
        if algorithm in _UNVERIFIED_ALGORITHMS:
            raise HeaderNotImplemented(name, f"{algorithm.upper()} checksums")
    if not _takes_body_checksum(call, headers):
        for algorithm in ALGORITHMS:
            if HEADER_PREFIX + algorithm in headers:
                raise HeaderNotImplemented(HEADER_PREFIX + algorithm,
                                           "checksums of copies and of requests without a "
                                           "body")
    if _writes_object(call):
        for name in _STORED_HEADERS:
            if name in headers:
                raise HeaderNotImplemented(name, "stored response headers")
        encodings = {e.strip().lower() for e in headers.get("content-encoding", "").split(",")}
        if encodings - {"", "aws-chunked"}:
            raise HeaderNotImplemented("content-encoding", "stored content encodings")
    if call.method == "PUT":
        for name in _WRITE_CONDITIONS:
            if name in headers:
                raise HeaderNotImplemented(name, "conditional writes by date")
        if_none = headers.get("if-none-match")
        if if_none is not None and if_none.strip() != "*":
            raise HeaderNotImplemented("if-none-match", "conditional writes other than "
                                       "If-None-Match: *")


def check_expected_owner(headers: Mapping[str, str], project_id: str) -> None:
    """403 ``AccessDenied`` when ``x-amz-expected-bucket-owner`` (or the copy source's) names
    another owner than the caller's project (every bucket a caller can reach is its own)."""
    for name in _OWNER_HEADERS:
        value = headers.get(name)
        if value is not None and value.strip() != project_id:
            raise Forbidden("AccessDenied", f"{name}: the bucket is not owned by {value[:64]!r}")


def check_version_id(call: S3Call, headers: Mapping[str, str]) -> None:
    """Buckets are unversioned: ``versionId`` (query) and a copy source's ``?versionId=`` may
    only be ``null`` (400 ``InvalidArgument`` otherwise, as S3 answers)."""
    values = []
    if "versionId" in call.query:
        values.append(call.query["versionId"])
    for name in ("x-amz-copy-source", "x-obs-copy-source"):
        source = headers.get(name)
        if source is not None and "?" in source:
            for pair in source.split("?", 1)[1].split("&"):
                key, _, value = pair.partition("=")
                if key == "versionId":
                    values.append(value)
    for value in values:
        if value != "null":
            raise RequestInvalid("InvalidArgument", f"invalid version id specified: "
                                 f"{value[:64]!r} (buckets here are not versioned)")


def refuse_query_headers(call: S3Call) -> None:
    """S3 reads ``x-amz-*`` query parameters of a presigned URL as headers (an
    ``x-amz-acl=public-read`` or ``x-amz-server-side-encryption`` signed into a link); the views
    here read headers only, so such a parameter, other than the signature's own, is refused
    (501 ``NotImplemented``) rather than dropped."""
    for name in sorted(call.query):
        lowered = name.lower()
        if lowered.startswith(("x-amz-", "x-obs-")) and lowered not in _SIGNATURE_QUERY:
            raise HeaderNotImplemented(name, "request headers sent as query parameters")


def check_request(call: S3Call, headers: Mapping[str, str], project_id: str) -> None:
    """Every check above, for an authenticated request about to run its view."""
    refuse_query_headers(call)
    refuse_unsupported(call, headers)
    check_expected_owner(headers, project_id)
    check_version_id(call, headers)


__all__ = ["PRIVATE_ACLS", "HeaderNotImplemented", "check_expected_owner", "check_request",
           "check_version_id", "refuse_query_headers", "refuse_unsupported"]
