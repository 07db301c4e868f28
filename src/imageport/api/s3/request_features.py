"""Request headers and query parameters that ask for S3 features, and what this service does
with each: honour it, or refuse it. None is silently ignored, because a client that sent one
believes it took effect (data encrypted, an object public, a retention set, a delete made
conditional).

Every ``x-amz-*`` and ``x-obs-*`` request header is one of three kinds, checked before any body
byte is read: honoured (read by the view that serves the request), accepted for a stated reason
(:data:`_ACCEPTED`), or refused with 501 ``NotImplemented`` naming the header (S3's answer for
"a header you provided implies functionality that is not implemented"). A name this module does
not know is refused too: S3 keeps adding features as new headers (``x-amz-write-offset-bytes``,
new checksum kinds), and a feature this service has never heard of is one it does not offer.

Refused whatever the request:

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
``x-amz-write-offset-bytes``                    no appends (S3 Express); the PUT would replace
``x-obs-expires``                               no expiry of objects
``x-amz-optional-object-attributes``            no archive restores (nothing to report)
``x-amz-object-attributes``                     no GetObjectAttributes
``x-amz-object-annotation-directive``           no object annotations
``success-action-redirect`` (OBS)               no redirects after an upload
``x-amz-checksum-<kind>`` other than crc32,     not verified here (see
sha1, sha256, sha512, md5, and an               :mod:`imageport.api.s3.checksum_headers`)
``x-amz-sdk-checksum-algorithm`` or
``x-amz-checksum-algorithm`` naming another
``x-amz-checksum-type`` other than              the checksum of an assembled object is not
``COMPOSITE``; ``x-amz-checksum-<kind>`` on     computed (S3 reads the header there as the
CompleteMultipartUpload, a copy or a request    whole object's), and a request without a body
without a body                                  has nothing to verify
``x-amz-bucket-namespace`` other than           bucket names are shared by all projects
``global``
``Cache-Control``, ``Content-Disposition``,     only the content type and user metadata are
``Content-Language``, ``Expires``, a            stored with an object (``response-*``
``Content-Encoding`` other than                 overrides set these on a GET)
``aws-chunked``, on PutObject, CopyObject and
CreateMultipartUpload
============================================== ===============================================

Honoured only where S3 has them (501 ``NotImplemented`` elsewhere, where nothing would read
them): the conditions ``If-Match``, ``If-None-Match``, ``If-Modified-Since``,
``If-Unmodified-Since`` and ``If-Range`` on GetObject and HeadObject; ``If-Match`` and
``If-None-Match: *`` on PutObject, CopyObject and CompleteMultipartUpload; ``If-Match``,
``x-amz-if-match-size`` and ``x-amz-if-match-last-modified-time`` on DeleteObject;
``x-amz-if-match-initiated-time`` on AbortMultipartUpload; ``x-amz-mp-object-size`` on
CompleteMultipartUpload; ``x-amz-copy-source-if-*`` on the two copies; OBS's
``x-obs-location``/``x-amz-location`` (each bucket's region: the vendor SDK's ``listBuckets``
always asks) and
``x-obs-bucket-type`` (``OBJECT``: every bucket, ``POSIX``: none) on ListBuckets.
``x-amz-copy-source-range`` outside UploadPartCopy is S3's 400 ``InvalidArgument``.

The same headers given as ``x-amz-*`` query parameters of a presigned URL (S3 reads them as
headers) are refused too, as is any other ``x-amz-*``/``x-obs-*`` query parameter apart from the
signature's own (nothing here reads them there), and OBS's ``x-image-process``.

Honoured everywhere: ``x-amz-expected-bucket-owner`` and ``x-amz-source-expected-bucket-owner``
(403 ``AccessDenied`` unless they name the caller's project, the owner ID every listing shows);
``versionId`` (buckets are unversioned: only ``null`` names the object, any other id is 400
``InvalidArgument``, as S3 answers on an unversioned bucket). Accepted, with the reason, in
:data:`_ACCEPTED`.
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
    "x-amz-write-offset-bytes": "appends to objects",
    "x-obs-expires": "object expiry times",
    "x-amz-optional-object-attributes": "archive restore states",
    "x-amz-object-attributes": "object attribute queries",
    "x-amz-object-annotation-directive": "object annotations",
    "success-action-redirect": "redirects after an upload",
}
_ACCEPTED = {
    # signature, transport and SDK bookkeeping, read by the authentication or the body reader
    "x-amz-date": "the signature's time",
    "x-obs-date": "the signature's time",
    "x-amz-content-sha256": "the payload hash, checked by the signature",
    "x-amz-decoded-content-length": "the length of an aws-chunked body",
    "x-amz-trailer": "the trailers of an aws-chunked body (vetted below)",
    "x-amz-security-token": "keys here are long-lived: a session token adds nothing to check",
    "x-obs-security-token": "keys here are long-lived: a session token adds nothing to check",
    "x-amz-user-agent": "SDK telemetry",
    # honoured by the views
    "x-amz-acl": "private only (vetted below)",
    "x-obs-acl": "private only (vetted below)",
    "x-amz-storage-class": "the object's class",
    "x-obs-storage-class": "the object's or bucket's class",
    "x-amz-copy-source": "CopyObject and UploadPartCopy",
    "x-obs-copy-source": "CopyObject and UploadPartCopy",
    "x-amz-metadata-directive": "COPY or REPLACE on CopyObject",
    "x-obs-metadata-directive": "COPY or REPLACE on CopyObject",
    "x-amz-tagging-directive": "no tags are kept, so a copy has none whichever is asked",
    "x-amz-expected-bucket-owner": "the caller's project (checked below)",
    "x-amz-source-expected-bucket-owner": "the caller's project (checked below)",
    "x-amz-bucket-object-lock-enabled": "false only (vetted below)",
    "x-amz-bucket-namespace": "global only (vetted below)",
    "x-amz-checksum-type": "COMPOSITE only (vetted below)",
    "x-amz-sdk-checksum-algorithm": "a kind verified here (vetted below)",
    # accepted: what they ask for is what happens here anyway
    "x-amz-checksum-algorithm": "asks S3 to keep a checksum of the new object; only the kinds "
    "verified here are accepted (boto3 sends CRC32 on every "
    "CreateMultipartUpload, and each part's declared checksum is "
    "verified); none is kept, as for an S3 object stored without one",
    "x-amz-checksum-mode": "asks for the object's stored checksum with a GET; none is stored, "
    "so none is sent, as S3 answers for an object stored without one "
    "(boto3 sends it with every ranged GET and then verifies nothing)",
    "x-amz-request-payer": "nothing is billed here",
    "x-obs-request-payer": "nothing is billed here",
    "x-amz-bypass-governance-retention": "nothing is retained here",
    "x-amz-object-ownership": "every setting means one owner here: the bucket's project",
}
"""``x-amz-*``/``x-obs-*`` headers taken, and why (anything else of those prefixes is 501)."""

_ONLY_ON = {
    "x-amz-if-match-size": frozenset({"DeleteObject"}),
    "x-amz-if-match-last-modified-time": frozenset({"DeleteObject"}),
    "x-amz-if-match-initiated-time": frozenset({"AbortMultipartUpload"}),
    "x-amz-mp-object-size": frozenset({"CompleteMultipartUpload"}),
    "x-amz-location": frozenset({"ListBuckets"}),
    "x-obs-location": frozenset({"ListBuckets"}),
    "x-obs-bucket-type": frozenset({"ListBuckets"}),
}
"""Conditions and options honoured by one operation each (they mean nothing elsewhere)."""
_COPIES = frozenset({"CopyObject", "UploadPartCopy"})
_COPY_CONDITIONS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
_CONDITIONS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range")
_READ_CONDITIONS = frozenset(_CONDITIONS)
_WRITE_CONDITIONS = frozenset({"if-match", "if-none-match"})
_WRITES = ("PutObject", "CopyObject", "CompleteMultipartUpload")
_HONOURED_CONDITIONS = {
    "GetObject": _READ_CONDITIONS,
    "HeadObject": _READ_CONDITIONS,
    **dict.fromkeys(_WRITES, _WRITE_CONDITIONS),
    "DeleteObject": frozenset({"if-match"}),
}
"""The HTTP conditions each operation honours (as S3 does); elsewhere they are refused."""
_COPY_SOURCE_HEADERS = frozenset(
    f"{prefix}{name}"
    for prefix in ("x-amz-copy-source-", "x-obs-copy-source-")
    for name in (*_COPY_CONDITIONS, "range")
)

_META_PREFIXES = ("x-amz-meta-", "x-obs-meta-")
_ACL_HEADERS = ("x-amz-acl", "x-obs-acl")
_OWNER_HEADERS = ("x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner")
_SIGNATURE_QUERY = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-signature",
        "x-amz-security-token",
    }
)
"""The presigned-URL parameters of a SigV4 query signature (read by the authentication)."""
_CHECKSUM_SETTINGS = frozenset(
    {"x-amz-checksum-algorithm", "x-amz-checksum-type", "x-amz-checksum-mode"}
)
"""``x-amz-checksum-`` headers that are not a checksum value."""
_STORED_HEADERS = ("cache-control", "content-disposition", "content-language", "expires")
"""Headers S3 stores with an object and sends back on GET; not stored here (only the content
type and user metadata are), so refused on writes rather than dropped."""


class HeaderNotImplemented(ServiceError):
    """501 ``NotImplemented``; the error document names the header in ``<Header>``."""

    status = 501

    def __init__(self, header: str, what: str) -> None:
        super().__init__(
            "NotImplemented",
            f"a header you provided implies functionality "
            f"that is not implemented: {header} ({what} are not offered here)",
        )
        self.header = header


def operation(call: S3Call, headers: Mapping[str, str]) -> str:
    """The S3 operation ``call`` is (``GetObject``, ``UploadPartCopy``...), as the routing in
    :mod:`imageport.api.s3.app` serves it; ``Other`` for the bucket and object
    sub-resources (ACLs, location, versioning...)."""
    q, method = call.query, call.method
    copy = "x-amz-copy-source" in headers or "x-obs-copy-source" in headers
    if not call.bucket:
        return "ListBuckets"
    if not call.key:
        bucket_ops = {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}
        if method == "GET":
            if "uploads" in q:
                return "ListMultipartUploads"
            subresources = (
                "location",
                "policy",
                "cors",
                "lifecycle",
                "tagging",
                "website",
                "acl",
                "versioning",
            )
            if any(name in q for name in subresources):
                return "Other"
            return "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
        if method == "POST" and "delete" in q:
            return "DeleteObjects"
        return bucket_ops.get(method, "Other")
    upload = "uploadId" in q
    if method == "PUT":
        if upload:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    object_ops = {
        ("GET", False): "GetObject",
        ("GET", True): "ListParts",
        ("HEAD", False): "HeadObject",
        ("HEAD", True): "HeadObject",
        ("DELETE", False): "DeleteObject",
        ("DELETE", True): "AbortMultipartUpload",
        ("POST", True): "CompleteMultipartUpload",
    }
    if method == "GET" and "acl" in q:
        return "Other"
    if method == "POST" and "uploads" in q:
        return "CreateMultipartUpload"
    return object_ops.get((method, upload), "Other")


def _refused(name: str) -> str | None:
    """What the header ``name`` (lower case) asks for, when it is one refused whatever its
    value."""
    for prefix, what in _REFUSED_PREFIXES:
        if name.startswith(prefix):
            return what
    if name.startswith(HEADER_PREFIX) and name not in _CHECKSUM_SETTINGS:
        kind = name.removeprefix(HEADER_PREFIX)
        return None if kind in ALGORITHMS else f"{kind.upper()[:32]} checksums"
    if name in _REFUSED:
        return _REFUSED[name]
    known = (
        name in _ACCEPTED
        or name in _ONLY_ON
        or name in _COPY_SOURCE_HEADERS
        or name.startswith(_META_PREFIXES)
    )
    if name.startswith(("x-amz-", "x-obs-")) and not known:
        return "unknown features"
    return None


def _writes_object(op: str) -> bool:
    """PutObject, CopyObject and CreateMultipartUpload: where S3 stores the headers of
    :data:`_STORED_HEADERS` with the object (UploadPart takes none)."""
    return op in ("PutObject", "CopyObject", "CreateMultipartUpload")


def _takes_body_checksum(op: str) -> bool:
    """Requests whose body is read and checked against a declared checksum
    (:mod:`imageport.api.s3.checksum_headers`): PutObject, UploadPart, CreateBucket and
    DeleteObjects. Not a copy or CreateMultipartUpload, which have no body, and not
    CompleteMultipartUpload, where S3 reads the header as the assembled object's checksum."""
    return op in ("PutObject", "UploadPart", "CreateBucket", "DeleteObjects")


