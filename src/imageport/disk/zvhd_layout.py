"""ZVHD and ZVHD2 (the vendor's compressed stream formats): the on-disk layout.

The one description of the bytes, shared by the reader (:mod:`imageport.disk.zvhd`), the probe
(:mod:`imageport.formats.zvhd`) and the writer (:mod:`imageport.fastimport.zvhd_packing`), so
the three cannot drift. The vendor documents only what the formats are for (its IMS user
guide, "Common Image Formats"); the layout was learned by reading (never copying) the
third-party qemu driver opnmind/ims-qemu-img, ``src/zvhd.c``, ``src/zvhd2.c`` and
``src/comp_wrapper.c`` (GPLv2). Fields are in the writer's host byte order, little-endian on
the x86 hosts that run qemu-img-hw, at the byte offsets of a VHD footer.

File layout::

    ZVHD:  [footer 4 KiB] [record] [record] ... [footer copy 4 KiB]
    ZVHD2: [footer 4 KiB] [record] ... [footer copy 4 KiB] [index] [bitmap] [final footer 4 KiB]

The 512-byte footer (:class:`Footer`, :data:`FOOTER`) starts with the cookie ``"stream"``
(ZVHD) or ``"z2strm"`` (ZVHD2) and carries a VHD-style checksum
(:func:`imageport.checksums.vhd_checksum`): the one's complement of the byte sum of the 512
bytes with the checksum field zeroed. ZVHD2 appends the block size, the number of guest blocks,
and the offsets and sizes of the index and the bitmap. A ZVHD2 reader takes the footer from the
last 4 KiB of the file (the one at offset 0 was written before the index).

A *record* holds one non-zero guest block (:class:`RecordHeader`, :data:`RECORD_HEADER`): a
48-byte header starting ``"hwstream bg\\0"`` with the compressed length and the block number,
the compressed bytes, zero padding, and ``"end\\0"`` in the last 4 bytes; the record is padded
to a multiple of 4 KiB (:func:`record_size`). Zero blocks have no record. Records appear in
increasing block order.

* ZVHD blocks are 2 MiB, compressed as one stateful zlib stream.
* ZVHD2 blocks are 1-32 MiB, each record an independent zlib stream or zstd frame. The index
  lists ``{u64 file_offset, u32 block_no, u32 record_len}`` (:data:`INDEX_ENTRY`) per non-zero
  block in block order (or, with ``index_contains_zero_blk``, one entry per guest block, zero
  offset for zero blocks); the bitmap has bit ``n % 8`` of byte ``n // 8`` set for every
  non-zero block ``n``. Writers lay both down in whole segments: 512 KiB of index entries,
  4 KiB of bitmap (32768 blocks each).

Block numbers (``curr_blk``, ``block_no``) count blocks of the file's block size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from imageport import limits
from imageport.checksums import vhd_checksum
from imageport.errors import CorruptImageError, TruncatedImageError

FOOTER_AREA = 4096  #: the footer occupies a 4 KiB area; its first 512 bytes are the footer
FOOTER_BYTES = 512
RECORD_ALIGN = 4096
RECORD_PREFIX = b"hwstream bg\0"
RECORD_TRAILER = b"end\0"
ZVHD_COOKIE = b"stream"
ZVHD2_COOKIE = b"z2strm"
ZVHD_BLOCK_SIZE = 2 * limits.MiB
MIN_BLOCK_SIZE = 1 * limits.MiB
MAX_BLOCK_SIZE = 32 * limits.MiB
COMPRESS_ZLIB = 0
COMPRESS_ZSTD = 1
COMPRESSION_NAMES = {COMPRESS_ZLIB: "zlib", COMPRESS_ZSTD: "zstd"}

#: cookie, features, ff_version, data_offset, timestamp, crtr_app, crtr_ver, crtr_os,
#: orig_size, curr_size, geometry, type, checksum, uuid, saved, hidden, align_64,
#: zvhd2_version, block_size, max_blk_num, index_lba, bitmap_lba, index_size, bitmap_size,
#: index_seg_size, bitmap_seg_size, index_seg_num, bitmap_seg_num, non_zero_blk_num,
#: index_contains_zero_blk, compress_method, reserved
FOOTER = struct.Struct("<8sIIQI4sIIQQIII16sBBBBIIQQIIIIIIIBB370s")
CHECKSUM_AT = 64  #: byte offset of the footer's checksum field
#: prefix "hwstream bg\0", size, curr_blk, compressed, pad, orig_size, reserved
RECORD_HEADER = struct.Struct("<12sIIB3sI20s")
RECORD_HEADER_BYTES = RECORD_HEADER.size  # 48
INDEX_ENTRY = struct.Struct("<QII")  #: file_offset, block_no, record_len
INDEX_SEGMENT_BYTES = 512 * 1024
BLOCKS_PER_SEGMENT = INDEX_SEGMENT_BYTES // INDEX_ENTRY.size  # 32768
BITMAP_SEGMENT_BYTES = BLOCKS_PER_SEGMENT // 8  # 4096


def footer_checksum(footer: bytes) -> int:
    """The checksum of the 512-byte footer at the start of ``footer``."""
    return vhd_checksum(footer[:FOOTER_BYTES], CHECKSUM_AT)


def record_size(payload: int) -> int:
    """Bytes a record with ``payload`` compressed bytes occupies (a multiple of 4 KiB)."""
    raw = RECORD_HEADER_BYTES + payload + len(RECORD_TRAILER)
    return -(-raw // RECORD_ALIGN) * RECORD_ALIGN


@dataclass(frozen=True, slots=True)
class Footer:
    """The ZVHD / ZVHD2 footer. ZVHD leaves the fields after ``align_64`` zero."""

    cookie: bytes
    features: int
    ff_version: int
    creator_app: bytes
    creator_version: int
    orig_size: int
    curr_size: int
    disk_type: int
    checksum: int
    zvhd2_version: int
    block_size: int
    max_blk_num: int
    index_lba: int
    bitmap_lba: int
    index_size: int
    bitmap_size: int
    non_zero_blk_num: int
    index_contains_zero_blk: int
    compress_method: int
    raw: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> Footer:
        if len(data) < FOOTER_BYTES:
            raise TruncatedImageError(f"zvhd: footer is {len(data)} bytes, need {FOOTER_BYTES}")
        f = FOOTER.unpack_from(data)  # the fields in the order listed at FOOTER
        return cls(
            cookie=f[0],
            features=f[1],
            ff_version=f[2],
            creator_app=f[5],
            creator_version=f[6],
            orig_size=f[8],
            curr_size=f[9],
            disk_type=f[11],
            checksum=f[12],
            zvhd2_version=f[17],
            block_size=f[18],
            max_blk_num=f[19],
            index_lba=f[20],
            bitmap_lba=f[21],
            index_size=f[22],
            bitmap_size=f[23],
            non_zero_blk_num=f[28],
            index_contains_zero_blk=f[29],
            compress_method=f[30],
            raw=bytes(data[:FOOTER_BYTES]),
        )

    def check(self, cookie: bytes, what: str) -> None:
        """The cookie matches and the checksum is right; the disk size is within caps."""
        if self.cookie[: len(cookie)] != cookie:
            raise CorruptImageError(f"{what}: cookie {self.cookie!r} is not {cookie!r}")
        if footer_checksum(self.raw) != self.checksum:
            raise CorruptImageError(
                f"{what}: footer checksum {self.checksum:#010x} does not match the footer "
                f"(computed {footer_checksum(self.raw):#010x})"
            )
        limits.cap(self.orig_size, limits.MAX_VIRTUAL_SIZE, f"{what}: disk size")


@dataclass(frozen=True, slots=True)
class RecordHeader:
    """The 48-byte header of a data record."""

    prefix: bytes
    size: int
    block: int
    compressed: int
    orig_size: int

    @classmethod
    def from_bytes(cls, data: bytes) -> RecordHeader:
        prefix, size, block, compressed, _pad, orig, _rest = RECORD_HEADER.unpack_from(data)
        return cls(prefix, size, block, compressed, orig)

    def check(self, record_len: int, where: int, what: str) -> None:
        if self.prefix != RECORD_PREFIX:
            raise CorruptImageError(
                f"{what}: no record header at offset {where} (found {self.prefix!r})"
            )
        if self.size == 0 or record_size(self.size) > record_len:
            raise CorruptImageError(
                f"{what}: record at offset {where} claims {self.size} "
                f"compressed bytes, more than its {record_len}-byte record"
            )
