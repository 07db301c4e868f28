"""ZVHD / ZVHD2: files from the test writer read back byte-exactly; hostile files refused."""

from __future__ import annotations

import random
import struct
import time
import zlib
from pathlib import Path

import pytest
import zstandard

from imageport.disk.base import ExtentState
from imageport.errors import CorruptImageError, ImageportError
from imageport.fastimport.zvhd_writer import Method
from imageport.formats import registry
from imageport.formats.base import Container
from imageport.source import BytesSource, FileSource
from support import zvhd_writer as zw
from support.exactness import assert_allocation_consistent, assert_reads_match

MiB = 1 << 20


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zvhd")


def _check_pattern(image: Path, pattern_raw: Path, fmt: str, variant: str) -> None:
    with FileSource(image) as src:
        c = registry.probe(src)
        assert (c.format, c.variant, c.readable) == (fmt, variant, True)
        assert c.virtual_size == pattern_raw.stat().st_size
        assert c.properties["qemu-img-hw virtual size"] == str(1 << 30)
        assert c.opener is not None
        disk = c.opener(src)
        assert_reads_match(disk, pattern_raw, random_reads=60)
        assert_allocation_consistent(disk, pattern_raw)
        holes = [e for e in disk.allocation() if e.state is ExtentState.HOLE]
        assert holes, "zero blocks must map as holes"


def test_zvhd_pattern_reads_back(pattern_raw: Path, out_dir: Path) -> None:
    image = zw.write_zvhd(pattern_raw, out_dir / "p.zvhd")
    _check_pattern(image, pattern_raw, "zvhd", "zvhd")


@pytest.mark.parametrize(
    ("method", "block_size", "with_zero"),
    [
        ("zstd", 2 * MiB, False),
        ("zstd", 1 * MiB, False),
        ("zlib", 2 * MiB, False),
        ("zlib", 1 * MiB, False),
        ("zstd", 2 * MiB, True),
    ],
)
def test_zvhd2_pattern_reads_back(
    pattern_raw: Path, out_dir: Path, method: Method, block_size: int, with_zero: bool
) -> None:
    image = zw.write_zvhd2(
        pattern_raw,
        out_dir / f"p-{method}-{block_size}-{with_zero}.zvhd2",
        block_size=block_size,
        method=method,
        index_contains_zero_blk=with_zero,
    )
    _check_pattern(image, pattern_raw, "zvhd2", f"zvhd2 ({method})")


def test_zvhd_reads_backwards_through_the_stateful_stream(pattern_raw: Path, out_dir: Path) -> None:
    image = zw.write_zvhd(pattern_raw, out_dir / "back.zvhd")
    ref = pattern_raw.read_bytes()
    with FileSource(image) as src:
        c = registry.probe(src)
        assert c.opener is not None
        disk = c.opener(src)
        for off in (47 * MiB, 20 * MiB + 5, 1 * MiB, 36 * MiB + 7, 0):
            assert disk.read(off, 70000) == ref[off : off + 70000]


# -- small hand-made files for the hostile cases ---------------------------------------------


@pytest.fixture(scope="module")
def small_raw(out_dir: Path) -> Path:
    rng = random.Random(5)
    path = out_dir / "small.raw"
    path.write_bytes(rng.randbytes(2 * MiB) + bytes(2 * MiB) + b"x" * (2 * MiB - 512) + bytes(512))
    return path


def _bytes_of(path: Path) -> bytearray:
    return bytearray(path.read_bytes())


def _probe(data: bytes | bytearray) -> Container:
    return registry.probe(BytesSource(bytes(data)))


def _read_all(data: bytes | bytearray) -> bytes:
    c = _probe(data)
    assert c.damage is None, c.damage
    assert c.opener is not None
    disk = c.opener(BytesSource(bytes(data)))
    return disk.read(0, disk.virtual_size)


def _zvhd2(small_raw: Path, out_dir: Path, method: Method = "zstd") -> bytearray:
    return _bytes_of(zw.write_zvhd2(small_raw, out_dir / f"small-{method}.zvhd2", method=method))


def _final(data: bytearray) -> int:
    return len(data) - zw.FOOTER_AREA


def _patch_final(data: bytearray, offset: int, fmt: str, value: int) -> bytearray:
    """Set a final-footer field and fix the checksum, so only the field is hostile."""
    base = _final(data)
    struct.pack_into(fmt, data, base + offset, value)
    data[base : base + 512] = zw.with_checksum(data[base : base + 512])
    return data


def _index_lba(data: bytearray) -> int:
    return int(struct.unpack_from("<Q", data, _final(data) + 96)[0])


def test_small_files_read_back(small_raw: Path, out_dir: Path) -> None:
    want = small_raw.read_bytes()
    assert _read_all(_zvhd2(small_raw, out_dir)) == want
    assert _read_all(_zvhd2(small_raw, out_dir, "zlib")) == want
    assert _read_all(_bytes_of(zw.write_zvhd(small_raw, out_dir / "small.zvhd"))) == want


def test_index_entry_beyond_eof(small_raw: Path, out_dir: Path) -> None:
    data = _zvhd2(small_raw, out_dir)
    struct.pack_into("<Q", data, _index_lba(data), 1 << 40)
    c = _probe(data)
    assert c.damage is not None and "index entry 0" in c.damage


def test_absurd_record_len(small_raw: Path, out_dir: Path) -> None:
    data = _zvhd2(small_raw, out_dir)
    struct.pack_into("<I", data, _index_lba(data) + 12, 0xFFFFFFF0)
    c = _probe(data)
    assert c.damage is not None and "record length" in c.damage