def _check_checksums(op: str, headers: Mapping[str, str]) -> None:
    """Trailers, algorithms and checksum values only of the kinds verified, where they can
    be."""
    for trailer in headers.get("x-amz-trailer", "").split(","):
        name = trailer.strip().lower()
        if name and name.removeprefix(HEADER_PREFIX) not in ALGORITHMS:
            raise HeaderNotImplemented(
                "x-amz-trailer",
                f"the trailer {name[:64]!r} (only "
                "CRC32, SHA-1, SHA-256, SHA-512 and MD5 checksums are "
                "verified)",
            )
        if name and not _takes_body_checksum(op):
            raise HeaderNotImplemented(
                "x-amz-trailer",
                f"the trailer {name[:64]!r} on {op} (checksums of assembled objects)",
            )
    for name in ("x-amz-sdk-checksum-algorithm", "x-amz-checksum-algorithm"):
        algorithm = headers.get(name)
        if algorithm is not None and algorithm.strip().lower() not in ALGORITHMS:
            raise HeaderNotImplemented(name, f"{algorithm.strip().upper()[:32]} checksums")
    kind = headers.get("x-amz-checksum-type")
    if kind is not None and kind.strip().upper() != "COMPOSITE":
        raise HeaderNotImplemented(
            "x-amz-checksum-type", "full-object checksums of multipart uploads"
        )
    if not _takes_body_checksum(op):
        for algorithm in ALGORITHMS:
            if HEADER_PREFIX + algorithm in headers:
                raise HeaderNotImplemented(
                    HEADER_PREFIX + algorithm,
                    "checksums of assembled objects, of copies and of requests without a body",
                )


