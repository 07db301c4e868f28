"""VMDK: hosted sparse and streamOptimized read byte-exactly; everything naming a file refused."""

from __future__ import annotations

import builtins
import bz2
import gzip
import os
import struct
import time
from pathlib import Path

import pytest

from imageport.errors import CorruptImageError, TruncatedImageError
from imageport.formats import registry
from imageport.formats.base import Container
from imageport.source import BytesSource, FileSource
from support import builders
from support.exactness import assert_allocation_consistent, assert_reads_match

SECTOR = 512
CORPUS = builders.CORPUS


def _probe_file(path: Path) -> Container:
    with FileSource(path) as src:
        return registry.probe(src)


def _header(data: bytes) -> tuple[int, ...]:
    """(version, flags, capacity, grain, desc_offset, desc_size, gtes, rgd, gd, overhead)."""
    return struct.unpack_from("<IIQQQQIQQQ", data, 4)


def _with_descriptor(data: bytes, text: str) -> bytes:
    """``data`` (a hosted sparse file) with its embedded descriptor replaced by ``text``."""
    _, _, _, _, desc_off, desc_size, *_ = _header(data)
    raw = text.encode()
    assert len(raw) <= desc_size * SECTOR
    out = bytearray(data)
    out[desc_off * SECTOR : (desc_off + desc_size) * SECTOR] = raw.ljust(desc_size * SECTOR, b"\0")
    return bytes(out)


def _descriptor_of(data: bytes) -> str:
    _, _, _, _, desc_off, desc_size, *_ = _header(data)
    return data[desc_off * SECTOR : (desc_off + desc_size) * SECTOR].split(b"\0")[0].decode()


@pytest.fixture(scope="module")
def sparse() -> Path:
    return Path(builders.converted("vmdk"))


@pytest.fixture(scope="module")
def stream() -> Path:
    return Path(builders.converted("vmdk", options="subformat=streamOptimized"))


# -- readable variants ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "variant"), [("sparse", "monolithicSparse"), ("stream", "streamOptimized")]
)
def test_sparse_and_stream_read_exactly_like_qemu(
    fixture: str, variant: str, request: pytest.FixtureRequest
) -> None:
    image: Path = request.getfixturevalue(fixture)
    with FileSource(image) as src:
        c = registry.probe(src)
        assert (c.format, c.variant, c.readable) == ("vmdk", variant, True), c
        assert c.virtual_size == builders.qemu_virtual_size(image, "vmdk")
        assert c.opener is not None
        disk = c.opener(src)
        ref = builders.reference_raw(image, "vmdk")
        assert_reads_match(disk, ref, random_reads=60)
        assert_allocation_consistent(disk, ref)
        if variant == "streamOptimized":
            assert c.properties["compression"] == "deflate"


def test_compat6_and_hwversion_variants_probe_and_read(sparse: Path) -> None:
    for options, hw in (("compat6", "6"), ("hwversion=7", "7")):
        image = builders.converted("vmdk", options=options)
        with FileSource(image) as src:
            c = registry.probe(src)
            assert (c.variant, c.readable, c.properties["hardware version"]) == (
                "monolithicSparse",
                True,
                hw,
            )
            assert c.opener is not None
            ref = builders.reference_raw(image, "vmdk").read_bytes()
            disk = c.opener(src)
            for off in (0, 2 * builders.MiB - 4096, 16 * builders.MiB - 7):
                assert disk.read(off, 70000) == ref[off : off + 70000]


