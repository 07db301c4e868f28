"""Polyglots are refused; the one accepted overlap (hybrid ISO + MBR/GPT) is not a polyglot.

A file that two formats both claim is refused (IMG-SAFE): two readers would see two different
disks in it. A bootable hybrid ISO that also carries an MBR or GPT is *one* format (partition
tables are not container formats), and a raw disk with a GPT is raw.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from imageport.formats import registry
from imageport.formats.base import Container
from imageport.source import BytesSource, FileSource
from support import builders

SECTOR = 2048


def iso_descriptors(volume_blocks: int) -> bytes:
    """An ISO 9660 primary volume descriptor followed by a terminator (2 sectors)."""
    pvd = bytearray(SECTOR)
    pvd[0:7] = b"\x01CD001\x01"
    pvd[40:72] = b"POLYGLOT".ljust(32, b" ")
    struct.pack_into("<I", pvd, 80, volume_blocks)
    struct.pack_into(">I", pvd, 84, volume_blocks)
    struct.pack_into("<H", pvd, 128, SECTOR)
    struct.pack_into(">H", pvd, 130, SECTOR)
    return bytes(pvd) + b"\xffCD001\x01" + bytes(SECTOR - 7)


def probe_path(path: Path) -> Container:
    with FileSource(path) as src:
        return registry.probe(src)


def test_qcow2_with_an_iso_pvd_is_a_polyglot(tmp_path: Path) -> None:
    """qemu-img's qcow2 with an ISO PVD written into its header cluster at 32 KiB.

    Needs the qcow2 probe (formats/qcow2.py); while that is a placeholder the file probes as
    iso9660 and this test fails on the format assertion, by design.
    """
    path = tmp_path / "polyglot.qcow2"
    builders.qemu_img("create", "-q", "-f", "qcow2", str(path), "64M")
    data = bytearray(path.read_bytes())
    assert len(data) >= 32768 + 2 * SECTOR
    data[32768 : 32768 + 2 * SECTOR] = iso_descriptors(len(data) // SECTOR)
    path.write_bytes(bytes(data))
    builders.qemu_img("info", "-f", "qcow2", str(path))  # still a valid qcow2 for qemu
    c = probe_path(path)
    assert (c.format, c.accepted, c.readable) == ("polyglot", False, False)
    assert [h.kind for h in c.hazards] == ["polyglot"]
    assert "qcow2" in c.hazards[0].detail and "iso9660" in c.hazards[0].detail
    assert "qcow2" in c.variant and "iso9660" in c.variant


def _xorriso_iso(tmp: Path, *extra: str) -> Path:
    xorriso = shutil.which("xorriso")
    if xorriso is None:
        pytest.skip("xorriso is not installed (apt-get install xorriso); hybrid ISO test skipped")
    tree = tmp / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "boot.img").write_bytes(b"\xeb\x3c" + bytes(2046))
    (tree / "efi.img").write_bytes(bytes(64 * 1024))
    out = tmp / f"hybrid{len(list(tmp.glob('*.iso')))}.iso"
    subprocess.run(
        [xorriso, "-as", "mkisofs", "-quiet", "-b", "boot.img", "-no-emul-boot", *extra,
         "-o", str(out), str(tree)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def _assert_hybrid_iso(c: Container, table: str) -> None:
    assert (c.format, c.variant, c.accepted) == ("iso9660", "iso9660 (bootable)", False)
    assert not c.hazards, c.hazards
    assert c.properties["partition table"] == table
    assert c.properties["hybrid (also boots as a disk)"] == "yes"


def test_bootable_iso_with_a_patched_mbr_is_iso_not_polyglot(tmp_path: Path) -> None:
    path = _xorriso_iso(tmp_path)
    data = bytearray(path.read_bytes())
    assert data[510:512] != b"\x55\xaa"
    # one bootable partition entry covering the ISO (type 0x17 hidden IFS, as isohybrid does)
    struct.pack_into("<B3sB3sII", data, 446, 0x80, b"\0\1\0", 0x17, b"\xfe\xff\xff", 0,
                     len(data) // 512)  # fmt: skip
    data[510:512] = b"\x55\xaa"
    path.write_bytes(bytes(data))
    _assert_hybrid_iso(probe_path(path), "mbr")


def test_xorriso_hybrid_isos_with_mbr_and_gpt(tmp_path: Path) -> None:
    _assert_hybrid_iso(probe_path(_xorriso_iso(tmp_path, "--protective-msdos-label")), "mbr")
    gpt = _xorriso_iso(
        tmp_path, "--protective-msdos-label", "-append_partition", "2", "0xef",
        str(tmp_path / "tree" / "efi.img"), "-appended_part_as_gpt",
    )  # fmt: skip
    _assert_hybrid_iso(probe_path(gpt), "gpt")


@pytest.mark.parametrize(
    "name", ["grub-rescue-cdrom.iso.gz", "ipxe.iso.gz", "memtest86+x64.iso.gz"]
)
@builders.needs_corpus
def test_debian_hybrid_media_are_iso_not_polyglot(name: str) -> None:
    source = builders.CORPUS / "debian" / name
    path = builders.cached(f"corpus-polyglot-{name[:-3]}")
    if not path.exists():
        path.write_bytes(gzip.decompress(source.read_bytes()))
    _assert_hybrid_iso(probe_path(path), "mbr")


def test_raw_disk_with_gpt_is_raw() -> None:
    disk = bytearray(2 << 20)
    struct.pack_into("<B3sB3sII", disk, 446, 0, b"\0\2\0", 0xEE, b"\xff\xff\xff", 1,
                     len(disk) // 512 - 1)  # fmt: skip
    disk[510:512] = b"\x55\xaa"
    entries = bytearray(128 * 128)
    entries[0:16] = bytes.fromhex("AF3DC60F838472478E793D69D8477DE4")  # Linux filesystem
    entries[16:32] = b"\x11" * 16
    struct.pack_into("<QQ", entries, 32, 2048, 4095)
    header = bytearray(92)
    struct.pack_into("<8sIIIIQQQQ16sQIII", header, 0, b"EFI PART", 0x00010000, 92, 0, 0, 1,
                     len(disk) // 512 - 1, 34, len(disk) // 512 - 34, b"\x22" * 16, 2, 128, 128,
                     zlib.crc32(entries))  # fmt: skip
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    disk[512 : 512 + 92] = header
    disk[1024 : 1024 + len(entries)] = entries
    c = registry.probe(BytesSource(bytes(disk)))
    assert (c.format, c.variant, c.accepted) == ("raw", "gpt", True)
    assert not c.hazards