def _check_conditions(op: str, headers: Mapping[str, str]) -> None:
    """Conditions only where the operation honours them (see the module docstring)."""
    honoured = _HONOURED_CONDITIONS.get(op, frozenset())
    for name in _CONDITIONS:
        if name in headers and name not in honoured:
            raise HeaderNotImplemented(name, f"conditions of this kind on {op}")
    if op in _WRITES:
        if_none = headers.get("if-none-match")
        if if_none is not None and if_none.strip() != "*":
            raise HeaderNotImplemented(
                "if-none-match", "conditional writes other than If-None-Match: *"
            )
    for name, ops in _ONLY_ON.items():
        if name in headers and op not in ops:
            raise HeaderNotImplemented(name, f"conditions and options of this kind on {op}")
    for prefix in ("x-amz-copy-source-", "x-obs-copy-source-"):
        for name in _COPY_CONDITIONS:
            if prefix + name in headers and op not in _COPIES:
                raise HeaderNotImplemented(prefix + name, f"copy-source conditions on {op}")
        if prefix + "range" in headers and op != "UploadPartCopy":
            raise RequestInvalid(
                "InvalidArgument",
                f"{prefix}range is allowed only on "
                "UploadPartCopy (a PUT with partNumber and uploadId)",
            )


def refuse_unsupported(call: S3Call, headers: Mapping[str, str]) -> None:
    """Raise :class:`HeaderNotImplemented` for the first header (in name order) that asks
    for a feature this service does not have, or that the operation does not honour (see the
    module docstring); S3's 400 where S3 refuses the combination."""
    op = operation(call, headers)
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
    namespace = headers.get("x-amz-bucket-namespace")
    if namespace is not None and namespace.strip().lower() != "global":
        raise HeaderNotImplemented(
            "x-amz-bucket-namespace", "bucket namespaces other than the global one"
        )
    _check_checksums(op, headers)
    _check_conditions(op, headers)
    if _writes_object(op):
        for name in _STORED_HEADERS:
            if name in headers:
                raise HeaderNotImplemented(name, "stored response headers")
        encodings = {e.strip().lower() for e in headers.get("content-encoding", "").split(",")}
        if encodings - {"", "aws-chunked"}:
            raise HeaderNotImplemented("content-encoding", "stored content encodings")


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
            raise RequestInvalid(
                "InvalidArgument",
                f"invalid version id specified: {value[:64]!r} (buckets here are not versioned)",
            )


