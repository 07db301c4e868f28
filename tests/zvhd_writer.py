"""Write ZVHD and ZVHD2 files from a raw disk (test-only, for now).

Upstream qemu-img cannot write either format, so the tests make their own files with this
writer, following /work/shared/spec/ims-reference.md §4.2 (the layout the public qemu-img-hw
driver, opnmind/ims-qemu-img, writes; read there, not copied):

* ZVHD: ``[footer][record]...[footer copy]``; 2 MiB blocks compressed by ONE zlib stream that
  is sync-flushed after every block (what OpenSSL's stateful ``COMP_zlib`` produces).
* ZVHD2: ``[footer][record]...[footer copy][index][bitmap][final footer]``; every block is an
  independent zstd frame or sync-flushed zlib stream; 512 KiB index segments of 16-byte
  entries, 4 KiB bitmap segments (32768 blocks each), final footer with the offsets.

All-zero blocks get no record; a short last block is zero-padded to a whole block before
compression, as the original writer does. Output is deterministic (fixed UUID and timestamp).
The module is written to be moved into the package as a production writer later; it has no
dependency on the reader.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import zstandard

MiB = 1 << 20
GiB = 1 << 30
FOOTER_AREA = 4096
FOOTER_BYTES = 512
RECORD_ALIGN = 4096
RECORD_PREFIX = b"hwstream bg\0"
RECORD_TRAILER = b"end\0"
ZVHD_BLOCK_SIZE = 2 * MiB
INDEX_SEGMENT_BYTES = 512 * 1024
INDEX_ENTRY = struct.Struct("<QII")
BLOCKS_PER_SEGMENT = INDEX_SEGMENT_BYTES // INDEX_ENTRY.size  # 32768
BITMAP_SEGMENT_BYTES = BLOCKS_PER_SEGMENT // 8  # 4096
METHODS = {"zlib": 0, "zstd": 1}

_FOOTER = struct.Struct("<8sIIQI4sIIQQIII16sBBBBIIQQIIIIIIIBB370s")
_RECORD = struct.Struct("<12sIIB3sI20s")
_CHECKSUM_AT = 64
_FIXED_UUID = bytes(range(16))


@dataclass(frozen=True)
class FooterFields:
    """Every footer field a writer sets (names follow the on-disk struct)."""

    cookie: bytes
    orig_size: int
    timestamp: int = 0
    creator_version: int = 0x00010004
    disk_type: int = 4
    uuid: bytes = _FIXED_UUID
    zvhd2_version: int = 0
    block_size: int = 0
    max_blk_num: int = 0
    index_lba: int = 0
    bitmap_lba: int = 0
    index_size: int = 0
    bitmap_size: int = 0
    index_seg_size: int = 0
    bitmap_seg_size: int = 0
    index_seg_num: int = 0
    bitmap_seg_num: int = 0
    non_zero_blk_num: int = 0
    index_contains_zero_blk: int = 0
    compress_method: int = 0

    @property
    def curr_size(self) -> int:
        return -(-self.orig_size // GiB) * GiB


def checksum(footer: bytes | bytearray) -> int:
    """One's complement of the byte sum of the 512-byte footer with its checksum zeroed."""
    body = footer[:_CHECKSUM_AT] + bytes(4) + footer[_CHECKSUM_AT + 4 : FOOTER_BYTES]
    return ~sum(body) & 0xFFFFFFFF


def with_checksum(footer: bytes | bytearray) -> bytes:
    """``footer`` (512 bytes) with its checksum field recomputed."""
    out = bytearray(footer[:FOOTER_BYTES])
    struct.pack_into("<I", out, _CHECKSUM_AT, checksum(out))
    return bytes(out)


def pack_footer(f: FooterFields) -> bytes:
    """The 512-byte footer with a valid checksum."""
    raw = _FOOTER.pack(
        f.cookie.ljust(8, b"\0"), 2, 0x00010000, 0xFFFFFFFFFFFFFFFF, f.timestamp, b"tap\0",
        f.creator_version, 0, f.orig_size, f.curr_size, _chs(f.orig_size), f.disk_type, 0,
        f.uuid, 0, 0, 0, f.zvhd2_version, f.block_size, f.max_blk_num, f.index_lba,
        f.bitmap_lba, f.index_size, f.bitmap_size, f.index_seg_size, f.bitmap_seg_size,
        f.index_seg_num, f.bitmap_seg_num, f.non_zero_blk_num, f.index_contains_zero_blk,
        f.compress_method, bytes(370),
    )
    return with_checksum(raw)


def footer_area(footer: bytes) -> bytes:
    """A footer padded to its 4 KiB area."""
    return footer.ljust(FOOTER_AREA, b"\0")


def _chs(size: int) -> int:
    """VHD-style CHS geometry (informational only; readers ignore it)."""
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


