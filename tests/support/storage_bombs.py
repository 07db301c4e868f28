"""Hostile images whose tables point many guest clusters at one stored cluster (issue 9,
finding 2), made from qemu-made images by patching their tables, and cached.

The attack: a good guest, grown with ``qemu-img resize``, one cluster written after it with
``qemu-io`` (plain, or compressed with ``write -c``), then every L2 slot of that cluster's L2
table set to the same entry; for the 1 TiB variant every further L1 entry names that L2 table
too. The file grows by two clusters; the disk it stands for, by up to 1 TiB. The refcounts
are left as qemu wrote them (1), which is what ``qemu-img check`` complains about.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support import builders, import_fixtures

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")
L1_OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00


@dataclass(frozen=True)
class Qcow2Layout:
    """The parts of a qcow2 header the patches need."""

    cluster_bits: int
    size: int
    l1_size: int
    l1_offset: int
    refcount_table_offset: int
    nb_snapshots: int

    @classmethod
    def of(cls, data: bytes | bytearray) -> Qcow2Layout:
        f = _HEADER.unpack_from(data)
        return cls(
            cluster_bits=f[4],
            size=f[5],
            l1_size=f[7],
            l1_offset=f[8],
            refcount_table_offset=f[9],
            nb_snapshots=f[11],
        )

    @property
    def cluster(self) -> int:
        return 1 << self.cluster_bits

    @property
    def l2_entries(self) -> int:
        return self.cluster // 8

    @property
    def l2_span(self) -> int:
        return self.cluster * self.l2_entries


def u64(data: bytes | bytearray, offset: int) -> int:
    value: int = struct.unpack_from(">Q", data, offset)[0]
    return value


def put_u64(data: bytearray, offset: int, value: int) -> None:
    struct.pack_into(">Q", data, offset, value)


def l1_entry_at(data: bytes | bytearray, index: int) -> int:
    """File offset of L1 entry ``index``."""
    return Qcow2Layout.of(data).l1_offset + 8 * index


def l2_entry_at(data: bytes | bytearray, guest: int) -> int:
    """File offset of the L2 entry that maps guest offset ``guest`` (its L2 table must exist)."""
    layout = Qcow2Layout.of(data)
    l2 = u64(data, l1_entry_at(data, guest // layout.l2_span)) & L1_OFFSET_MASK
    assert l2, f"no L2 table for guest offset {guest}"
    return l2 + 8 * (guest // layout.cluster % layout.l2_entries)


def refcount_order(data: bytes | bytearray) -> int:
    version: int = struct.unpack_from(">I", data, 4)[0]
    return 4 if version == 2 else int(struct.unpack_from(">I", data, 96)[0])


def _refcount_bits(data: bytes | bytearray, host: int) -> tuple[int, int]:
    """Bit position (from the start of the file, LSB-first within a byte for widths under 8)
    and width of the refcount of the host cluster at ``host``."""
    layout = Qcow2Layout.of(data)
    bits = 1 << refcount_order(data)
    per_block = layout.cluster * 8 // bits
    index = host // layout.cluster
    block = u64(data, layout.refcount_table_offset + 8 * (index // per_block)) & ~0x1FF
    assert block, f"no refcount block for host offset {host}"
    return block * 8 + (index % per_block) * bits, bits


def get_refcount(data: bytes | bytearray, host: int) -> int:
    pos, bits = _refcount_bits(data, host)
    if bits < 8:
        return (data[pos // 8] >> (pos % 8)) & ((1 << bits) - 1)
    return int.from_bytes(data[pos // 8 : pos // 8 + bits // 8], "big")


def set_refcount(data: bytearray, host: int, value: int) -> None:
    """Patch the refcount of the host cluster at ``host`` (any refcount width)."""
    pos, bits = _refcount_bits(data, host)
    if bits < 8:
        mask = ((1 << bits) - 1) << (pos % 8)
        data[pos // 8] = (data[pos // 8] & ~mask) | (value << (pos % 8) & mask)
    else:
        data[pos // 8 : pos // 8 + bits // 8] = value.to_bytes(bits // 8, "big")


def qemu_io(image: Path, command: str) -> None:
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", command, str(image)],
        check=True,
        capture_output=True,
        text=True,
    )


def share_cluster(image: Path, *, at: int, compressed: bool, whole_disk: bool) -> None:
    """Write one cluster at guest offset ``at`` (the start of an L2 span) and point every
    other slot of its L2 table at it; with ``whole_disk``, every further L1 entry too."""
    qemu_io(image, f"write {'-c ' if compressed else ''}-P 0x5a {at} 64k")
    data = bytearray(image.read_bytes())
    layout = Qcow2Layout.of(data)
    first = l2_entry_at(data, at)
    entry = u64(data, first)
    for slot in range(1, layout.l2_entries):
        put_u64(data, first + 8 * slot, entry)
    if whole_disk:
        index = at // layout.l2_span
        table = u64(data, l1_entry_at(data, index))
        for other in range(index + 1, -(-layout.size // layout.l2_span)):
            put_u64(data, l1_entry_at(data, other), table)
    image.write_bytes(data)


def shared_qcow2(*, compressed: bool, size: int) -> Path:
    """The good guest (import_fixtures.good_image) grown to ``size`` with the data after it
    all read from one cluster (``size`` 1 GiB: 512 MiB of it; 1 TiB: 1023.5 GiB). Cached."""
    label = f"{'compressed' if compressed else 'plain'}-{size >> 30}g"
    final = builders.cached(f"bomb-shared-{label}.qcow2")
    if final.exists():
        return final
    tmp = final.with_name(final.name + ".tmp")
    shutil.copyfile(import_fixtures.good_image("qcow2"), tmp)
    builders.qemu_img("resize", "-q", "-f", "qcow2", str(tmp), str(size))
    share_cluster(tmp, at=512 * MiB, compressed=compressed, whole_disk=size > GiB)
    tmp.replace(final)
    return final


def spread_units(data: bytearray, first: int, count: int, offset_bits: int) -> None:
    """Point ``count`` L2 slots from the one at file offset ``first`` at distinct one-sector
    compressed descriptors, each a byte after the one before, from the first slot's."""
    offset = u64(data, first) & ((1 << offset_bits) - 1)
    for k in range(count):
        put_u64(data, first + 8 * k, (1 << 62) | (offset + k))


