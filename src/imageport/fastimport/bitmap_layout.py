"""The ``.mf`` RAW bitmap file: byte layout, encoding and the strict parser.

The platform's fast import of a RAW image needs a bitmap file beside it that marks which
blocks of the image hold data; a block marked 0 is not copied, so the guest reads zeros there.
The vendor's own tool (``CreateMF.jar``) writes an unpublished format and no source for it
was found, so imageport defines and documents its own (``docs/bitmap-format.md``). The bit
order follows the bitmap table of ZVHD2 (bit ``n % 8`` of byte ``n // 8``, as
:mod:`imageport.disk.zvhd` reads it); the shape of the
header (magic, version, header size, a checksum of the header and one of the payload) follows
the habits of qcow2 and VHDX headers, and the strict-parser style follows oslo.utils'
format_inspector: every number is checked before it sizes a read.

Version 1, all integers little-endian::

    offset size field
         0    8 magic          b"IPBITMAP"
         8    2 version        1
        10    2 header_size    96
        12    4 block_size     power of two, 64 KiB .. 64 MiB
        16    8 image_size     bytes of the RAW image
        24    8 block_count    ceil(image_size / block_size)
        32    8 set_bits       number of 1 bits in the bitmap
        40    8 flags          0 (no flags are defined in version 1)
        48   32 bitmap_sha256  SHA-256 of the bitmap bytes that follow the header
        80   12 reserved       zero
        92    4 header_crc32   CRC-32 (zlib) of bytes 0..91
        96    . bitmap         ceil(block_count / 8) bytes; bits past block_count are zero

The file is exactly ``96 + ceil(block_count / 8)`` bytes long.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import astuple, dataclass

from imageport.errors import (
    CorruptImageError,
    LimitExceededError,
    TruncatedImageError,
    UnsupportedImageError,
)
from imageport.limits import MAX_TABLE_BYTES, MAX_VIRTUAL_SIZE, KiB, MiB

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "HEADER",
    "MAGIC",
    "MAX_BLOCK_SIZE",
    "MIN_BLOCK_SIZE",
    "VERSION",
    "Bitmap",
    "BitmapFileError",
    "Header",
    "check_block_size",
    "check_geometry",
    "parse_bitmap",
]

MAGIC = b"IPBITMAP"
VERSION = 1

#: The header of version 1 (see the module docstring for the fields).
HEADER = struct.Struct("<8sHHIQQQQ32s12sI")
HEADER_SIZE = HEADER.size
#: Bytes covered by ``header_crc32``: everything before it.
HEADER_CRC_SPAN = HEADER_SIZE - 4
#: Where the version sits, read before the rest so that a newer version is named as such.
VERSION_FIELD = struct.Struct("<H")
VERSION_OFFSET = 8

MIN_BLOCK_SIZE = 64 * KiB
MAX_BLOCK_SIZE = 64 * MiB
DEFAULT_BLOCK_SIZE = 2 * MiB

#: Largest bitmap held in memory: 64 MiB of bits covers 32 TiB in 64 KiB blocks and
#: 1 PiB in the default 2 MiB blocks, far past the 1 TiB the platform imports.
MAX_BITMAP_BYTES = MAX_TABLE_BYTES
MAX_FILE_SIZE = HEADER_SIZE + MAX_BITMAP_BYTES

assert HEADER_SIZE == 96


@dataclass(frozen=True, slots=True)
class Header:
    """The fields of :data:`HEADER`, in order."""

    magic: bytes
    version: int
    header_size: int
    block_size: int
    image_size: int
    block_count: int
    set_bits: int
    flags: int
    bitmap_sha256: bytes
    reserved: bytes
    header_crc32: int


class BitmapFileError(CorruptImageError):
    """A ``.mf`` bitmap file is not a valid imageport bitmap (the message says which rule)."""


def block_count_for(image_size: int, block_size: int) -> int:
    """Blocks needed to cover ``image_size`` bytes; the last one may be partial."""
    return -(-image_size // block_size)


def bitmap_bytes_for(block_count: int) -> int:
    """Bytes of bitmap for ``block_count`` bits."""
    return -(-block_count // 8)


def check_block_size(block_size: int) -> int:
    """Return ``block_size`` if it is a power of two in 64 KiB .. 64 MiB, else raise."""
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE or block_size & (block_size - 1) != 0:
        raise BitmapFileError(
            f"block size {block_size} is not a power of two between {MIN_BLOCK_SIZE} "
            f"(64 KiB) and {MAX_BLOCK_SIZE} (64 MiB)"
        )
    return block_size


def check_geometry(image_size: int, block_size: int) -> int:
    """Validate an image size and block size; return the block count. Raises our errors."""
    check_block_size(block_size)
    if not 0 <= image_size <= MAX_VIRTUAL_SIZE:
        raise LimitExceededError(
            f"image size {image_size} is outside the allowed range 0..{MAX_VIRTUAL_SIZE}"
        )
    count = block_count_for(image_size, block_size)
    if bitmap_bytes_for(count) > MAX_BITMAP_BYTES:
        raise LimitExceededError(
            f"a bitmap of {count} blocks of {block_size} bytes would need "
            f"{bitmap_bytes_for(count)} bytes, more than the cap of {MAX_BITMAP_BYTES}"
        )
    return count


@dataclass(frozen=True, slots=True)
class Bitmap:
    """One bit per ``block_size`` block of a RAW image of ``image_size`` bytes; 1 = has data.

    ``bits`` holds bit ``n`` in bit ``n % 8`` of byte ``n // 8``; bits past ``block_count``
    are zero. Construction checks the geometry, so every ``Bitmap`` can be encoded.
    """

    block_size: int
    image_size: int
    bits: bytes

    def __post_init__(self) -> None:
        count = check_geometry(self.image_size, self.block_size)
        if len(self.bits) != bitmap_bytes_for(count):
            raise BitmapFileError(
                f"the bitmap holds {len(self.bits)} bytes; {count} blocks need "
                f"{bitmap_bytes_for(count)}"
            )
        if int.from_bytes(self.bits, "little") >> count:
            raise BitmapFileError(f"bits past the last block ({count}) are set; they must be zero")

    @property
    def block_count(self) -> int:
        return block_count_for(self.image_size, self.block_size)

    @property
    def set_bits(self) -> int:
        """Number of blocks marked as holding data."""
        return int.from_bytes(self.bits, "little").bit_count()

    def is_set(self, block: int) -> bool:
        """True when ``block`` is marked as holding data."""
        if not 0 <= block < self.block_count:
            raise IndexError(f"block {block} is outside 0..{self.block_count - 1}")
        return bool(self.bits[block >> 3] >> (block & 7) & 1)

    def block_range(self, block: int) -> tuple[int, int]:
        """Byte range ``[start, end)`` of ``block`` in the image (the last may be short)."""
        start = block * self.block_size
        return start, min(start + self.block_size, self.image_size)

    def sha256(self) -> bytes:
        return hashlib.sha256(self.bits).digest()

    def encode(self) -> bytes:
        """The complete ``.mf`` file for this bitmap."""
        fields = Header(
            magic=MAGIC,
            version=VERSION,
            header_size=HEADER_SIZE,
            block_size=self.block_size,
            image_size=self.image_size,
            block_count=self.block_count,
            set_bits=self.set_bits,
            flags=0,
            bitmap_sha256=self.sha256(),
            reserved=bytes(12),
            header_crc32=0,
        )
        head = bytearray(HEADER.pack(*astuple(fields)))
        struct.pack_into("<I", head, HEADER_CRC_SPAN, zlib.crc32(head[:HEADER_CRC_SPAN]))
        return bytes(head) + self.bits


def parse_bitmap(data: bytes, what: str = "bitmap file") -> Bitmap:
    """Parse a whole ``.mf`` file; raise :class:`BitmapFileError` (or a sibling) naming the fault.

    Checked in this order, so that each fault is named by the first rule it breaks: length of
    the header, magic, version, header checksum, reserved fields, block size, image size and
    block count, exact file length, bitmap checksum, zero padding bits, number of set bits.
    """
    if len(data) > MAX_FILE_SIZE:
        raise LimitExceededError(f"{what} is {len(data)} bytes, more than the cap {MAX_FILE_SIZE}")
    if len(data) < HEADER_SIZE:
        raise TruncatedImageError(
            f"{what} is {len(data)} bytes long, shorter than its {HEADER_SIZE}-byte header"
        )
    if data[:8] != MAGIC:
        raise BitmapFileError(
            f"{what} does not start with the magic {MAGIC!r} (found {bytes(data[:8])!r}); "
            "it is not an imageport bitmap file"
        )
    (version,) = VERSION_FIELD.unpack_from(data, VERSION_OFFSET)
    if version > VERSION:
        raise UnsupportedImageError(
            f"{what} has version {version}; this imageport reads version {VERSION}"
        )
    if version != VERSION:
        raise BitmapFileError(f"{what} has version {version}, which was never defined")
    head = Header(*HEADER.unpack_from(data, 0))
    actual_crc = zlib.crc32(data[:HEADER_CRC_SPAN])
    if head.header_crc32 != actual_crc:
        raise BitmapFileError(
            f"{what} header checksum is {head.header_crc32:#010x}, "
            f"the header gives {actual_crc:#010x}"
        )
    if head.header_size != HEADER_SIZE:
        raise BitmapFileError(
            f"{what} declares a {head.header_size}-byte header; version 1 has {HEADER_SIZE}"
        )
    if head.flags != 0 or any(head.reserved):
        raise BitmapFileError(
            f"{what} sets flags {head.flags:#x} or reserved bytes; both must be zero"
        )
    block_size, image_size, block_count = head.block_size, head.image_size, head.block_count
    check_block_size(block_size)
    expected_count = check_geometry(image_size, block_size)
    if block_count != expected_count:
        raise BitmapFileError(
            f"{what} declares {block_count} blocks, but an image of {image_size} bytes in "
            f"{block_size}-byte blocks has {expected_count}"
        )
    expected_len = HEADER_SIZE + bitmap_bytes_for(block_count)
    if len(data) < expected_len:
        raise TruncatedImageError(
            f"{what} is {len(data)} bytes long; its {block_count} blocks need {expected_len}"
        )
    if len(data) > expected_len:
        raise BitmapFileError(
            f"{what} has {len(data) - expected_len} bytes of trailing data after its bitmap "
            f"(expected exactly {expected_len} bytes)"
        )
    bits = bytes(data[HEADER_SIZE:])
    if hashlib.sha256(bits).digest() != head.bitmap_sha256:
        raise BitmapFileError(f"{what} bitmap checksum (SHA-256) does not match its bitmap")
    value = int.from_bytes(bits, "little")
    if value >> block_count:
        raise BitmapFileError(
            f"{what} sets padding bits after its last block ({block_count}); they must be zero"
        )
    if value.bit_count() != head.set_bits:
        raise BitmapFileError(
            f"{what} declares {head.set_bits} blocks with data but its bitmap marks "
            f"{value.bit_count()}"
        )
    return Bitmap(block_size=block_size, image_size=image_size, bits=bits)
