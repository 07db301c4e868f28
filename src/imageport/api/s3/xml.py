"""S3 XML: refusing dangerous input, parsing the few request bodies, rendering replies.

Request bodies are capped by the caller and refused outright when they declare a DTD or
entities (``<!DOCTYPE``, ``<!ENTITY``), so expat never expands anything; the rest is plain
:mod:`xml.etree.ElementTree`, built step by step with caps on depth and element count.
Namespaces are optional on input (s3cmd sends none) and element
names are matched without them. Replies carry the 2006-03-01 namespace, as S3's do.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from imageport.numbers import whole_number
from imageport.service.buckets.objects import DeleteCondition, DeleteEntry
from imageport.service.errors import RequestInvalid

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
Child = tuple[str, "str | int | bool | Sequence[Child] | None"]
"""A rendered element: ``(name, text)`` or ``(name, [children])``; None values are skipped."""

_MAX_PART_NUMBER_TEXT = 6
MAX_DEPTH = 8
"""Deepest element nesting parsed (every S3 request body here is 3 levels deep)."""
MAX_ELEMENTS = 64 * 1024
"""Most elements parsed (a complete of 10,000 parts with checksums has about 50,000)."""
_FEED = 64 * 1024


def parse(body: bytes, root: str) -> ET.Element:
    """The document ``body`` whose root element is ``root``; MalformedXML otherwise.

    The tree is built in steps of :data:`_FEED` bytes while its depth and its number of
    elements are counted, so a deeply nested or element-dense body (a 2 MiB one once took
    86 MiB as a tree) is refused after at most :data:`MAX_ELEMENTS` elements, :data:`MAX_DEPTH`
    levels deep, whatever its size."""
    lowered = body.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise RequestInvalid("MalformedXML", "DTDs and entities are not accepted")
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    depth = elements = 0
    element: ET.Element | None = None
    try:
        for start in range(0, max(len(body), 1), _FEED):
            parser.feed(body[start : start + _FEED])
            events = cast("Iterator[tuple[str, object]]", parser.read_events())
            for event, node in events:
                if event == "end":
                    depth -= 1
                    continue
                depth += 1
                elements += 1
                if element is None and isinstance(node, ET.Element):
                    element = node
                if depth > MAX_DEPTH or elements > MAX_ELEMENTS:
                    raise RequestInvalid(
                        "MalformedXML",
                        f"the XML nests deeper than {MAX_DEPTH}"
                        f" or has more than {MAX_ELEMENTS} elements",
                    )
        parser.close()
    except ET.ParseError as exc:
        raise RequestInvalid("MalformedXML", "the XML you provided was not well-formed") from exc
    if element is None or local_name(element.tag) != root:
        raise RequestInvalid("MalformedXML", f"the XML root is not {root}")
    return element


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def children(element: ET.Element, name: str) -> Iterable[ET.Element]:
    return (child for child in element if local_name(child.tag) == name)


def child_text(element: ET.Element, name: str) -> str | None:
    for child in children(element, name):
        return child.text or ""
    return None


def complete_parts(body: bytes) -> list[tuple[int, str]]:
    """``(PartNumber, ETag)`` pairs of a CompleteMultipartUpload body, in document order.
    ETags may be quoted, unquoted or ``&#34;``-escaped; other ``<Part>`` children
    (``ChecksumCRC32`` ...) are ignored."""
    doc = parse(body, "CompleteMultipartUpload")
    out: list[tuple[int, str]] = []
    for part in children(doc, "Part"):
        number = (child_text(part, "PartNumber") or "").strip()
        etag = child_text(part, "ETag")
        if (
            not number.isascii()
            or not number.isdigit()
            or len(number) > _MAX_PART_NUMBER_TEXT
            or etag is None
        ):
            raise RequestInvalid("MalformedXML", "each Part needs a PartNumber and an ETag")
        out.append((int(number), etag.strip()))
    return out


def delete_keys(body: bytes) -> tuple[list[str], bool]:
    """The keys of a ``<Delete>`` body and whether ``<Quiet>true</Quiet>`` was asked."""
    entries, quiet = delete_entries(body)
    return [entry.key for entry in entries], quiet


def _timestamp(text: str) -> datetime:
    """An XML timestamp (ISO 8601, ``2024-11-06T06:21:08.000Z``), as botocore writes them."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise RequestInvalid("MalformedXML", f"{text[:40]!r} is not a timestamp") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _delete_entry(obj: ET.Element) -> DeleteEntry:
    """One ``<Object>``: its key, and the conditions its ``<ETag>``, ``<Size>`` and
    ``<LastModifiedTime>`` set (S3's conditional DeleteObjects)."""
    etag, size_text = child_text(obj, "ETag"), child_text(obj, "Size")
    modified = child_text(obj, "LastModifiedTime")
    size = None
    if size_text is not None:
        size = whole_number(size_text.strip())
        if size is None:
            raise RequestInvalid("MalformedXML", "an Object's Size is not a whole number")
    condition = None
    if etag is not None or size is not None or modified is not None:
        condition = DeleteCondition(
            etag=etag.strip() if etag is not None else None,
            size=size,
            last_modified=_timestamp(modified) if modified is not None else None,
        )
    version = child_text(obj, "VersionId")
    return DeleteEntry(
        child_text(obj, "Key") or "", condition, version.strip() if version is not None else None
    )


