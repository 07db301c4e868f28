"""RAW bitmap files (``.mf``) for fast import: build, write, read and verify.

The bitmap tells the platform which blocks of a RAW image to copy: a block marked 0 is never
read, so the guest sees zeros there. The one property that matters for safety is therefore
*every block marked 0 is all zero*; a block marked 1 that is all zero only wastes a copy.
The byte layout is in :mod:`imageport.fastimport.bitmap_layout` and ``docs/bitmap-format.md``.

* :func:`build_bitmap` / :func:`scan_raw` read only the allocated bytes of the RAW file
  (:mod:`imageport.fastimport.zeroscan`);
* :func:`write_bitmap` writes the file atomically (temporary file in the target directory,
  fsync, rename, fsync of the directory), the way ``service.convert`` writes raw files;
* :func:`read_bitmap` opens a ``.mf`` read-only and parses it strictly;
* :func:`verify_bitmap` checks a ``.mf`` against its RAW: size, block count, checksums, and a
  seeded sample of blocks that always includes the first and the last block and prefers the
  risky ones: blocks marked 0 where the file system stores data.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

from imageport.durable import atomic_output
from imageport.errors import (
    CorruptImageError,
    ImageportError,
    LimitExceededError,
    UnsupportedImageError,
)
from imageport.fastimport.bitmap_layout import (
    DEFAULT_BLOCK_SIZE,
    MAX_FILE_SIZE,
    Bitmap,
    check_geometry,
    parse_bitmap,
)
from imageport.fastimport.zeroscan import Progress, ScanSource, ZeroScanner
from imageport.source import FileSource, read_exact

__all__ = [
    "DEFAULT_SAMPLES",
    "RULE",
    "NotRawError",
    "ScanResult",
    "VerifyResult",
    "build_bitmap",
    "default_output",
    "ensure_raw",
    "read_bitmap",
    "scan_raw",
    "verify_bitmap",
    "write_bitmap",
]

#: Rule named by every verification failure (the platform's rule for RAW fast import).
RULE = "IMG-FAST-RAW"
DEFAULT_SAMPLES = 64
#: Most samples a verification takes (each costs at most one block read).
MAX_SAMPLES = 1 << 20
#: Data segments walked to find blocks marked 0 that hold allocated data.
MAX_SEGMENTS_WALKED = 1 << 20
#: Blocks looked at while doing so (a fully allocated 1 TiB image in 2 MiB blocks has 2**19).
MAX_BLOCKS_VISITED = 1 << 22
#: Problems listed one by one; more are counted.
MAX_LISTED = 20


class NotRawError(ImageportError):
    """The input is not a RAW image (a bitmap only makes sense for RAW)."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    """A built bitmap and what building it cost."""

    bitmap: Bitmap
    bytes_read: int
    seconds: float


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :func:`verify_bitmap`. ``problems`` break the safety rule; ``warnings``
    are harmless (blocks marked 1 that are all zero)."""

    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    bitmap: Bitmap | None
    blocks_checked: int
    bytes_read: int

    @property
    def ok(self) -> bool:
        return not self.problems


def ensure_raw(path: str | os.PathLike[str]) -> None:
    """Raise :class:`NotRawError` naming the detected format unless ``path`` probes as RAW."""
    from imageport.formats.registry import probe

    with FileSource(path) as source:
        container = probe(source)
    if container.format != "raw":
        detail = f" ({container.variant})" if container.variant else ""
        raise NotRawError(
            f"{os.fspath(path)} is a {container.format}{detail} image, not RAW; a bitmap file "
            "describes a RAW image only (convert it with `imageport convert IN OUT -O raw`)"
        )


def scan_raw(
    raw_path: str | os.PathLike[str],
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: Progress | None = None,
) -> ScanResult:
    """Build the bitmap of ``raw_path``, reading only its allocated bytes."""
    started = time.perf_counter()
    with ScanSource(raw_path) as source:
        check_geometry(source.size, block_size)
        bits = ZeroScanner(source).scan(block_size, progress)
        bitmap = Bitmap(block_size=block_size, image_size=source.size, bits=bytes(bits))
        return ScanResult(bitmap, source.bytes_read, time.perf_counter() - started)


