"""VDI: qemu-made dynamic and static images read byte-exactly; hostile headers refused."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest

from imageport.disk.vdi import VdiDisk, VdiHeader
from imageport.errors import CorruptImageError, ImageportError, LimitExceededError
from imageport.formats import registry
from imageport.formats.base import Container
from imageport.source import BytesSource, FileSource
from support import builders
from support.exactness import assert_allocation_consistent, assert_reads_match


@pytest.mark.parametrize(("options", "variant"), [("", "dynamic"), ("static=on", "static")])
def test_qemu_vdi_reads_like_qemu(options: str, variant: str) -> None:
    image = builders.converted("vdi", options=options)
    reference = builders.reference_raw(image, "vdi")
    with FileSource(image) as src:
        c = registry.probe(src)
        assert (c.format, c.variant, c.accepted, c.readable) == ("vdi", variant, True, True)
        assert c.virtual_size == builders.qemu_virtual_size(image, "vdi")
        assert c.opener is not None
        disk = c.opener(src)
        assert_reads_match(disk, reference, random_reads=100)
        assert_allocation_consistent(disk, reference)
        if variant == "dynamic":  # holes of the pattern disk stay holes
            assert disk.allocated_bytes() < disk.virtual_size


def _small_vdi() -> bytearray:
    """A 4 MiB dynamic VDI made by qemu-img with its first block written."""
    path = builders.cached("small.vdi")
    if not path.exists():
        raw = path.with_suffix(".raw")
        raw.write_bytes(b"\xab" * (1 << 20) + bytes(3 << 20))
        builders.qemu_img("convert", "-f", "raw", "-O", "vdi", str(raw), str(path))
    return bytearray(path.read_bytes())


def _probe(data: bytes | bytearray) -> Container:
    return registry.probe(BytesSource(bytes(data)))


def test_small_vdi_is_fine() -> None:
    c = _probe(_small_vdi())
    assert c.readable and c.variant == "dynamic"
    assert c.opener is not None
    assert c.opener(BytesSource(bytes(_small_vdi()))).read(0, 4) == b"\xab" * 4


def test_block_map_claiming_2_31_entries_fails_fast() -> None:
    data = _small_vdi()
    struct.pack_into("<I", data, 0x180, 1 << 31)
    struct.pack_into("<Q", data, 0x170, 1 << 40)
    c = _probe(data)
    assert c.damage is not None and "block map size" in c.damage
    with pytest.raises(LimitExceededError):
        VdiDisk.open(BytesSource(bytes(data)), VdiHeader.from_bytes(bytes(data[:512])))


def test_block_index_beyond_eof_is_damage() -> None:
    data = _small_vdi()
    offset_bmap = struct.unpack_from("<I", data, 0x154)[0]
    struct.pack_into("<I", data, offset_bmap + 4, 5000)
    c = _probe(data)
    assert c.damage is not None and "beyond the end of the file" in c.damage


def test_truncated_vdi_is_damage() -> None:
    data = _small_vdi()
    for cut in (600, len(data) - 4096):
        c = _probe(data[:cut])
        assert c.format == "vdi" and c.damage is not None


@pytest.mark.parametrize(
    ("offset", "value", "fmt", "words"),
    [
        (0x44, 0x00020000, "<I", "version 2.0"),
        (0x168, 4096, "<I", "sector size"),
        (0x178, 3 << 20, "<I", "block size"),
    ],
)
def test_bad_header_fields_are_named(offset: int, value: int, fmt: str, words: str) -> None:
    data = _small_vdi()
    struct.pack_into(fmt, data, offset, value)
    c = _probe(data)
    assert c.damage is not None and words in c.damage


def test_bad_signature_is_not_vdi() -> None:
    data = _small_vdi()
    data[0x40] ^= 0xFF
    assert _probe(data).format != "vdi"


def test_differencing_vdi_names_its_parent_uuid() -> None:
    data = _small_vdi()
    parent = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")
    struct.pack_into("<I", data, 0x4C, 4)
    data[0x1A8:0x1B8] = parent.bytes_le
    c = _probe(data)
    assert c.variant == "diff" and not c.readable and c.opener is None
    assert [h.kind for h in c.hazards] == ["parent-locator"]
    assert str(parent) in c.hazards[0].detail


def test_fuzzed_headers_raise_only_our_errors() -> None:
    base = bytes(_small_vdi()[:8192])
    for pos in range(0x40, 0x1C8, 4):
        for val in (0, 1, 0x7FFFFFFF, 0xFFFFFFFF):
            data = bytearray(base)
            struct.pack_into("<I", data, pos, val)
            c = _probe(data)
            if c.opener is not None and c.damage is None:
                try:
                    disk = c.opener(BytesSource(bytes(data)))
                    disk.read(0, 8192)
                    list(disk.allocation())
                except ImageportError:
                    pass


def test_header_layout_matches_qemu(tmp_path: Path) -> None:
    header = VdiHeader.from_bytes(bytes(_small_vdi()[:512]))
    assert (header.header_size, header.offset_bmap, header.block_size) == (0x180, 0x200, 1 << 20)
    with pytest.raises(CorruptImageError):
        VdiHeader.from_bytes(b"short")
