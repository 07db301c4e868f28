"""A small client of the bucket API (S3 path-style, SigV4): buckets, objects, multipart uploads.

Only what the CLI needs. Replies are S3 XML; they are parsed with ``xml.etree`` after refusing
any ``<!DOCTYPE``/``<!ENTITY`` and anything over :data:`~imageport.client.transport.MAX_REPLY_BODY`
(the server is ours, but a reply is still input). Namespaces are ignored.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET  # DTDs and entities are refused before parsing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import quote
from xml.sax.saxutils import escape

from imageport.client.errors import ClientError
from imageport.client.signing import (
    DEFAULT_REGION,
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
    Credentials,
    sigv4_headers,
)
from imageport.client.transport import Signer, Timeouts, Transport

STORAGE_CLASSES = ("STANDARD", "WARM", "COLD")
MAX_PART_NUMBER = 10_000
MAX_UPLOAD_PAGES = 100
"""Pages of ListMultipartUploads read before giving up (1000 uploads each)."""


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    created: str


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    key: str
    size: int
    etag: str
    last_modified: str
    storage_class: str


@dataclass(frozen=True, slots=True)
class UploadEntry:
    """One in-progress multipart upload (ListMultipartUploads)."""

    key: str
    upload_id: str
    initiated: str


@dataclass(frozen=True, slots=True)
class PartEntry:
    """One stored part (ListParts); ``etag`` without quotes."""

    number: int
    size: int
    etag: str


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_xml(data: bytes) -> ET.Element:
    """The root of an S3 XML reply; :class:`ClientError` for DTDs, entities or bad XML."""
    head = data[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in data.upper():
        raise ClientError("the server's XML reply declares a DTD or entities; refused")
    try:
        root = ET.fromstring(data)  # noqa: S314  (checked above)
    except ET.ParseError as exc:
        raise ClientError(f"the server's XML reply cannot be parsed: {exc}") from exc
    for element in root.iter():
        element.tag = _local(element.tag)
    return root


def _text(element: ET.Element, name: str, default: str = "") -> str:
    found = element.find(name)
    return default if found is None or found.text is None else found.text


def _int(element: ET.Element, name: str) -> int:
    try:
        return int(_text(element, name, "0"))
    except ValueError as exc:
        raise ClientError(f"the server's XML reply has a non-numeric {name}") from exc


def unquote_etag(etag: str) -> str:
    """An ETag without its quotes (``"abc"``, ``&quot;abc&quot;`` or bare)."""
    return etag.replace("&quot;", "").replace("&#34;", "").strip().strip('"')


def s3_error(status: int, body: bytes, request_id: str) -> ClientError:
    """The server's ``<Error><Code/><Message/><RequestId/></Error>`` as a ClientError."""
    code, message = "", ""
    if body:
        try:
            root = parse_xml(body)
        except ClientError:
            root = None
        if root is not None:
            code, message = _text(root, "Code"), _text(root, "Message")
            request_id = request_id or _text(root, "RequestId")
    return ClientError(
        message or f"the bucket API answered {status}",
        status=status,
        code=code,
        request_id=request_id,
    )


def object_path(bucket: str, key: str = "") -> str:
    """``/bucket[/key]`` percent-encoded as the request line carries it."""
    path = "/" + quote(bucket, safe="")
    return path + "/" + quote(key, safe="/-_.~") if key else path


def query(**items: str | int | None) -> str:
    """``?a=1&b`` from keyword items (None means a bare name); ``part_number`` → ``partNumber``
    is the caller's business: names are used as given."""
    parts = [
        name if value is None else f"{name}={quote(str(value), safe='-_.~')}"
        for name, value in items.items()
    ]
    return "?" + "&".join(parts) if parts else ""


