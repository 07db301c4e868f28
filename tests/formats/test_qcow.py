"""QCOW version 1: qemu-made images read byte-exactly; hostile images refused."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from imageport.disk.base import RunKind
from imageport.errors import CorruptImageError, ImageportError, TruncatedImageError
from imageport.formats import registry
from imageport.source import BytesSource, FileSource
from support import builders
from support.exactness import assert_allocation_consistent, assert_reads_match
from support.isolation import probe_refusing_opens

MiB = 1 << 20
CLUSTER = 4096


def test_qemu_image_reads_exactly() -> None:
    image = builders.converted("qcow")
    reference = builders.reference_raw(image, "qcow")
    with FileSource(image) as src:
        c = registry.probe(src)
        assert (c.format, c.variant, c.readable) == ("qcow", "v1", True)
        assert c.virtual_size == builders.qemu_virtual_size(image, "qcow")
        assert c.properties["cluster size"] == "4096"
        assert c.opener is not None
        disk = c.opener(src)
        assert_reads_match(disk, reference, random_reads=40)
        assert_allocation_consistent(disk, reference)


def compressed_image() -> Path:
    """A 4 MiB qcow with compressed, plain and unallocated clusters, cached.

    ``qemu-img convert -O qcow -c`` (qemu 7.2) writes every cluster and then exits with status 1
    (its final empty compressed write is refused by the qcow driver), so the compressed
    clusters are written with ``qemu-io write -c`` instead.
    """
    final = builders.cached("qcow-compressed.qcow")
    if final.exists():
        return final
    pattern = builders.pattern_raw().read_bytes()
    tmp = final.with_name(final.name + ".tmp")
    builders.qemu_img("create", "-f", "qcow", str(tmp), "4M")
    commands: list[str] = []
    chunks: list[Path] = []
    # text (compresses), random (stored plain by qemu), MBR + random, the last cluster
    writes = [(20 * MiB, 0), (20 * MiB + 8192, 8192), (4096, 65536), (0, MiB)]
    writes += [(21 * MiB, 4 * MiB - CLUSTER)]
    writes += [(20 * MiB + k * CLUSTER, 2 * MiB + k * CLUSTER) for k in range(40)]
    for i, (src, dst) in enumerate(writes):
        chunk = final.with_name(f"{final.name}.chunk{i}")
        chunk.write_bytes(pattern[src : src + CLUSTER])
        chunks.append(chunk)
        commands += ["-c", f"write -q -c -s {chunk} {dst} {CLUSTER}"]
    qemu_io = Path(builders.qemu_img_path()).with_name("qemu-io")
    subprocess.run(
        [str(qemu_io), "-f", "qcow", *commands, str(tmp)], check=True, capture_output=True
    )
    for chunk in chunks:
        chunk.unlink()
    os.replace(tmp, final)
    return final


def test_compressed_clusters_read_exactly() -> None:
    image = compressed_image()
    reference = builders.reference_raw(image, "qcow")
    with FileSource(image) as src:
        c = registry.probe(src)
        assert c.readable and c.opener is not None
        disk = c.opener(src)
        kinds = {run.kind for run in disk.runs(0, disk.virtual_size)}
        assert {RunKind.PACKED, RunKind.DATA, RunKind.HOLE} <= kinds
        assert_reads_match(disk, reference, random_reads=40)
        assert_allocation_consistent(disk, reference)


def _create(name: str, *args: str) -> Path:
    image = builders.cached(f"hostile-{name}.qcow")
    if not image.exists():
        tmp = image.with_name(image.name + ".tmp")
        builders.qemu_img("create", "-f", "qcow", *args, str(tmp), "4M")
        os.replace(tmp, image)
    return image


def test_backing_file_is_named_and_never_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    image = _create("backing", "-u", "-b", "/etc/passwd", "-F", "raw")
    c = probe_refusing_opens(monkeypatch, image)
    assert (c.format, c.opener, c.readable) == ("qcow", None, False)
    assert [h.kind for h in c.hazards] == ["backing-file"]
    assert "'/etc/passwd'" in c.hazards[0].detail


def test_aes_encryption_is_reported() -> None:
    image = _create(
        "aes",
        "--object",
        "secret,id=sec0,data=abc",
        "-o",
        "encrypt.format=aes,encrypt.key-secret=sec0",
    )
    with FileSource(image) as src:
        c = registry.probe(src)
    assert (c.format, c.encryption, c.opener) == ("qcow", "aes", None)


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.fixture(scope="module")
def small() -> bytes:
    return compressed_image().read_bytes()


@pytest.mark.parametrize(
    ("offset", "value", "words"),
    [
        (32, b"\x08", "cluster_bits"),
        (32, b"\x11", "cluster_bits"),
        (33, b"\x05", "l2_bits"),
        (33, b"\x0e", "l2_bits"),
        (24, struct.pack(">Q", 1), "too small"),
        (24, struct.pack(">Q", 1 << 62), "L1 table size"),
        (36, struct.pack(">I", 2), "encryption method 2"),
        (40, struct.pack(">Q", 1 << 40), "L1 table"),
    ],
)
def test_bad_header_fields_are_named(small: bytes, offset: int, value: bytes, words: str) -> None:
    src = BytesSource(_patch(small, offset, value))
    c = registry.probe(src)
    assert c.format == "qcow" and c.damage is not None and words in c.damage
    assert src.bytes_read < 200_000


def test_l2_table_beyond_the_file_is_damage(small: bytes) -> None:
    l1_offset = struct.unpack_from(">Q", small, 40)[0]
    c = registry.probe(BytesSource(_patch(small, l1_offset, struct.pack(">Q", 1 << 40))))
    assert c.damage is not None and "beyond the end" in c.damage


def test_bad_cluster_entries_fail_on_read(small: bytes) -> None:
    l1_offset = struct.unpack_from(">Q", small, 40)[0]
    l2 = struct.unpack_from(">Q", small, l1_offset)[0]
    entry = struct.unpack_from(">Q", small, l2)[0]
    assert entry >> 63, "cluster 0 should be compressed"
    for value, error in [
        (entry & ((1 << 63) - 1), CorruptImageError),  # flag cleared: unaligned offset
        ((1 << 63) | 0x7FF, CorruptImageError),  # compressed, 0 bytes
        (1 << 40, TruncatedImageError),  # plain cluster beyond the file
    ]:
        data = _patch(small, l2, struct.pack(">Q", value))
        c = registry.probe(BytesSource(data))
        assert c.opener is not None
        with pytest.raises(error):
            c.opener(BytesSource(data)).read(0, 1)


def test_truncated_and_bit_flipped_headers_only_raise_our_errors(small: bytes) -> None:
    outcomes = set()
    for cut in (9, 47, 1000, 12000, 30000, 40000, len(small) - 1):
        src = BytesSource(small[:cut])
        c = registry.probe(src)
        assert c.format == "qcow"
        if c.damage is not None:
            outcomes.add("damaged")
            continue
        assert c.opener is not None
        try:
            c.opener(src).read(0, 4 * MiB)
            outcomes.add("read")
        except TruncatedImageError:
            outcomes.add("truncated on read")
        except CorruptImageError:
            outcomes.add("cut compressed cluster")
    assert {"damaged", "truncated on read"} <= outcomes
    for offset in range(48):
        for mask in (0x01, 0x80, 0xFF):
            flipped = _patch(small, offset, bytes([small[offset] ^ mask]))
            c = registry.probe(BytesSource(flipped))
            assert c.damage is None or "internal error" not in c.damage, (offset, mask)
            if c.opener is not None:
                try:
                    disk = c.opener(BytesSource(flipped))
                    disk.read(0, 4 * MiB)
                    list(disk.allocation())
                except ImageportError:
                    pass
