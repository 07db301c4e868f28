"""LUKS1 and LUKS2 volumes: named as encrypted, never accepted, headers checked."""

from __future__ import annotations

import hashlib
import json
import struct

from imageport.formats import registry
from imageport.source import BytesSource

UUID = b"5b1a2c3d-0000-4000-8000-123456789abc"


def luks1(payload_sectors: int = 4096, size: int = 4 << 20) -> bytes:
    """A LUKS1 header (cryptsetup's layout) with two active key slots."""
    header = bytearray(size)
    struct.pack_into(
        ">6sH32s32s32sII", header, 0, b"LUKS\xba\xbe", 1, b"aes", b"xts-plain64", b"sha256",
        payload_sectors, 64,
    )  # fmt: skip
    header[168 : 168 + len(UUID)] = UUID
    for slot in range(8):
        state = 0x00AC71F3 if slot < 2 else 0x0000DEAD
        struct.pack_into(">I", header, 208 + slot * 48, state)
    return bytes(header)


def luks2_area(hdr_size: int = 16384, *, magic: bytes = b"LUKS\xba\xbe", seqid: int = 3) -> bytes:
    """One LUKS2 header area (binary header + JSON) with a correct sha256 checksum."""
    area = bytearray(hdr_size)
    struct.pack_into(">6sHQQ48s32s", area, 0, magic, 2, hdr_size, seqid, b"root", b"sha256")
    area[168 : 168 + len(UUID)] = UUID
    metadata = {
        "keyslots": {},
        "segments": {"0": {"type": "crypt", "offset": "16777216", "size": "dynamic",
                           "iv_tweak": "0", "encryption": "aes-xts-plain64",
                           "sector_size": 512}},
        "config": {"json_size": str(hdr_size - 4096)},
    }  # fmt: skip
    text = json.dumps(metadata).encode()
    area[4096 : 4096 + len(text)] = text
    area[448 : 448 + 32] = hashlib.sha256(bytes(area)).digest()
    return bytes(area)


def luks2(size: int = 20 << 20) -> bytearray:
    image = bytearray(size)
    image[0:16384] = luks2_area()
    image[16384:32768] = luks2_area(magic=b"SKUL\xba\xbe")
    return image


def test_luks1_is_named_encrypted_with_cipher_and_uuid() -> None:
    c = registry.probe(BytesSource(luks1()))
    assert (c.format, c.variant, c.accepted, c.encryption) == ("luks", "luks1", False, "luks")
    assert c.properties["cipher name"] == "aes"
    assert c.properties["cipher mode"] == "xts-plain64"
    assert c.properties["uuid"] == UUID.decode()
    assert c.properties["active key slots"] == "2"
    assert c.virtual_size == (4 << 20) - 4096 * 512
    assert not c.readable


def test_luks1_payload_beyond_the_file_is_damage() -> None:
    c = registry.probe(BytesSource(luks1(payload_sectors=1 << 30)))
    assert c.encryption == "luks" and c.damage is not None and "payload" in c.damage


def test_luks2_checksum_json_and_segment() -> None:
    c = registry.probe(BytesSource(bytes(luks2())))
    assert (c.format, c.variant, c.encryption, c.damage) == ("luks", "luks2", "luks", None)
    assert c.properties["header checksum"] == "ok"
    assert c.properties["cipher"] == "aes-xts-plain64"
    assert c.properties["uuid"] == UUID.decode()
    assert c.virtual_size == (20 << 20) - 16777216


def test_luks2_bad_checksum_is_damage_but_still_encrypted() -> None:
    image = luks2()
    image[4200] ^= 0x01  # inside the JSON area
    c = registry.probe(BytesSource(bytes(image)))
    assert c.encryption == "luks" and c.damage is not None and "checksum" in c.damage


def test_luks2_with_only_the_secondary_header_is_still_named() -> None:
    image = luks2()
    image[0:4096] = bytes(4096)
    c = registry.probe(BytesSource(bytes(image)))
    assert (c.format, c.encryption) == ("luks", "luks")
    assert c.variant == "luks2 (primary header missing)" and c.damage is not None


def test_hostile_luks2_headers_fail_fast() -> None:
    image = luks2()
    struct.pack_into(">Q", image, 8, 1 << 60)  # absurd header size
    c = registry.probe(BytesSource(bytes(image)))
    assert c.format == "luks" and c.damage is not None and "header size" in c.damage
    deep = bytearray(luks2_area())
    deep[4096:16384] = b"[" * 12288  # JSON nested beyond the recursion limit
    c = registry.probe(BytesSource(bytes(deep)))
    assert c.encryption == "luks" and c.damage is not None
    truncated = registry.probe(BytesSource(bytes(luks2()[:6000])))
    assert truncated.format == "luks" and truncated.damage is not None


def test_unknown_luks_version_is_not_luks() -> None:
    data = bytearray(luks1())
    struct.pack_into(">H", data, 6, 7)
    assert registry.probe(BytesSource(bytes(data))).format == "raw"
