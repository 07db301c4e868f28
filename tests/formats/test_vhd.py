"""VHD (qemu 'vpc'): fixed/dynamic read byte-exactly, differencing and damaged files refused."""

from __future__ import annotations

import bz2
import gzip
import struct
from pathlib import Path

import pytest

from imageport.checksums import vhd_checksum
from imageport.formats import registry, vhd
from imageport.formats.base import Container
from imageport.source import BytesSource, FileSource
from support import builders
from support.exactness import assert_allocation_consistent, assert_reads_match

CORPUS = builders.CORPUS


def _probe_file(path: Path) -> Container:
    with FileSource(path) as src:
        return registry.probe(src)


@pytest.mark.parametrize(
    ("options", "variant", "creator"),
    [
        ("subformat=fixed,force_size=on", "fixed", "qem2"),
        ("subformat=dynamic,force_size=on", "dynamic", "qem2"),
        ("subformat=dynamic", "dynamic", "qemu"),
        ("subformat=fixed", "fixed", "qemu"),
    ],
)
def test_qemu_made_vhd_reads_like_qemu(options: str, variant: str, creator: str) -> None:
    image = builders.converted("vpc", options=options)
    reference = builders.reference_raw(image, "vpc")
    with FileSource(image) as src:
        c = registry.probe(src)
        assert (c.format, c.variant, c.readable) == ("vhd", variant, True)
        assert c.virtual_size == builders.qemu_virtual_size(image, "vpc")
        assert c.properties["creator"].startswith(creator)
        if creator == "qemu":  # sized by CHS geometry, which rounds 48 MiB up
            assert c.properties["size from"] == "CHS geometry"
            assert c.virtual_size is not None and c.virtual_size > builders.PATTERN_SIZE
        else:
            assert c.virtual_size == builders.PATTERN_SIZE
        assert c.opener is not None
        disk = c.opener(src)
        assert_reads_match(disk, reference, random_reads=60)
        assert_allocation_consistent(disk, reference)


def _dynamic() -> bytearray:
    return bytearray(
        builders.converted("vpc", options="subformat=dynamic,force_size=on").read_bytes()
    )


def _fix_footers(data: bytearray) -> None:
    for off in (0, len(data) - 512):
        struct.pack_into(">I", data, off + 64, 0)
        struct.pack_into(">I", data, off + 64, vhd_checksum(bytes(data[off : off + 512]), 64))


def _dyn_offset(data: bytearray) -> int:
    offset: int = struct.unpack_from(">Q", data, 16)[0]
    return offset


def _fix_dynamic_header(data: bytearray) -> None:
    off = _dyn_offset(data)
    struct.pack_into(">I", data, off + 36, 0)
    struct.pack_into(">I", data, off + 36, vhd_checksum(bytes(data[off : off + 1024]), 36))


def _probe(data: bytearray) -> Container:
    return registry.probe(BytesSource(bytes(data)))


def test_differencing_vhd_with_a_patched_footer_is_refused_naming_the_parent() -> None:
    data = _dynamic()
    struct.pack_into(">I", data, 60, vhd.DISK_DIFFERENCING)
    struct.pack_into(">I", data, len(data) - 512 + 60, vhd.DISK_DIFFERENCING)
    dyn = _dyn_offset(data)
    name = "parent-disk.vhd".encode("utf-16-be")
    data[dyn + 64 : dyn + 64 + len(name)] = name
    path = "C:\\images\\parent-disk.vhd".encode("utf-16-le")
    locator_data = dyn + 768  # the header's reserved tail: inside the file, never opened
    data[locator_data : locator_data + len(path)] = path
    struct.pack_into(">4sIIIQ", data, dyn + 576, b"W2ku", 512, len(path), 0, locator_data)
    struct.pack_into(">4sIIIQ", data, dyn + 600, b"Mac ", 512, 100, 0, 1 << 60)
    _fix_dynamic_header(data)
    _fix_footers(data)
    c = _probe(data)
    assert (c.format, c.variant, c.readable) == ("vhd", "differencing", False)
    (hazard,) = c.hazards
    assert hazard.kind == "parent-locator"
    assert "'parent-disk.vhd'" in hazard.detail
    assert "W2ku: 'C:\\\\images\\\\parent-disk.vhd'" in hazard.detail
    assert "beyond the end of the file" in hazard.detail  # the bogus Mac locator


