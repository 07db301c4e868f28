"""Every format that maps guest units to file offsets: tables that point two guest units at
the same stored data are refused (IMG-SAFE, shared-data) with the evidence, and the images
qemu-img makes pass with their allocation measured exactly (as ``qemu-img map`` counts it)."""

from __future__ import annotations

import json
import random
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from imageport.disk.base import ExtentState, VirtualDisk
from imageport.disk.qcow import QcowDisk
from imageport.disk.qcow2 import Qcow2Disk
from imageport.disk.qed import QedDisk
from imageport.disk.vdi import VdiDisk
from imageport.disk.vhd import DynamicVhdDisk
from imageport.disk.vhdx import VhdxDisk
from imageport.disk.vmdk import SparseVmdkDisk
from imageport.formats import registry
from imageport.formats.base import Container
from imageport.service.tools.check import inspect_source
from imageport.source import BytesSource, FileSource
from support import builders
from support import storage_bombs as sb

MiB = 1 << 20


def small_raw() -> Path:
    """8 MiB: 2 MiB of text (compresses), 2 MiB of random bytes, then nothing."""
    final = builders.cached("shared-storage-v1.raw")
    if not final.exists():
        rng = random.Random(9)
        text = b"".join(b"line %06d of a compressible text\n" % i for i in range(70000))
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(text[: 2 * MiB] + rng.randbytes(2 * MiB))
            f.truncate(8 * MiB)
        tmp.replace(final)
    return final


def made(fmt: str, options: str = "", compress: bool = False) -> Path:
    tag = "-".join(x for x in (options.replace("=", "").replace(",", "_"), "c" * compress) if x)
    final = builders.cached(f"shared-storage-v1-{tag or 'plain'}.{fmt}")
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        if fmt == "qcow" and compress:  # qemu-img 7.2 cannot convert -c to qcow; qemu-io can
            builders.qemu_img("create", "-q", "-f", "qcow", str(tmp), "8M")
            writes = [f"write -c -P {0x41 + i} {i * 4096} 4k" for i in range(16)]
            subprocess.run(
                ["qemu-io", "-f", "qcow", *(x for w in writes for x in ("-c", w)), str(tmp)],
                check=True,
                capture_output=True,
            )
        else:
            builders.qemu_img(
                "convert",
                "-f",
                "raw",
                "-O",
                fmt,
                *(["-o", options] if options else []),
                *(["-c"] if compress else []),
                str(small_raw()),
                str(tmp),
            )
        tmp.replace(final)
    return final


D = TypeVar("D", bound=VirtualDisk)


def opened(data: bytes | bytearray) -> VirtualDisk:
    container = registry.probe(BytesSource(bytes(data)))
    assert container.opener is not None, container
    return container.opener(BytesSource(bytes(data)))


def opened_as(data: bytes | bytearray, kind: type[D]) -> D:
    """``data`` opened, as the reader of its format (whose internals the tables below use)."""
    disk = opened(data)
    assert isinstance(disk, kind), disk
    return disk


@dataclass(frozen=True)
class Table:
    """Where guest unit ``i``'s entry is: ``offset + i * width``, packed with ``fmt``."""

    offset: int
    width: int
    fmt: str
    unit: int
    #: The entry of an unallocated unit.
    empty: int = 0

    def copy_entry(self, data: bytearray, src: int, dst: int) -> None:
        a, b = self.offset + src * self.width, self.offset + dst * self.width
        data[b : b + self.width] = data[a : a + self.width]

    def entry(self, data: bytes | bytearray, index: int) -> int:
        value: int = struct.unpack_from(self.fmt, data, self.offset + index * self.width)[0]
        return value


def qcow2_table(data: bytearray) -> Table:
    disk = opened_as(data, Qcow2Disk)
    extended = disk._m.extended_l2
    return Table(sb.l2_entry_at(data, 0), 16 if extended else 8, ">Q", 64 * 1024)


def qcow_table(data: bytearray) -> Table:
    disk = opened_as(data, QcowDisk)
    return Table(disk._l1[0], 8, ">Q", disk._cluster)


def qed_table(data: bytearray) -> Table:
    disk = opened_as(data, QedDisk)
    return Table(disk._l1[0], 8, "<Q", disk._h.cluster_size)


def vmdk_table(data: bytearray) -> Table:
    disk = opened_as(data, SparseVmdkDisk)
    sector = disk.directory.entries[0]
    return Table(sector * 512, 4, "<I", disk.layout.grain_size)


def vhd_table(data: bytearray) -> Table:
    bat = opened_as(data, DynamicVhdDisk)._bat
    return Table(bytes(data).find(bat.raw), 4, ">I", bat.block_size)


