"""ZVHD and ZVHD2 (the vendor's compressed stream formats): record indexes and readers.

The layout (footer, records, index, bitmap) is drawn in :mod:`imageport.disk.zvhd_layout`;
this module finds the records and decodes them.

* ZVHD blocks are 2 MiB. The writer compresses with one *stateful* zlib stream (OpenSSL's
  ``COMP_zlib``), flushing with ``Z_SYNC_FLUSH`` after each block, so a record can refer back
  into the previous block's data: blocks can only be decoded in order. :class:`ZvhdDisk` keeps
  a bounded set of decompressor checkpoints so that random reads restart from the nearest one
  (a record that ends its own zlib stream starts a fresh one, which is also accepted). Its
  records are found by walking their headers (:func:`scan_records`).
* ZVHD2 blocks are 1-32 MiB, each record an independent zlib stream (sync-flushed) or zstd
  frame, found through the index; the index and the bitmap are read and cross-checked when the
  file is inspected (:func:`read_zvhd2_index`).
"""

from __future__ import annotations

import bisect
import sys
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

import zstandard

from imageport import limits
from imageport.disk.base import Run, RunKind, VirtualDisk, block_runs
from imageport.disk.zvhd_layout import (
    COMPRESS_ZSTD,
    COMPRESSION_NAMES,
    FOOTER_AREA,
    FOOTER_BYTES,
    INDEX_ENTRY,
    MAX_BLOCK_SIZE,
    MIN_BLOCK_SIZE,
    RECORD_HEADER_BYTES,
    RECORD_TRAILER,
    ZVHD2_COOKIE,
    ZVHD_BLOCK_SIZE,
    ZVHD_COOKIE,
    Footer,
    RecordHeader,
    record_size,
)
from imageport.errors import (
    CorruptImageError,
    LimitExceededError,
    TruncatedImageError,
    UnsupportedImageError,
)
from imageport.source import ByteSource, read_exact


def _decode_error(what: str, block: int, detail: str) -> CorruptImageError:
    return CorruptImageError(f"{what}: block {block} cannot be decompressed ({detail})")


def _finish_block(data: bytes, expected: int, last_len: int, what: str, block: int) -> bytes:
    """Decoded blocks are a whole block, or exactly the disk's remaining bytes (zero-padded)."""
    if len(data) == expected:
        return data
    if len(data) == last_len:
        return data + bytes(expected - len(data))
    raise _decode_error(what, block, f"{len(data)} bytes decoded, expected {expected}")


def inflate_into(
    decoder: zlib._Decompress, payload: bytes, limit: int, what: str, block: int
) -> bytes:
    """Feed ``payload`` to ``decoder``; at most ``limit`` bytes out, else a bomb error."""
    try:
        out = decoder.decompress(payload, limit + 1)
    except zlib.error as exc:
        raise _decode_error(what, block, str(exc)) from exc
    if len(out) > limit or decoder.unconsumed_tail:
        raise _decode_error(what, block, f"decompresses to more than {limit} bytes")
    if decoder.eof and decoder.unused_data:
        raise _decode_error(what, block, "data after the end of the zlib stream")
    return out


def unzstd(payload: bytes, limit: int, what: str, block: int) -> bytes:
    """Decode zstd frames, reading at most ``limit + 1`` bytes out (bounded)."""
    out = bytearray()
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(payload, read_across_frames=True)
        while len(out) <= limit:
            chunk = reader.read(limit + 1 - len(out))
            if not chunk:
                break
            out += chunk
    except zstandard.ZstdError as exc:
        raise _decode_error(what, block, str(exc)) from exc
    if len(out) > limit:
        raise _decode_error(what, block, f"decompresses to more than {limit} bytes")
    return bytes(out)


def _read_record(
    source: ByteSource, offset: int, length: int, blocks: tuple[int, ...], what: str
) -> bytes:
    """The compressed payload of the record at ``offset`` after checking its frame.

    The record header's block number must be one of ``blocks``.
    """
    record = read_exact(source, offset, length, f"{what} record")
    header = RecordHeader.from_bytes(record)
    header.check(length, offset, what)
    if record[-4:] != RECORD_TRAILER:
        raise CorruptImageError(f"{what}: record at offset {offset} has no end marker")
    if header.block not in blocks:
        raise CorruptImageError(
            f"{what}: record at offset {offset} holds block {header.block}, expected {blocks[0]}"
        )
    return record[RECORD_HEADER_BYTES : RECORD_HEADER_BYTES + header.size]