def test_stream_with_grain_directory_in_footer_reads_like_qemu(
    stream: Path, tmp_path: Path
) -> None:
    """Move the stream's header into a footer (GD_AT_END), as VMware writes it."""
    data = bytearray(stream.read_bytes())
    header = bytes(data[:SECTOR])
    footer = struct.pack("<QII", 0, 0, 3).ljust(SECTOR, b"\0") + header
    footer += struct.pack("<QII", 0, 0, 0).ljust(SECTOR, b"\0")
    struct.pack_into("<Q", data, 56, 0xFFFFFFFFFFFFFFFF)
    image = tmp_path / "footer.vmdk"
    image.write_bytes(bytes(data) + footer)
    c = _probe_file(image)
    assert (c.variant, c.readable, c.properties["grain directory"]) == (
        "streamOptimized",
        True,
        "in footer",
    )
    ref = tmp_path / "footer.raw"
    builders.qemu_img("convert", "-f", "vmdk", "-O", "raw", str(image), str(ref))
    with FileSource(image) as src:
        assert c.opener is not None
        disk = c.opener(src)
        want = ref.read_bytes()
        for off in range(0, len(want), 3 * builders.MiB + 4097):
            assert disk.read(off, 70001) == want[off : off + 70001]
    # Without a footer the GD_AT_END header is damage, named.
    broken = _probe_file_bytes(bytes(data))
    assert broken.damage is not None and "footer" in broken.damage


def _probe_file_bytes(data: bytes) -> Container:
    return registry.probe(BytesSource(data))


# -- descriptor files: never self-contained ---------------------------------------------------


@pytest.mark.parametrize(
    "subformat", ["monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"]
)
def test_descriptor_only_files_are_refused_naming_every_extent(subformat: str) -> None:
    image = builders.converted("vmdk", options=f"subformat={subformat}")
    c = _probe_file(image)
    assert (c.format, c.variant) == ("vmdk", f"{subformat} (descriptor only)")
    assert not c.readable and c.opener is None
    assert c.virtual_size == builders.PATTERN_SIZE == builders.qemu_virtual_size(image, "vmdk")
    text = image.read_text()
    names = [line.split('"')[1] for line in text.splitlines() if line.startswith("RW ")]
    assert names and len(c.hazards) == len(names)
    for name, hazard in zip(names, c.hazards, strict=True):
        assert hazard.kind == "external-extent"
        assert f'"{name}"' in hazard.detail
        assert (image.parent / name).exists()  # a real sibling: exactly what must not be opened


def test_descriptor_signature_is_required_for_text() -> None:
    assert _probe_file_bytes(b'hello\ncreateType="monolithicFlat"\n' * 3).format == "raw"
    assert _probe_file_bytes(b'RW 100 FLAT "x" 0\n').format == "raw"
    qemu_style = b'# comment\nversion=1\ncreateType="vmfs"\nRW 8 VMFS "/dev/sda"\n'
    c = _probe_file_bytes(qemu_style)
    assert (c.format, c.variant) == ("vmdk", "vmfs (descriptor only)")
    assert "/dev/sda" in c.hazards[0].detail and "absolute path" in c.hazards[0].detail


