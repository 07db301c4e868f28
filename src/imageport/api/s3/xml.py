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
from typing import cast

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
            parser.feed(body[start:start + _FEED])
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
                    raise RequestInvalid("MalformedXML", f"the XML nests deeper than {MAX_DEPTH}"
                                         f" or has more than {MAX_ELEMENTS} elements")
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
        if (not number.isascii() or not number.isdigit()
                or len(number) > _MAX_PART_NUMBER_TEXT or etag is None):
            raise RequestInvalid("MalformedXML", "each Part needs a PartNumber and an ETag")
        out.append((int(number), etag.strip()))
    return out


def delete_keys(body: bytes) -> tuple[list[str], bool]:
    """The keys of a ``<Delete>`` body and whether ``<Quiet>true</Quiet>`` was asked."""
    doc = parse(body, "Delete")
    keys = [child_text(obj, "Key") or "" for obj in children(doc, "Object")]
    quiet = (child_text(doc, "Quiet") or "").strip().lower() == "true"
    return keys, quiet


def location_constraint(body: bytes) -> str | None:
    """The region of a CreateBucketConfiguration body (``LocationConstraint``, or OBS's
    ``Location``), None when the body is empty."""
    if not body.strip():
        return None
    doc = parse(body, "CreateBucketConfiguration")
    value = child_text(doc, "LocationConstraint") or child_text(doc, "Location")
    return value.strip() if value else None


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