@dataclass(frozen=True, slots=True)
class RecordIndex:
    """Where each record is: parallel arrays in block order (ZVHD: :func:`scan_records`,
    ZVHD2: :func:`read_zvhd2_index`)."""

    blocks: array[int]
    offsets: array[int]
    lengths: array[int]

    @classmethod
    def empty(cls) -> RecordIndex:
        return cls(blocks=array("I"), offsets=array("Q"), lengths=array("I"))

    def add(self, block: int, offset: int, length: int) -> None:
        self.blocks.append(block)
        self.offsets.append(offset)
        self.lengths.append(length)


class _RecordDisk(VirtualDisk):
    """A disk of fixed-size blocks, each non-zero one a record listed in ``index``; a packed
    run's ``host`` is the record's position in the index."""

    def __init__(
        self, source: ByteSource, virtual_size: int, index: RecordIndex, block_size: int
    ) -> None:
        super().__init__(source, virtual_size)
        self._index = index
        self._bs = block_size

    def _lookup(self, block: int) -> Run:
        start = block * self._bs
        blocks = self._index.blocks
        i = bisect.bisect_left(blocks, block)
        if i < len(blocks) and blocks[i] == block:
            return Run(start, self._bs, RunKind.PACKED, i, start, self._bs)
        return Run(start, self._bs, RunKind.HOLE)

    def runs(self, start: int, end: int) -> Iterator[Run]:
        return block_runs(start, end, self._bs, self._lookup)

    def packed_extent(self, run: Run) -> tuple[int, int, int]:
        i = run.host
        return self._index.offsets[i], self._index.lengths[i], self._index.lengths[i]


# -- ZVHD -----------------------------------------------------------------------------------


