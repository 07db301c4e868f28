"""Compressed and archived wrappers: named with a hint; strict magics keep raw disks raw."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import random
import struct
import tarfile
import zipfile
from collections.abc import Callable

import pytest
import zstandard

from imageport.formats import registry
from imageport.formats.base import Container
from imageport.source import BytesSource

DISK = random.Random(5).randbytes(70000) + b"\x55\xaa" + bytes(20000)


def probe(data: bytes) -> Container:
    return registry.probe(BytesSource(data))


def _tar(fmt: int, names: tuple[str, ...]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(DISK)
            tar.addfile(info, io.BytesIO(DISK))
    return out.getvalue()


def _zip(method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        z.writestr("disk.qcow2", DISK)
    return out.getvalue()


def _gzip_named() -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename="disk.qcow2", mode="wb", fileobj=out, mtime=0) as f:
        f.write(DISK)
    return out.getvalue()


CASES = [
    ("gzip", lambda: gzip.compress(DISK), "gunzip"),
    ("xz", lambda: lzma.compress(DISK), "unxz"),
    ("zstd", lambda: zstandard.ZstdCompressor().compress(DISK), "unzstd"),
    ("bzip2", lambda: bz2.compress(DISK), "bunzip2"),
    ("zip", _zip, "unzip"),
    ("tar", lambda: _tar(tarfile.USTAR_FORMAT, ("disk.img",)), "tar -xf"),
]


@pytest.mark.parametrize(("fmt", "make", "tool"), CASES, ids=[c[0] for c in CASES])
def test_wrapper_is_named_with_a_hint(fmt: str, make: Callable[[], bytes], tool: str) -> None:
    c = probe(make())
    assert (c.format, c.accepted, c.readable) == (fmt, False, False)
    assert tool in c.properties["hint"]
    assert "disk image" in c.properties["hint"]


def test_gzip_properties() -> None:
    c = probe(_gzip_named())
    assert c.properties["original name"] == "disk.qcow2"
    assert c.properties["uncompressed size (mod 4 GiB)"] == str(len(DISK))


def test_zip_and_tar_variants() -> None:
    c = probe(_zip())
    assert (c.variant, c.properties["first member"]) == ("zip", "disk.qcow2")
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    assert probe(empty.getvalue()).variant == "empty archive"
    assert probe(_tar(tarfile.USTAR_FORMAT, ("a.img",))).variant == "posix ustar"
    assert probe(_tar(tarfile.GNU_FORMAT, ("a.img",))).variant == "gnu"
    skip = struct.pack("<II", 0x184D2A5E, 4) + b"abcd" + zstandard.ZstdCompressor().compress(DISK)
    assert probe(skip).variant == "skippable frame first"


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_with_an_ovf_first_is_an_ova(fmt: int) -> None:
    c = probe(_tar(fmt, ("appliance.ovf", "appliance-disk1.vmdk")))
    assert (c.format, c.variant, c.accepted) == ("ova", "ova", False)
    assert c.properties["ovf descriptor"] == "appliance.ovf"
    long_name = "x" * 200 + ".ovf"  # GNU long-name or pax path record
    if fmt != tarfile.USTAR_FORMAT:
        c = probe(_tar(fmt, (long_name,)))
        assert (c.format, c.properties["ovf descriptor"]) == ("ova", long_name)
    assert probe(_tar(fmt, ("disk.vmdk", "appliance.ovf"))).format == "tar"


def _near_misses() -> list[tuple[str, bytes]]:
    noise = random.Random(9).randbytes(8192)
    tar = bytearray(_tar(tarfile.USTAR_FORMAT, ("disk.img",)))
    tar[0] ^= 0x01  # checksum no longer verifies
    zip_bad = bytearray(_zip())
    struct.pack_into("<H", zip_bad, 4, 0xFFFF)  # absurd "version needed"
    xz_bad = bytearray(lzma.compress(DISK))
    xz_bad[8] ^= 0xFF  # stream-flags CRC
    gz_bad = bytearray(gzip.compress(DISK))
    gz_bad[2] = 7  # not deflate
    zstd_bad = bytearray(zstandard.ZstdCompressor().compress(DISK))
    zstd_bad[4] |= 0x08  # reserved bit
    return [
        ("bzip2 magic without block magic", b"BZh9" + noise),
        ("bzip2 with block size 0", b"BZh0\x31\x41\x59\x26\x53\x59" + noise),
        ("tar with bad checksum", bytes(tar)),
        ("zip with absurd version", bytes(zip_bad)),
        ("pk empty record in a big file", b"PK\x05\x06" + bytes(18) + noise * 8),
        ("xz with bad flag crc", bytes(xz_bad)),
        ("gzip with another method", bytes(gz_bad)),
        ("zstd with reserved bit", bytes(zstd_bad)),
    ]


@pytest.mark.parametrize(("label", "data"), _near_misses(), ids=[n for n, _ in _near_misses()])
def test_near_miss_magics_stay_raw(label: str, data: bytes) -> None:
    assert probe(data).format == "raw", label


def test_random_disks_are_never_wrappers() -> None:
    rng = random.Random(11)
    for _ in range(300):
        assert probe(rng.randbytes(4096)).format == "raw"


def test_truncated_tar_extension_header_is_damage() -> None:
    data = _tar(tarfile.GNU_FORMAT, ("y" * 300 + ".ovf",))
    c = probe(data[:600])
    assert c.format == "tar" and c.damage is not None