class S3Client:
    """Calls to one bucket API endpoint, signed with SigV4 for ``credentials``."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        region: str = DEFAULT_REGION,
        timeouts: Timeouts | None = None,
        pool: int = 8,
    ) -> None:
        self.credentials = credentials
        self.region = region
        self.transport = Transport(endpoint, s3_error, timeouts=timeouts, pool=pool)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> S3Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _signer(self, payload: str) -> Signer:
        def sign(method: str, url: str, headers: dict[str, str]) -> dict[str, str]:
            return sigv4_headers(
                method, url, headers, self.credentials, payload_sha256=payload, region=self.region
            )

        return sign

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        ok: Iterable[int] = (200, 204),
    ) -> bytes:
        payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        return self.transport.send(
            method, path, self._signer(payload), headers=headers, body=body, ok=ok
        ).body

    # buckets
    def create_bucket(self, name: str, storage_class: str = "STANDARD") -> None:
        """Create bucket ``name`` with the given default storage class (OBS names)."""
        self._call(
            "PUT", object_path(name), headers={"x-default-storage-class": storage_class}, ok=(200,)
        )

    def delete_bucket(self, name: str) -> None:
        self._call("DELETE", object_path(name), ok=(200, 204))

    def list_buckets(self) -> list[Bucket]:
        root = parse_xml(self._call("GET", "/"))
        return [Bucket(_text(b, "Name"), _text(b, "CreationDate")) for b in root.iter("Bucket")]

    def list_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectEntry]:
        """Every object of ``bucket`` under ``prefix`` (ListObjectsV2, page by page)."""
        token: str | None = None
        while True:
            items: dict[str, str | int | None] = {"list-type": 2, "max-keys": 1000}
            if prefix:
                items["prefix"] = prefix
            if token:
                items["continuation-token"] = token
            root = parse_xml(self._call("GET", object_path(bucket) + query(**items)))
            for c in root.iter("Contents"):
                yield ObjectEntry(
                    _text(c, "Key"),
                    _int(c, "Size"),
                    unquote_etag(_text(c, "ETag")),
                    _text(c, "LastModified"),
                    _text(c, "StorageClass", "STANDARD"),
                )
            token = _text(root, "NextContinuationToken")
            if _text(root, "IsTruncated").lower() != "true" or not token:
                return

    # objects
    def head_object(self, bucket: str, key: str) -> ObjectEntry | None:
        """The object's size and ETag (HEAD), or None when the bucket has no such key."""
        try:
            reply = self.transport.send(
                "HEAD", object_path(bucket, key), self._signer(EMPTY_SHA256), ok=(200,)
            )
        except ClientError as exc:
            if exc.status == 404:
                return None
            raise
        try:
            size = int(reply.headers.get("content-length", ""))
        except ValueError as exc:
            raise ClientError(f"HEAD {bucket}/{key}: no Content-Length in the reply") from exc
        return ObjectEntry(
            key,
            size,
            unquote_etag(reply.headers.get("etag", "")),
            reply.headers.get("last-modified", ""),
            reply.headers.get("x-amz-storage-class", "STANDARD"),
        )

    def put_object(
        self, bucket: str, key: str, size: int, md5_b64: str, chunks: Callable[[], Iterable[bytes]]
    ) -> str:
        """Store ``size`` bytes from ``chunks()`` at ``bucket/key`` in one request; the ETag the
        server answered."""
        reply = self.transport.send(
            "PUT",
            object_path(bucket, key),
            self._signer(UNSIGNED_PAYLOAD),
            headers={
                "Content-MD5": md5_b64,
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size),
            },
            body=chunks,
            ok=(200,),
        )
        return unquote_etag(reply.headers.get("etag", ""))

    # multipart
    def create_multipart_upload(self, bucket: str, key: str) -> str:
        root = parse_xml(
            self._call(
                "POST",
                object_path(bucket, key) + "?uploads",
                headers={"Content-Type": "application/octet-stream"},
            )
        )
        upload_id = _text(root, "UploadId")
        if not upload_id:
            raise ClientError("the server did not return an UploadId")
        return upload_id

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        size: int,
        md5_b64: str,
        chunks: Callable[[], Iterable[bytes]],
    ) -> str:
        """Send one part (``size`` bytes from ``chunks()``); the ETag the server answered."""
        path = object_path(bucket, key) + query(partNumber=number, uploadId=upload_id)
        reply = self.transport.send(
            "PUT",
            path,
            self._signer(UNSIGNED_PAYLOAD),
            headers={"Content-MD5": md5_b64, "Content-Length": str(size)},
            body=chunks,
            ok=(200,),
        )
        return unquote_etag(reply.headers.get("etag", ""))

    def list_multipart_uploads(
        self, bucket: str, prefix: str, page_size: int = 1000
    ) -> list[UploadEntry]:
        """In-progress uploads whose key starts with ``prefix``, ``page_size`` a request (at
        most :data:`MAX_UPLOAD_PAGES` requests)."""
        found: list[UploadEntry] = []
        markers: dict[str, str | int | None] = {}
        for _ in range(MAX_UPLOAD_PAGES):
            path = object_path(bucket) + query(
                uploads=None, prefix=prefix, **{"max-uploads": page_size}, **markers
            )
            root = parse_xml(self._call("GET", path))
            page = [
                UploadEntry(_text(u, "Key"), _text(u, "UploadId"), _text(u, "Initiated"))
                for u in root.iter("Upload")
            ]
            found.extend(page)
            after = {
                "key-marker": _text(root, "NextKeyMarker"),
                "upload-id-marker": _text(root, "NextUploadIdMarker"),
            }
            if (
                _text(root, "IsTruncated").lower() != "true"
                or not page
                or not after["key-marker"]
                or after == markers
            ):
                break
            markers = dict(after)
        return found

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartEntry]:
        """Every stored part of the upload, page by page."""
        parts: list[PartEntry] = []
        marker = 0
        for _ in range(MAX_PART_NUMBER):
            items: dict[str, str | int | None] = {"uploadId": upload_id, "max-parts": 1000}
            if marker:
                items["part-number-marker"] = marker
            root = parse_xml(self._call("GET", object_path(bucket, key) + query(**items)))
            page = [
                PartEntry(_int(p, "PartNumber"), _int(p, "Size"), unquote_etag(_text(p, "ETag")))
                for p in root.iter("Part")
            ]
            parts.extend(page)
            nxt = _int(root, "NextPartNumberMarker")
            if _text(root, "IsTruncated").lower() != "true" or not page or nxt <= marker:
                break
            marker = nxt
        return parts

    def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> str:
        """Join ``(number, etag)`` parts into the object; the object's ETag."""
        xml = "".join(
            f'<Part><PartNumber>{n}</PartNumber><ETag>"{escape(e)}"</ETag></Part>' for n, e in parts
        )
        body = f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()
        root = parse_xml(
            self._call(
                "POST",
                object_path(bucket, key) + query(uploadId=upload_id),
                body=body,
                headers={"Content-Type": "application/xml"},
            )
        )
        if root.tag == "Error":  # S3 may report a failed complete inside a 200
            raise s3_error(500, ET.tostring(root), "")
        return unquote_etag(_text(root, "ETag"))

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self._call("DELETE", object_path(bucket, key) + query(uploadId=upload_id), ok=(200, 204))