def scan_records(source: ByteSource, footer: Footer) -> RecordIndex:
    """Walk the record headers from offset 4096 to the footer copy at the end of the file.

    Reads 48 bytes per record (skipping from header to header by the padded size), never the
    data; the number of records is bounded by the number of guest blocks.
    """
    max_blocks = -(-footer.orig_size // ZVHD_BLOCK_SIZE)
    limits.cap(max_blocks, limits.MAX_TABLE_ENTRIES, "zvhd: number of blocks")
    index = RecordIndex.empty()
    end = source.size - FOOTER_AREA
    pos = FOOTER_AREA
    max_record = record_size(2 * ZVHD_BLOCK_SIZE)
    while True:
        head = read_exact(source, pos, RECORD_HEADER_BYTES, "zvhd record header")
        if head[: len(ZVHD_COOKIE)] == ZVHD_COOKIE:
            break
        header = RecordHeader.from_bytes(head)
        header.check(max_record, pos, "zvhd")
        length = record_size(header.size)
        if header.block >= max_blocks:
            raise CorruptImageError(
                f"zvhd: record at offset {pos} holds block {header.block},"
                f" beyond the disk's {max_blocks} blocks"
            )
        if index.blocks and header.block <= index.blocks[-1]:
            raise CorruptImageError(
                f"zvhd: record at offset {pos} holds block {header.block} out of order"
            )
        if pos + length > end:
            raise TruncatedImageError(
                f"zvhd: record at offset {pos} runs into the footer or past the end of the file"
            )
        index.add(header.block, pos, length)
        pos += length
    if pos != end:
        raise CorruptImageError(
            f"zvhd: footer copy at offset {pos}, but the file ends at {source.size}"
        )
    if read_exact(source, pos, FOOTER_BYTES, "zvhd footer copy") != footer.raw:
        raise CorruptImageError("zvhd: the footer copy at the end differs from the header")
    return index


#: Bytes one saved zlib decompressor state costs (32 KiB window plus inflate state).
_CHECKPOINT_COST = 48 * limits.KiB


class ZvhdDisk(_RecordDisk):
    """A ZVHD file: 2 MiB blocks in one stateful zlib stream, decoded in record order."""

    format_name = "zvhd"

    def __init__(self, source: ByteSource, footer: Footer, index: RecordIndex) -> None:
        super().__init__(source, footer.orig_size, index, ZVHD_BLOCK_SIZE)
        count = len(index.blocks)
        budget = max(1, limits.MAX_METADATA_CACHE_BYTES // _CHECKPOINT_COST)
        self._interval = max(1, -(-count // budget))
        self._checkpoints: dict[int, zlib._Decompress] = {0: zlib.decompressobj()}
        self._cursor: tuple[int, zlib._Decompress] = (0, zlib.decompressobj())

    @classmethod
    def open(cls, source: ByteSource, footer: Footer) -> ZvhdDisk:
        footer.check(ZVHD_COOKIE, "zvhd")
        return cls(source, footer, scan_records(source, footer))

    def unpack(self, run: Run) -> bytes:
        target = run.host
        nxt, decoder = self._cursor
        if nxt != target:
            base = max(k for k in self._checkpoints if k <= target)
            if not base <= nxt <= target:
                nxt, decoder = base, self._checkpoints[base].copy()
        data = b""
        self._cursor = (0, zlib.decompressobj())  # until the walk below succeeds
        while nxt <= target:
            if nxt % self._interval == 0 and nxt not in self._checkpoints:
                self._checkpoints[nxt] = decoder.copy()
            if decoder.eof:  # the previous record closed its stream; this one starts anew
                decoder = zlib.decompressobj()
            data = self._decode(nxt, decoder)
            nxt += 1
        self._cursor = (nxt, decoder)
        last_len = self.virtual_size - run.unit_start
        return _finish_block(data, ZVHD_BLOCK_SIZE, last_len, "zvhd", self._index.blocks[target])

    def _decode(self, i: int, decoder: zlib._Decompress) -> bytes:
        block = self._index.blocks[i]
        payload = _read_record(
            self.source, self._index.offsets[i], self._index.lengths[i], (block,), "zvhd"
        )
        return inflate_into(decoder, payload, ZVHD_BLOCK_SIZE, "zvhd", block)


# -- ZVHD2 ----------------------------------------------------------------------------------


def _u64_pairs(data: bytes) -> array[int]:
    table = array("Q")
    table.frombytes(data)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        table.byteswap()
    return table


def read_zvhd2_index(source: ByteSource, footer: Footer) -> RecordIndex:
    """The non-zero blocks of a ZVHD2 file, from the index and the bitmap named by ``footer``,
    checked against each other.

    ``footer`` must have passed :func:`check_zvhd2_footer`.
    """
    dense = footer.index_contains_zero_blk == 0
    count = footer.non_zero_blk_num if dense else footer.max_blk_num
    raw = read_exact(source, footer.index_lba, count * INDEX_ENTRY.size, "zvhd2 index")
    pairs = _u64_pairs(raw)
    bitmap = read_exact(source, footer.bitmap_lba, -(-footer.max_blk_num // 8), "zvhd2 bitmap")
    bits = int.from_bytes(bitmap, "little")
    if bits >> footer.max_blk_num:
        raise CorruptImageError(
            f"zvhd2: the bitmap marks blocks beyond max_blk_num {footer.max_blk_num}"
        )
    index = RecordIndex.empty()
    max_len = min(limits.MAX_COMPRESSED_BYTES, record_size(2 * footer.block_size))
    prev_end = FOOTER_AREA
    for k in range(count):
        offset, packed = pairs[2 * k], pairs[2 * k + 1]
        block, length = packed & 0xFFFFFFFF, packed >> 32
        if not dense and (offset == 0 or length == 0):
            continue  # a zero block in an index that lists every block
        where = f"zvhd2: index entry {k} (block {block})"
        if block >= footer.max_blk_num:
            raise CorruptImageError(f"{where} is beyond max_blk_num {footer.max_blk_num}")
        if not dense and block != k:
            raise CorruptImageError(f"{where} sits at position {k}")
        if index.blocks and block <= index.blocks[-1]:
            raise CorruptImageError(f"{where} is out of order")
        if not (bits >> block) & 1:
            raise CorruptImageError(f"{where} is not marked in the bitmap")
        if not RECORD_HEADER_BYTES < length <= max_len:
            raise LimitExceededError(
                f"{where} has record length {length}, outside {RECORD_HEADER_BYTES + 1}..{max_len}"
            )
        if offset < prev_end or offset + length > footer.index_lba:
            raise CorruptImageError(
                f"{where} points at offset {offset}, outside the "
                "record area or overlapping another record"
            )
        prev_end = offset + length
        index.add(block, offset, length)
    if bits.bit_count() != len(index.blocks):
        raise CorruptImageError(
            f"zvhd2: the bitmap marks {bits.bit_count()} blocks, the "
            f"index lists {len(index.blocks)}"
        )
    return index


def check_zvhd2_footer(footer: Footer, file_size: int) -> None:
    """Validate the final footer's geometry before anything is read through it."""
    footer.check(ZVHD2_COOKIE, "zvhd2")
    if footer.zvhd2_version == 0:
        raise UnsupportedImageError("zvhd2: version 0 file (no index; only sequential reading)")
    bs = footer.block_size
    if bs & (bs - 1) or not MIN_BLOCK_SIZE <= bs <= MAX_BLOCK_SIZE:
        raise LimitExceededError(
            f"zvhd2: block size {bs} is not a power of two from "
            f"{MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
        )
    if footer.compress_method not in COMPRESSION_NAMES:
        raise UnsupportedImageError(f"zvhd2: compression method {footer.compress_method}")
    if footer.index_contains_zero_blk not in (0, 1):
        raise CorruptImageError(
            f"zvhd2: index_contains_zero_blk is {footer.index_contains_zero_blk}"
        )
    blocks = -(-footer.orig_size // bs)
    if footer.max_blk_num != blocks:
        raise CorruptImageError(
            f"zvhd2: max_blk_num {footer.max_blk_num} does not match "
            f"the disk size ({blocks} blocks of {bs})"
        )
    if footer.non_zero_blk_num > footer.max_blk_num:
        raise CorruptImageError(
            f"zvhd2: non_zero_blk_num {footer.non_zero_blk_num} exceeds "
            f"max_blk_num {footer.max_blk_num}"
        )
    entries = footer.non_zero_blk_num if footer.index_contains_zero_blk == 0 else blocks
    need_index = limits.cap(entries * INDEX_ENTRY.size, limits.MAX_TABLE_BYTES, "zvhd2: index size")
    need_bitmap = limits.cap(-(-blocks // 8), limits.MAX_TABLE_BYTES, "zvhd2: bitmap size")
    tail = file_size - FOOTER_AREA
    for name, lba, size, need in (
        ("index", footer.index_lba, footer.index_size, need_index),
        ("bitmap", footer.bitmap_lba, footer.bitmap_size, need_bitmap),
    ):
        if size < need:
            raise CorruptImageError(
                f"zvhd2: {name} size {size} is smaller than the {need} bytes it must hold"
            )
        if lba < FOOTER_AREA or lba + size > tail:
            raise TruncatedImageError(
                f"zvhd2: {name} ({size} bytes at offset {lba}) lies "
                f"outside the file ({file_size} bytes)"
            )


class Zvhd2Disk(_RecordDisk):
    """A ZVHD2 file: independently compressed blocks found through the index."""

    format_name = "zvhd2"

    def __init__(self, source: ByteSource, footer: Footer, index: RecordIndex) -> None:
        super().__init__(source, footer.orig_size, index, footer.block_size)
        self._footer = footer

    @classmethod
    def open(cls, source: ByteSource, footer: Footer) -> Zvhd2Disk:
        check_zvhd2_footer(footer, source.size)
        return cls(source, footer, read_zvhd2_index(source, footer))

    def unpack(self, run: Run) -> bytes:
        i = run.host
        block = self._index.blocks[i]
        # The public writer numbers records in 2 MiB units whatever the block size; accept
        # that numbering as well as the block index.
        accepted = (block, run.unit_start // ZVHD_BLOCK_SIZE)
        payload = _read_record(
            self.source, self._index.offsets[i], self._index.lengths[i], accepted, "zvhd2"
        )
        if self._footer.compress_method == COMPRESS_ZSTD:
            data = unzstd(payload, self._bs, "zvhd2", block)
        else:
            data = inflate_into(zlib.decompressobj(), payload, self._bs, "zvhd2", block)
        return _finish_block(data, self._bs, self.virtual_size - run.unit_start, "zvhd2", block)
