"""Joining the parts of a multipart upload into one object, as S3 does.

* :func:`chosen_parts`: the parts a Complete request names, checked as S3 checks them
  (ascending numbers, matching ETags, at most :data:`MAX_PARTS`, every part but the last at
  least :data:`~imageport.adapters.objectstore.assembly.MIN_PART_SIZE`);
* :func:`join_parts`: the parts copied one after another into a new file (in the kernel) while
  a second thread hashes them, when the upload's assembly cannot become the object itself;
* :func:`multipart_etag`: the object's ETag, ``"md5(concat(binary part md5s))-N"``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from imageport.adapters.objectstore.assembly import MIN_PART_SIZE, copy_range, hash_range
from imageport.service.errors import RequestInvalid

MAX_PARTS = 10_000
"""Most parts one upload may be completed from (S3's rule)."""


def strip_etag(etag: str) -> str:
    """An ETag as clients send it (quoted, unquoted, with surrounding spaces) without quotes."""
    return etag.strip().strip('"').strip()


def multipart_etag(md5_hexes: Sequence[str]) -> str:
    """S3's multipart ETag: ``"md5(concat(binary part md5s))-N"`` (quoted)."""
    joined = b"".join(bytes.fromhex(h) for h in md5_hexes)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(md5_hexes)}"'  # noqa: S324 - S3 format


def chosen_parts(stored_rows: list[Any], wanted: Sequence[tuple[int, str]]) -> list[Any]:
    """The stored rows named by the client's ``(number, etag)`` list, checked as S3 does."""
    if not wanted:
        raise RequestInvalid("MalformedXML", "the Complete request names no parts")
    if len(wanted) > MAX_PARTS:
        raise RequestInvalid("MalformedXML", f"more than {MAX_PARTS} parts")
    stored = {r.number: r for r in stored_rows}
    chosen: list[Any] = []
    previous = 0
    for number, etag in wanted:
        if number <= previous:
            raise RequestInvalid(
                "InvalidPartOrder", "parts must be listed in ascending order of part number"
            )
        previous = number
        row = stored.get(number)
        if row is None or strip_etag(row.etag) != strip_etag(etag):
            raise RequestInvalid(
                "InvalidPart", f"part {number} was not uploaded or its ETag differs"
            )
        chosen.append(row)
    for row in chosen[:-1]:
        if row.size < MIN_PART_SIZE:
            raise RequestInvalid(
                "EntityTooSmall",
                f"part {row.number} is {row.size} bytes; every part but "
                f"the last must be at least {MIN_PART_SIZE}",
            )
    return chosen


def open_part(folder: Path, row: Any) -> int:
    try:
        return os.open(folder / row.blob, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise RequestInvalid(
            "InvalidPart",
            f"part {row.number} was replaced or removed; list the parts and complete again",
        ) from exc


def join_parts(folder: Path, chosen: Sequence[Any], target: Path) -> str:
    """Write the parts one after another into ``target`` (fsynced); the sha256 hex of the
    whole. Each part (its own file in ``folder``, or its range of the assembly) is copied in
    the kernel while a second thread hashes the same bytes."""
    digest = hashlib.sha256()
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="imageport-hash") as hasher:
            for row in chosen:
                src = open_part(folder, row)
                start = row.offset or 0
                try:
                    hashed = hasher.submit(hash_range, src, start, row.size, digest)
                    try:
                        copy_range(src, start, out, row.size)
                    finally:
                        hashed.result()
                finally:
                    os.close(src)
        os.fsync(out)
    finally:
        os.close(out)
    return digest.hexdigest()
