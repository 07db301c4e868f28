"""Raw images: detected as the fallback, partition table named, read byte-exactly."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from imageport.formats import raw, registry
from imageport.source import BytesSource, FileSource
from support.exactness import assert_allocation_consistent, assert_reads_match


def test_pattern_raw_is_raw_with_mbr_and_reads_exactly(pattern_raw: Path) -> None:
    with FileSource(pattern_raw) as src:
        c = registry.probe(src)
        assert (c.format, c.variant, c.accepted) == ("raw", "mbr", True)
        assert c.virtual_size == pattern_raw.stat().st_size
        assert c.opener is not None
        disk = c.opener(src)
        assert_reads_match(disk, pattern_raw, random_reads=50)
        assert_allocation_consistent(disk, pattern_raw)


def _gpt_disk(corrupt: bool) -> bytes:
    disk = bytearray(64 * 1024)
    disk[510:512] = b"\x55\xaa"
    header = bytearray(92)
    header[0:8] = b"EFI PART"
    struct.pack_into("<II", header, 8, 0x00010000, 92)
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    if corrupt:
        header[40] ^= 0xFF
    disk[512 : 512 + 92] = header
    return bytes(disk)


def test_gpt_is_named_and_a_bad_header_checksum_is_reported() -> None:
    assert raw.partition_table(_gpt_disk(corrupt=False)) == "gpt"
    assert raw.partition_table(_gpt_disk(corrupt=True)) == "gpt (bad header checksum)"
    assert registry.probe(BytesSource(bytes(4096))).variant == "no partition table"
