"""Write a virtual disk as ZVHD2 or ZVHD, compressing blocks in parallel.

The file layout is drawn in :mod:`imageport.disk.zvhd_layout` (shared with the reader) and packed by
:mod:`imageport.fastimport.zvhd_packing`. The writer takes any
:class:`~imageport.disk.base.VirtualDisk` (opened by our probe, so every input format we read can be
written), and:

* reads only the blocks that meet a DATA extent of the disk's allocation map, so holes and
  zero clusters cost nothing and a 200 GiB sparse disk with a few MiB of data takes as long as
  those MiB; a block that reads as all zeros is skipped too (compared with ``==`` against a
  zero block, a ``memcmp``);
* compresses blocks on a :class:`~concurrent.futures.ThreadPoolExecutor` (zstandard and zlib
  release the GIL while they work), at most ``2 * workers`` blocks in flight so memory stays
  bounded (``window * block size`` of input plus as much output); the main thread reads the
  disk and writes records strictly in block order;
* writes to a temporary file in the target directory, fsyncs it and renames it over the
  target, so a reader never sees half a file.

**ZVHD2** blocks are independent: a zstd frame (level 3 by default), or a zlib stream ended
with ``Z_SYNC_FLUSH`` (level 6), so any block decodes alone. **ZVHD** is read as ONE zlib
stream (the public writer uses OpenSSL's stateful ``COMP_zlib``): blocks are made parallel the
way pigz does it (learned from its documentation and source, not copied) — each block is raw
deflate primed with the last 32 KiB of the previous stored block as its dictionary and ended
with ``Z_SYNC_FLUSH`` (byte-aligned, not final), and the first record carries the two-byte zlib
header, so the records concatenate into one valid stream that a stateful reader decodes.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import zstandard

from imageport import limits
from imageport.disk import zvhd_layout as layout
from imageport.disk.base import ExtentState, VirtualDisk
from imageport.disk.zvhd_layout import (
    COMPRESS_ZLIB,
    COMPRESS_ZSTD,
    MAX_BLOCK_SIZE,
    MIN_BLOCK_SIZE,
    ZVHD2_COOKIE,
    ZVHD_BLOCK_SIZE,
    ZVHD_COOKIE,
)
from imageport.durable import AtomicOutput, committed
from imageport.errors import ImageportError
from imageport.fastimport import zvhd_packing as packing

Method = Literal["zstd", "zlib"]
METHOD_CODES: dict[str, int] = {"zlib": COMPRESS_ZLIB, "zstd": COMPRESS_ZSTD}
DEFAULT_LEVELS: dict[str, int] = {"zstd": 3, "zlib": 6}
DEFAULT_BLOCK_SIZE = 2 * limits.MiB
_DICT_BYTES = 32 * limits.KiB  # deflate's window: what a block may refer back into
_SYNC_EVERY = 32 * limits.MiB  # flush the output in the background after this many bytes

#: Called with (guest bytes done, guest bytes total) as the file is written.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class WriterOptions:
    """How to write. ``timestamp`` (seconds since 2000-01-01) and ``uuid`` default to now and
    a random UUID; tests fix them for reproducible output."""

    method: Method = "zstd"
    block_size: int = DEFAULT_BLOCK_SIZE
    level: int | None = None
    workers: int | None = None
    #: ZVHD2 only: list every guest block in the index (zero entries for zero blocks).
    index_contains_zero_blk: bool = False
    timestamp: int | None = None
    uuid: bytes | None = None

    def checked(self) -> WriterOptions:
        """Refuse option values the format cannot hold."""
        bs = self.block_size
        if self.method not in METHOD_CODES:
            raise ImageportError(f"unknown compression {self.method!r} (zstd or zlib)")
        if bs & (bs - 1) or not MIN_BLOCK_SIZE <= bs <= MAX_BLOCK_SIZE:
            raise ImageportError(f"block size {bs} is not a power of two from 1 to 32 MiB")
        if self.workers is not None and self.workers < 1:
            raise ImageportError("workers must be at least 1")
        if self.uuid is not None and len(self.uuid) != 16:
            raise ImageportError("uuid must be 16 bytes")
        return self


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What was written."""

    virtual_size: int
    file_size: int
    #: Blocks stored (the non-zero blocks).
    blocks: int


# -- compression (runs in worker threads) ---------------------------------------------------

Compress = Callable[[bytes], bytes]


def _zstd_compressor(level: int) -> Compress:
    local = threading.local()  # a ZstdCompressor must not be shared between threads

    def compress(block: bytes) -> bytes:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = zstandard.ZstdCompressor(level=level)
        return bytes(c.compress(block))

    return compress