def expanding_guest_qcow2() -> Path:
    """The good guest grown to 1 GiB, with the 512 MiB after it read from 8192 distinct
    compressed clusters a byte apart: nothing shared, 65536:1. Cached."""
    final = builders.cached("bomb-expanding-guest-1g.qcow2")
    if final.exists():
        return final
    tmp = final.with_name(final.name + ".tmp")
    shutil.copyfile(import_fixtures.good_image("qcow2"), tmp)
    builders.qemu_img("resize", "-q", "-f", "qcow2", str(tmp), str(GiB))
    qemu_io(tmp, f"write -c -P 0x5a {512 * MiB} 64k")
    data = bytearray(tmp.read_bytes()) + bytes(16 * 1024)  # room for the units' bytes
    spread_units(data, l2_entry_at(data, 512 * MiB), 8192, 62 - (16 - 8))
    tmp.write_bytes(data)
    tmp.replace(final)
    return final


def expanding_qcow2() -> Path:
    """A 1 TiB qcow2 of 2 MiB clusters whose every L2 entry is a distinct one-sector
    compressed descriptor, each a byte after the one before: nothing is shared, but 4.5 MiB
    of file would stand for 1 TiB of data (a million to one). Cached."""
    final = builders.cached("bomb-expanding-1024g.qcow2")
    if final.exists():
        return final
    tmp = final.with_name(final.name + ".tmp")
    builders.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", str(tmp), "1T")
    half = 512 * GiB
    qemu_io(tmp, "write -c -P 0x41 0 2M")
    qemu_io(tmp, f"write -c -P 0x41 {half} 2M")
    data = bytearray(tmp.read_bytes())
    entries = Qcow2Layout.of(data).l2_entries
    spread_units(data, l2_entry_at(data, 0), entries, 62 - (21 - 8))
    # the second table continues a byte after the first one's last unit
    second = l2_entry_at(data, half)
    put_u64(data, second, u64(data, l2_entry_at(data, 0) + 8 * (entries - 1)) + 1)
    spread_units(data, second, entries, 62 - (21 - 8))
    tmp.write_bytes(data)
    tmp.replace(final)
    return final
