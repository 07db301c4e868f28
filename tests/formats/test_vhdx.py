"""VHDX: fixed/dynamic read byte-exactly; dirty logs, parents and damaged files refused."""

from __future__ import annotations

import bz2
import gzip
import struct
from pathlib import Path

import pytest

from imageport.checksums import crc32c
from imageport.formats import registry, vhdx
from imageport.formats.base import Container
from imageport.source import BytesSource, FileSource
from support import builders
from support.exactness import assert_allocation_consistent, assert_reads_match

CORPUS = builders.CORPUS
HEADERS = vhdx.HEADER_OFFSETS
RT = vhdx.REGION_TABLE_OFFSETS[0]


@pytest.mark.parametrize(
    ("options", "variant"),
    [
        ("", "dynamic"),
        ("subformat=fixed", "fixed"),
        ("block_size=1M", "dynamic"),
        ("block_size=32M", "dynamic"),
        ("log_size=8M", "dynamic"),
    ],
)
def test_qemu_made_vhdx_reads_like_qemu(options: str, variant: str) -> None:
    image = builders.converted("vhdx", options=options)
    reference = builders.reference_raw(image, "vhdx")
    with FileSource(image) as src:
        c = registry.probe(src)
        assert (c.format, c.variant, c.readable) == ("vhdx", variant, True)
        assert c.virtual_size == builders.qemu_virtual_size(image, "vhdx")
        if "block_size" in options:
            want = {"1M": 1 << 20, "32M": 32 << 20}[options.split("=")[1]]
            assert c.properties["block size"] == str(want)
        assert c.opener is not None
        disk = c.opener(src)
        assert_reads_match(disk, reference, random_reads=60)
        assert_allocation_consistent(disk, reference)


def _image() -> bytearray:
    return bytearray(builders.converted("vhdx").read_bytes())


def _fix_crc(data: bytearray, offset: int, size: int) -> None:
    struct.pack_into("<I", data, offset + 4, 0)
    struct.pack_into("<I", data, offset + 4, crc32c(bytes(data[offset : offset + size])))


def _probe(data: bytearray) -> Container:
    return registry.probe(BytesSource(bytes(data)))


def _region(data: bytearray, guid: bytes) -> tuple[int, int, int]:
    """(entry offset in the file, region file offset, region length) of a region entry."""
    count: int = struct.unpack_from("<I", data, RT + 8)[0]
    for i in range(count):
        entry = RT + 16 + 32 * i
        if data[entry : entry + 16] == guid:
            offset, length = struct.unpack_from("<QI", data, entry + 16)
            return entry, offset, length
    raise AssertionError("region not found")


def _metadata_item(data: bytearray, guid: bytes) -> int:
    """File offset of a metadata item's data."""
    _, meta, _ = _region(data, vhdx.METADATA_GUID)
    count: int = struct.unpack_from("<H", data, meta + 10)[0]
    for i in range(count):
        entry = meta + 32 + 32 * i
        if data[entry : entry + 16] == guid:
            item: int = struct.unpack_from("<I", data, entry + 16)[0]
            return meta + item
    raise AssertionError("metadata item not found")


def _locator(pairs: list[tuple[str, str]]) -> bytes:
    head = bytearray(20)
    head[0:16] = bytes.fromhex("b7ef4ab09ed1814ab78925b8e9445913")  # VHDX parent type
    struct.pack_into("<H", head, 18, len(pairs))
    table = bytearray()
    strings = bytearray()
    base = 20 + 12 * len(pairs)
    for key, value in pairs:
        k, v = key.encode("utf-16-le"), value.encode("utf-16-le")
        key_off = base + len(strings)
        strings += k
        table += struct.pack("<IIHH", key_off, key_off + len(k), len(k), len(v))
        strings += v
    return bytes(head + table + strings)


def test_dirty_log_guid_is_refused_with_a_log_replay_hazard() -> None:
    data = _image()
    for off in HEADERS:
        data[off + 48 : off + 64] = bytes(range(1, 17))
        _fix_crc(data, off, vhdx.HEADER_SIZE)
    c = _probe(data)
    assert (c.format, c.readable) == ("vhdx", False)
    assert [h.kind for h in c.hazards] == ["log-replay"]
    assert "04030201-0605-0807-090a-0b0c0d0e0f10" in c.hazards[0].detail


def test_has_parent_with_a_parent_locator_is_refused_naming_the_parent() -> None:
    data = _image()
    params = _metadata_item(data, vhdx.FILE_PARAMETERS)
    struct.pack_into("<I", data, params + 4, struct.unpack_from("<I", data, params + 4)[0] | 2)
    _, meta, _ = _region(data, vhdx.METADATA_GUID)
    count: int = struct.unpack_from("<H", data, meta + 10)[0]
    locator = _locator(
        [
            ("parent_linkage", "{11111111-2222-3333-4444-555555555555}"),
            ("relative_path", ".\\base.vhdx"),
            ("absolute_win32_path", "C:\\vm\\base.vhdx"),
        ]
    )
    item_offset = 512 * 1024
    struct.pack_into(
        "<16sIII4x",
        data,
        meta + 32 + 32 * count,
        vhdx.PARENT_LOCATOR,
        item_offset,
        len(locator),
        4 | 2,
    )
    struct.pack_into("<H", data, meta + 10, count + 1)
    data[meta + item_offset : meta + item_offset + len(locator)] = locator
    c = _probe(data)
    assert (c.format, c.variant, c.readable) == ("vhdx", "differencing", False)
    (hazard,) = c.hazards
    assert hazard.kind == "parent-locator"
    assert "relative_path='.\\\\base.vhdx'" in hazard.detail
    assert "absolute_win32_path='C:\\\\vm\\\\base.vhdx'" in hazard.detail


