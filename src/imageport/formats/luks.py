"""LUKS encrypted volumes (LUKS1 and LUKS2): named as encrypted, never accepted.

A whole-file LUKS volume cannot be inspected or booted without its passphrase; the platform
refuses it (IMG-FORMAT) and the report says it is encrypted (IMG-DISK-ENCRYPTION).

Layout, learned from the cryptsetup on-disk format documents "LUKS1 On-Disk Format
Specification 1.2.3" and "LUKS2 On-Disk Format Specification 1.1.x" (all numbers big-endian):

* Both versions open with ``LUKS\\xba\\xbe`` and a u16 version at 6.
* LUKS1 (592-byte header): cipher name (32 bytes at 8), cipher mode (32 at 40), hash spec
  (32 at 72), payload offset in 512-byte sectors (u32 at 104), key bytes (u32 at 108), UUID
  (40 at 168), then 8 key slots of 48 bytes at 208 (active slots hold ``0x00AC71F3``).
* LUKS2: a 4096-byte binary header (header size u64 at 8, sequence id u64 at 16, label at 24,
  checksum algorithm at 72, UUID at 168, header offset u64 at 256, checksum at 448) followed by a
  JSON area; the whole header area (``hdr_size`` bytes, one of 16 KiB .. 4 MiB) is checksummed
  with the checksum field zeroed. A second copy starts at ``hdr_size`` with the magic
  ``SKUL\\xba\\xbe``. The JSON names the data segment's cipher (``segments``/``encryption``).

Virtual size: the decrypted payload (file size minus the payload offset for LUKS1; the first
segment's size, or file size minus its offset when ``dynamic``, for LUKS2).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from imageport import limits
from imageport.errors import CorruptImageError
from imageport.formats.base import Container, FormatSpec, ProbeWindow, refused_spec
from imageport.source import ByteSource, read_exact

MAGIC = b"LUKS\xba\xbe"
SECONDARY_MAGIC = b"SKUL\xba\xbe"
SECTOR = 512
LUKS2_BINARY_HEADER = 4096
#: The header-area sizes LUKS2 allows; the secondary header starts at one of them.
LUKS2_HEADER_SIZES = tuple(16384 << k for k in range(9))  # 16 KiB .. 4 MiB
_KEYSLOT_ACTIVE = 0x00AC71F3


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


@dataclass(frozen=True, slots=True)
class Luks1Header:
    """The LUKS1 partition header fields we report."""

    cipher_name: str
    cipher_mode: str
    hash_spec: str
    payload_offset_sectors: int
    key_bytes: int
    uuid: str
    active_keyslots: int

    LAYOUT = struct.Struct(">6sH32s32s32sII20s32sI40s")
    KEYSLOT = struct.Struct(">II32sII")
    KEYSLOTS_AT = 208
    SIZE = KEYSLOTS_AT + 8 * KEYSLOT.size

    @classmethod
    def from_bytes(cls, data: bytes) -> Luks1Header:
        (_m, _v, name, mode, hspec, payload, key_bytes, _d, _s, _i, uuid) = cls.LAYOUT.unpack_from(
            data, 0
        )
        active = 0
        for slot in range(8):
            state = cls.KEYSLOT.unpack_from(data, cls.KEYSLOTS_AT + slot * cls.KEYSLOT.size)[0]
            active += state == _KEYSLOT_ACTIVE
        return cls(
            cipher_name=_cstr(name),
            cipher_mode=_cstr(mode),
            hash_spec=_cstr(hspec),
            payload_offset_sectors=payload,
            key_bytes=key_bytes,
            uuid=_cstr(uuid),
            active_keyslots=active,
        )


@dataclass(frozen=True, slots=True)
class Luks2BinaryHeader:
    """The fixed binary part of a LUKS2 header (primary or secondary)."""

    magic: bytes
    header_size: int
    sequence_id: int
    label: str
    checksum_algorithm: str
    uuid: str
    subsystem: str
    header_offset: int

    LAYOUT = struct.Struct(">6sHQQ48s32s64s40s48sQ")
    CHECKSUM_AT = 448
    CHECKSUM_LEN = 64

    @classmethod
    def from_bytes(cls, data: bytes) -> Luks2BinaryHeader:
        (magic, _v, hdr_size, seqid, label, csum_alg, _salt, uuid, subsystem, hdr_offset) = (
            cls.LAYOUT.unpack_from(data, 0)
        )
        return cls(
            magic=magic,
            header_size=hdr_size,
            sequence_id=seqid,
            label=_cstr(label),
            checksum_algorithm=_cstr(csum_alg),
            uuid=_cstr(uuid),
            subsystem=_cstr(subsystem),
            header_offset=hdr_offset,
        )


def _version(data: bytes) -> int:
    return int(struct.unpack_from(">H", data, 6)[0]) if len(data) >= 8 else 0


def _secondary_offset(window: ProbeWindow) -> int | None:
    """Where a LUKS2 secondary header sits in the probe window, if the primary is gone."""
    for offset in LUKS2_HEADER_SIZES:
        data = window.head_at(offset, 8)
        if data[:6] == SECONDARY_MAGIC and _version(data) == 2:
            return offset
    return None


def _matches(window: ProbeWindow) -> bool:
    if window.head[:6] == MAGIC:
        return _version(window.head) in (1, 2)
    return _secondary_offset(window) is not None


def _inspect(source: ByteSource, window: ProbeWindow) -> Container:
    head = window.head
    if head[:6] == MAGIC and _version(head) == 1:
        return _inspect_luks1(source)
    if head[:6] == MAGIC:
        return _inspect_luks2(source, 0)
    offset = _secondary_offset(window)
    if offset is None:  # pragma: no cover - matches() said otherwise
        raise CorruptImageError("luks: no LUKS header found")
    return _inspect_luks2(source, offset)


def _inspect_luks1(source: ByteSource) -> Container:
    header = Luks1Header.from_bytes(read_exact(source, 0, Luks1Header.SIZE, "LUKS1 header"))
    payload = header.payload_offset_sectors * SECTOR
    damage = None
    if payload > source.size:
        damage = f"LUKS1 payload offset {payload} lies beyond the end of the file"
    return Container(
        format="luks",
        variant="luks1",
        accepted=False,
        file_size=source.size,
        virtual_size=None if damage else source.size - payload,
        encryption="luks",
        damage=damage,
        properties={
            "cipher": f"{header.cipher_name}-{header.cipher_mode}",
            "cipher name": header.cipher_name,
            "cipher mode": header.cipher_mode,
            "hash": header.hash_spec,
            "key bits": str(header.key_bytes * 8),
            "uuid": header.uuid,
            "active key slots": str(header.active_keyslots),
            "payload offset": str(payload),
        },
    )


def _checksum_ok(area: bytes, algorithm: str) -> bool | None:
    """Verify a LUKS2 header area's checksum; None when the algorithm is unknown."""
    try:
        digest = hashlib.new(algorithm)
    except (ValueError, TypeError):
        return None
    at = Luks2BinaryHeader.CHECKSUM_AT
    stored = area[at : at + digest.digest_size]
    blanked = bytearray(area)
    blanked[at : at + Luks2BinaryHeader.CHECKSUM_LEN] = bytes(Luks2BinaryHeader.CHECKSUM_LEN)
    digest.update(blanked)
    return digest.digest() == stored


