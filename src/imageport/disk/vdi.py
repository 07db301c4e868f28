"""VirtualBox VDI (version 1.1): the header layout, the block map, and the virtual-disk reader.

Layout learned from qemu's ``block/vdi.c`` and VirtualBox's published header description
(``VDIHEADER1PLUS``). All fields are little-endian. The first 512 bytes of the file are:

======  ======  =====================================================================
offset  size    field
======  ======  =====================================================================
0x000   64      text ("<<< ... Disk Image >>>\\n"); informational only
0x040   4       signature ``0xbeda107f``
0x044   4       version (``0x00010001`` = 1.1, the only one qemu reads)
0x048   4       header size (0x180 for qemu-made files)
0x04c   4       image type: 1 normal (dynamic), 2 fixed (static), 3 undo, 4 diff
0x050   4       image flags
0x054   256     description
0x154   4       offset of the block map (bytes)
0x158   4       offset of the data area (bytes)
0x15c   16      legacy geometry: cylinders, heads, sectors, sector size (must be 512)
0x16c   4       unused
0x170   8       disk size (bytes; qemu rounds an odd size up to whole sectors)
0x178   4       block size (1 MiB in every file qemu and VirtualBox make)
0x17c   4       block extra (bytes in front of every block; 0 here)
0x180   4       blocks in image (entries in the block map)
0x184   4       blocks allocated
0x188   16      image UUID
0x198   16      last-modification UUID
0x1a8   16      link UUID: the parent image's UUID (differencing images only)
0x1b8   16      parent-modification UUID (differencing images only)
======  ======  =====================================================================

The block map holds one u32 per guest block: the index of the host block in the data area,
``0xFFFFFFFF`` for a block never allocated (a hole) and ``0xFFFFFFFE`` for a discarded one
(reported as zero); both read as zeros. Guest block ``i`` with entry ``e`` lives at
``offset_data + e * block_size``.
"""

from __future__ import annotations

import struct
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from imageport import limits
from imageport.disk.base import Run, RunKind, VirtualDisk, block_runs, progression_length
from imageport.errors import CorruptImageError, LimitExceededError, UnsupportedImageError
from imageport.source import ByteSource, read_exact

SIGNATURE = 0xBEDA107F
VERSION_1_1 = 0x00010001
SECTOR = 512
HEADER_BYTES = 512

#: Image types (``image_type``).
TYPE_DYNAMIC = 1
TYPE_STATIC = 2
TYPE_UNDO = 3
TYPE_DIFF = 4
TYPE_NAMES = {TYPE_DYNAMIC: "dynamic", TYPE_STATIC: "static", TYPE_UNDO: "undo", TYPE_DIFF: "diff"}

#: Block-map entries that are not host block indices.
UNALLOCATED = 0xFFFFFFFF
DISCARDED = 0xFFFFFFFE

#: Largest block size accepted (VirtualBox and qemu only ever use 1 MiB).
MAX_BLOCK_SIZE = 64 * limits.MiB

_HEADER = struct.Struct("<64sIIIII256sIIIIIIIQIIII16s16s16s16s")


