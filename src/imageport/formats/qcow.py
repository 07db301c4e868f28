"""QCOW version 1, qemu's original copy-on-write format: header and open-time checks.

Layout learned from qemu's ``block/qcow.c`` (``QCowHeader``); the checks mirror its
``qcow_open``. The 48-byte big-endian header holds the magic ``QFI\\xfb``, version 1, the
backing file name's offset and length, an mtime, the virtual size, ``cluster_bits`` (9..16),
``l2_bits`` (6..13), ``crypt_method`` (0 none, 1 AES) and the L1 table offset. The L1 table
has one entry per ``1 << (cluster_bits + l2_bits)`` bytes of disk and no size field of its
own. There are no header extensions, feature bits, snapshots or zero clusters.

A backing file is a hazard (IMG-SAFE; its name is quoted, never opened); AES encryption is
reported as ``encryption="aes"``; neither gets an opener. Virtual size: qemu uses ``size``
rounded down to 512 bytes; so do we.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from imageport import limits
from imageport.disk.qcow import QcowDisk, QcowMapping
from imageport.disk.qcow2 import be64_array
from imageport.errors import CorruptImageError, TruncatedImageError, UnsupportedImageError
from imageport.formats.base import Container, FormatSpec, Hazard, ProbeWindow
from imageport.formats.qcow2 import MAGIC, quote
from imageport.source import ByteSource, read_exact

MAX_BACKING_NAME = 1023


@dataclass(frozen=True, slots=True)
class QcowHeader:
    """The 48-byte qcow v1 header (layout ``_LAYOUT``)."""

    version: int
    backing_file_offset: int
    backing_file_size: int
    mtime: int
    size: int
    cluster_bits: int
    l2_bits: int
    crypt_method: int
    l1_table_offset: int

    _LAYOUT = struct.Struct(">4sIQIIQBBHIQ")

    @classmethod
    def read(cls, source: ByteSource) -> QcowHeader:
        raw = read_exact(source, 0, cls._LAYOUT.size, "qcow header")
        (magic, version, bf_off, bf_size, mtime, size, cbits, l2bits, _pad, crypt, l1_off) = (
            cls._LAYOUT.unpack(raw)
        )
        if magic != MAGIC or version != 1:
            raise CorruptImageError("qcow: not a version 1 header")
        return cls(version, bf_off, bf_size, mtime, size, cbits, l2bits, crypt, l1_off)

    def validate(self) -> None:
        """qemu's ``qcow_open`` checks."""
        if self.size <= 1:
            raise CorruptImageError(f"qcow: image size {self.size} is too small")
        if not 9 <= self.cluster_bits <= 16:
            raise CorruptImageError(f"qcow: cluster_bits {self.cluster_bits} outside 9..16")
        if not 6 <= self.l2_bits <= 13:
            raise CorruptImageError(f"qcow: l2_bits {self.l2_bits} outside 6..13")
        if self.crypt_method > 1:
            raise UnsupportedImageError(f"qcow encryption method {self.crypt_method}")

    @property
    def l1_entries(self) -> int:
        """Entries of the L1 table covering the disk."""
        shift = self.cluster_bits + self.l2_bits
        return (self.size + (1 << shift) - 1) >> shift


def read_l1(source: ByteSource, header: QcowHeader) -> bytes:
    """The L1 table, capped, each L2 table checked to lie inside the file."""
    count = header.l1_entries
    limits.cap(count * 8, limits.MAX_TABLE_BYTES, "qcow L1 table size")
    raw = read_exact(source, header.l1_table_offset, count * 8, "qcow L1 table")
    table_bytes = 8 << header.l2_bits
    for index, offset in enumerate(be64_array(raw)):
        if offset and offset + table_bytes > source.size:
            raise TruncatedImageError(
                f"qcow: L2 table at {offset:#x} (L1 entry {index}) lies beyond the end of the "
                f"file ({source.size} bytes)"
            )
    return raw


def _matches(window: ProbeWindow) -> bool:
    return window.head_at(0, 8) == MAGIC + b"\0\0\0\1"


def _inspect(source: ByteSource, window: ProbeWindow) -> Container:
    header = QcowHeader.read(source)
    header.validate()
    hazards: list[Hazard] = []
    damage: str | None = None
    if header.backing_file_offset:
        if header.backing_file_size > MAX_BACKING_NAME:
            name = "(name not readable)"
            damage = f"qcow: backing file name of {header.backing_file_size} bytes is too long"
        else:
            name = quote(
                read_exact(
                    source,
                    header.backing_file_offset,
                    header.backing_file_size,
                    "qcow backing file name",
                )
            )
        hazards.append(Hazard("backing-file", f"qcow backing file {name}"))
    encryption = "aes" if header.crypt_method == 1 else None
    virtual_size = header.size // 512 * 512
    opener = None
    if damage is None and not hazards and encryption is None:
        mapping = QcowMapping(
            cluster_bits=header.cluster_bits,
            l2_bits=header.l2_bits,
            virtual_size=virtual_size,
            l1=read_l1(source, header),
        )
        opener = functools.partial(QcowDisk, mapping=mapping)
    properties = {
        "cluster size": str(1 << header.cluster_bits),
        "L2 entries": str(1 << header.l2_bits),
    }
    if header.size != virtual_size:
        properties["header size"] = f"{header.size} (qemu uses whole 512-byte sectors only)"
    return Container(
        format="qcow",
        variant="v1",
        accepted=True,
        file_size=source.size,
        virtual_size=virtual_size,
        hazards=tuple(hazards),
        encryption=encryption,
        damage=damage,
        properties=properties,
        opener=opener,
    )


SPECS: tuple[FormatSpec, ...] = (
    FormatSpec(
        name="qcow",
        description="QEMU copy-on-write image, version 1",
        accepted=True,
        matches=_matches,
        inspect=_inspect,
    ),
)
