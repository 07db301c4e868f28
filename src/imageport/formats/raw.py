"""Raw disk images: no container, the file is the disk.

Raw is what a file is when no other format's magic matches. Its variant names the partition
table found at the start (``gpt``, ``mbr``) or says there is none; a GPT header's CRC is
checked so that a damaged table is named as such.
"""

from __future__ import annotations

import struct
import zlib

from imageport.disk.raw import RawDisk
from imageport.formats.base import Container, FormatSpec, ProbeWindow
from imageport.source import ByteSource

SECTOR = 512
_GPT_SIGNATURE = b"EFI PART"


def partition_table(head: bytes) -> str:
    """Name the partition table at the start of a disk: ``gpt``, ``mbr`` or ``none``.

    A GPT whose header CRC does not match is reported as ``gpt (bad header checksum)``.
    """
    if len(head) >= 2 * SECTOR and head[SECTOR : SECTOR + 8] == _GPT_SIGNATURE:
        header_size = struct.unpack_from("<I", head, SECTOR + 12)[0]
        if not 92 <= header_size <= SECTOR:
            return "gpt (bad header size)"
        header = bytearray(head[SECTOR : SECTOR + header_size])
        stored_crc = struct.unpack_from("<I", header, 16)[0]
        header[16:20] = b"\0\0\0\0"
        if zlib.crc32(header) != stored_crc:
            return "gpt (bad header checksum)"
        return "gpt"
    if len(head) >= SECTOR and head[510:512] == b"\x55\xaa":
        return "mbr"
    return "none"


def _matches(window: ProbeWindow) -> bool:
    return True  # the fallback; the registry only uses raw when nothing else matched


def _inspect(source: ByteSource, window: ProbeWindow) -> Container:
    table = partition_table(window.head)
    variant = "no partition table" if table == "none" else table
    return Container(
        format="raw",
        variant=variant,
        accepted=True,
        file_size=source.size,
        virtual_size=source.size,
        properties={"partition table": table},
        opener=RawDisk,
    )


SPEC = FormatSpec(
    name="raw",
    description="raw disk image (no container)",
    accepted=True,
    matches=_matches,
    inspect=_inspect,
)

SPECS: tuple[FormatSpec, ...] = ()  # raw is never matched by magic; see registry.probe
