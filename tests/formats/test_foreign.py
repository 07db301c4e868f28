"""Foreign virtual-disk and forensic formats: named with variant and size, never accepted."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from imageport.formats import registry
from imageport.formats.base import Container
from imageport.source import BytesSource, FileSource
from support import builders


def probe(data: bytes | bytearray) -> Container:
    return registry.probe(BytesSource(bytes(data)))


def parallels(magic: bytes, sectors: int) -> bytearray:
    data = bytearray(64 * 1024)
    struct.pack_into("<16sIIIIIQIIIQ", data, 0, magic, 2, 16, 32, 2048, 16, sectors, 0, 1, 0, 0)
    return data


def test_parallels_made_by_qemu_matches_qemu_info(tmp_path: Path) -> None:
    path = tmp_path / "disk.hds"
    builders.qemu_img("create", "-q", "-f", "parallels", str(path), "100M")
    with FileSource(path) as src:
        c = registry.probe(src)
    assert (c.format, c.accepted) == ("parallels", False)
    assert c.variant.startswith("v")
    assert c.virtual_size == builders.qemu_virtual_size(path, "parallels")


def test_parallels_versions_and_v1_sector_mask() -> None:
    c = probe(parallels(b"WithoutFreeSpace", (0xDEAD << 32) | 4096))
    assert (c.format, c.variant, c.virtual_size) == (
        "parallels",
        "v1 (WithoutFreeSpace)",
        4096 * 512,
    )
    c = probe(parallels(b"WithouFreSpacExt", 1 << 30))
    assert (c.variant, c.virtual_size) == ("v2 (ext)", (1 << 30) * 512)
    huge = probe(parallels(b"WithouFreSpacExt", 1 << 62))
    assert huge.format == "parallels" and huge.damage is not None
    wrong_version = parallels(b"WithouFreSpacExt", 8)
    struct.pack_into("<I", wrong_version, 16, 3)
    assert probe(wrong_version).format == "raw"


def test_parallels_bundle_descriptor_names_its_files_as_hazards() -> None:
    xml = (
        b"<?xml version='1.0' encoding='UTF-8'?>\n<Parallels_disk_image Version=\"1.0\">\n"
        b"<Disk_Parameters><Disk_size>65536</Disk_size></Disk_Parameters><StorageData>"
        b"<Storage><Image><File>disk.hdd.0.hds</File></Image></Storage>"
        b"<Storage><Image><File>/etc/shadow</File></Image></Storage></StorageData>"
        b"</Parallels_disk_image>\n"
    )
    c = probe(xml)
    assert (c.format, c.accepted, c.virtual_size) == ("parallels", False, 65536 * 512)
    assert "DiskDescriptor.xml" in c.variant
    assert [h.kind for h in c.hazards] == ["external-extent", "external-extent"]
    assert "/etc/shadow" in c.hazards[1].detail


def bochs(version: int = 0x00020000, disk: int = 1 << 20) -> bytearray:
    data = bytearray(4096)
    struct.pack_into("<32s16s16sIIIII", data, 0, b"Bochs Virtual HD Image", b"Redolog",
                     b"Growing", version, 512, 512, 1, 4096)  # fmt: skip
    struct.pack_into("<Q", data, 88 if version == 0x00020000 else 84, disk)
    return data


def test_bochs_v1_and_v2() -> None:
    c = probe(bochs())
    assert (c.format, c.variant, c.virtual_size) == ("bochs", "redolog growing (v2)", 1 << 20)
    c = probe(bochs(0x00010000, 5 << 20))
    assert (c.variant, c.virtual_size) == ("redolog growing (v1)", 5 << 20)
    bad = probe(bochs(0x00030000))
    assert bad.format == "bochs" and bad.damage is not None and "version" in bad.damage


CLOOP = b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"


def test_cloop_v2_and_bad_block_size() -> None:
    data = bytearray(4096)
    data[: len(CLOOP)] = CLOOP
    struct.pack_into(">II", data, 128, 65536, 16)
    c = probe(data)
    assert (c.format, c.variant, c.virtual_size) == ("cloop", "v2.0", 1 << 20)
    struct.pack_into(">II", data, 128, 1000, 16)
    bad = probe(data)
    assert bad.format == "cloop" and bad.damage is not None
    assert probe(data[:100]).damage is not None  # truncated before the block count


def test_dmg_koly_trailer_and_encrypted_dmg() -> None:
    data = bytearray(8192)
    trailer = bytearray(512)
    struct.pack_into(">4sIII", trailer, 0, b"koly", 4, 512, 1)
    struct.pack_into(">IQ", trailer, 488, 1, 3514)
    data[-512:] = trailer
    c = probe(data)
    assert (c.format, c.variant, c.accepted, c.virtual_size) == ("dmg", "udif", False, 3514 * 512)
    enc = probe(b"encrcdsa" + bytes(4088))
    assert (enc.format, enc.variant, enc.encryption) == ("dmg", "encrypted", "dmg")


def _ewf_section(name: bytes, next_offset: int, size: int) -> bytes:
    head = struct.pack("<16sQQ40s", name, next_offset, size, b"")
    return head + struct.pack("<I", zlib.adler32(head))


def test_ewf_e01_volume_section_gives_the_media_size() -> None:
    data = bytearray(b"EVF\x09\x0d\x0a\xff\x00\x01\x01\x00\x00\x00")
    data += _ewf_section(b"header", 13 + 76 + 20, 76 + 20) + bytes(20)
    volume_at = len(data)
    data += _ewf_section(b"volume", volume_at + 76 + 1052, 76 + 1052)
    data += struct.pack("<B3xIIIQ", 1, 128, 64, 512, 8192) + bytes(1052 - 24)
    data += _ewf_section(b"done", len(data), 76)
    c = probe(data)
    assert (c.format, c.variant, c.virtual_size) == ("ewf", "ewf (E01)", 8192 * 512)
    data[volume_at + 20] ^= 0xFF  # breaks the descriptor's adler32
    bad = probe(data)
    assert bad.format == "ewf" and bad.damage is not None and "checksum" in bad.damage
    ex01 = probe(b"EVF2\r\n\x81\x00" + bytes(100))
    assert (ex01.format, ex01.variant) == ("ewf", "ewf2 (Ex01)")


def test_ewf_section_loop_is_bounded() -> None:
    data = bytearray(b"EVF\x09\x0d\x0a\xff\x00\x01\x01\x00\x00\x00")
    data += _ewf_section(b"header", 13, 76)  # points at itself
    c = probe(data)
    assert c.format == "ewf" and c.damage is None and c.virtual_size is None


def test_asif_header() -> None:
    data = bytearray(4096)
    struct.pack_into(">4sIII16x16sQQIHH", data, 0, b"shdw", 1, 512, 0, b"\x01" * 16, 2048,
                     1 << 40, 1 << 20, 512, 1)  # fmt: skip
    c = probe(data)
    assert (c.format, c.variant, c.accepted, c.virtual_size) == ("asif", "v1", False, 2048 * 512)
    struct.pack_into(">H", data, 68, 3)
    assert probe(data).damage is not None
