"""Btrfs file extents: decoding compressed extents (zlib, LZO, zstd), all bounded.

A compressed extent decodes to at most ``ram_bytes`` bytes (btrfs caps it at 128 KiB); more
output than that is corruption and is refused before it is produced. Learned from the btrfs
documentation ("Compression") and from extents written by the Linux kernel with
``btrfs property set ... compression``.

Btrfs frames LZO itself (the ``lzo`` module decodes the raw LZO1X stream)::

    le32 total length of the framed data, this field included
    repeated: le32 segment length, then the segment's LZO1X stream
              (each segment decodes to at most one sector); a segment length field never
              straddles a sector boundary: fewer than 4 bytes left in a sector are padding

zlib extents are one zlib stream; zstd extents are one zstd frame (then padding).
"""

from __future__ import annotations

import struct
import zlib

import zstandard

from imageport.errors import CorruptImageError, LimitExceededError, UnsupportedImageError
from imageport.guest.fs import btrfs_layout as L
from imageport.guest.fs import lzo

#: Largest decoded size of one compressed extent (btrfs writes at most 128 KiB).
MAX_COMPRESSED_RAM_BYTES = 128 * 1024
#: Largest stored size of one compressed extent.
MAX_COMPRESSED_DISK_BYTES = 128 * 1024

#: Largest zstd window accepted (btrfs writes frames with a window of at most 128 KiB).
ZSTD_MAX_WINDOW = 1 << 17
_ZSTD_FEED = 32
_LE32 = struct.Struct("<I")


def decompress(compression: int, data: bytes, ram_bytes: int, sectorsize: int) -> bytes:
    """Decode a compressed extent to exactly ``ram_bytes`` bytes (short output is zero-padded,
    as the kernel does; longer output is corruption)."""
    if ram_bytes > MAX_COMPRESSED_RAM_BYTES:
        raise LimitExceededError(f"btrfs compressed extent claims {ram_bytes} decoded bytes")
    if compression == L.COMPRESS_ZLIB:
        out = _zlib(data, ram_bytes)
    elif compression == L.COMPRESS_LZO:
        out = _lzo(data, ram_bytes, sectorsize)
    elif compression == L.COMPRESS_ZSTD:
        out = _zstd(data, ram_bytes)
    else:
        raise UnsupportedImageError(f"btrfs compression type {compression}")
    if len(out) > ram_bytes:
        raise CorruptImageError("btrfs compressed extent decodes beyond its ram_bytes")
    return out + bytes(ram_bytes - len(out))


def _zlib(data: bytes, ram_bytes: int) -> bytes:
    dec = zlib.decompressobj()
    try:
        out = dec.decompress(data, ram_bytes)
        if not dec.eof and dec.unconsumed_tail and dec.decompress(dec.unconsumed_tail, 1):
            raise CorruptImageError("btrfs zlib extent decodes beyond its ram_bytes")
    except zlib.error as exc:
        raise CorruptImageError(f"btrfs zlib extent is corrupt: {exc}") from exc
    return out


def _zstd(data: bytes, ram_bytes: int) -> bytes:
    # Fed in small pieces so that no single call can produce much more than ram_bytes (a
    # 3-byte RLE block may stand for 128 KiB); the window is capped as the kernel caps it.
    out = bytearray()
    try:
        dec = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj()
        for pos in range(0, len(data), _ZSTD_FEED):
            out += dec.decompress(data[pos : pos + _ZSTD_FEED])
            if len(out) > ram_bytes:
                raise CorruptImageError("btrfs zstd extent decodes beyond its ram_bytes")
            if dec.eof:
                break
    except zstandard.ZstdError as exc:
        raise CorruptImageError(f"btrfs zstd extent is corrupt: {exc}") from exc
    return bytes(out)


def _lzo(data: bytes, ram_bytes: int, sectorsize: int) -> bytes:
    if len(data) < _LE32.size:
        raise CorruptImageError("btrfs LZO extent is shorter than its header")
    (total,) = _LE32.unpack_from(data, 0)
    if total < _LE32.size or total > len(data):
        raise CorruptImageError(f"btrfs LZO extent claims {total} bytes, has {len(data)}")
    # A segment holds one sector's worst case: the input plus a sixteenth plus a little.
    max_segment = sectorsize + sectorsize // 16 + 64 + 3
    pos = _LE32.size
    out = bytearray()
    while pos < total and len(out) < ram_bytes:
        left_in_sector = sectorsize - pos % sectorsize
        if left_in_sector < _LE32.size:
            pos += left_in_sector  # padding: a length never straddles a sector boundary
            continue
        if pos + _LE32.size > total:
            raise CorruptImageError("btrfs LZO segment header runs past the extent")
        (seg_len,) = _LE32.unpack_from(data, pos)
        pos += _LE32.size
        if seg_len == 0 or seg_len > max_segment or pos + seg_len > total:
            raise CorruptImageError(f"btrfs LZO segment of {seg_len} bytes is invalid")
        out += lzo.decompress(data[pos : pos + seg_len], min(sectorsize, ram_bytes - len(out)))
        pos += seg_len
    return bytes(out)