def refuse_query_headers(call: S3Call) -> None:
    """S3 reads ``x-amz-*`` query parameters of a presigned URL as headers (an
    ``x-amz-acl=public-read`` or ``x-amz-server-side-encryption`` signed into a link); the views
    here read headers only, so such a parameter, other than the signature's own, is refused
    (501 ``NotImplemented``) rather than dropped; so is OBS's ``x-image-process`` (a GET that
    asks for a resized or converted image would otherwise get the original)."""
    for name in sorted(call.query):
        lowered = name.lower()
        if lowered.startswith(("x-amz-", "x-obs-")) and lowered not in _SIGNATURE_QUERY:
            raise HeaderNotImplemented(name, "request headers sent as query parameters")
        if lowered == "x-image-process":
            raise HeaderNotImplemented(name, "OBS image processing")


def check_request(call: S3Call, headers: Mapping[str, str], project_id: str) -> None:
    """Every check above, for an authenticated request about to run its view."""
    refuse_query_headers(call)
    refuse_unsupported(call, headers)
    check_expected_owner(headers, project_id)
    check_version_id(call, headers)


__all__ = [
    "PRIVATE_ACLS",
    "HeaderNotImplemented",
    "check_expected_owner",
    "check_request",
    "check_version_id",
    "refuse_query_headers",
    "refuse_unsupported",
]
