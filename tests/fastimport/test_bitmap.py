"""The RAW bitmap file (.mf): built from sparse RAW images of realistic apparent size, checked
bit by bit against the data written, parsed strictly, verified, and driven through the CLI.

The large images are sparse files made with ``truncate``: a small synthetic Linux guest
(``guest_fixtures``) copied sparse to the start, then a few MiB written in the middle and at
the very end, an allocated block of zeros, and a block whose only non-zero byte is its last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from imageport.errors import (
    ImageportError,
    LimitExceededError,
    SourceError,
    TruncatedImageError,
    UnsupportedImageError,
)
from imageport.fastimport import bitmap as mf
from imageport.fastimport.bitmap_layout import (
    HEADER,
    HEADER_CRC_SPAN,
    HEADER_SIZE,
    MAX_FILE_SIZE,
    Bitmap,
    BitmapFileError,
    Header,
    parse_bitmap,
)
from imageport.fastimport.zeroscan import ScanSource
from support import builders, guest_fixtures

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
BS = 2 * MiB
IMAGEPORT = Path(sys.executable).parent / "imageport"


@dataclass(frozen=True)
class SparseRaw:
    """A sparse RAW file and the blocks (of ``block_size``) that hold a non-zero byte."""

    path: Path
    size: int
    #: every range written (offset, data), the guest included
    writes: tuple[tuple[int, bytes], ...]
    zero_block: int  # allocated, all zeros (2 MiB blocks)
    last_byte_block: int  # only its last byte is non-zero (2 MiB blocks)

    def expected(self, block_size: int) -> set[int]:
        """The oracle: blocks with a non-zero byte, from the data written (no holes read)."""
        found: set[int] = set()
        for offset, data in self.writes:
            pos = 0
            while pos < len(data):
                block = (offset + pos) // block_size
                end = min(len(data), (block + 1) * block_size - offset)
                if data[pos:end].count(0) != end - pos:
                    found.add(block)
                pos = end
        return found


def _guest_bytes() -> tuple[Path, bytes]:
    path = guest_fixtures.synthetic_guest()
    return path, path.read_bytes()


def make_sparse(tmp: Path, size: int, name: str) -> SparseRaw:
    """A RAW of apparent ``size`` with a Linux guest at the start and data in four places."""
    guest_path, guest = _guest_bytes()
    path = tmp / f"{name}.raw"
    subprocess.run(["cp", "--sparse=always", str(guest_path), str(path)], check=True)
    rng = random.Random(size)
    middle = size // 2 + 3 * 4096  # unaligned, crosses block boundaries
    zero_block = (size // 3) // BS
    last_byte_block = zero_block + 5
    last_byte = bytearray(BS)
    last_byte[-1] = 0x5A
    lone = bytearray(4096)
    lone[1000] = 1
    writes = [
        (0, guest),
        (middle, rng.randbytes(3 * MiB)),
        (zero_block * BS, bytes(BS)),  # allocated but all zero: bit 0
        (last_byte_block * BS, bytes(last_byte)),
        (size // 4 + 12345, bytes(lone)),  # one non-zero byte in a 4 KiB write
        (size - MiB - 512, rng.randbytes(MiB) + bytes(511) + b"\x01"),  # the very end
    ]
    with open(path, "r+b") as f:
        f.truncate(size)
        for offset, data in writes[1:]:
            f.seek(offset)
            f.write(data)
    return SparseRaw(path, size, tuple(writes), zero_block, last_byte_block)


def set_blocks(bitmap: Bitmap) -> set[int]:
    out: set[int] = set()
    for i, byte in enumerate(bitmap.bits):
        if byte:
            out.update(i * 8 + b for b in range(8) if byte >> b & 1)
    return out


def allocated(path: Path) -> int:
    with ScanSource(path) as s:
        return sum(end - start for start, end in s.data_segments(0, s.size))


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> SparseRaw:
    return make_sparse(tmp_path_factory.mktemp("big"), 200 * GiB, "disk200g")


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> SparseRaw:
    return make_sparse(tmp_path_factory.mktemp("huge"), 3 * TiB // 2, "disk1536g")


# --- building -----------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [64 * KiB, 2 * MiB, 64 * MiB])
def test_bitmap_of_200g_matches_the_data_bit_by_bit(big: SparseRaw, block_size: int) -> None:
    result = mf.scan_raw(big.path, block_size)
    bm = result.bitmap
    assert (bm.image_size, bm.block_size) == (200 * GiB, block_size)
    assert len(bm.bits) == -(-(200 * GiB // block_size) // 8)
    assert set_blocks(bm) == big.expected(block_size)
    assert result.bytes_read <= allocated(big.path)


def test_zero_and_last_byte_blocks(big: SparseRaw) -> None:
    bm = mf.build_bitmap(big.path)
    with ScanSource(big.path) as s:  # the zero block really is allocated: it had to be read
        assert list(s.data_segments(big.zero_block * BS, (big.zero_block + 1) * BS))
    assert not bm.is_set(big.zero_block)
    assert bm.is_set(big.last_byte_block)
    assert not bm.is_set(big.last_byte_block - 1)
    assert bm.is_set(bm.block_count - 1)  # the very end
    assert bm.is_set(0)  # the guest's partition table


def test_1_5_tib_reads_only_allocated_bytes_quickly(huge: SparseRaw) -> None:
    started = time.perf_counter()
    result = mf.scan_raw(huge.path)
    elapsed = time.perf_counter() - started
    assert result.bitmap.image_size == 1536 * GiB
    assert set_blocks(result.bitmap) == huge.expected(BS)
    data = allocated(huge.path)
    assert data < 64 * MiB
    assert result.bytes_read <= data
    assert elapsed < 5.0, f"scanning 1.5 TiB apparent took {elapsed:.2f} s"


def test_partial_last_block_and_no_seek_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "odd.raw"
    size = 10 * BS + 512
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(size - 1)
        f.write(b"\x07")
        f.seek(3 * BS + 77)
        f.write(b"\x01")
    expected = {3, 10}
    assert set_blocks(mf.build_bitmap(path)) == expected
    # where SEEK_DATA is not supported the whole file is data: same answer, more reading
    monkeypatch.setattr(ScanSource, "data_segments", lambda self, a, b: iter([(a, b)]))
    result = mf.scan_raw(path)
    assert set_blocks(result.bitmap) == expected
    # blocks 0-2 and 4-9 are read whole, 3 stops after its first 64 KiB piece, 10 is 512 bytes
    assert result.bytes_read == 9 * BS + 64 * KiB + 512


def test_progress_reaches_the_end(big: SparseRaw) -> None:
    calls: list[tuple[int, int]] = []
    mf.build_bitmap(big.path, BS, lambda done, total: calls.append((done, total)))
    assert calls[-1] == (200 * GiB, 200 * GiB)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_empty_image(tmp_path: Path) -> None:
    path = tmp_path / "empty.raw"
    path.write_bytes(b"")
    bm = mf.build_bitmap(path)
    assert (bm.block_count, bm.bits) == (0, b"")
    assert parse_bitmap(bm.encode()) == bm


# --- the file: round trip and corruptions ---------------------------------------------------


def test_round_trip_and_layout(big: SparseRaw, tmp_path: Path) -> None:
    bm = mf.build_bitmap(big.path)
    out = tmp_path / "disk.mf"
    mf.write_bitmap(bm, out)
    data = out.read_bytes()
    assert len(data) == 96 + 200 * GiB // BS // 8
    assert mf.read_bitmap(out) == bm == parse_bitmap(data)
    head = Header(*HEADER.unpack_from(data))
    assert head.magic == b"IPBITMAP" and head.version == 1 and head.header_size == 96
    assert (head.block_size, head.image_size, head.block_count) == (BS, 200 * GiB, 102400)
    assert head.set_bits == len(big.expected(BS))
    assert head.bitmap_sha256 == hashlib.sha256(data[96:]).digest()
    assert head.header_crc32 == zlib.crc32(data[:92])
    # LSB first: block n is bit n % 8 of byte n // 8
    n = big.last_byte_block
    assert data[96 + n // 8] >> (n % 8) & 1
    assert not list(tmp_path.glob(".imageport-*"))  # no temporary file left behind


def _small() -> bytes:
    bits = bytearray(2)  # 13 blocks: 3 padding bits in the second byte
    bits[0] = 0b1000_0001
    bits[1] = 0b0001_0000
    return Bitmap(block_size=64 * KiB, image_size=12 * 64 * KiB + 1, bits=bytes(bits)).encode()


def _rewrite(data: bytes, *, bits: dict[int, int] | None = None, **fields: int | bytes) -> bytes:
    """``data`` with header fields (and bitmap bytes) replaced, the header CRC and the bitmap
    SHA-256 recomputed, so that only the named fault remains."""
    body = bytearray(data[HEADER_SIZE:])
    for index, value in (bits or {}).items():
        body[index] = value
    # mypy checks every field against the int | bytes union: the caller names the right type
    head = dataclasses.replace(Header(*HEADER.unpack_from(data)), **fields)  # type: ignore[arg-type]
    head = dataclasses.replace(head, bitmap_sha256=hashlib.sha256(body).digest())
    raw = bytearray(HEADER.pack(*dataclasses.astuple(head)))
    struct.pack_into("<I", raw, HEADER_CRC_SPAN, zlib.crc32(raw[:HEADER_CRC_SPAN]))
    return bytes(raw) + bytes(body)


def _flip(data: bytes, offset: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 0x40
    return bytes(b)


#: name -> (the change to a valid file, the error it must raise, words of its message)
CORRUPTIONS: dict[str, tuple[Callable[[bytes], bytes], type[ImageportError], str]] = {
    "bad magic": (lambda d: b"QFI\xfb" + d[4:], BitmapFileError, "magic"),
    "newer version": (lambda d: _rewrite(d, version=2), UnsupportedImageError, "version 2"),
    "version 0": (lambda d: _rewrite(d, version=0), BitmapFileError, "version 0"),
    "header checksum": (lambda d: _flip(d, 20), BitmapFileError, "header checksum"),
    "header size": (lambda d: _rewrite(d, header_size=128), BitmapFileError, "128-byte"),
    "image size": (
        lambda d: _rewrite(d, image_size=40 * 64 * KiB),
        BitmapFileError,
        "declares 13 blocks",
    ),
    "block count": (lambda d: _rewrite(d, block_count=14), BitmapFileError, "declares 14"),
    "block size": (lambda d: _rewrite(d, block_size=3 * 64 * KiB), BitmapFileError, "power of two"),
    "tiny blocks": (lambda d: _rewrite(d, block_size=4096), BitmapFileError, "64 KiB"),
    "huge image": (lambda d: _rewrite(d, image_size=1 << 60), LimitExceededError, "image size"),
    "truncated bitmap": (lambda d: d[:-1], TruncatedImageError, "need 98"),
    "truncated header": (lambda d: d[:50], TruncatedImageError, "header"),
    "bitmap checksum": (lambda d: _flip(d, 96), BitmapFileError, "SHA-256"),
    "trailing garbage": (lambda d: d + b"\0", BitmapFileError, "trailing"),
    "padding bits": (lambda d: _rewrite(d, bits={1: 0b0011_0000}), BitmapFileError, "padding bits"),
    "set bits": (lambda d: _rewrite(d, set_bits=4), BitmapFileError, "declares 4 blocks"),
    "flags": (lambda d: _rewrite(d, flags=1), BitmapFileError, "flags"),
    "reserved": (lambda d: _rewrite(d, reserved=b"\1" + bytes(11)), BitmapFileError, "reserved"),
}


def test_small_bitmap_is_valid() -> None:
    bm = parse_bitmap(_small())
    assert set_blocks(bm) == {0, 7, 12} and bm.block_count == 13 and bm.set_bits == 3


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_is_refused(name: str, tmp_path: Path) -> None:
    mutate, error, words = CORRUPTIONS[name]
    bad = mutate(_small())
    with pytest.raises(error, match=words):
        parse_bitmap(bad)
    path = tmp_path / "bad.mf"
    path.write_bytes(bad)
    with pytest.raises(error, match=words):
        mf.read_bitmap(path)


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.mf"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_SIZE + 1)
    with pytest.raises(LimitExceededError, match="more than a bitmap file can be"):
        mf.read_bitmap(path)


def test_bitmap_object_refuses_inconsistent_bits() -> None:
    with pytest.raises(BitmapFileError, match="past the last block"):
        Bitmap(block_size=64 * KiB, image_size=64 * KiB, bits=b"\x02")
    with pytest.raises(BitmapFileError, match="holds 2 bytes"):
        Bitmap(block_size=64 * KiB, image_size=64 * KiB, bits=b"\x01\x00")


# --- verification ---------------------------------------------------------------------------


def test_verify_fresh_bitmap(big: SparseRaw, tmp_path: Path) -> None:
    out = tmp_path / "d.mf"
    mf.write_bitmap(mf.build_bitmap(big.path), out)
    result = mf.verify_bitmap(big.path, out, samples=32, seed=7)
    assert result.ok and not result.warnings
    assert 34 <= result.blocks_checked <= 34 + 32
    assert result == mf.verify_bitmap(big.path, out, samples=32, seed=7)  # deterministic
    assert mf.verify_bitmap(big.path, out, full=True).ok


def _copy(src: SparseRaw, tmp: Path) -> Path:
    dst = tmp / "copy.raw"
    subprocess.run(["cp", "--sparse=always", str(src.path), str(dst)], check=True)
    return dst


def test_verify_detects_data_written_after_the_bitmap(huge: SparseRaw, tmp_path: Path) -> None:
    raw = _copy(huge, tmp_path)
    out = tmp_path / "copy.mf"
    mf.write_bitmap(mf.build_bitmap(raw), out)
    hole_block = 400_000  # far from any data: a hole marked 0
    with open(raw, "r+b") as f:
        f.seek(hole_block * BS + 4096)
        f.write(b"new data")
        f.seek(huge.zero_block * BS + BS - 1)  # the allocated zero block, marked 0
        f.write(b"\x01")
    result = mf.verify_bitmap(raw, out, samples=8, seed=1)
    assert not result.ok
    text = "\n".join(result.problems)
    assert "IMG-FAST-RAW" in text
    assert f"block {hole_block} " in text and f"block {huge.zero_block} " in text
    assert result.bytes_read < 16 * MiB
    assert not mf.verify_bitmap(raw, out, full=True).ok


def test_verify_always_checks_first_and_last_block(tmp_path: Path) -> None:
    raw = tmp_path / "alloc.raw"
    raw.write_bytes(bytes(64 * 64 * KiB))  # allocated, all zero: every block is "risky"
    out = tmp_path / "alloc.mf"
    mf.write_bitmap(mf.build_bitmap(raw, 64 * KiB), out)
    with open(raw, "r+b") as f:
        f.write(b"\1")
        f.seek(-1, os.SEEK_END)
        f.write(b"\1")
    result = mf.verify_bitmap(raw, out, samples=1, seed=3)
    assert result.blocks_checked <= 4
    assert [p.split(" (")[0] for p in result.problems] == [
        "IMG-FAST-RAW: block 0",
        "IMG-FAST-RAW: block 63",
    ]


def test_verify_warns_on_block_marked_1_now_zero(tmp_path: Path) -> None:
    raw = tmp_path / "w.raw"
    with open(raw, "wb") as f:
        f.truncate(8 * BS)
        f.seek(5 * BS)
        f.write(b"\xff" * 100)
    out = tmp_path / "w.mf"
    mf.write_bitmap(mf.build_bitmap(raw), out)
    with open(raw, "r+b") as f:
        f.seek(5 * BS)
        f.write(bytes(100))
    result = mf.verify_bitmap(raw, out, samples=100)
    assert result.ok
    assert result.warnings == ("block 5 is marked as data but is all zero",)


def test_verify_size_mismatch_and_corrupt_bitmap(big: SparseRaw, tmp_path: Path) -> None:
    out = tmp_path / "d.mf"
    mf.write_bitmap(mf.build_bitmap(big.path), out)
    other = tmp_path / "other.raw"
    with open(other, "wb") as f:
        f.truncate(200 * GiB + BS)
    result = mf.verify_bitmap(other, out)
    assert not result.ok and "of 214748364800 bytes" in result.problems[0]
    good = out.read_bytes()
    out.write_bytes(_rewrite(good, version=2))
    result = mf.verify_bitmap(big.path, out)
    assert not result.ok and "version 2" in result.problems[0]
    out.write_bytes(_flip(good, 200))
    result = mf.verify_bitmap(big.path, out)
    assert not result.ok and "SHA-256" in result.problems[0]
    with pytest.raises(SourceError):
        mf.verify_bitmap(big.path, tmp_path / "missing.mf")


def test_write_refuses_to_replace_the_raw(tmp_path: Path) -> None:
    raw = tmp_path / "x.raw"
    raw.write_bytes(b"\1" * 4096)
    with pytest.raises(ImageportError, match="is the RAW image itself"):
        mf.write_bitmap(mf.build_bitmap(raw), raw, not_over=raw)
    assert raw.read_bytes() == b"\1" * 4096


# --- the command line (the real entry point) ------------------------------------------------


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if not IMAGEPORT.exists():
        raise RuntimeError(f"the imageport entry point is missing at {IMAGEPORT}; pip install -e .")
    return subprocess.run(
        [str(IMAGEPORT), *map(str, args)], capture_output=True, text=True, check=False, timeout=120
    )


def test_cli_writes_and_verifies(big: SparseRaw, tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    os.symlink(big.path, raw)
    proc = run("bitmap", raw)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "102400 blocks of 2 MiB" in proc.stdout
    assert mf.read_bitmap(tmp_path / "disk.mf") == mf.build_bitmap(big.path)
    proc = run("bitmap", "--verify", raw, tmp_path / "disk.mf", "--samples", "10")
    assert proc.returncode == 0, proc.stderr
    assert "matches" in proc.stdout

    proc = run("bitmap", raw, "-o", tmp_path / "small.mf", "--block-size", "64K", "-p")
    assert proc.returncode == 0, proc.stderr
    assert "100.00/100%" in proc.stderr
    assert mf.read_bitmap(tmp_path / "small.mf").block_size == 64 * KiB


def test_cli_verify_mismatch_exit_1(tmp_path: Path) -> None:
    raw = tmp_path / "m.raw"
    with open(raw, "wb") as f:
        f.truncate(64 * BS)
    assert run("bitmap", raw).returncode == 0
    with open(raw, "r+b") as f:
        f.seek(40 * BS)
        f.write(b"late")
    proc = run("bitmap", "--verify", raw, tmp_path / "m.mf")
    assert proc.returncode == 1
    assert "IMG-FAST-RAW" in proc.stderr and "block 40 " in proc.stderr
    (tmp_path / "m.mf").write_bytes(b"IPBITMAP" + bytes(100))
    proc = run("bitmap", "--verify", raw, tmp_path / "m.mf")
    assert proc.returncode == 1 and "IMG-FAST-RAW" in proc.stderr and "version 0" in proc.stderr


def test_cli_refuses_non_raw_and_misuse(tmp_path: Path) -> None:
    qcow = tmp_path / "d.qcow2"
    builders.qemu_img("create", "-q", "-f", "qcow2", str(qcow), "1G")
    proc = run("bitmap", qcow)
    assert proc.returncode == 2 and "qcow2" in proc.stderr and "not RAW" in proc.stderr
    assert not (tmp_path / "d.mf").exists()
    raw = tmp_path / "r.raw"
    raw.write_bytes(bytes(BS))
    cases: list[tuple[tuple[str | Path, ...], str]] = [
        (("bitmap", "--verify", raw), "--verify needs"),
        (("bitmap", raw, tmp_path / "x.mf"), "name the output with -o"),
        (("bitmap", raw, "--block-size", "3"), "power of two"),
        (("bitmap", raw, "--block-size", "big"), "not a size"),
        (("bitmap", raw, "-o", raw), "is the RAW image itself"),
        (("bitmap", "--verify", raw, tmp_path / "none.mf"), "cannot open"),
        (("bitmap", tmp_path / "none.raw"), "cannot open"),
    ]
    for args, words in cases:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert words in proc.stderr, (args, proc.stderr)
    assert raw.read_bytes() == bytes(BS)


def test_cli_help_is_quick_to_import() -> None:
    code = (
        "import sys, imageport.cli.bitmap; "
        "print(any(m.startswith('imageport.fastimport') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
    assert shutil.which("cp"), "cp is needed by these tests"