def build_bitmap(
    raw_path: str | os.PathLike[str],
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: Progress | None = None,
) -> Bitmap:
    """The bitmap of ``raw_path`` in ``block_size`` blocks (see :func:`scan_raw`)."""
    return scan_raw(raw_path, block_size, progress).bitmap


def default_output(raw_path: str | os.PathLike[str]) -> str:
    """``disk.raw`` -> ``disk.mf``: same directory and base name, as the platform requires."""
    base, _ext = os.path.splitext(os.fspath(raw_path))
    return base + ".mf"


def write_bitmap(
    bitmap: Bitmap,
    mf_path: str | os.PathLike[str],
    *,
    not_over: str | os.PathLike[str] | None = None,
) -> None:
    """Write ``bitmap`` to ``mf_path`` atomically. Refuses to replace ``not_over`` (the RAW)."""
    dst = os.fspath(mf_path)
    if not_over is not None and os.path.exists(dst) and os.path.samefile(dst, not_over):
        raise ImageportError(f"the bitmap file {dst} is the RAW image itself; choose another name")
    with atomic_output(dst, ".mf.part") as out:
        data = memoryview(bitmap.encode())
        while data:
            data = data[os.write(out.fd, data) :]


def read_bitmap(mf_path: str | os.PathLike[str]) -> Bitmap:
    """Open ``mf_path`` read-only and parse it; the length is capped before anything is read."""
    with FileSource(mf_path) as source:
        if source.size > MAX_FILE_SIZE:
            raise LimitExceededError(
                f"{source.path} is {source.size} bytes, more than a bitmap file can be "
                f"({MAX_FILE_SIZE})"
            )
        data = read_exact(source, 0, source.size, "the bitmap file")
    return parse_bitmap(data, f"bitmap file {os.fspath(mf_path)}")