def test_block_no_beyond_max_blk_num(small_raw: Path, out_dir: Path) -> None:
    data = _zvhd2(small_raw, out_dir)
    struct.pack_into("<I", data, _index_lba(data) + 16 + 8, 1000)
    c = _probe(data)
    assert c.damage is not None and "beyond max_blk_num" in c.damage


def test_bad_footer_checksum(small_raw: Path, out_dir: Path) -> None:
    data = _zvhd2(small_raw, out_dir)
    data[_final(data) + 40] ^= 1  # orig_size, checksum left stale
    c = _probe(data)
    assert c.damage is not None and "checksum" in c.damage
    data = _bytes_of(zw.write_zvhd(small_raw, out_dir / "small.zvhd"))
    data[100] ^= 1
    assert "checksum" in (_probe(data).damage or "")


def test_huge_index_and_counts_fail_fast(small_raw: Path, out_dir: Path) -> None:
    cases = [
        (112, "<I", 0xFFFFFFF0),
        (96, "<Q", 1 << 40),
        (136, "<I", 1 << 31),
        (88, "<I", 1 << 30),
        (92, "<I", 1 << 31),
        (104, "<Q", 1 << 62),
    ]
    for offset, fmt, value in cases:
        data = _patch_final(_zvhd2(small_raw, out_dir), offset, fmt, value)
        started = time.monotonic()
        c = _probe(data)
        assert c.damage is not None, (offset, value)
        assert time.monotonic() - started < 1


def _replace_payload(data: bytearray, record_offset: int, payload: bytes) -> None:
    """Put ``payload`` into the record at ``record_offset`` (it must fit the record)."""
    size = struct.unpack_from("<I", data, record_offset + 12)[0]
    assert len(payload) <= size
    struct.pack_into("<I", data, record_offset + 12, len(payload))
    data[record_offset + 48 : record_offset + 48 + size] = payload.ljust(size, b"\0")


@pytest.mark.parametrize("method", ["zstd", "zlib"])
def test_decompression_bomb_is_bounded(small_raw: Path, out_dir: Path, method: Method) -> None:
    data = _zvhd2(small_raw, out_dir, method)
    if method == "zstd":
        bomb = zstandard.ZstdCompressor().compress(bytes(64 * MiB))
    else:
        bomb = zlib.compress(bytes(64 * MiB), 9)
    _replace_payload(data, zw.FOOTER_AREA, bomb)
    c = _probe(data)
    assert c.opener is not None
    disk = c.opener(BytesSource(bytes(data)))
    started = time.monotonic()
    with pytest.raises(CorruptImageError, match="more than 2097152 bytes"):
        disk.read(0, 512)
    assert time.monotonic() - started < 2


def test_zvhd_bomb_and_garbage_records(small_raw: Path, out_dir: Path) -> None:
    base = _bytes_of(zw.write_zvhd(small_raw, out_dir / "small.zvhd"))
    head = base[: zw.FOOTER_AREA]
    bomb = zw.pack_record(zlib.compress(bytes(64 * MiB), 9), 0)
    with pytest.raises(CorruptImageError, match="more than"):
        _read_all(head + bomb + head)
    data = bytearray(base)
    data[zw.FOOTER_AREA + 48 : zw.FOOTER_AREA + 50] = b"\xff\xff"  # the zlib header
    with pytest.raises(CorruptImageError):
        _read_all(data)
    data = bytearray(base)
    struct.pack_into("<I", data, zw.FOOTER_AREA + 12, 0x7FFFFFFF)  # absurd record size
    assert _probe(data).damage is not None
    data = bytearray(base)
    data[-4096 + 200] ^= 1  # footer copy differs from the header
    assert "footer copy" in (_probe(data).damage or "")


def test_zvhd_records_out_of_order(out_dir: Path) -> None:
    size = 8 * MiB
    head = zw.footer_area(zw.pack_footer(zw.FooterFields(cookie=b"stream", orig_size=size)))
    rec = zw.pack_record(zlib.compress(b"a" * (2 * MiB)), 2)
    data = head + rec + zw.pack_record(zlib.compress(b"b" * (2 * MiB)), 1) + head
    assert "out of order" in (_probe(data).damage or "")
    # records that each end their own zlib stream are read too
    data = head + rec + zw.pack_record(zlib.compress(b"b" * (2 * MiB)), 3) + head
    assert _read_all(data) == bytes(4 * MiB) + b"a" * (2 * MiB) + b"b" * (2 * MiB)


def test_truncated_files_are_damage(small_raw: Path, out_dir: Path) -> None:
    for data in (
        _zvhd2(small_raw, out_dir),
        _bytes_of(zw.write_zvhd(small_raw, out_dir / "small.zvhd")),
    ):
        for cut in (100, 4096, 8192, len(data) // 2, len(data) - 4096, len(data) - 1):
            c = _probe(data[:cut])
            assert c.format in ("zvhd", "zvhd2") and c.damage is not None, cut


def test_fuzzed_final_footer_raises_only_our_errors(small_raw: Path, out_dir: Path) -> None:
    base = _zvhd2(small_raw, out_dir)
    for pos in range(84, 144, 4):
        for val in (0, 1, 0x1000, 0x7FFFFFFF, 0xFFFFFFFF):
            data = _patch_final(bytearray(base), pos, "<I", val)
            c = _probe(data)
            if c.opener is not None and c.damage is None:
                try:
                    c.opener(BytesSource(bytes(data))).read(0, 6 * MiB)
                except ImageportError:
                    pass