@pytest.mark.parametrize("bad", [0, 1])
def test_one_bad_header_falls_back_to_the_other(bad: int) -> None:
    data = _image()
    data[HEADERS[bad] + 100] ^= 0xFF
    c = _probe(data)
    assert c.readable and f"header {bad + 1} is invalid" in c.properties["header"]
    assert c.opener is not None
    disk = c.opener(BytesSource(bytes(data)))
    reference = builders.reference_raw(builders.converted("vhdx"), "vhdx")
    assert disk.read(0, 3 << 20) == reference.read_bytes()[: 3 << 20]


def test_both_headers_bad_is_damage() -> None:
    data = _image()
    for off in HEADERS:
        data[off + 100] ^= 0xFF
    c = _probe(data)
    assert c.damage is not None and "both VHDX headers" in c.damage


def test_region_table_with_an_absurd_entry_count_fails_fast() -> None:
    data = _image()
    struct.pack_into("<I", data, RT + 8, 0xFFFFFFFF)
    _fix_crc(data, RT, vhdx.REGION_TABLE_SIZE)
    c = _probe(data)
    assert c.damage is not None and "region table entry count" in c.damage


def test_bat_entry_beyond_eof_is_damage() -> None:
    data = _image()
    _, bat, _ = _region(data, vhdx.BAT_GUID)
    struct.pack_into("<Q", data, bat, (1 << 40) | 6)  # block 0 fully present at 1 TiB
    c = _probe(data)
    assert c.damage is not None and "VHDX block 0" in c.damage and "beyond the end" in c.damage


def test_bat_entry_over_the_metadata_is_damage() -> None:
    data = _image()
    _, bat, _ = _region(data, vhdx.BAT_GUID)
    _, meta, _ = _region(data, vhdx.METADATA_GUID)
    struct.pack_into("<Q", data, bat, meta | 6)
    c = _probe(data)
    assert c.damage is not None and "overlaps metadata region" in c.damage


def test_absurd_block_size_is_refused() -> None:
    data = _image()
    struct.pack_into("<I", data, _metadata_item(data, vhdx.FILE_PARAMETERS), 1 << 30)
    c = _probe(data)
    assert c.damage is not None and "block size" in c.damage


def test_truncated_vhdx_is_damage() -> None:
    data = _image()
    for size in (100, 70 * 1024, 200 * 1024, 2 << 20, len(data) // 2):
        c = _probe(data[:size])
        assert c.format == "vhdx" and c.damage is not None, size


def test_crc32c_matches_the_standard_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


_CORPUS_VERDICTS = {
    "qemu/iotest-dynamic-1G.vhdx.bz2": ("dynamic", True, ()),
    "qemu/iotest-dirtylog-10G-4M.vhdx.bz2": ("dynamic", False, ("log-replay",)),
    "qemu/test-disk2vhd.vhdx.bz2": ("dynamic", True, ()),
    "dissect/vhdx/fixed.vhdx.gz": ("fixed", True, ()),
    "dissect/vhdx/dynamic.vhdx.gz": ("dynamic", True, ()),
    "dissect/vhdx/differencing.avhdx.gz": ("differencing", False, ("parent-locator",)),
}


def corpus_file(name: str) -> Path:
    """Decompress a corpus file into the test cache (once)."""
    target = builders.cached("corpus-" + name.replace("/", "_").rsplit(".", 1)[0])
    if not target.exists():
        opener = bz2.open if name.endswith(".bz2") else gzip.open
        with opener(CORPUS / name, "rb") as f:
            target.write_bytes(f.read())
    return target


@builders.needs_corpus
def test_corpus_vhdx_files() -> None:
    for name, (variant, readable, kinds) in _CORPUS_VERDICTS.items():
        path = corpus_file(name)
        with FileSource(path) as src:
            c = registry.probe(src)
            assert (c.format, c.variant, c.readable) == ("vhdx", variant, readable), name
            assert tuple(h.kind for h in c.hazards) == kinds, name
            if readable:
                assert c.virtual_size == builders.qemu_virtual_size(path, "vhdx"), name
            if readable and c.virtual_size is not None and c.virtual_size <= 16 << 20:
                reference = builders.reference_raw(path, "vhdx")
                assert c.opener is not None
                disk = c.opener(src)
                assert_reads_match(disk, reference, random_reads=20)
                assert_allocation_consistent(disk, reference)


def test_4096_byte_logical_sectors_are_unsupported_like_in_qemu() -> None:
    data = _image()
    struct.pack_into("<I", data, _metadata_item(data, vhdx.LOGICAL_SECTOR_SIZE), 4096)
    c = _probe(data)
    assert c.damage is not None and "unsupported" in c.damage and "4096" in c.damage