def _zlib_compressor(level: int) -> Compress:
    def compress(block: bytes) -> bytes:
        stream = zlib.compressobj(level)
        return stream.compress(block) + stream.flush(zlib.Z_SYNC_FLUSH)

    return compress


def _deflate_chained(block: bytes, dictionary: bytes, level: int, header: bytes) -> bytes:
    """Raw deflate of ``block`` that may refer into ``dictionary`` (the stream's preceding
    32 KiB), sync-flushed: a piece of one longer zlib stream, ``header`` first."""
    if dictionary:
        stream = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
    else:
        stream = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    return header + stream.compress(block) + stream.flush(zlib.Z_SYNC_FLUSH)


# -- reading --------------------------------------------------------------------------------


def data_blocks(disk: VirtualDisk, block_size: int) -> Iterator[tuple[int, bytes]]:
    """``(block number, block bytes)`` for every block holding a non-zero byte, in order.

    Only blocks that meet a DATA extent are read; the last block is zero-padded to a whole
    block (readers expect every record to decode to ``block_size`` bytes).
    """
    zeros = bytes(block_size)
    last = -1
    for ext in disk.allocation():
        if ext.state is not ExtentState.DATA:
            continue
        first = max(ext.start // block_size, last + 1)
        end = -(-(ext.start + ext.length) // block_size)
        for n in range(first, end):
            data = disk.read(n * block_size, block_size)
            last = n
            if len(data) < block_size:
                data += zeros[len(data) :]
            if data != zeros:
                yield n, data


# -- the file -------------------------------------------------------------------------------


class _Output(AtomicOutput):
    """An :class:`~imageport.durable.AtomicOutput` written by appending.

    Every :data:`_SYNC_EVERY` bytes a background thread flushes what was written so far
    (``fdatasync``, which releases the GIL), so the disk writes overlap the compression and
    the final ``fsync`` before the rename has little left to do.
    """

    def __init__(self, dst: str | os.PathLike[str]) -> None:
        super().__init__(dst)
        self.pos = 0
        self._synced_at = 0
        self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zvhd-sync")
        self._sync: Future[None] | None = None

    def write(self, *parts: bytes) -> int:
        """Append ``parts``; returns the offset they start at."""
        at = self.pos
        total = sum(len(p) for p in parts)
        done = os.writev(self.fd, parts)
        if done != total:  # short write (rare): finish the rest with plain writes
            rest = memoryview(b"".join(parts))[done:]
            while rest:
                rest = rest[os.write(self.fd, rest) :]
        self.pos += total
        if self.pos - self._synced_at >= _SYNC_EVERY and (self._sync is None or self._sync.done()):
            if self._sync is not None:
                self._sync.result()  # raise a failed flush now
            self._synced_at = self.pos
            self._sync = self._syncer.submit(os.fdatasync, self.fd)
        return at

    def commit(self) -> None:
        if self._sync is not None:
            self._sync.result()
        self._syncer.shutdown()
        super().commit()

    def discard(self) -> None:
        self._syncer.shutdown(wait=True)
        super().discard()


def _pipeline(
    disk: VirtualDisk,
    block_size: int,
    workers: int,
    submit: Callable[[ThreadPoolExecutor, bytes], Future[bytes]],
) -> Iterator[tuple[int, bytes]]:
    """``(block number, compressed payload)`` in block order, compressed on ``workers``
    threads with at most ``2 * workers`` blocks in flight."""
    window = 2 * workers
    pending: deque[tuple[int, Future[bytes]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zvhd") as pool:
        try:
            for number, data in data_blocks(disk, block_size):
                pending.append((number, submit(pool, data)))
                while len(pending) >= window:
                    n, fut = pending.popleft()
                    yield n, fut.result()
            while pending:
                n, fut = pending.popleft()
                yield n, fut.result()
        finally:
            for _n, fut in pending:
                fut.cancel()


def _footer_base(cookie: bytes, disk: VirtualDisk, opts: WriterOptions) -> packing.FooterFields:
    stamp = opts.timestamp
    if stamp is None:
        stamp = max(0, int(time.time()) - packing.EPOCH_2000)
    return packing.FooterFields(
        cookie=cookie,
        orig_size=disk.virtual_size,
        timestamp=stamp & 0xFFFFFFFF,
        uuid=opts.uuid if opts.uuid is not None else uuid.uuid4().bytes,
    )


def _workers(opts: WriterOptions) -> int:
    return opts.workers or len(os.sched_getaffinity(0)) or 1


def write_zvhd2(
    disk: VirtualDisk,
    dst: str | os.PathLike[str],
    options: WriterOptions | None = None,
    progress: Progress | None = None,
) -> WriteResult:
    """Write ``disk`` as a ZVHD2 file at ``dst``."""
    opts = (options or WriterOptions()).checked()
    bs = opts.block_size
    max_blk = -(-disk.virtual_size // bs)
    if opts.index_contains_zero_blk:
        limits.cap(max_blk * layout.INDEX_ENTRY.size, limits.MAX_TABLE_BYTES, "zvhd2 index")
    level = opts.level if opts.level is not None else DEFAULT_LEVELS[opts.method]
    compress = _zstd_compressor(level) if opts.method == "zstd" else _zlib_compressor(level)
    base = _footer_base(ZVHD2_COOKIE, disk, opts)
    base = dataclasses.replace(
        base,
        zvhd2_version=packing.ZVHD2_VERSION,
        block_size=bs,
        max_blk_num=max_blk,
        compress_method=METHOD_CODES[opts.method],
        index_contains_zero_blk=int(opts.index_contains_zero_blk),
    )
    header = packing.footer_area(packing.pack_footer(base))
    blocks, offsets, lengths = array("I"), array("Q"), array("I")
    max_entries = limits.MAX_TABLE_BYTES // layout.INDEX_ENTRY.size
    with committed(_Output(dst)) as out:
        out.write(header)
        for number, payload in _pipeline(
            disk, bs, _workers(opts), lambda pool, data: pool.submit(compress, data)
        ):
            if len(blocks) >= max_entries:
                raise ImageportError(
                    f"zvhd2: more than {max_entries} non-zero blocks; use a larger block size"
                )
            parts = packing.record_parts(payload, number, orig_size=bs, compressed=1)
            blocks.append(number)
            offsets.append(out.write(*parts))
            lengths.append(out.pos - offsets[-1])
            if progress is not None:
                progress(min((number + 1) * bs, disk.virtual_size), disk.virtual_size)
        out.write(header)
        index = packing.index_bytes(
            blocks, offsets, lengths, max_blk if opts.index_contains_zero_blk else None
        )
        bitmap = packing.bitmap_bytes(blocks, max_blk)
        index_at = out.write(index)
        bitmap_at = out.write(bitmap)
        final = dataclasses.replace(
            base,
            index_lba=index_at,
            index_size=len(index),
            index_seg_num=len(index) // layout.INDEX_SEGMENT_BYTES,
            bitmap_lba=bitmap_at,
            bitmap_size=len(bitmap),
            bitmap_seg_num=len(bitmap) // layout.BITMAP_SEGMENT_BYTES,
            non_zero_blk_num=len(blocks),
        )
        out.write(packing.footer_area(packing.pack_footer(final)))
        size = out.pos
    if progress is not None:
        progress(disk.virtual_size, disk.virtual_size)
    return WriteResult(disk.virtual_size, size, len(blocks))


def write_zvhd(
    disk: VirtualDisk,
    dst: str | os.PathLike[str],
    options: WriterOptions | None = None,
    progress: Progress | None = None,
) -> WriteResult:
    """Write ``disk`` as a ZVHD file at ``dst`` (zlib, 2 MiB blocks; ``options.method`` and
    ``options.block_size`` do not apply)."""
    opts = (options or WriterOptions()).checked()
    level = opts.level if opts.level is not None else DEFAULT_LEVELS["zlib"]
    header = packing.footer_area(packing.pack_footer(_footer_base(ZVHD_COOKIE, disk, opts)))
    stream_head = zlib.compress(b"", level)[:2]
    previous = b""  # the tail of the previous stored block: the next one's dictionary

    def submit(pool: ThreadPoolExecutor, data: bytes) -> Future[bytes]:
        nonlocal previous
        head = b"" if previous else stream_head
        fut = pool.submit(_deflate_chained, data, previous, level, head)
        previous = data[-_DICT_BYTES:]
        return fut

    stored = 0
    with committed(_Output(dst)) as out:
        out.write(header)
        for number, payload in _pipeline(disk, ZVHD_BLOCK_SIZE, _workers(opts), submit):
            out.write(*packing.record_parts(payload, number))
            stored += 1
            if progress is not None:
                progress(min((number + 1) * ZVHD_BLOCK_SIZE, disk.virtual_size), disk.virtual_size)
        out.write(header)
        size = out.pos
    if progress is not None:
        progress(disk.virtual_size, disk.virtual_size)
    return WriteResult(disk.virtual_size, size, stored)
