"""LZO1X decompressor: round trips against the ``lzop`` tool, and hostile streams.

Reference streams come from ``lzop`` (LZO1X-1 at ``-1``, LZO1X-999 at ``-9``); the lzop
container (header, then blocks of big-endian lengths and checksums) is unwrapped here.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from imageport.errors import CorruptImageError, ImageportError, LimitExceededError
from imageport.guest.fs import lzo

LZOP_MAGIC = b"\x89LZO\x00\r\n\x1a\n"
F_ADLER32_D, F_ADLER32_C, F_CRC32_D, F_CRC32_C, F_H_FILTER = 0x1, 0x2, 0x100, 0x200, 0x800


def lzop_tool() -> str:
    path = shutil.which("lzop")
    if path is None:
        pytest.fail("lzop is not installed (apt-get install lzop): needed for LZO reference data")
    return path


def lzop_blocks(container: bytes) -> list[tuple[bytes, int, bytes]]:
    """(compressed block, decompressed length, adler32 BE of the output) for each block."""
    assert container.startswith(LZOP_MAGIC)
    pos = len(LZOP_MAGIC)
    version, _lib, _needed, _method, _level, flags = struct.unpack_from(">HHHBBI", container, pos)
    assert version >= 0x0940
    pos += 12
    if flags & F_H_FILTER:
        pos += 4
    pos += 12  # mode, mtime low, mtime high
    pos += 1 + container[pos] + 4  # name, header checksum
    blocks: list[tuple[bytes, int, bytes]] = []
    while True:
        (dst_len,) = struct.unpack_from(">I", container, pos)
        pos += 4
        if dst_len == 0:
            return blocks
        (src_len,) = struct.unpack_from(">I", container, pos)
        pos += 4
        dst_check = b""
        if flags & (F_ADLER32_D | F_CRC32_D):
            dst_check = container[pos : pos + 4]
            pos += 4
        if src_len < dst_len and flags & (F_ADLER32_C | F_CRC32_C):
            pos += 4
        block = container[pos : pos + src_len]
        pos += src_len
        if src_len < dst_len:  # stored blocks are not LZO streams
            blocks.append((block, dst_len, dst_check))


def sample_text(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghij") for _ in range(rng.randint(2, 9))) for _ in range(300)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
        if rng.random() < 0.01:
            out += rng.randbytes(rng.randint(1, 40))  # a little noise: literal runs
        if rng.random() < 0.002:
            out += bytes(rng.randint(1, 5000))  # long zero runs: overlapping matches
    return bytes(out[:size])


@pytest.fixture(scope="module")
def lzop_samples(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, bytes]]:
    """(LZO stream, expected output) pairs made by lzop at levels 1 and 9."""
    tool = lzop_tool()
    tmp: Path = tmp_path_factory.mktemp("lzo")
    pairs = []
    for seed, size in ((1, 700_000), (2, 4096), (3, 17)):
        text = sample_text(seed, size)
        src = tmp / f"s{seed}.txt"
        src.write_bytes(text)
        for level in ("-1", "-9"):
            out = tmp / f"s{seed}{level}.lzo"
            subprocess.run([tool, "-f", level, "-o", str(out), str(src)], check=True)
            offset = 0
            for block, dst_len, check in lzop_blocks(out.read_bytes()):
                expected = text[offset : offset + dst_len]
                assert struct.pack(">I", zlib.adler32(expected)) == check
                pairs.append((block, expected))
                offset += dst_len
    assert len(pairs) >= 6
    return pairs


def test_lzop_round_trip(lzop_samples: list[tuple[bytes, bytes]]) -> None:
    for block, expected in lzop_samples:
        assert lzo.decompress(block, len(expected)) == expected


def test_output_cap_is_enforced(lzop_samples: list[tuple[bytes, bytes]]) -> None:
    block, expected = lzop_samples[0]
    with pytest.raises(LimitExceededError):
        lzo.decompress(block, len(expected) - 1)


def test_truncated_streams_fail_closed(lzop_samples: list[tuple[bytes, bytes]]) -> None:
    block, expected = max(lzop_samples, key=lambda p: len(p[1]) if len(p[1]) < 10000 else 0)
    for cut in range(len(block)):
        with pytest.raises(CorruptImageError):
            lzo.decompress(block[:cut], len(expected))


def test_hand_made_streams() -> None:
    # 3 literals "abc", then a 1xx match of 6 bytes from distance 3, then the end marker.
    stream = bytes([17 + 3]) + b"abc" + bytes([0x80 | (1 << 5) | (2 << 2), 0]) + b"\x11\x00\x00"
    assert lzo.decompress(stream, 100) == b"abcabcabc"
    with pytest.raises(CorruptImageError):  # distance before the start of the output
        lzo.decompress(bytes([17 + 1]) + b"a" + bytes([0x80, 5]) + b"\x11\x00\x00", 100)
    with pytest.raises(CorruptImageError):  # no end marker
        lzo.decompress(bytes([17 + 3]) + b"abc", 100)
    with pytest.raises(ImageportError):
        lzo.decompress(b"", 100)


def test_mutated_streams_only_raise_our_errors(lzop_samples: list[tuple[bytes, bytes]]) -> None:
    rng = random.Random(7)
    block, expected = next(p for p in lzop_samples if 1000 < len(p[1]) < 10000)
    for _ in range(400):
        data = bytearray(block)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cap = len(expected) + rng.choice((0, 100, 1 << 16))
        try:
            out = lzo.decompress(bytes(data), cap)
        except ImageportError:
            continue
        assert len(out) <= cap
    # A stream of zero-length continuations cannot make the decoder loop for long.
    with pytest.raises(ImageportError):
        lzo.decompress(b"\x00" + b"\x00" * 200_000 + b"\x01", 1 << 20)
