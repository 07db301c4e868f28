"""cpio archive headers: the "newc" (070701), "crc" (070702), portable ASCII "odc" (070707) and
old binary (octal 070707 as a 16-bit word, either byte order) formats.

Learned from the cpio(5) manual page (libarchive's ``cpio.5``) and the kernel's
``Documentation/driver-api/early-userspace/buffer-format.rst``: a header, the NUL-terminated
name, then the file data; newc/crc pad header+name and data to 4 bytes, binary to 2, odc not at
all. An entry named ``TRAILER!!!`` ends an archive. The kernel itself only unpacks newc and crc;
the other two are read here because tools can make them and a user may have.

Headers are read from a :class:`ByteStream` (a positioned device or a decompressed stream) and
every number is checked before it sizes a read: names longer than :data:`MAX_NAME_BYTES` are an
error, and hexadecimal/octal fields must be exactly that (``int()`` alone would accept signs,
spaces and underscores).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

from imageport.errors import CorruptImageError, TruncatedImageError

#: Longest member name accepted (PATH_MAX, including the terminating NUL).
MAX_NAME_BYTES = 4096
TRAILER = "TRAILER!!!"

NEWC_MAGIC = b"070701"
CRC_MAGIC = b"070702"
ODC_MAGIC = b"070707"
BIN_MAGIC_LE = b"\xc7\x71"
BIN_MAGIC_BE = b"\x71\xc7"

_HEX = frozenset(b"0123456789abcdefABCDEF")
_OCT = frozenset(b"01234567")
#: newc/crc: 13 fields of 8 hex digits after the magic (110 bytes in all).
_NEWC_FIELDS = 13
#: odc: dev, ino, mode, uid, gid, nlink, rdev (6 octal digits), mtime (11), namesize (6),
#: filesize (11): 76 bytes with the magic.
_ODC_WIDTHS = (6, 6, 6, 6, 6, 6, 6, 11, 6, 11)
_BIN = {"<": struct.Struct("<13H"), ">": struct.Struct(">13H")}


class ByteStream(Protocol):
    """Sequential bytes: a device from an offset, or a decompressed segment."""

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end)."""
        ...

    def skip(self, n: int) -> int:
        """Discard up to ``n`` bytes; return how many were discarded."""
        ...

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes without consuming them."""
        ...


@dataclass(frozen=True, slots=True)
class CpioHeader:
    """One member's header, whatever the format."""

    format: str  #: ``newc``, ``crc``, ``odc``, ``bin``
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    filesize: int
    namesize: int  #: including the terminating NUL
    header_size: int
    align: int  #: 4 (newc, crc), 2 (bin) or 1 (odc)

    @classmethod
    def from_newc(cls, raw: bytes) -> CpioHeader:
        """Parse 110 bytes starting with ``070701`` or ``070702``."""
        fields = []
        for i in range(_NEWC_FIELDS):
            part = raw[6 + 8 * i : 14 + 8 * i]
            if len(part) != 8 or not set(part) <= _HEX:
                raise CorruptImageError(f"cpio: newc header field {i} is not hexadecimal")
            fields.append(int(part, 16))
        _ino, mode, uid, gid, nlink, mtime, filesize, _maj, _min, _rmaj, _rmin, namesize, _c = (
            fields
        )
        fmt = "crc" if raw[:6] == CRC_MAGIC else "newc"
        return cls(fmt, mode, uid, gid, nlink, mtime, filesize, namesize, 110, 4)

    @classmethod
    def from_odc(cls, raw: bytes) -> CpioHeader:
        """Parse 76 bytes starting with ``070707``."""
        fields = []
        pos = 6
        for width in _ODC_WIDTHS:
            part = raw[pos : pos + width]
            if len(part) != width or not set(part) <= _OCT:
                raise CorruptImageError("cpio: odc header field is not octal")
            fields.append(int(part, 8))
            pos += width
        _dev, _ino, mode, uid, gid, nlink, _rdev, mtime, namesize, filesize = fields
        return cls("odc", mode, uid, gid, nlink, mtime, filesize, namesize, 76, 1)

    @classmethod
    def from_bin(cls, raw: bytes) -> CpioHeader:
        """Parse 26 bytes of the old binary format (byte order from the magic)."""
        order = "<" if raw[:2] == BIN_MAGIC_LE else ">"
        (_magic, _dev, _ino, mode, uid, gid, nlink, _rdev, mt_hi, mt_lo, namesize, fs_hi, fs_lo) = (
            _BIN[order].unpack(raw)
        )
        return cls(
            "bin",
            mode,
            uid,
            gid,
            nlink,
            (mt_hi << 16) | mt_lo,
            (fs_hi << 16) | fs_lo,
            namesize,
            26,
            2,
        )

    @property
    def name_padding(self) -> int:
        return -(self.header_size + self.namesize) % self.align

    @property
    def data_padding(self) -> int:
        return -self.filesize % self.align


def is_cpio_magic(head: bytes) -> bool:
    """Whether ``head`` starts a cpio header of a format read here."""
    return head[:6] in (NEWC_MAGIC, CRC_MAGIC, ODC_MAGIC) or head[:2] in (
        BIN_MAGIC_LE,
        BIN_MAGIC_BE,
    )


def _exact(stream: ByteStream, n: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise TruncatedImageError(f"cpio: {what} is cut short")
    return data


def read_header(stream: ByteStream) -> tuple[CpioHeader, bytes]:
    """The next header and raw name (without NUL); the stream is left at the member's data."""
    head = stream.peek(6)
    if head[:6] in (NEWC_MAGIC, CRC_MAGIC):
        hdr = CpioHeader.from_newc(_exact(stream, 110, "newc header"))
    elif head[:6] == ODC_MAGIC:
        hdr = CpioHeader.from_odc(_exact(stream, 76, "odc header"))
    elif head[:2] in (BIN_MAGIC_LE, BIN_MAGIC_BE):
        hdr = CpioHeader.from_bin(_exact(stream, 26, "binary header"))
    else:
        raise CorruptImageError("cpio: no header magic where a member should start")
    if not 1 <= hdr.namesize <= MAX_NAME_BYTES:
        raise CorruptImageError(f"cpio: name size {hdr.namesize} is outside 1..{MAX_NAME_BYTES}")
    raw = _exact(stream, hdr.namesize, "member name")
    if raw[-1] != 0:
        raise CorruptImageError("cpio: member name is not NUL-terminated")
    if stream.skip(hdr.name_padding) != hdr.name_padding:
        raise TruncatedImageError("cpio: name padding is cut short")
    return hdr, raw[:-1].split(b"\x00", 1)[0]