def delete_entries(body: bytes) -> tuple[list[DeleteEntry], bool]:
    """The ``<Object>`` entries of a ``<Delete>`` body (key, version, conditions) and whether
    ``<Quiet>true</Quiet>`` was asked."""
    doc = parse(body, "Delete")
    entries = [_delete_entry(obj) for obj in children(doc, "Object")]
    quiet = (child_text(doc, "Quiet") or "").strip().lower() == "true"
    return entries, quiet


@dataclass(frozen=True, slots=True)
class BucketConfiguration:
    """A CreateBucketConfiguration body: the region asked for, and the names of the other
    elements it has (S3's directory-bucket ``Location``/``Bucket``, ``Tags``), which the
    caller refuses."""

    location: str | None = None
    others: tuple[str, ...] = ()


def bucket_configuration(body: bytes) -> BucketConfiguration:
    """The CreateBucketConfiguration of a CreateBucket body (empty body: nothing asked). The
    region is ``LocationConstraint``, or OBS's ``Location`` when that is text (S3's
    ``Location`` has children: an availability zone of a directory bucket)."""
    if not body.strip():
        return BucketConfiguration()
    doc = parse(body, "CreateBucketConfiguration")
    location = None
    others = []
    for child in doc:
        name = local_name(child.tag)
        if name == "LocationConstraint" or (name == "Location" and len(child) == 0):
            location = (child.text or "").strip() or None
        else:
            others.append(name)
    return BucketConfiguration(location, tuple(others))


def location_constraint(body: bytes) -> str | None:
    """The region of a CreateBucketConfiguration body (``LocationConstraint``, or OBS's
    ``Location``), None when the body is empty."""
    return bucket_configuration(body).location


def _fill(parent: ET.Element, items: Sequence[Child]) -> None:
    for name, value in items:
        if value is None:
            continue
        node = ET.SubElement(parent, name)
        if isinstance(value, bool):
            node.text = "true" if value else "false"
        elif isinstance(value, int | str):
            node.text = str(value)
        else:
            _fill(node, value)


def render(root: str, items: Sequence[Child], *, namespace: bool = True) -> bytes:
    """``<?xml ...?><root xmlns=S3>items</root>`` as UTF-8 bytes (S3's ``<Error>`` documents
    carry no namespace: pass ``namespace=False``)."""
    element = ET.Element(root, {"xmlns": NS} if namespace else {})
    _fill(element, items)
    rendered: bytes = ET.tostring(element, encoding="utf-8", xml_declaration=True)
    return rendered
