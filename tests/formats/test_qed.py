"""QED: qemu-made images read byte-exactly; backing files and hostile tables refused."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from imageport.disk.base import Run, RunKind
from imageport.disk.qed import QedDisk, QedHeader
from imageport.errors import CorruptImageError, ImageportError
from imageport.formats import registry
from imageport.formats.base import Container
from imageport.source import BytesSource, FileSource
from support import builders
from support.exactness import assert_allocation_consistent, assert_reads_match


@pytest.mark.parametrize(
    "options", ["", "cluster_size=4096,table_size=2", "cluster_size=1M,table_size=16"]
)
def test_qemu_qed_reads_like_qemu(options: str) -> None:
    image = builders.converted("qed", options=options)
    reference = builders.reference_raw(image, "qed")
    with FileSource(image) as src:
        c = registry.probe(src)
        assert (c.format, c.variant, c.readable) == ("qed", "standalone", True)
        assert c.virtual_size == builders.qemu_virtual_size(image, "qed")
        assert c.opener is not None
        disk = c.opener(src)
        assert_reads_match(disk, reference, random_reads=100)
        assert_allocation_consistent(disk, reference)
        assert disk.allocated_bytes() < disk.virtual_size


def _small_qed() -> bytearray:
    """A 4 MiB QED (64 KiB clusters) with its first cluster written."""
    path = builders.cached("small.qed")
    if not path.exists():
        raw = path.with_suffix(".raw")
        raw.write_bytes(b"\xcd" * 65536 + bytes((4 << 20) - 65536))
        builders.qemu_img("convert", "-f", "raw", "-O", "qed", str(raw), str(path))
    return bytearray(path.read_bytes())


def _probe(data: bytes | bytearray) -> Container:
    return registry.probe(BytesSource(bytes(data)))


def _open(data: bytes | bytearray) -> QedDisk:
    src = BytesSource(bytes(data))
    return QedDisk.open(src, QedHeader.from_bytes(bytes(data[:64])))


def test_backing_file_is_refused_and_named(tmp_path: Path) -> None:
    image = tmp_path / "x.qed"
    builders.qemu_img(
        "create", "-f", "qed", "-b", "/etc/passwd", "-F", "raw", "-u", str(image), "64M"
    )
    with FileSource(image) as src:
        c = registry.probe(src)
    assert c.format == "qed" and c.variant == "backing file"
    assert not c.readable and c.opener is None
    assert [h.kind for h in c.hazards] == ["backing-file"]
    assert "/etc/passwd" in c.hazards[0].detail


def test_unknown_feature_bits_are_named() -> None:
    data = _small_qed()
    struct.pack_into("<Q", data, 16, 0x2 | 0x40 | (1 << 33))
    c = _probe(data)
    assert not c.readable and c.properties["needs consistency check"] == "yes"
    assert sorted(h.detail for h in c.hazards) == [
        "qed feature bit 0x200000000 is unknown",
        "qed feature bit 0x40 is unknown",
    ]


def test_zero_cluster_entry_reads_as_zero() -> None:
    data = _small_qed()
    header = QedHeader.from_bytes(bytes(data[:64]))
    l2_offset = struct.unpack_from("<Q", data, header.l1_table_offset)[0]
    struct.pack_into("<Q", data, l2_offset, 1)  # first cluster: zero cluster
    disk = _open(data)
    assert disk.read(0, 65536) == bytes(65536)
    assert next(iter(disk.runs(0, 65536))) == Run(0, 65536, RunKind.ZERO)


@pytest.mark.parametrize(
    ("offset", "value", "words"),
    [
        (4, 1 << 31, "cluster size"),
        (4, 3000, "cluster size"),
        (8, 1 << 30, "table size"),
        (8, 3, "table size"),
        (48, 1 << 62, "image size"),
        (40, 0x7FFF_FFFF_0000, "L1 table"),
    ],
)
def test_huge_or_odd_geometry_fails_fast(offset: int, value: int, words: str) -> None:
    data = _small_qed()
    fmt = "<I" if offset < 16 else "<Q"
    struct.pack_into(fmt, data, offset, value)
    c = _probe(data)
    assert c.format == "qed" and c.damage is not None and words in c.damage


def test_l2_table_beyond_eof_is_damage() -> None:
    data = _small_qed()
    header = QedHeader.from_bytes(bytes(data[:64]))
    struct.pack_into("<Q", data, header.l1_table_offset, 1 << 40)
    c = _probe(data)
    assert c.damage is not None and "L2 table" in c.damage


def test_data_cluster_beyond_eof_fails_on_read() -> None:
    data = _small_qed()
    header = QedHeader.from_bytes(bytes(data[:64]))
    l2_offset = struct.unpack_from("<Q", data, header.l1_table_offset)[0]
    struct.pack_into("<Q", data, l2_offset, 1 << 40)
    disk = _open(data)
    with pytest.raises(CorruptImageError, match="invalid file offset"):
        disk.read(0, 512)


def test_truncated_qed_is_damage() -> None:
    data = _small_qed()
    for cut in (40, 4096, len(data) - 65536):
        c = _probe(data[:cut])
        assert c.format == "qed"
        if c.damage is None:  # tables intact; the lost data cluster fails on read
            assert c.opener is not None
            with pytest.raises(ImageportError):
                c.opener(BytesSource(bytes(data[:cut]))).read(0, 65536)


def test_fuzzed_headers_raise_only_our_errors() -> None:
    base = bytes(_small_qed())
    for pos in range(4, 64, 4):
        for val in (0, 1, 0x1000, 0x7FFFFFFF, 0xFFFFFFFF):
            data = bytearray(base)
            struct.pack_into("<I", data, pos, val)
            c = _probe(data)
            if c.opener is not None and c.damage is None:
                try:
                    disk = c.opener(BytesSource(bytes(data)))
                    disk.read(0, 70000)
                    list(disk.allocation())
                except ImageportError:
                    pass