def _risky_blocks(source: ScanSource, bitmap: Bitmap, limit: int, rng: random.Random) -> list[int]:
    """Up to ``limit`` blocks marked 0 that the file system stores data in (reservoir sample).

    Writing into a RAW after its bitmap was made allocates blocks in its holes, so these are
    where a stale bitmap is wrong; finding them costs ``lseek`` calls, no reads.
    """
    found: list[int] = []
    seen = 0
    visited = 0
    nxt = 0  # first block not yet visited (segments are in order and may share a block)
    bits = bitmap.bits
    for walked, (start, end) in enumerate(source.data_segments(0, bitmap.image_size)):
        if walked >= MAX_SEGMENTS_WALKED or visited >= MAX_BLOCKS_VISITED:
            break
        block = max(start // bitmap.block_size, nxt)
        stop = (end - 1) // bitmap.block_size + 1
        while block < stop and visited < MAX_BLOCKS_VISITED:
            visited += 1
            if block & 7 == 0 and block + 8 <= stop and bits[block >> 3] == 0xFF:
                block += 8  # eight blocks marked 1 at once
                continue
            if not bits[block >> 3] >> (block & 7) & 1:
                seen += 1
                if len(found) < limit:
                    found.append(block)
                else:
                    j = rng.randrange(seen)
                    if j < limit:
                        found[j] = block
            block += 1
        nxt = max(nxt, stop)
    return found


def verify_bitmap(
    raw_path: str | os.PathLike[str],
    mf_path: str | os.PathLike[str],
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    *,
    full: bool = False,
) -> VerifyResult:
    """Check ``mf_path`` against ``raw_path``; deterministic for a given ``seed``.

    An invalid ``.mf`` (bad magic, checksum, length, a newer version...) is a problem in the
    result, not an exception; a file that cannot be opened or read raises :class:`SourceError`.
    Checked: the bitmap file's own consistency, image size and block count, then the first and
    last block, ``samples`` blocks drawn uniformly, and up to ``samples`` blocks marked 0 that
    hold allocated data. With ``full`` every block is checked (the cost of building the bitmap).
    """
    if not 0 <= samples <= MAX_SAMPLES:
        raise LimitExceededError(f"samples is {samples}, outside 0..{MAX_SAMPLES}")
    try:
        bitmap = read_bitmap(mf_path)
    except (CorruptImageError, UnsupportedImageError) as exc:
        return VerifyResult((f"{RULE}: {exc}",), (), None, 0, 0)
    with ScanSource(raw_path) as source:
        if source.size != bitmap.image_size:
            count = -(-source.size // bitmap.block_size)
            return VerifyResult(
                (
                    f"{RULE}: the bitmap describes an image of {bitmap.image_size} bytes "
                    f"({bitmap.block_count} blocks) but {source.path} is {source.size} bytes "
                    f"({count} blocks); the bitmap belongs to another file or is out of date",
                ),
                (),
                bitmap,
                0,
                0,
            )
        scanner = ZeroScanner(source)
        if full:
            actual = int.from_bytes(scanner.scan(bitmap.block_size), "little")
            marked = int.from_bytes(bitmap.bits, "little")
            lost_bits, wasted_bits = actual & ~marked, marked & ~actual
            lost, n_lost = _bit_indexes(lost_bits, MAX_LISTED), lost_bits.bit_count()
            wasted, n_wasted = _bit_indexes(wasted_bits, MAX_LISTED), wasted_bits.bit_count()
            checked = bitmap.block_count
        else:
            lost, wasted, checked = _sampled(scanner, bitmap, samples, seed)
            n_lost, n_wasted = len(lost), len(wasted)
        problems = [_lost_message(bitmap, block) for block in lost[:MAX_LISTED]]
        if n_lost > MAX_LISTED:
            problems.append(f"{RULE}: and {n_lost - MAX_LISTED} more such blocks")
        warnings = [
            f"block {block} is marked as data but is all zero" for block in wasted[:MAX_LISTED]
        ]
        if n_wasted > MAX_LISTED:
            warnings.append(f"and {n_wasted - MAX_LISTED} more blocks marked as data are zero")
        return VerifyResult(tuple(problems), tuple(warnings), bitmap, checked, source.bytes_read)


def _sampled(
    scanner: ZeroScanner, bitmap: Bitmap, samples: int, seed: int
) -> tuple[list[int], list[int], int]:
    """(blocks marked 0 with data, blocks marked 1 without, blocks checked) over a sample."""
    count = bitmap.block_count
    rng = random.Random(seed)  # noqa: S311 - sampling, not secrecy; seeded to be repeatable
    if samples >= count:
        picks: list[int] = list(range(count))
    else:
        chosen = {0, count - 1}
        chosen.update(rng.sample(range(count), samples))
        chosen.update(_risky_blocks(scanner.source, bitmap, samples, rng))
        picks = sorted(chosen)
    lost: list[int] = []
    wasted: list[int] = []
    for block in picks:
        has_data = scanner.block_has_data(*bitmap.block_range(block))
        if has_data != bitmap.is_set(block):
            (lost if has_data else wasted).append(block)
    return lost, wasted, len(picks)


def _bit_indexes(value: int, limit: int) -> list[int]:
    """Indexes of the lowest ``limit`` set bits of ``value``, lowest first."""
    out: list[int] = []
    while value and len(out) < limit:
        low = value & -value
        out.append(low.bit_length() - 1)
        value ^= low
    return out


def _lost_message(bitmap: Bitmap, block: int) -> str:
    start, end = bitmap.block_range(block)
    return (
        f"{RULE}: block {block} (bytes {start}..{end - 1}) holds data but the bitmap marks it "
        "empty, so fast import would not copy it; the RAW changed after the bitmap was made: "
        "build the bitmap again"
    )
