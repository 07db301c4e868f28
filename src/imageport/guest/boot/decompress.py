"""Streamed, capped decompression of the segments of an initrd.

The formats are the ones the Linux kernel unpacks an initramfs from (``lib/decompress.c`` names
them by magic): gzip, bzip2, xz, legacy ``.lzma``, zstd and the *legacy* LZ4 framing. gzip,
bzip2, xz and lzma use Python's standard library with ``max_length`` so that no call returns
more than :data:`OUT_CHUNK` bytes; zstd uses ``zstandard``'s stream reader over exactly one frame
(whose length we find by walking its block headers, RFC 8878 section 3.1.1) with a bounded
window; the LZ4 legacy frame (magic ``02 21 4C 18``, then blocks of a 32-bit little-endian
length and an LZ4 block decoding to at most 8 MiB) and the LZ4 block format (lz4's
``doc/lz4_Block_format.md``) are decoded here in pure Python, so no extra dependency is needed.

A :class:`Decoder` pulls compressed bytes from a
:class:`~imageport.guest.volumes.blockdev.BlockDevice` at a start offset and yields decompressed
chunks; once it is exhausted, :attr:`Decoder.consumed` says how many compressed bytes the segment
occupied, so the caller can go on after it.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from typing import IO, cast

import zstandard

from imageport.errors import CorruptImageError, LimitExceededError, TruncatedImageError
from imageport.guest.volumes.blockdev import BlockDevice

#: Compressed bytes read from the device at a time.
IN_CHUNK = 64 * 1024
#: Largest decompressed chunk one step returns.
OUT_CHUNK = 256 * 1024
#: Largest zstd window accepted (zstd -19 uses 8 MiB; --ultra -22 would need 128 MiB).
ZSTD_MAX_WINDOW = 1 << 25
#: Memory liblzma may use for one xz/lzma stream (xz -9 needs 65 MiB to decompress).
LZMA_MEMLIMIT = 128 << 20
#: An LZ4 legacy block decodes to at most 8 MiB (the format's fixed block size).
LZ4_LEGACY_BLOCK = 8 << 20
LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: Magic prefixes, as the kernel's ``decompress_method`` checks them.
MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x1f\x9e", "gzip"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\xfd7zXZ\x00", "xz"),
    (LZ4_LEGACY_MAGIC, "lz4"),
    (ZSTD_MAGIC, "zstd"),
)


def compression_of(head: bytes) -> str | None:
    """The compression named by the first bytes of a segment, or None."""
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    return None


class _Source:
    """Sequential reads from a device, from a start offset (a file-like object for zstandard)."""

    def __init__(self, dev: BlockDevice, start: int, end: int | None = None) -> None:
        self.dev = dev
        self.pos = start
        self.end = dev.size if end is None else min(end, dev.size)

    def read(self, n: int = IN_CHUNK) -> bytes:
        n = max(0, min(n, self.end - self.pos))
        data = self.dev.read(self.pos, n) if n else b""
        self.pos += len(data)
        return data

    def exact(self, n: int, what: str) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise TruncatedImageError(f"initrd: {what} is cut short")
        return data


class Decoder:
    """Decompressed chunks of one segment; :meth:`step` returns ``b""`` at the segment's end."""

    def __init__(self, dev: BlockDevice, start: int) -> None:
        self._src = _Source(dev, start)
        self.start = start
        self.done = False

    @property
    def consumed(self) -> int:
        """Compressed bytes of the segment (exact once :meth:`step` returned ``b""``)."""
        return self._src.pos - self.start

    def step(self) -> bytes:
        """The next at most OUT_CHUNK decompressed bytes."""
        raise NotImplementedError


class _StdlibDecoder(Decoder):
    """bzip2, xz and lzma: ``decompress(data, max_length)`` with ``needs_input``."""

    def __init__(
        self, dev: BlockDevice, start: int, d: bz2.BZ2Decompressor | lzma.LZMADecompressor
    ) -> None:
        super().__init__(dev, start)
        self._d = d

    def step(self) -> bytes:
        d = self._d
        while not self.done:
            if d.eof:
                self._src.pos -= len(d.unused_data)
                self.done = True
                break
            data = b""
            if d.needs_input:
                data = self._src.read(IN_CHUNK)
                if not data:
                    raise TruncatedImageError("initrd: compressed segment is cut short")
            try:
                out = d.decompress(data, OUT_CHUNK)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
                raise CorruptImageError(f"initrd: decompression failed: {exc}") from exc
            if out:
                return out
        return b""


class _GzipDecoder(Decoder):
    """gzip through zlib (``wbits=31``); zlib keeps unread input in ``unconsumed_tail``."""

    def __init__(self, dev: BlockDevice, start: int) -> None:
        super().__init__(dev, start)
        self._d = zlib.decompressobj(31)

    def step(self) -> bytes:
        d = self._d
        while not self.done:
            if d.eof:
                self._src.pos -= len(d.unused_data)
                self.done = True
                break
            data = d.unconsumed_tail or self._src.read(IN_CHUNK)
            try:
                out = d.decompress(data, OUT_CHUNK)
            except zlib.error as exc:
                raise CorruptImageError(f"initrd: gzip data is corrupt: {exc}") from exc
            if out:
                return out
            if not data:
                raise TruncatedImageError("initrd: gzip segment is cut short")
        return b""


_ZSTD_BLOCK = struct.Struct("<I")


