"""Compressed files and archives that wrap a disk image: named, never accepted, with a hint.

Users often upload ``disk.qcow2.gz`` or an ``.ova``; the platform needs the disk image itself.
Each wrapper is recognised by a magic strict enough that raw disks rarely match by chance, and
its Container carries a ``hint`` property that the IMG-FORMAT rule shows as advice.

Magics, learned from the format specifications (RFC 1952 gzip, the .xz file format 1.1.0,
RFC 8878 Zstandard, the bzip2 stream layout, PKWARE APPNOTE 6.3 for zip, POSIX.1-1988 ustar
and GNU tar for tar, DMTF DSP0243 for OVA):

* gzip: ``1f 8b 08`` (deflate), no reserved flag bits; the last 4 bytes give the uncompressed
  size modulo 4 GiB; the original file name follows the header when FNAME is set.
* xz: ``FD 37 7A 58 5A 00``, stream flags ``00 0x`` and their CRC32 (checked).
* zstd: ``28 B5 2F FD`` with the frame header's reserved bit clear, or a skippable frame
  ``0x184D2A50..5F`` (little-endian).
* bzip2: ``BZh`` + block size ``1``..``9`` + the block magic ``31 41 59 26 53 59`` (or the
  end-of-stream magic ``17 72 45 38 50 90`` for an empty stream).
* zip: a local file header ``PK\\x03\\x04`` with a sane "version needed" and compression method,
  or an empty archive (just ``PK\\x05\\x06``, 22 bytes plus comment).
* tar: ``ustar\\0`` + ``00`` (POSIX) or ``ustar  \\0`` (GNU) at 257, and the header checksum at
  148 must verify. A tar whose first member is an ``.ovf`` descriptor is named ``ova``.

No virtual size is reported: the disk inside is not read.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from imageport import limits
from imageport.errors import CorruptImageError
from imageport.formats.base import Container, FormatSpec, ProbeWindow, refused_spec
from imageport.source import ByteSource, read_exact

_DECOMPRESS = "decompress it first ({tool}) and check the disk image inside"
_EXTRACT = "extract the disk image from the archive ({tool}) and check that file instead"


def _wrapped(source: ByteSource, fmt: str, variant: str, hint: str, **properties: str) -> Container:
    return Container(
        format=fmt,
        variant=variant,
        accepted=False,
        file_size=source.size,
        properties={"hint": hint, **properties},
    )


# -- gzip ------------------------------------------------------------------------------------

_GZIP = struct.Struct("<2sBBIBB")  # magic, method, flags, mtime, extra flags, OS
_GZ_FEXTRA, _GZ_FNAME = 0x04, 0x08


def _matches_gzip(window: ProbeWindow) -> bool:
    if len(window.head) < _GZIP.size:
        return False
    magic, method, flags, _mtime, xfl, os_id = _GZIP.unpack_from(window.head)
    return (
        magic == b"\x1f\x8b"
        and method == 8
        and flags & 0xE0 == 0
        and xfl in (0, 2, 4)
        and (os_id <= 13 or os_id == 255)
    )


def _gzip_name(head: bytes, flags: int) -> str | None:
    if not flags & _GZ_FNAME:
        return None
    pos = _GZIP.size
    if flags & _GZ_FEXTRA:
        if len(head) < pos + 2:
            return None
        pos += 2 + struct.unpack_from("<H", head, pos)[0]
    end = head.find(b"\0", pos, pos + 1024)
    return head[pos:end].decode("latin-1") if end > pos else None


def _inspect_gzip(source: ByteSource, window: ProbeWindow) -> Container:
    flags = window.head[3]
    props: dict[str, str] = {}
    name = _gzip_name(window.head, flags)
    if name:
        props["original name"] = name
    if source.size >= 18:
        isize = struct.unpack("<I", window.tail_last(4))[0]
        props["uncompressed size (mod 4 GiB)"] = str(isize)
    return _wrapped(source, "gzip", "deflate", _DECOMPRESS.format(tool="e.g. gunzip"), **props)


# -- xz --------------------------------------------------------------------------------------

_XZ_MAGIC = b"\xfd7zXZ\x00"
_XZ_CHECKS = {0: "none", 1: "crc32", 4: "crc64", 10: "sha256"}


def _matches_xz(window: ProbeWindow) -> bool:
    head = window.head
    if head[:6] != _XZ_MAGIC or len(head) < 12:
        return False
    flags = head[6:8]
    return (
        flags[0] == 0
        and flags[1] <= 0x0F
        and zlib.crc32(flags) == struct.unpack_from("<I", head, 8)[0]
    )


def _inspect_xz(source: ByteSource, window: ProbeWindow) -> Container:
    check = _XZ_CHECKS.get(window.head[7], f"check type {window.head[7]}")
    return _wrapped(
        source, "xz", "xz", _DECOMPRESS.format(tool="e.g. unxz"), **{"integrity check": check}
    )


# -- zstd ------------------------------------------------------------------------------------

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd_skippable(head: bytes) -> bool:
    return len(head) >= 8 and head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50


def _matches_zstd(window: ProbeWindow) -> bool:
    head = window.head
    if head[:4] == _ZSTD_MAGIC and len(head) >= 5:
        return head[4] & 0x08 == 0  # reserved bit of the frame header descriptor
    return _zstd_skippable(head)


def _inspect_zstd(source: ByteSource, window: ProbeWindow) -> Container:
    variant = "skippable frame first" if _zstd_skippable(window.head) else "zstd frame"
    return _wrapped(source, "zstd", variant, _DECOMPRESS.format(tool="e.g. unzstd"))


# -- bzip2 -----------------------------------------------------------------------------------

_BZIP2 = re.compile(rb"\ABZh[1-9](?:\x31\x41\x59\x26\x53\x59|\x17\x72\x45\x38\x50\x90)")


def _matches_bzip2(window: ProbeWindow) -> bool:
    return _BZIP2.match(window.head[:10]) is not None


def _inspect_bzip2(source: ByteSource, window: ProbeWindow) -> Container:
    block = int(chr(window.head[3])) * 100
    return _wrapped(source, "bzip2", f"{block}k blocks", _DECOMPRESS.format(tool="e.g. bunzip2"))


# -- zip -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZipLocalHeader:
    """A zip local file header (PKWARE APPNOTE 4.3.7), little-endian."""

    version_needed: int
    flags: int
    method: int
    compressed_size: int
    uncompressed_size: int
    name_length: int
    extra_length: int

    LAYOUT = struct.Struct("<4sHHHHHIIIHH")

    @classmethod
    def from_bytes(cls, data: bytes) -> ZipLocalHeader:
        f = cls.LAYOUT.unpack_from(data)
        return cls(f[1], f[2], f[3], f[7], f[8], f[9], f[10])

    @property
    def sane(self) -> bool:
        return (
            10 <= self.version_needed & 0xFF <= 63
            and self.version_needed >> 8 <= 20
            and self.method in _ZIP_METHODS
            and 0 < self.name_length <= 4096
        )


_ZIP_METHODS = {0: "stored", 8: "deflate", 9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstd",
                95: "xz", 98: "ppmd", 99: "aes-encrypted"}  # fmt: skip


def _matches_zip(window: ProbeWindow) -> bool:
    head = window.head
    if head[:4] == b"PK\x05\x06":  # an empty archive: only the end-of-central-directory record
        return 22 <= window.file_size <= 22 + 0xFFFF and head[4:20] == bytes(16)
    if head[:4] != b"PK\x03\x04" or len(head) < ZipLocalHeader.LAYOUT.size:
        return False
    return ZipLocalHeader.from_bytes(head).sane


def _inspect_zip(source: ByteSource, window: ProbeWindow) -> Container:
    hint = _EXTRACT.format(tool="e.g. unzip")
    if window.head[:4] == b"PK\x05\x06":
        return _wrapped(source, "zip", "empty archive", hint)
    header = ZipLocalHeader.from_bytes(window.head)
    start = ZipLocalHeader.LAYOUT.size
    name = read_exact(source, start, header.name_length, "zip member name")
    props = {
        "first member": name.decode("utf-8", "replace"),
        "compression": _ZIP_METHODS.get(header.method, str(header.method)),
    }
    if header.flags & 1:
        props["encrypted"] = "yes"
    return _wrapped(source, "zip", "zip", hint, **props)


# -- tar / ova -------------------------------------------------------------------------------

TAR_BLOCK = 512
_USTAR_POSIX = b"ustar\x0000"
_USTAR_GNU = b"ustar  \x00"
#: Extension headers (pax, GNU long name) skipped before the first real member.
_TAR_MAX_EXTENSIONS = 4


@dataclass(frozen=True, slots=True)
class TarHeader:
    """The ustar header fields we use (name, size, type, prefix), with its checksum checked."""

    name: str
    size: int
    typeflag: bytes
    gnu: bool

    @classmethod
    def from_block(cls, block: bytes) -> TarHeader | None:
        """Parse a 512-byte header; None unless the magic and the checksum are right."""
        if len(block) < TAR_BLOCK:
            return None
        magic = block[257:265]
        if magic not in (_USTAR_POSIX, _USTAR_GNU):
            return None
        stored = _octal(block[148:156])
        if stored is None:
            return None
        blanked = block[:148] + b" " * 8 + block[156:TAR_BLOCK]
        unsigned = sum(blanked)
        signed = sum(b - 256 if b > 127 else b for b in blanked)
        if stored not in (unsigned, signed):
            return None
        size = _octal(block[124:136])
        name = block[0:100].split(b"\0", 1)[0]
        prefix = block[345:500].split(b"\0", 1)[0] if magic == _USTAR_POSIX else b""
        full = prefix + b"/" + name if prefix else name
        return cls(
            name=full.decode("utf-8", "replace"),
            size=size or 0,
            typeflag=block[156:157],
            gnu=magic == _USTAR_GNU,
        )


def _octal(field: bytes) -> int | None:
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text or not all(48 <= c <= 55 for c in text):
        return None
    return int(text, 8)


def _matches_tar(window: ProbeWindow) -> bool:
    return TarHeader.from_block(window.head[:TAR_BLOCK]) is not None


def _first_member_name(source: ByteSource, header: TarHeader) -> str:
    """The first real member's name, following GNU long names and pax ``path`` records."""
    offset = 0
    override: str | None = None
    for _ in range(_TAR_MAX_EXTENSIONS):
        if header.typeflag not in (b"L", b"x", b"g"):
            return override or header.name
        size = limits.cap(header.size, limits.MAX_DESCRIPTOR_BYTES, "tar extension header size")
        payload = read_exact(source, offset + TAR_BLOCK, size, "tar extension header")
        if header.typeflag == b"L":
            override = payload.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif header.typeflag == b"x":
            match = re.search(rb"(?:^|\n)\d+ path=([^\n]*)\n", payload)
            if match:
                override = match.group(1).decode("utf-8", "replace")
        offset += TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK
        block = read_exact(source, offset, TAR_BLOCK, "tar header")
        following = TarHeader.from_block(block)
        if following is None:
            raise CorruptImageError(f"tar: no valid header at offset {offset}")
        header = following
    raise CorruptImageError("tar: too many extension headers before the first member")