def pack_record(payload: bytes, block: int, *, orig_size: int = 0, compressed: int = 0) -> bytes:
    """One record: header, payload, zero padding, ``"end\\0"``; a multiple of 4 KiB."""
    head = _RECORD.pack(RECORD_PREFIX, len(payload), block, compressed, bytes(3), orig_size,
                        bytes(20))
    body = head + payload
    total = -(-(len(body) + len(RECORD_TRAILER)) // RECORD_ALIGN) * RECORD_ALIGN
    return body + bytes(total - len(body) - len(RECORD_TRAILER)) + RECORD_TRAILER


def nonzero_blocks(raw: Path, block_size: int) -> Iterator[tuple[int, bytes]]:
    """``(block number, block bytes)`` for every block of ``raw`` that is not all zeros."""
    with open(raw, "rb") as f:
        number = 0
        while chunk := f.read(block_size):
            if chunk.count(0) != len(chunk):
                yield number, chunk.ljust(block_size, b"\0")
            number += 1


def write_zvhd(raw: Path, out: Path) -> Path:
    """Convert the raw disk ``raw`` to ZVHD at ``out``."""
    size = raw.stat().st_size
    header = footer_area(pack_footer(FooterFields(cookie=b"stream", orig_size=size)))
    stream = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION)
    with open(out, "wb") as f:
        f.write(header)
        for number, block in nonzero_blocks(raw, ZVHD_BLOCK_SIZE):
            payload = stream.compress(block) + stream.flush(zlib.Z_SYNC_FLUSH)
            f.write(pack_record(payload, number))
        f.write(header)
    return out


@dataclass(frozen=True)
class IndexEntry:
    """One ZVHD2 index entry."""

    file_offset: int
    block_no: int
    record_len: int


def compress_block(block: bytes, method: str) -> bytes:
    """One block as an independent frame: zstd, or zlib sync-flushed (not finished)."""
    if method == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(block)
    stream = zlib.compressobj(1)
    return stream.compress(block) + stream.flush(zlib.Z_SYNC_FLUSH)


def write_zvhd2(raw: Path, out: Path, *, block_size: int = 2 * MiB, method: str = "zstd",
                index_contains_zero_blk: bool = False) -> Path:
    """Convert the raw disk ``raw`` to ZVHD2 at ``out``."""
    size = raw.stat().st_size
    max_blk = -(-size // block_size)
    base = FooterFields(cookie=b"z2strm", orig_size=size, zvhd2_version=1,
                        block_size=block_size, max_blk_num=max_blk,
                        index_contains_zero_blk=int(index_contains_zero_blk),
                        compress_method=METHODS[method])
    header = footer_area(pack_footer(base))
    entries: list[IndexEntry] = []
    with open(out, "wb") as f:
        f.write(header)
        pos = FOOTER_AREA
        for number, block in nonzero_blocks(raw, block_size):
            record = pack_record(compress_block(block, method), number, orig_size=block_size,
                                 compressed=1)
            f.write(record)
            entries.append(IndexEntry(pos, number, len(record)))
            pos += len(record)
        f.write(header)
        pos += FOOTER_AREA
        index = _index_bytes(entries, max_blk if index_contains_zero_blk else None)
        bitmap = _bitmap_bytes(entries, max_blk)
        final = replace(
            base, index_lba=pos, index_size=len(index), index_seg_size=INDEX_SEGMENT_BYTES,
            index_seg_num=len(index) // INDEX_SEGMENT_BYTES, bitmap_lba=pos + len(index),
            bitmap_size=len(bitmap), bitmap_seg_size=BITMAP_SEGMENT_BYTES,
            bitmap_seg_num=len(bitmap) // BITMAP_SEGMENT_BYTES, non_zero_blk_num=len(entries),
        )
        f.write(index)
        f.write(bitmap)
        f.write(footer_area(pack_footer(final)))
    return out


def _segments(data: bytes, segment: int) -> bytes:
    return data.ljust(-(-len(data) // segment) * segment, b"\0")


def _index_bytes(entries: list[IndexEntry], all_blocks: int | None) -> bytes:
    """Dense index (one entry per non-zero block) or, given ``all_blocks``, one per block."""
    if all_blocks is None:
        rows = entries
    else:
        by_block = {e.block_no: e for e in entries}
        rows = [by_block.get(n, IndexEntry(0, n, 0)) for n in range(all_blocks)]
    data = b"".join(INDEX_ENTRY.pack(e.file_offset, e.block_no, e.record_len) for e in rows)
    return _segments(data, INDEX_SEGMENT_BYTES)


def _bitmap_bytes(entries: list[IndexEntry], max_blk: int) -> bytes:
    bits = bytearray(-(-max_blk // BLOCKS_PER_SEGMENT) * BITMAP_SEGMENT_BYTES)
    for e in entries:
        bits[e.block_no // 8] |= 1 << (e.block_no % 8)
    return bytes(bits)