def vhdx_table(data: bytearray) -> Table:
    bat = opened_as(data, VhdxDisk)._bat
    return Table(bytes(data).find(bat.raw), 8, "<Q", bat.block_size)


def vdi_table(data: bytearray) -> Table:
    header = opened_as(data, VdiDisk)._header
    return Table(header.offset_bmap, 4, "<I", header.block_size, empty=0xFFFFFFFF)


# (format, qemu-img -o options, -c, where the table is)
SHARING: list[tuple[str, str, bool, Callable[[bytearray], Table]]] = [
    ("qcow2", "", False, qcow2_table),
    ("qcow2", "", True, qcow2_table),
    ("qcow2", "compression_type=zstd", True, qcow2_table),
    ("qcow2", "extended_l2=on", False, qcow2_table),
    ("qcow", "", False, qcow_table),
    ("qcow", "", True, qcow_table),
    ("qed", "", False, qed_table),
    ("vmdk", "", False, vmdk_table),
    ("vmdk", "subformat=streamOptimized", False, vmdk_table),
    ("vpc", "", False, vhd_table),
    ("vhdx", "block_size=1M", False, vhdx_table),
    ("vdi", "", False, vdi_table),
]
IDS = [f"{fmt}-{opts or 'default'}{'-c' if c else ''}" for fmt, opts, c, _ in SHARING]


def _hazards(data: bytes | bytearray) -> tuple[Container, list[str]]:
    found = inspect_source(BytesSource(bytes(data)))
    return found.container, [f"{h.kind}: {h.detail}" for h in found.container.hazards]


@pytest.mark.parametrize(("fmt", "options", "compress", "table_of"), SHARING, ids=IDS)
def test_two_guest_units_on_one_stored_unit_are_refused(
    fmt: str, options: str, compress: bool, table_of: Callable[[bytearray], Table]
) -> None:
    data = bytearray(made(fmt, options, compress).read_bytes())
    table = table_of(data)
    assert table.empty not in (table.entry(data, 0), table.entry(data, 1)), "units 0, 1 hold data"
    assert not _hazards(data)[1]
    table.copy_entry(data, 0, 1)
    container, hazards = _hazards(data)
    assert len(hazards) == 1 and hazards[0].startswith("shared-data: "), hazards
    assert f"guest offsets 0x0, {table.unit:#x} all use the file byte at offset" in hazards[0]
    assert container.opener is None and not container.readable


@pytest.mark.parametrize(("fmt", "options", "compress", "table_of"), SHARING, ids=IDS)
def test_qemu_made_images_pass_with_their_allocation_exact(
    fmt: str, options: str, compress: bool, table_of: Callable[[bytearray], Table]
) -> None:
    image = made(fmt, options, compress)
    with FileSource(image) as src:
        found = inspect_source(src)
        assert found.container.opener is not None
        extents = [
            e for e in found.container.opener(src).allocation() if e.state is ExtentState.DATA
        ]
    assert found.container.readable and not found.container.hazards
    assert found.data_extents == len(extents) > 0
    assert found.allocated_bytes == sum(e.length for e in extents)
    if fmt == "vhdx":
        return  # qemu's vhdx driver reports every block as data to qemu-img map
    mapped = json.loads(builders.qemu_img("map", "-f", fmt, "--output=json", str(image)))
    qemu_data = sum(e["length"] for e in mapped if e["data"] and not e.get("zero"))
    assert found.allocated_bytes == qemu_data


class ConstantSource:
    """A ByteSource of ``size`` bytes that are all 0xff (no file behind it)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def data_segments(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        end = min(end, self.size)
        if end > start:
            yield start, end

    def read_at(self, offset: int, length: int) -> bytes:
        return b"\xff" * max(0, min(length, self.size - offset))


def test_zvhd2_blocks_expanding_beyond_compression_are_refused(tmp_path: Path) -> None:
    # 32 MiB blocks of one byte: each record is one padded 4 KiB, 8192:1, 384 MiB in all
    from imageport.disk.raw import RawDisk
    from imageport.fastimport.zvhd_writer import WriterOptions, write_zvhd2

    out = tmp_path / "constant.zvhd2"
    write_zvhd2(
        RawDisk(ConstantSource(12 * 32 * MiB)),
        out,
        WriterOptions(method="zstd", block_size=32 * MiB, timestamp=0, uuid=bytes(16)),
    )
    container, hazards = _hazards(out.read_bytes())
    assert container.format == "zvhd2" and len(hazards) == 1, hazards
    # the walk stops once past the floor: the ninth block (288 MiB) is out of the ratio
    assert hazards[0].startswith(
        "expansion: zvhd2 compressed data expands more than this "
        "service accepts: 9 units decode to 301989888 guest bytes and "
    )
    assert "(8192:1; the limit is 256:1" in hazards[0]