def test_no_path_from_an_image_is_ever_opened(
    sparse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _with_descriptor(
        sparse.read_bytes(),
        'version=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicSparse"\n'
        'RW 98304 FLAT "/etc/passwd" 0\nparentFileNameHint="/etc/shadow"\n',
    )

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a file was opened: {args!r}")

    monkeypatch.setattr(builtins, "open", forbidden)
    monkeypatch.setattr(os, "open", forbidden)
    c = registry.probe(BytesSource(data))
    details = " | ".join(h.detail for h in c.hazards)
    assert "/etc/passwd" in details and "/etc/shadow" in details


# -- hostile embedded descriptors ------------------------------------------------------------


_BASE = 'version=1\nCID=1234abcd\nparentCID=ffffffff\ncreateType="monolithicSparse"\n'


@pytest.mark.parametrize(
    ("extents", "expect"),
    [
        ('RW 98304 FLAT "/etc/passwd" 0\n', ["/etc/passwd", "absolute path"]),
        ('RW 98304 FLAT "sibling-flat.vmdk" 0\n', ["sibling-flat.vmdk", "sibling file"]),
        ('RW 98304 SPARSE "../up/disk.vmdk"\n', ["../up/disk.vmdk", "relative path"]),
        (
            'RW 49152 SPARSE "self.vmdk"\nRW 49152 SPARSE "other.vmdk"\n',
            ["other.vmdk", "2 extents"],
        ),
        ('RW 98304 VMFS "/vmfs/devices/disks/x"\n', ["VMFS", "/vmfs/devices/disks/x"]),
        ('RW +98304 FLAT "/etc/hosts" 0\n', ["/etc/hosts", "unparsed"]),
    ],
)
def test_embedded_descriptor_naming_other_files_is_refused(
    sparse: Path, extents: str, expect: list[str]
) -> None:
    c = _probe_file_bytes(_with_descriptor(sparse.read_bytes(), _BASE + extents))
    assert c.format == "vmdk" and c.hazards and not c.readable
    details = " | ".join(h.detail for h in c.hazards)
    for word in expect:
        assert word in details
    assert all(h.kind == "external-extent" for h in c.hazards)


def test_the_single_sparse_self_extent_is_accepted(sparse: Path) -> None:
    text = _descriptor_of(sparse.read_bytes())
    assert 'SPARSE "' in text
    c = _probe_file(sparse)
    assert c.hazards == () and c.readable


def test_delta_disks_are_refused_naming_the_parent(sparse: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.vmdk"
    child = tmp_path / "child.vmdk"
    builders.qemu_img("create", "-f", "vmdk", str(base), "1M")
    builders.qemu_img("create", "-f", "vmdk", "-b", str(base), "-F", "vmdk", str(child))
    c = _probe_file(child)
    assert c.format == "vmdk" and not c.readable
    details = " | ".join(h.detail for h in c.hazards)
    assert str(base) in details and "parentCID=" in details
    assert {h.kind for h in c.hazards} == {"backing-file"}
    # qemu also follows a hint hidden in a comment: so do we, as a hazard.
    hidden = _with_descriptor(
        sparse.read_bytes(),
        _BASE + '# parentFileNameHint="hidden.vmdk"\nRW 98304 SPARSE "self.vmdk"\n',
    )
    assert "hidden.vmdk" in registry.probe(BytesSource(hidden)).hazards[0].detail


# -- damaged headers and tables -----------------------------------------------------------------


def test_huge_grain_directory_fails_fast(sparse: Path) -> None:
    data = bytearray(sparse.read_bytes())
    struct.pack_into("<Q", data, 12, 1 << 31)  # capacity: 2^31 sectors (1 TiB)
    struct.pack_into("<Q", data, 20, 1)  # grain of one sector
    struct.pack_into("<I", data, 44, 1)  # one GTE per table: 2^31 directory entries
    started = time.monotonic()
    c = _probe_file_bytes(bytes(data))
    assert time.monotonic() - started < 1.0
    assert c.damage is not None and "grain directory entries" in c.damage


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "words"),
    [
        (4, "<I", 0x81, ["unsupported", "version 129"]),
        (36, "<Q", 0xFFFFFFFF, ["descriptor size"]),
        (44, "<I", 4096, ["GTEs per grain table"]),
        (20, "<Q", 0, ["grain sectors"]),
        (73, "<B", ord("X"), ["newline check"]),
    ],
)
def test_bit_flipped_header_fields_are_damage(
    sparse: Path, offset: int, fmt: str, value: int, words: list[str]
) -> None:
    data = bytearray(sparse.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    c = _probe_file_bytes(bytes(data))
    assert c.format == "vmdk" and c.damage is not None and not c.readable
    for word in words:
        assert word in c.damage


def test_flipped_magic_is_no_longer_vmdk(sparse: Path) -> None:
    data = bytearray(sparse.read_bytes()[: 1 << 20])
    data[0] ^= 0x01
    assert _probe_file_bytes(bytes(data)).format == "raw"


def test_grain_table_beyond_eof_and_truncation_are_damage(sparse: Path) -> None:
    data = bytearray(sparse.read_bytes())
    gd = _header(bytes(data))[8] * SECTOR
    struct.pack_into("<I", data, gd, 0x7FFFFFFF)
    c = _probe_file_bytes(bytes(data))
    assert c.damage is not None and "grain table 0 at sector 2147483647" in c.damage
    for cut in (100, 4096, 10752):
        c = _probe_file_bytes(sparse.read_bytes()[:cut])
        assert c.format == "vmdk" and c.damage is not None, cut
    # Cut inside the grain data: the tables are whole, so the reader names the short data.
    c = _probe_file_bytes(sparse.read_bytes()[: len(data) // 2])
    assert c.opener is not None
    disk = c.opener(BytesSource(sparse.read_bytes()[: len(data) // 2]))
    with pytest.raises(TruncatedImageError, match="beyond the end"):
        disk.read(0, disk.virtual_size)


def test_corrupt_compressed_grain_raises_our_error(stream: Path) -> None:
    data = bytearray(stream.read_bytes())
    c = _probe_file_bytes(bytes(data))
    assert c.opener is not None
    host = next(r.host for r in c.opener(BytesSource(bytes(data))).runs(0, 1 << 20) if r.host)
    data[host + 12 : host + 40] = bytes(28)  # wipe the zlib header and first blocks
    disk = c.opener(BytesSource(bytes(data)))
    with pytest.raises(CorruptImageError):
        disk.read(0, 4096)
    struct.pack_into("<I", data, host + 8, 0x7FFFFFFF)  # a marker claiming 2 GiB
    with pytest.raises(CorruptImageError, match="declares"):
        c.opener(BytesSource(bytes(data))).read(0, 4096)


# -- real files from other tools ---------------------------------------------------------------


_CORPUS_EXPECT = {
    "qemu/iotest-version3.vmdk.bz2": ("streamOptimized", True),
    "qemu/afl9.vmdk.bz2": ("damaged", False),
    "dfvfs/ext2.vmdk.gz": ("monolithicSparse", True),
    "dissect/vmdk/sesparse.vmdk.gz": ("seSparse (extent file)", False),
    "libyal/libyal_libvmdk_tests_data_descriptor_file.1.gz": (
        "monolithicSparse (descriptor only)",
        False,
    ),
}


@builders.needs_corpus
def test_corpus_files_probe_and_read_like_qemu() -> None:
    for rel, (variant, readable) in _CORPUS_EXPECT.items():
        packed = CORPUS / rel
        opener = bz2.open if rel.endswith(".bz2") else gzip.open
        with opener(packed, "rb") as f:
            data = f.read()
        image = builders.cached("corpus-" + rel.replace("/", "_").rsplit(".", 1)[0])
        if not image.exists():
            image.write_bytes(data)
        c = _probe_file(image)
        assert (c.format, c.variant, c.readable) == ("vmdk", variant, readable), (rel, c)
        if not readable:
            continue
        assert c.virtual_size == builders.qemu_virtual_size(image, "vmdk")
        ref = builders.reference_raw(image, "vmdk")
        with FileSource(image) as src, open(ref, "rb") as want:
            assert c.opener is not None
            disk = c.opener(src)
            for ext in list(disk.allocation())[:200]:
                for off in (ext.start, ext.start + ext.length // 2, ext.start + ext.length - 100):
                    want.seek(off)
                    assert disk.read(off, 100) == want.read(100), (rel, off)
    extent_only = gzip.decompress(
        (CORPUS / "libyal/libyal_libvmdk_tests_data_extent_values.1.gz").read_bytes()
    )
    assert _probe_file_bytes(extent_only).format == "raw"  # no descriptor signature


def test_cowd_and_sesparse_headers_are_named_not_read() -> None:
    cowd = struct.pack("<4sIIIIIII", b"COWD", 1, 3, 2048, 16, 4, 1, 8).ljust(4096, b"\0")
    c = _probe_file_bytes(cowd)
    assert (c.format, c.variant, c.virtual_size, c.readable) == (
        "vmdk",
        "vmfsSparse (COWD)",
        2048 * SECTOR,
        False,
    )
    assert c.damage is not None and "COWD" in c.damage
    ses = struct.pack("<QQQQQQ", 0xCAFEBABE, 0x200000001, 1 << 20, 8, 64, 0).ljust(4096, b"\0")
    c = _probe_file_bytes(ses)
    assert (c.format, c.variant, c.readable) == ("vmdk", "seSparse (extent file)", False)