@dataclass(frozen=True, slots=True)
class VdiHeader:
    """The fields of a VDI 1.1 header that matter for reading (see the module docstring)."""

    signature: int
    version: int
    header_size: int
    image_type: int
    image_flags: int
    offset_bmap: int
    offset_data: int
    sector_size: int
    disk_size: int
    block_size: int
    block_extra: int
    blocks_in_image: int
    blocks_allocated: int
    uuid_image: uuid.UUID
    uuid_link: uuid.UUID
    uuid_parent: uuid.UUID

    @classmethod
    def from_bytes(cls, data: bytes) -> VdiHeader:
        """Unpack the first 512 bytes of a file (no validation; see :meth:`validate`)."""
        if len(data) < _HEADER.size:
            raise CorruptImageError(f"vdi: header is {len(data)} bytes, need {_HEADER.size}")
        f = _HEADER.unpack_from(data)
        # f: text, signature, version, header_size, type, flags, description, offset_bmap,
        # offset_data, cylinders, heads, sectors, sector_size, unused1, disk_size, block_size,
        # block_extra, blocks_in_image, blocks_allocated, uuid_image, uuid_last_snap,
        # uuid_link, uuid_parent
        return cls(
            signature=f[1],
            version=f[2],
            header_size=f[3],
            image_type=f[4],
            image_flags=f[5],
            offset_bmap=f[7],
            offset_data=f[8],
            sector_size=f[12],
            disk_size=f[14],
            block_size=f[15],
            block_extra=f[16],
            blocks_in_image=f[17],
            blocks_allocated=f[18],
            uuid_image=uuid.UUID(bytes_le=f[19]),
            uuid_link=uuid.UUID(bytes_le=f[21]),
            uuid_parent=uuid.UUID(bytes_le=f[22]),
        )

    @property
    def virtual_size(self) -> int:
        """The disk size rounded up to whole sectors, as qemu reports it."""
        return (self.disk_size + SECTOR - 1) // SECTOR * SECTOR

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.image_type, f"unknown type {self.image_type}")

    def validate(self, file_size: int) -> None:
        """Check every number before it sizes anything; raise our errors naming the field."""
        if self.signature != SIGNATURE:
            raise CorruptImageError(f"vdi: bad signature {self.signature:#010x}")
        if self.version != VERSION_1_1:
            raise UnsupportedImageError(
                f"vdi: version {self.version >> 16}.{self.version & 0xFFFF} (only 1.1 is read)"
            )
        if self.image_type not in TYPE_NAMES:
            raise CorruptImageError(f"vdi: unknown image type {self.image_type}")
        if self.sector_size != SECTOR:
            raise UnsupportedImageError(f"vdi: sector size {self.sector_size} is not 512")
        bs = self.block_size
        if bs < SECTOR or bs % SECTOR or bs & (bs - 1) or bs > MAX_BLOCK_SIZE:
            raise LimitExceededError(
                f"vdi: block size {bs} is not a power of two from 512 to {MAX_BLOCK_SIZE}"
            )
        if self.block_extra != 0:
            raise UnsupportedImageError(f"vdi: block extra {self.block_extra} is not 0")
        limits.cap(self.blocks_in_image * 4, limits.MAX_TABLE_BYTES, "vdi: block map size")
        limits.cap(self.virtual_size, limits.MAX_VIRTUAL_SIZE, "vdi: disk size")
        if self.virtual_size > self.blocks_in_image * bs:
            raise CorruptImageError(
                f"vdi: disk size {self.disk_size} exceeds the {self.blocks_in_image} blocks "
                f"of the block map"
            )
        for name, off in (("block map", self.offset_bmap), ("data", self.offset_data)):
            if off % SECTOR or off < HEADER_BYTES:
                raise CorruptImageError(
                    f"vdi: {name} offset {off:#x} is not a sector after the header"
                )
        bmap_end = self.offset_bmap + self.blocks_in_image * 4
        if bmap_end > file_size:
            raise CorruptImageError(
                f"vdi: block map ({self.blocks_in_image} entries at {self.offset_bmap:#x}) "
                f"runs past the end of the file ({file_size} bytes)"
            )
        if self.offset_data < bmap_end:
            raise CorruptImageError(
                f"vdi: data offset {self.offset_data:#x} lies inside the block map"
            )


def read_block_map(source: ByteSource, header: VdiHeader) -> array[int]:
    """Read and check the block map: every allocated entry names a host block that lies
    inside the file (two guest blocks naming the same host block are refused, with the
    evidence, by the storage audit: :mod:`imageport.disk.audit`). The header must have been
    validated."""
    raw = read_exact(source, header.offset_bmap, header.blocks_in_image * 4, "vdi block map")
    bmap = array("I")
    bmap.frombytes(raw)
    if bmap.itemsize != 4:  # pragma: no cover - every CPython platform has 32-bit "I"
        raise UnsupportedImageError("vdi: this platform has no 32-bit array type")
    if struct.pack("=I", 1) != struct.pack("<I", 1):  # pragma: no cover - big-endian hosts
        bmap.byteswap()
    bs = header.block_size
    host_blocks = max(0, (source.size - header.offset_data) // bs)
    for index, entry in enumerate(bmap):
        if entry >= DISCARDED:
            continue
        if entry >= host_blocks:
            raise CorruptImageError(
                f"vdi: guest block {index} maps to host block {entry}, beyond the end of "
                f"the file ({source.size} bytes)"
            )
        if entry >= header.blocks_in_image:
            raise CorruptImageError(
                f"vdi: guest block {index} maps to host block {entry}, beyond the "
                f"{header.blocks_in_image} blocks of the image"
            )
    return bmap


class VdiDisk(VirtualDisk):
    """A dynamic or static VDI read through its block map."""

    format_name = "vdi"

    def __init__(self, source: ByteSource, header: VdiHeader, bmap: array[int]) -> None:
        super().__init__(source, header.virtual_size)
        self._header = header
        self._bmap = bmap

    @classmethod
    def open(cls, source: ByteSource, header: VdiHeader) -> VdiDisk:
        """Validate ``header`` against ``source`` and read the block map."""
        header.validate(source.size)
        return cls(source, header, read_block_map(source, header))

    def _lookup(self, index: int, stop: int) -> Run:
        """The run of blocks from ``index`` (before block ``stop``) that are all holes, all
        zeros, or data contiguous in the file (measured in C with :func:`progression_length`)."""
        bs = self._header.block_size
        entry = self._bmap[index]
        step = 0 if entry in (UNALLOCATED, DISCARDED) else 1
        count = progression_length(self._bmap, index, min(stop, len(self._bmap)), step)
        if entry == UNALLOCATED:
            return Run(index * bs, count * bs, RunKind.HOLE)
        if entry == DISCARDED:
            return Run(index * bs, count * bs, RunKind.ZERO)
        return Run(index * bs, count * bs, RunKind.DATA, self._header.offset_data + entry * bs)

    def runs(self, start: int, end: int) -> Iterator[Run]:
        bs = self._header.block_size
        stop = -(-end // bs)
        return block_runs(start, end, bs, lambda index: self._lookup(index, stop))