def zstd_frame_length(dev: BlockDevice, start: int) -> int:
    """Bytes of the zstd frame at ``start``, from its header and block headers (RFC 8878)."""
    src = _Source(dev, start)
    if src.exact(4, "zstd frame magic") != ZSTD_MAGIC:
        raise CorruptImageError("initrd: not a zstd frame")
    fhd = src.exact(1, "zstd frame header")[0]
    if fhd & 0x08:
        raise CorruptImageError("initrd: zstd frame header has the reserved bit set")
    single = bool(fhd & 0x20)
    fcs_size = (1 if single else 0, 2, 4, 8)[fhd >> 6]
    header = (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs_size
    src.exact(header, "zstd frame header")
    while True:
        (raw,) = _ZSTD_BLOCK.unpack(src.exact(3, "zstd block header") + b"\x00")
        last, kind, size = raw & 1, (raw >> 1) & 3, raw >> 3
        if kind == 3:
            raise CorruptImageError("initrd: zstd block of reserved type")
        if size > 128 * 1024:
            raise CorruptImageError("initrd: zstd block larger than 128 KiB")
        skip = 1 if kind == 1 else size
        if src.pos + skip > src.end:
            raise TruncatedImageError("initrd: zstd frame is cut short")
        src.pos += skip
        if last:
            break
    if fhd & 0x04:
        src.exact(4, "zstd content checksum")
    return src.pos - start


class _ZstdDecoder(Decoder):
    """One zstd frame through ``zstandard``'s bounded stream reader."""

    def __init__(self, dev: BlockDevice, start: int) -> None:
        super().__init__(dev, start)
        length = zstd_frame_length(dev, start)
        self._frame = _Source(dev, start, start + length)
        dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        self._reader = dctx.stream_reader(
            cast("IO[bytes]", self._frame),  # zstandard only calls read() on it
            read_size=IN_CHUNK,
            read_across_frames=False,
            closefd=False,
        )
        self._src.pos = start + length

    def step(self) -> bytes:
        if self.done:
            return b""
        try:
            out: bytes = self._reader.read(OUT_CHUNK)
        except zstandard.ZstdError as exc:
            raise CorruptImageError(f"initrd: zstd data is corrupt: {exc}") from exc
        if not out:
            self.done = True
        return out


def _lz4_length(src: bytes, i: int, nibble: int, what: str) -> tuple[int, int]:
    """An LZ4 length: the token's 4-bit ``nibble``, extended by bytes while they are 255.
    Returns the length and the position after it."""
    length = nibble
    if nibble == 15:
        while True:
            if i >= len(src):
                raise CorruptImageError(f"initrd: LZ4 {what} length runs off the block")
            b = src[i]
            i += 1
            length += b
            if b != 255:
                break
    return length, i


def lz4_block_decode(src: bytes, max_out: int) -> bytes:
    """Decode one LZ4 block (sequences of literals and back-references) of at most ``max_out``."""
    out = bytearray()
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        lit, i = _lz4_length(src, i, token >> 4, "literal")
        if i + lit > n or len(out) + lit > max_out:
            raise CorruptImageError("initrd: LZ4 literals run off the block or the output")
        out += src[i : i + lit]
        i += lit
        if i == n:
            break  # the last sequence has literals only
        if i + 2 > n:
            raise CorruptImageError("initrd: LZ4 match offset runs off the block")
        offset = src[i] | (src[i + 1] << 8)
        i += 2
        mlen, i = _lz4_length(src, i, token & 15, "match")
        mlen += 4
        if offset == 0 or offset > len(out) or len(out) + mlen > max_out:
            raise CorruptImageError("initrd: LZ4 match points outside the output")
        start = len(out) - offset
        if mlen <= offset:
            out += out[start : start + mlen]
        else:
            pattern = bytes(out[start:])
            out += (pattern * (mlen // offset + 1))[:mlen]
    return bytes(out)


class _Lz4LegacyDecoder(Decoder):
    """The kernel's legacy LZ4 framing: magic, then (length, block) until a length that is no
    block (end of data, zero, the magic again starts a new frame, or too large to be one)."""

    _BOUND = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK // 255 + 16  # LZ4_compressBound(8 MiB)

    def __init__(self, dev: BlockDevice, start: int) -> None:
        super().__init__(dev, start)
        self._src.exact(4, "LZ4 magic")
        self._pending = b""
        self._offset = 0

    def step(self) -> bytes:
        while True:
            if self._offset < len(self._pending):
                out = self._pending[self._offset : self._offset + OUT_CHUNK]
                self._offset += len(out)
                return out
            if self.done:
                return b""
            head = self._src.read(4)
            if head == LZ4_LEGACY_MAGIC:
                continue
            size = int.from_bytes(head, "little") if len(head) == 4 else 0
            if size == 0 or size > self._BOUND:
                self._src.pos -= len(head)  # not a block: the segment ended before it
                self.done = True
                return b""
            block = self._src.exact(size, "LZ4 block")
            self._pending = lz4_block_decode(block, LZ4_LEGACY_BLOCK)
            self._offset = 0


def decoder_for(kind: str, dev: BlockDevice, start: int) -> Decoder:
    """A :class:`Decoder` for the segment of compression ``kind`` at ``start`` of ``dev``."""
    if kind == "gzip":
        return _GzipDecoder(dev, start)
    if kind == "bzip2":
        return _StdlibDecoder(dev, start, bz2.BZ2Decompressor())
    if kind in ("xz", "lzma"):
        fmt = lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE
        return _StdlibDecoder(dev, start, lzma.LZMADecompressor(fmt, memlimit=LZMA_MEMLIMIT))
    if kind == "zstd":
        return _ZstdDecoder(dev, start)
    if kind == "lz4":
        return _Lz4LegacyDecoder(dev, start)
    raise LimitExceededError(f"initrd: no decoder for {kind}")
