"""The bytes a ZVHD / ZVHD2 writer lays down: footer, records, index and bitmap.

The layout is drawn, and its constants and record sizes defined, once in
:mod:`imageport.disk.zvhd_layout`, which the reader uses too, so the two cannot drift; this
module only adds the packing:

* :func:`pack_footer`: the 512-byte footer with its checksum (VHD field offsets, little-endian),
  padded to its 4 KiB area by :func:`footer_area`.
* :func:`record_parts`: one record (48-byte header, compressed payload, zero padding,
  ``"end\\0"``), a multiple of 4 KiB, as parts for ``os.writev`` (no copy of the payload).
* :func:`index_bytes` / :func:`bitmap_bytes`: the ZVHD2 tail tables, whole 512 KiB index
  segments of 16-byte entries and whole 4 KiB bitmap segments (32768 blocks each).

The public reader decodes every record to a whole block (a short last block is zero-padded
before compression) and does not look at the record header's block number; we write the block
index there, in units of the file's block size.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from imageport.disk.zvhd_layout import (
    BITMAP_SEGMENT_BYTES,
    BLOCKS_PER_SEGMENT,
    CHECKSUM_AT,
    FOOTER,
    FOOTER_AREA,
    FOOTER_BYTES,
    INDEX_ENTRY,
    INDEX_SEGMENT_BYTES,
    RECORD_ALIGN,
    RECORD_HEADER,
    RECORD_HEADER_BYTES,
    RECORD_PREFIX,
    RECORD_TRAILER,
    footer_checksum,
    record_size,
)
from imageport.limits import GiB

ZVHD2_VERSION = 1
CREATOR_VERSION = 0x00010004
DISK_TYPE = 4
#: Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC (the footer's timestamp base).
EPOCH_2000 = 946684800
_PADDING = bytes(RECORD_ALIGN)


@dataclass(frozen=True, slots=True)
class FooterFields:
    """Every footer field a writer sets (names follow the on-disk struct)."""

    cookie: bytes
    orig_size: int
    timestamp: int = 0
    uuid: bytes = bytes(16)
    zvhd2_version: int = 0
    block_size: int = 0
    max_blk_num: int = 0
    index_lba: int = 0
    bitmap_lba: int = 0
    index_size: int = 0
    bitmap_size: int = 0
    index_seg_num: int = 0
    bitmap_seg_num: int = 0
    non_zero_blk_num: int = 0
    index_contains_zero_blk: int = 0
    compress_method: int = 0
    creator_version: int = CREATOR_VERSION
    disk_type: int = DISK_TYPE

    @property
    def curr_size(self) -> int:
        """The disk size rounded up to whole GiB, as the public writer records it."""
        return -(-self.orig_size // GiB) * GiB


def with_checksum(footer: bytes | bytearray) -> bytes:
    """``footer`` (its first 512 bytes) with the checksum field recomputed."""
    out = bytearray(footer[:FOOTER_BYTES])
    struct.pack_into("<I", out, CHECKSUM_AT, footer_checksum(bytes(out)))
    return bytes(out)


def pack_footer(f: FooterFields) -> bytes:
    """The 512-byte footer with a valid checksum."""
    zvhd2 = f.zvhd2_version != 0
    raw = FOOTER.pack(
        f.cookie.ljust(8, b"\0"),
        2,
        0x00010000,
        0xFFFFFFFFFFFFFFFF,
        f.timestamp,
        b"tap\0",
        f.creator_version,
        0,
        f.orig_size,
        f.curr_size,
        chs_geometry(f.orig_size),
        f.disk_type,
        0,
        f.uuid,
        0,
        0,
        0,
        f.zvhd2_version,
        f.block_size,
        f.max_blk_num,
        f.index_lba,
        f.bitmap_lba,
        f.index_size,
        f.bitmap_size,
        INDEX_SEGMENT_BYTES if zvhd2 else 0,
        BITMAP_SEGMENT_BYTES if zvhd2 else 0,
        f.index_seg_num,
        f.bitmap_seg_num,
        f.non_zero_blk_num,
        f.index_contains_zero_blk,
        f.compress_method,
        bytes(370),
    )
    return with_checksum(raw)


def footer_area(footer: bytes) -> bytes:
    """A footer padded to its 4 KiB area."""
    return footer.ljust(FOOTER_AREA, b"\0")


def chs_geometry(size: int) -> int:
    """VHD-style CHS geometry (informational; no reader uses it)."""
    secs = min(max(1, -(-size // 512)), 65535 * 16 * 255)
    if secs >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = secs // spt
    else:
        spt = 17
        cth = secs // spt
        heads = max(4, (cth + 1023) // 1024)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = secs // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = secs // spt
    return ((cth // heads) << 16) | (heads << 8) | spt


def record_parts(
    payload: bytes, block: int, *, orig_size: int = 0, compressed: int = 0
) -> list[bytes]:
    """One record as ``[header, payload, padding, "end\\0"]`` (join them, or ``writev``)."""
    head = RECORD_HEADER.pack(
        RECORD_PREFIX, len(payload), block, compressed, bytes(3), orig_size, bytes(20)
    )
    pad = record_size(len(payload)) - RECORD_HEADER_BYTES - len(payload) - len(RECORD_TRAILER)
    return [head, payload, _PADDING[:pad], RECORD_TRAILER]


def pack_record(payload: bytes, block: int, *, orig_size: int = 0, compressed: int = 0) -> bytes:
    """One record as bytes."""
    return b"".join(record_parts(payload, block, orig_size=orig_size, compressed=compressed))


def _whole_segments(data: bytes, segment: int) -> bytes:
    return data.ljust(-(-len(data) // segment) * segment, b"\0")


def index_bytes(
    blocks: Sequence[int],
    offsets: Sequence[int],
    lengths: Sequence[int],
    all_blocks: int | None = None,
) -> bytes:
    """The index: one entry per non-zero block, or given ``all_blocks`` one per guest block
    (zero offset and length for zero blocks); whole 512 KiB segments."""
    if all_blocks is None:
        rows = zip(offsets, blocks, lengths, strict=True)
        data = b"".join(INDEX_ENTRY.pack(*row) for row in rows)
    else:
        table = bytearray(all_blocks * INDEX_ENTRY.size)
        for n in range(all_blocks):
            INDEX_ENTRY.pack_into(table, n * INDEX_ENTRY.size, 0, n, 0)
        for b, o, n in zip(blocks, offsets, lengths, strict=True):
            INDEX_ENTRY.pack_into(table, b * INDEX_ENTRY.size, o, b, n)
        data = bytes(table)
    return _whole_segments(data, INDEX_SEGMENT_BYTES)


def bitmap_bytes(blocks: array[int] | Sequence[int], max_blk: int) -> bytes:
    """The bitmap: bit ``n % 8`` of byte ``n // 8`` set for every listed block; whole 4 KiB
    segments covering ``max_blk`` blocks."""
    bits = bytearray(-(-max_blk // BLOCKS_PER_SEGMENT) * BITMAP_SEGMENT_BYTES)
    for n in blocks:
        bits[n // 8] |= 1 << (n % 8)
    return bytes(bits)
