"""VirtualBox VDI images: probing and inspection.

The header layout is described in :mod:`imageport.disk.vdi` (learned from qemu's
``block/vdi.c`` and VirtualBox's header description). Variants are ``dynamic`` (normal,
blocks allocated on write) and ``static`` (fixed, every block preallocated).

Undo and differencing images (types 3 and 4), and any image whose link or parent UUID is set,
are only meaningful on top of a parent image that VirtualBox finds by UUID in its media
registry: they are refused with a ``parent-locator`` hazard naming that UUID. Nothing is ever
looked up by that UUID. The virtual size is the header's disk size rounded up to whole sectors,
exactly as ``qemu-img info`` reports it.
"""

from __future__ import annotations

import functools
import struct
import uuid

from imageport.disk.vdi import (
    DISCARDED,
    HEADER_BYTES,
    SIGNATURE,
    TYPE_DIFF,
    TYPE_UNDO,
    VdiDisk,
    VdiHeader,
    read_block_map,
)
from imageport.formats.base import Container, FormatSpec, Hazard, ProbeWindow
from imageport.source import ByteSource, read_exact

_NIL = uuid.UUID(int=0)


def _matches(window: ProbeWindow) -> bool:
    sig = window.head_at(0x40, 4)
    return len(sig) == 4 and struct.unpack("<I", sig)[0] == SIGNATURE


def _hazards(header: VdiHeader) -> tuple[Hazard, ...]:
    found: list[Hazard] = []
    if header.image_type in (TYPE_DIFF, TYPE_UNDO) or header.uuid_link != _NIL:
        parent = str(header.uuid_link) if header.uuid_link != _NIL else "(not recorded)"
        found.append(
            Hazard(
                "parent-locator",
                f"vdi {header.type_name} image needs the parent image with UUID {parent}",
            )
        )
    if header.uuid_parent != _NIL:
        found.append(
            Hazard(
                "parent-locator",
                f"vdi image records a parent modification UUID {header.uuid_parent}",
            )
        )
    return tuple(found)


def _inspect(source: ByteSource, window: ProbeWindow) -> Container:
    header = VdiHeader.from_bytes(read_exact(source, 0, HEADER_BYTES, "vdi header"))
    header.validate(source.size)
    bmap = read_block_map(source, header)
    allocated = sum(1 for e in bmap if e < DISCARDED)
    hazards = _hazards(header)
    properties = {
        "image type": header.type_name,
        "block size": str(header.block_size),
        "blocks in image": str(header.blocks_in_image),
        "blocks allocated": str(allocated),
        "uuid": str(header.uuid_image),
    }
    return Container(
        format="vdi",
        variant=header.type_name,
        accepted=True,
        file_size=source.size,
        virtual_size=header.virtual_size,
        hazards=hazards,
        properties=properties,
        opener=None if hazards else functools.partial(VdiDisk.open, header=header),
    )


SPECS: tuple[FormatSpec, ...] = (
    FormatSpec(
        name="vdi",
        description="VirtualBox VDI 1.1 (dynamic or static)",
        accepted=True,
        matches=_matches,
        inspect=_inspect,
    ),
)
