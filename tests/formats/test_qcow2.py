"""QCOW2: qemu-made images read byte-exactly; hostile images refused with what was found."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from imageport.disk.base import ExtentState, RunKind, VirtualDisk
from imageport.disk.qcow2 import inflate_cluster, zstd_cluster
from imageport.errors import CorruptImageError, ImageportError, TruncatedImageError
from imageport.formats import registry
from imageport.source import BytesSource, FileSource
from support import builders
from support.exactness import assert_allocation_consistent, assert_reads_match
from support.isolation import probe_refusing_opens

MiB = 1 << 20

# (qemu-img -o options, -c, variant, properties that must show)
FLAVOURS = [
    ("compat=0.10", False, "v2", {"cluster size": "65536"}),
    ("compat=1.1", False, "v3", {"cluster size": "65536", "compression type": "zlib"}),
    ("cluster_size=512", False, "v3", {"cluster size": "512"}),
    ("cluster_size=4096", False, "v3", {"cluster size": "4096"}),
    ("cluster_size=2M", False, "v3", {"cluster size": "2097152"}),
    ("", True, "v3", {"compression type": "zlib"}),
    ("compression_type=zstd", True, "v3", {"compression type": "zstd"}),
    ("extended_l2=on", False, "v3", {"extended L2": "yes"}),
    ("extended_l2=on", True, "v3", {"extended L2": "yes"}),
]


@pytest.mark.parametrize(("options", "compress", "variant", "props"), FLAVOURS)
def test_qemu_images_read_exactly(
    options: str, compress: bool, variant: str, props: dict[str, str]
) -> None:
    image = builders.converted("qcow2", options=options, compress=compress)
    reference = builders.reference_raw(image, "qcow2")
    with FileSource(image) as src:
        c = registry.probe(src)
        assert (c.format, c.variant, c.readable) == ("qcow2", variant, True)
        assert c.virtual_size == builders.qemu_virtual_size(image, "qcow2")
        for key, value in props.items():
            assert c.properties[key] == value
        assert c.opener is not None
        disk = c.opener(src)
        kinds = {run.kind for run in disk.runs(0, disk.virtual_size)}
        assert (RunKind.PACKED in kinds) == compress
        assert_reads_match(disk, reference, random_reads=40)
        assert_allocation_consistent(disk, reference)


# -- small images built here, patched into hostile ones -------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., bytes]:
    """Factory: bytes of a 2 MiB qemu-made qcow2 (random 64 KiB at 0, text at 1 MiB)."""
    root = tmp_path_factory.mktemp("qcow2")
    raw = root / "small.raw"
    with open(raw, "wb") as f:
        f.truncate(2 * MiB)
        f.write(os.urandom(64 * 1024))
        f.seek(MiB)
        f.write(b"imageport qcow2 test line\n" * 5000)
    made: dict[str, bytes] = {}

    def build(options: str = "compat=1.1", compress: bool = False) -> bytes:
        key = f"{options}-{compress}"
        if key not in made:
            out = root / f"{len(made)}.qcow2"
            builders.qemu_img(
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                options,
                *(["-c"] if compress else []),
                str(raw),
                str(out),
            )
            made[key] = out.read_bytes()
        return made[key]

    return build


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _l2_entry_offset(data: bytes, guest: int) -> int:
    """File offset of the L2 entry mapping guest offset ``guest`` (standard L2 entries)."""
    cluster_bits: int = struct.unpack_from(">I", data, 20)[0]
    l1_offset = struct.unpack_from(">Q", data, 40)[0]
    cluster = 1 << cluster_bits
    entries = cluster // 8
    l1_entry = struct.unpack_from(">Q", data, l1_offset + 8 * (guest // (cluster * entries)))[0]
    l2: int = l1_entry & 0x00FF_FFFF_FFFF_FE00
    assert l2, "test image has no L2 table there"
    return l2 + 8 * ((guest // cluster) % entries)


def _open(data: bytes) -> VirtualDisk:
    c = registry.probe(BytesSource(data))
    assert c.opener is not None, c
    return c.opener(BytesSource(data))


def _read_all(disk: VirtualDisk) -> bytes:
    return b"".join(disk.read(o, MiB) for o in range(0, disk.virtual_size, MiB))


def _qemu_reference(tmp_path: Path, data: bytes) -> bytes:
    image = tmp_path / "patched.qcow2"
    image.write_bytes(data)
    return builders.reference_raw(image, "qcow2").read_bytes()


def test_zero_flag_with_and_without_allocation_matches_qemu(
    small: Callable[..., bytes], tmp_path: Path
) -> None:
    data = small()
    at0, at1 = _l2_entry_offset(data, 0), _l2_entry_offset(data, MiB)
    entry0 = struct.unpack_from(">Q", data, at0)[0]
    assert entry0 & 0x00FF_FFFF_FFFF_FE00, "cluster 0 should be allocated"
    data = _patch(data, at0, struct.pack(">Q", entry0 | 1))  # zero, host cluster kept
    data = _patch(data, at1, struct.pack(">Q", 1))  # zero, no host cluster
    disk = _open(data)
    assert [r.kind for r in disk.runs(0, 65536)] == [RunKind.ZERO]
    assert [r.kind for r in disk.runs(MiB, MiB + 65536)] == [RunKind.ZERO]
    assert disk.read(0, 65536) == bytes(65536)
    assert _read_all(disk) == _qemu_reference(tmp_path, data)


def test_zero_flag_in_a_version_2_image_is_corruption(small: Callable[..., bytes]) -> None:
    data = small("compat=0.10")
    at = _l2_entry_offset(data, 0)
    data = _patch(data, at, struct.pack(">Q", struct.unpack_from(">Q", data, at)[0] | 1))
    c = registry.probe(BytesSource(data))
    assert c.opener is not None
    with pytest.raises(CorruptImageError, match="version 2"):
        c.opener(BytesSource(data)).read(0, 512)


def test_data_cluster_beyond_the_file_is_truncation(small: Callable[..., bytes]) -> None:
    data = small()
    data = _patch(data, _l2_entry_offset(data, 0), struct.pack(">Q", 1 << 40))
    c = registry.probe(BytesSource(data))
    assert c.opener is not None
    with pytest.raises(TruncatedImageError, match="beyond the end"):
        c.opener(BytesSource(data)).read(0, 512)


def test_broken_compressed_cluster_is_corruption(small: Callable[..., bytes]) -> None:
    data = small(compress=True)
    at = _l2_entry_offset(data, MiB)
    entry = struct.unpack_from(">Q", data, at)[0]
    assert entry & (1 << 62), "the text cluster should be compressed"
    host = entry & ((1 << 54) - 1)
    data = _patch(data, host, b"\xff" * 64)
    disk = _open(data)
    with pytest.raises(CorruptImageError, match="compressed cluster"):
        disk.read(MiB, 1)


def test_invalid_subcluster_bitmap_is_corruption(small: Callable[..., bytes]) -> None:
    data = small("extended_l2=on")
    cluster_bits = struct.unpack_from(">I", data, 20)[0]
    l1_offset = struct.unpack_from(">Q", data, 40)[0]
    l2 = struct.unpack_from(">Q", data, l1_offset)[0] & 0x00FF_FFFF_FFFF_FE00
    assert cluster_bits == 16 and l2
    data = _patch(data, l2 + 8, struct.pack(">Q", 0x0000_0001_0000_0001))  # alloc + zero
    disk = _open(data)
    with pytest.raises(CorruptImageError, match="subcluster bitmap"):
        disk.read(0, 1)


# -- refused images --------------------------------------------------------------------------


def _create(name: str, *args: str) -> Path:
    """A 4 MiB qcow2 made by ``qemu-img create`` with ``args``, cached across runs."""
    image = builders.cached(f"hostile-{name}.qcow2")
    if not image.exists():
        tmp = image.with_name(image.name + ".tmp")
        builders.qemu_img("create", "-f", "qcow2", *args, str(tmp), "4M")
        os.replace(tmp, image)
    return image


BACKING = ("-u", "-b", "/etc/passwd", "-F", "raw")


def test_backing_file_is_named_and_never_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    image = _create("backing", *BACKING)
    c = probe_refusing_opens(monkeypatch, image)
    assert (c.format, c.readable, c.opener) == ("qcow2", False, None)
    assert [h.kind for h in c.hazards] == ["backing-file"]
    assert "'/etc/passwd'" in c.hazards[0].detail and "'raw'" in c.hazards[0].detail


def test_external_data_file_is_named() -> None:
    data_file = builders.cached("hostile-guest-data.raw")
    image = _create("data-file", "-o", f"data_file={data_file}")
    with FileSource(image) as src:
        c = registry.probe(src)
    assert c.opener is None and not c.readable
    assert [h.kind for h in c.hazards] == ["data-file", "data-file"]
    details = " | ".join(h.detail for h in c.hazards)
    assert "bit 2" in details and repr(str(data_file)) in details


@pytest.mark.parametrize("method", ["aes", "luks"])
def test_encryption_is_reported(method: str) -> None:
    extra = ",encrypt.iter-time=100" if method == "luks" else ""
    image = _create(
        method,
        "--object",
        "secret,id=sec0,data=abc",
        "-o",
        f"encrypt.format={method},encrypt.key-secret=sec0{extra}",
    )
    with FileSource(image) as src:
        c = registry.probe(src)
    assert (c.format, c.encryption, c.opener, c.damage) == ("qcow2", method, None, None)


def test_every_hazard_is_listed_with_unknown_feature_bits_named() -> None:
    data = _create("backing", *BACKING).read_bytes()
    incompat = struct.unpack_from(">Q", data, 72)[0] | (1 << 5) | (1 << 63)
    c = registry.probe(BytesSource(_patch(data, 72, struct.pack(">Q", incompat))))
    assert [h.kind for h in c.hazards] == ["backing-file", "feature-bit", "feature-bit"]
    assert "bit 5" in c.hazards[1].detail and "bit 63" in c.hazards[2].detail
    assert c.opener is None


def test_dirty_bit_still_reads_but_corrupt_bit_is_damage(small: Callable[..., bytes]) -> None:
    data = small()
    incompat = struct.unpack_from(">Q", data, 72)[0]
    dirty = _patch(data, 72, struct.pack(">Q", incompat | 1))
    c = registry.probe(BytesSource(dirty))
    assert c.readable and c.properties["dirty"].startswith("yes")
    assert _read_all(_open(dirty)) == _read_all(_open(data))
    corrupt = registry.probe(BytesSource(_patch(data, 72, struct.pack(">Q", incompat | 2))))
    assert corrupt.damage is not None and "corrupt bit" in corrupt.damage
    assert not corrupt.readable


def test_huge_l1_table_fails_fast(small: Callable[..., bytes]) -> None:
    src = BytesSource(_patch(small(), 36, struct.pack(">I", 1 << 31)))
    c = registry.probe(src)
    assert c.damage is not None and "L1 table of 2147483648 entries" in c.damage
    assert src.bytes_read < 100_000


def test_l2_table_beyond_the_file_is_damage(small: Callable[..., bytes]) -> None:
    data = small()
    l1_offset = struct.unpack_from(">Q", data, 40)[0]
    c = registry.probe(BytesSource(_patch(data, l1_offset, struct.pack(">Q", 1 << 40))))
    assert c.damage is not None and "L2 table" in c.damage and "beyond the end" in c.damage


@pytest.mark.parametrize("bits", [0, 8, 22, 64, 0xFFFF_FFFF])
def test_cluster_bits_out_of_range_is_damage(small: Callable[..., bytes], bits: int) -> None:
    c = registry.probe(BytesSource(_patch(small(), 20, struct.pack(">I", bits))))
    assert c.format == "qcow2" and c.damage is not None and "cluster_bits" in c.damage


@pytest.mark.parametrize(
    ("offset", "value", "words"),
    [
        (4, struct.pack(">I", 4), "version 4"),
        (100, struct.pack(">I", 96), "header_length"),
        (72, struct.pack(">Q", 1 << 3), "compression type bit"),
        (96, struct.pack(">I", 7), "refcount_order"),
        (40, struct.pack(">Q", 0x30001), "not cluster-aligned"),
        (24, struct.pack(">Q", 1 << 50), "needs"),
        (8, struct.pack(">Q", 1 << 62), "backing file name offset"),
        (8, struct.pack(">QI", 512, 1 << 31), "backing file name of 2147483648 bytes"),
    ],
)
def test_bad_header_fields_are_named(
    small: Callable[..., bytes], offset: int, value: bytes, words: str
) -> None:
    src = BytesSource(_patch(small(), offset, value))
    c = registry.probe(src)
    assert c.format == "qcow2" and c.damage is not None and words in c.damage
    assert src.bytes_read < 200_000


def test_truncated_files_fail_with_our_errors(small: Callable[..., bytes]) -> None:
    data = small()
    outcomes = set()
    for cut in (9, 71, 103, 4096, 65536, 196608, 262144, len(data) - 65536, len(data) - 1):
        src = BytesSource(data[:cut])
        c = registry.probe(src)
        assert c.format == "qcow2"
        if c.damage is not None:
            assert "internal error" not in c.damage
            outcomes.add("damaged")
            continue
        assert c.opener is not None
        try:
            _read_all(c.opener(src))
            outcomes.add("read")
        except TruncatedImageError:
            outcomes.add("truncated on read")
    assert {"damaged", "truncated on read"} <= outcomes


@pytest.mark.parametrize("image", ["compat=1.1", "compat=0.10", "extended_l2=on"])
def test_header_bit_flips_only_raise_our_errors(small: Callable[..., bytes], image: str) -> None:
    data = small(image)
    for offset in range(0, 112):
        for mask in (0x01, 0x80, 0xFF):
            flipped = _patch(data, offset, bytes([data[offset] ^ mask]))
            c = registry.probe(BytesSource(flipped))
            assert c.damage is None or "internal error" not in c.damage, (offset, mask)
            if c.opener is not None:
                try:
                    disk = c.opener(BytesSource(flipped))
                    disk.read(0, 4 * MiB)
                    list(disk.allocation())
                except ImageportError:
                    pass


# -- decoders ----------------------------------------------------------------------------------


def test_zstd_decoder_follows_qemu() -> None:
    cluster = 65536
    payload = bytes(range(256)) * 256
    one = zstandard.ZstdCompressor().compress(payload)
    assert zstd_cluster(one + b"\xa5" * 300, cluster, "t") == payload  # tail of the sector
    halves = b"".join(
        zstandard.ZstdCompressor(write_content_size=False).compress(payload[i : i + 32768])
        for i in (0, 32768)
    )
    skippable = struct.pack("<II", 0x184D2A50, 4) + b"skip"
    assert zstd_cluster(skippable + halves, cluster, "t") == payload
    with pytest.raises(CorruptImageError, match="past the end of the cluster"):
        zstd_cluster(zstandard.ZstdCompressor().compress(payload + b"x"), cluster, "t")
    too_long = zstandard.ZstdCompressor(write_content_size=False).compress(payload + b"x")
    with pytest.raises(CorruptImageError):
        zstd_cluster(too_long, cluster, "t")
    with pytest.raises(CorruptImageError):
        zstd_cluster(one[: len(one) // 2], cluster, "t")
    with pytest.raises(CorruptImageError):
        zstd_cluster(b"\0" * 600, cluster, "t")


def test_deflate_decoder_follows_qemu() -> None:
    payload = b"imageport " * 410
    comp = zlib.compressobj(9, zlib.DEFLATED, -12)
    stream = comp.compress(payload[:4096]) + comp.flush()
    assert inflate_cluster(stream + b"\x99" * 100, 4096, "t") == payload[:4096]
    with pytest.raises(CorruptImageError, match="not a full cluster"):
        inflate_cluster(stream, 8192, "t")
    with pytest.raises(CorruptImageError, match="invalid deflate"):
        inflate_cluster(b"\xff" * 64, 4096, "t")


# -- real files from other tools -------------------------------------------------------------

CORPUS = builders.CORPUS
# name -> expected: "read" (byte-exact with qemu-img), or the hazard kind / damage word
CORPUS_FILES = {
    "dissect/qcow2/basic.qcow2.gz": "read",
    "dissect/qcow2/basic-zstd.qcow2.gz": "read",
    "dissect/qcow2/snapshot.qcow2.gz": "read",
    "dissect/qcow2/backing-chain-1.qcow2.gz": "backing-file",
    "dissect/qcow2/backing-chain-2.qcow2.gz": "backing-file",
    "dissect/qcow2/backing-chain-3.qcow2.gz": "read",
    "dissect/qcow2/data-file.qcow2.gz": "data-file",
    "dfvfs/ext2.qcow2.gz": "read",
    "dfvfs/windows_volume.qcow2.gz": "read",
    "libyal/libyal_libqcow_tests_data_file_header.1.gz": "damaged",
}


def _assert_same_as_reference(disk: VirtualDisk, reference: Path, name: str) -> None:
    """Compare with qemu's (sparse) output: our data extents byte by byte; our holes and
    zero extents against the reference's holes (``SEEK_DATA``), reading only where it has data.
    """
    fd = os.open(reference, os.O_RDONLY)
    try:
        for ext in disk.allocation():
            end = ext.start + ext.length
            pos = ext.start
            while pos < end:
                n = min(8 * MiB, end - pos)
                if ext.state is not ExtentState.DATA:
                    try:
                        data_at = os.lseek(fd, pos, os.SEEK_DATA)
                    except OSError:  # ENXIO: no data after pos
                        break
                    if data_at >= end:
                        break
                    pos = data_at
                    n = min(8 * MiB, end - pos)
                assert disk.read(pos, n) == os.pread(fd, n, pos), f"{name} differs at {pos}"
                pos += n
    finally:
        os.close(fd)


@builders.needs_corpus
def test_corpus_files() -> None:
    work = builders.cached("qcow2-corpus")
    work.mkdir(exist_ok=True)
    for name, expected in CORPUS_FILES.items():
        image = work / Path(name).name.removesuffix(".gz")
        if not image.exists():
            image.write_bytes(gzip.decompress((CORPUS / name).read_bytes()))
        with FileSource(image) as src:
            c = registry.probe(src)
            assert c.format == "qcow2", name
            if expected == "damaged":
                assert c.damage is not None, name
            elif expected != "read":
                assert expected in [h.kind for h in c.hazards] and c.opener is None, name
            else:
                assert c.readable and c.opener is not None, name
                disk = c.opener(src)
                assert c.virtual_size == builders.qemu_virtual_size(image, "qcow2"), name
                ref = builders.reference_raw(image, "qcow2")
                assert ref.stat().st_size == disk.virtual_size, name
                _assert_same_as_reference(disk, ref, name)