def _segment_facts(metadata: Any, file_size: int) -> tuple[str | None, int | None]:
    """Cipher and decrypted size of the first crypt segment in the LUKS2 JSON metadata."""
    if not isinstance(metadata, dict):
        return None, None
    segments = metadata.get("segments")
    if not isinstance(segments, dict):
        return None, None
    for key in sorted(segments, key=lambda k: str(k)):
        seg = segments[key]
        if not isinstance(seg, dict) or seg.get("type") != "crypt":
            continue
        cipher = seg.get("encryption")
        size: int | None = None
        try:
            offset = int(seg.get("offset", "0"))
            raw_size = seg.get("size")
            if raw_size == "dynamic":
                size = max(0, file_size - offset)
            elif raw_size is not None:
                size = limits.cap(int(raw_size), limits.MAX_VIRTUAL_SIZE, "LUKS2 segment size")
        except (TypeError, ValueError):
            size = None
        return (cipher if isinstance(cipher, str) else None), size
    return None, None


def _inspect_luks2(source: ByteSource, offset: int) -> Container:
    header = Luks2BinaryHeader.from_bytes(
        read_exact(source, offset, LUKS2_BINARY_HEADER, "LUKS2 binary header")
    )
    if header.header_size not in LUKS2_HEADER_SIZES:
        raise CorruptImageError(f"LUKS2 header size {header.header_size} is not a valid size")
    limits.cap(header.header_size, limits.MAX_DESCRIPTOR_BYTES * 4, "LUKS2 header size")
    properties = {
        "uuid": header.uuid,
        "label": header.label,
        "header size": str(header.header_size),
        "sequence id": str(header.sequence_id),
    }
    damage: str | None = None
    variant = "luks2"
    if offset:
        variant = "luks2 (primary header missing)"
        damage = "the primary LUKS2 header is missing; only the secondary copy was found"
    area = read_exact(source, offset, header.header_size, "LUKS2 header area")
    verdict = _checksum_ok(area, header.checksum_algorithm)
    if verdict is False:
        damage = damage or f"LUKS2 header checksum ({header.checksum_algorithm}) does not match"
    properties["header checksum"] = {True: "ok", False: "bad", None: "not checked"}[verdict]
    virtual_size: int | None = None
    try:
        metadata = json.loads(area[LUKS2_BINARY_HEADER:].split(b"\0", 1)[0])
    except (ValueError, RecursionError):
        metadata = None
        properties["metadata"] = "unreadable JSON"
    cipher, virtual_size = _segment_facts(metadata, source.size)
    if cipher:
        properties["cipher"] = cipher
    return Container(
        format="luks",
        variant=variant,
        accepted=False,
        file_size=source.size,
        virtual_size=virtual_size,
        encryption="luks",
        damage=damage,
        properties=properties,
    )


SPEC = refused_spec("luks", "LUKS encrypted volume", _matches, _inspect)

SPECS: tuple[FormatSpec, ...] = (SPEC,)
