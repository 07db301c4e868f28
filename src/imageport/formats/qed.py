"""QEMU Enhanced Disk (QED) images: probing and inspection.

The layout is described in :mod:`imageport.disk.qed` (learned from qemu's ``block/qed.h`` and
``block/qed.c``). Variants: ``standalone``, or ``backing file`` when the header's backing-file
feature bit is set.

A backing file is never opened: its name (read from the header, bounded) is quoted in a
``backing-file`` hazard and the image is refused. Feature bits qemu does not know are refused
with a ``feature-bit`` hazard naming each bit, because their meaning (and what a reader would
have to touch) is unknown. The need-consistency-check bit (0x02, a file not closed cleanly) is
shown as a property: the tables are still checked entry by entry as they are read. The virtual
size is the header's image size, as ``qemu-img info`` reports it.
"""

from __future__ import annotations

import functools

from imageport import limits
from imageport.disk.qed import (
    F_BACKING_FILE,
    F_BACKING_FORMAT_NO_PROBE,
    F_NEED_CHECK,
    HEADER_BYTES,
    MAGIC,
    QedDisk,
    QedHeader,
    read_l1,
)
from imageport.errors import CorruptImageError
from imageport.formats.base import Container, FormatSpec, Hazard, ProbeWindow
from imageport.source import ByteSource, read_exact


def _matches(window: ProbeWindow) -> bool:
    return window.head_at(0, 4) == MAGIC


def backing_file_name(source: ByteSource, header: QedHeader) -> str:
    """The backing file name recorded in the header, read within caps (never opened)."""
    size = min(header.backing_filename_size, limits.MAX_DESCRIPTOR_BYTES)
    try:
        raw = read_exact(source, header.backing_filename_offset, size, "qed backing file name")
    except CorruptImageError:
        return "(name unreadable: outside the file)"
    name = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return name + ("..." if size < header.backing_filename_size else "")


def _hazards(source: ByteSource, header: QedHeader) -> tuple[Hazard, ...]:
    found: list[Hazard] = []
    if header.features & F_BACKING_FILE:
        raw_note = " (raw format)" if header.features & F_BACKING_FORMAT_NO_PROBE else ""
        name = backing_file_name(source, header)
        found.append(
            Hazard("backing-file", f"qed image reads from backing file {name!r}{raw_note}")
        )
    unknown = header.unknown_features
    for bit in range(64):
        if unknown & (1 << bit):
            found.append(Hazard("feature-bit", f"qed feature bit {1 << bit:#x} is unknown"))
    return tuple(found)


def _inspect(source: ByteSource, window: ProbeWindow) -> Container:
    header = QedHeader.from_bytes(read_exact(source, 0, HEADER_BYTES, "qed header"))
    hazards = _hazards(source, header)
    variant = "backing file" if header.features & F_BACKING_FILE else "standalone"
    damage: str | None = None
    l1 = None
    try:
        header.validate(source.size)
        l1 = read_l1(source, header)
    except CorruptImageError as exc:
        if not hazards:
            raise
        damage = str(exc)
    properties = {
        "cluster size": str(header.cluster_size),
        "table size": f"{header.table_size} clusters",
        "needs consistency check": "yes" if header.features & F_NEED_CHECK else "no",
        "features": f"{header.features:#x}",
        "compat features": f"{header.compat_features:#x}",
        "autoclear features": f"{header.autoclear_features:#x}",
    }
    if l1 is not None:
        properties["allocated L2 tables"] = str(sum(1 for e in l1 if e))
    readable = not hazards and damage is None
    return Container(
        format="qed",
        variant=variant,
        accepted=True,
        file_size=source.size,
        virtual_size=header.image_size,
        hazards=hazards,
        damage=damage,
        properties=properties,
        opener=functools.partial(QedDisk.open, header=header) if readable else None,
    )


SPECS: tuple[FormatSpec, ...] = (
    FormatSpec(
        name="qed",
        description="QEMU Enhanced Disk",
        accepted=True,
        matches=_matches,
        inspect=_inspect,
    ),
)