def _inspect_tar(source: ByteSource, window: ProbeWindow) -> Container:
    header = TarHeader.from_block(window.head[:TAR_BLOCK])
    if header is None:  # pragma: no cover - matches() said otherwise
        raise CorruptImageError("tar: header checksum does not verify")
    name = _first_member_name(source, header)
    variant = "gnu" if header.gnu else "posix ustar"
    if name.lower().endswith(".ovf"):
        return _wrapped(
            source,
            "ova",
            "ova",
            "an OVA holds an OVF descriptor and disk images: extract it (e.g. tar -xf) "
            "and check the .vmdk disk image inside",
            **{"ovf descriptor": name, "tar variant": variant},
        )
    return _wrapped(source, "tar", variant, _EXTRACT.format(tool="e.g. tar -xf"),
                    **{"first member": name})  # fmt: skip


SPECS: tuple[FormatSpec, ...] = (
    refused_spec("gzip", "gzip-compressed file", _matches_gzip, _inspect_gzip),
    refused_spec("xz", "xz-compressed file", _matches_xz, _inspect_xz),
    refused_spec("zstd", "zstd-compressed file", _matches_zstd, _inspect_zstd),
    refused_spec("bzip2", "bzip2-compressed file", _matches_bzip2, _inspect_bzip2),
    refused_spec("zip", "zip archive", _matches_zip, _inspect_zip),
    refused_spec("tar", "tar archive (or an OVA appliance)", _matches_tar, _inspect_tar),
)