def test_bad_end_footer_falls_back_to_the_copy_at_offset_0() -> None:
    data = _dynamic()
    data[len(data) - 512 + 40] ^= 0xFF
    c = _probe(data)
    assert c.readable and "used the copy at offset 0" in c.properties["footer"]


@pytest.mark.parametrize("where", ["start", "both"])
def test_bad_footer_checksum_is_damage(where: str) -> None:
    data = _dynamic()
    data[40] ^= 0xFF
    if where == "both":
        data[len(data) - 512 + 40] ^= 0xFF
    c = _probe(data)
    assert c.variant == "damaged" and c.damage is not None and "checksum" in c.damage


def test_fixed_vhd_with_a_bad_footer_is_damage() -> None:
    data = bytearray(
        builders.converted("vpc", options="subformat=fixed,force_size=on").read_bytes()
    )
    data[-1] ^= 0x01
    c = _probe(data)
    assert c.damage is not None and "checksum" in c.damage


def test_old_511_byte_footer_is_found() -> None:
    image = builders.converted("vpc", options="subformat=fixed,force_size=on")
    data = image.read_bytes()[:-1]  # the footer's last (reserved, zero) byte is gone
    c = registry.probe(BytesSource(data))
    assert (c.format, c.variant, c.readable) == ("vhd", "fixed", True)
    assert c.opener is not None
    disk = c.opener(BytesSource(data))
    assert disk.read(0, 1 << 20) == image.read_bytes()[: 1 << 20]


def test_truncated_dynamic_vhd_is_damage() -> None:
    data = _dynamic()[: 8 << 20]
    c = _probe(data)
    assert c.damage is not None and "beyond the end of the file" in c.damage


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        (28, 1 << 31, "VHD BAT entries"),  # max_table_entries
        (32, 1 << 30, "VHD block size"),  # block size far above the cap
        (32, 3000, "power of two"),
        (16, 1 << 40, "beyond the end"),  # BAT offset
    ],
)
def test_hostile_dynamic_header_values_fail_fast(field: int, value: int, words: str) -> None:
    data = _dynamic()
    dyn = _dyn_offset(data)
    if field == 16:
        struct.pack_into(">Q", data, dyn + field, value)
    else:
        struct.pack_into(">I", data, dyn + field, value)
    _fix_dynamic_header(data)
    c = _probe(data)
    assert c.damage is not None and words in c.damage


def test_bat_entry_beyond_eof_is_damage() -> None:
    data = _dynamic()
    bat: int = struct.unpack_from(">Q", data, _dyn_offset(data) + 16)[0]
    struct.pack_into(">I", data, bat, 0x7FFFFFFF)
    c = _probe(data)
    assert c.damage is not None and "VHD block 0" in c.damage


def test_bad_dynamic_header_checksum_is_damage() -> None:
    data = _dynamic()
    data[_dyn_offset(data) + 1000] ^= 0xFF
    c = _probe(data)
    assert c.damage is not None and "dynamic header checksum" in c.damage


_CORPUS_VERDICTS = {
    "qemu/hyperv2012r2-dynamic.vhd.bz2": ("dynamic", True),
    "qemu/d2v-zerofilled.vhd.bz2": ("dynamic", True),
    "qemu/virtualpc-dynamic.vhd.bz2": ("dynamic", True),
    "dfvfs/ext2.vhd.gz": ("dynamic", True),
    "dfvfs/image.vhd.gz": ("damaged", False),  # both footer checksums wrong; qemu refuses too
    "dfvfs/fat-differential.vhd.gz": ("differencing", False),
    "dfvfs/image-differential.vhd.gz": ("damaged", False),
    "dissect/vhd/fixed.vhd.gz": ("fixed", True),
    "dissect/vhd/dynamic.vhd.gz": ("dynamic", True),
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
def test_corpus_vhd_files() -> None:
    for name, (variant, readable) in _CORPUS_VERDICTS.items():
        path = corpus_file(name)
        c = _probe_file(path)
        assert (c.format, c.variant, c.readable) == ("vhd", variant, readable), name
        if readable:
            assert c.virtual_size == builders.qemu_virtual_size(path, "vpc"), name
        if readable and c.virtual_size is not None and c.virtual_size <= 16 << 20:
            reference = builders.reference_raw(path, "vpc")
            with FileSource(path) as src:
                assert c.opener is not None
                disk = c.opener(src)
                assert_reads_match(disk, reference, random_reads=20)
                assert_allocation_consistent(disk, reference)
