"""qcow2 storage audit: refcounts that disagree with the tables, compressed clusters that
expand beyond any compression, and the legitimate images that must still pass (internal
snapshots, VM-style fragmentation, every refcount width, a small image of constant data)."""

from __future__ import annotations

import json
import random
import struct
import subprocess
from pathlib import Path

import pytest

from imageport.disk.base import VirtualDisk
from imageport.formats import registry
from imageport.service.tools.check import inspect_source
from imageport.source import ByteSource, BytesSource, FileSource
from support import builders
from support import storage_bombs as sb

MiB = 1 << 20
C = 64 * 1024
INCOMPAT_DIRTY = 1


def qemu_io(image: Path, commands: str) -> None:
    """Run the ``qemu-io`` commands of ``commands`` (one a line) in one process."""
    subprocess.run(
        [
            "qemu-io",
            "-f",
            "qcow2",
            *(x for c in commands.splitlines() for x in ("-c", c)),
            str(image),
        ],
        check=True,
        capture_output=True,
    )


def image(
    name: str, size: str, *commands: str, options: str = "", snapshots: tuple[int, ...] = ()
) -> Path:
    """A qcow2 made by ``qemu-img create`` and written by ``qemu-io`` (cached); an internal
    snapshot is taken after each step of ``commands`` whose index is in ``snapshots``."""
    final = builders.cached(f"qcow2-storage-v1-{name}.qcow2")
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        builders.qemu_img(
            "create", "-q", "-f", "qcow2", *(["-o", options] if options else []), str(tmp), size
        )
        for i, command in enumerate(commands):
            qemu_io(tmp, command)
            if i in snapshots:
                builders.qemu_img("snapshot", "-c", f"snap{i}", str(tmp))
        tmp.replace(final)
    return final


def hazards(data: bytes | bytearray) -> list[str]:
    found = inspect_source(BytesSource(bytes(data)))
    assert found.container.damage is None, found.container.damage
    return [f"{h.kind}: {h.detail}" for h in found.container.hazards]


def _open(src: ByteSource) -> VirtualDisk:
    """The disk in ``src``, opened by the reader its probe chose."""
    container = registry.probe(src)
    assert container.opener is not None, container
    return container.opener(src)


def qemu_data_bytes(path: Path) -> int:
    mapped = json.loads(builders.qemu_img("map", "-f", "qcow2", "--output=json", str(path)))
    return sum(e["length"] for e in mapped if e["data"] and not e.get("zero"))


def passes_exactly(path: Path) -> None:
    with FileSource(path) as src:
        found = inspect_source(src)
    assert found.container.readable and not found.container.hazards, found.container
    assert found.allocated_bytes == qemu_data_bytes(path)


def written() -> Path:
    """Plain and compressed clusters, and a zero cluster, in a 1 GiB image."""
    return image(
        "written",
        "1G",
        "write -P 0x11 0 256k",
        "write -c -P 0x22 256k 128k",
        "write -z 384k 64k",
        "write -P 0x33 512M 64k",
    )


# -- legitimate images ---------------------------------------------------------------------


def test_internal_snapshots_pass() -> None:
    # clusters shared with snapshots have refcounts up to 4: allowed when snapshots exist
    path = image(
        "snapshots",
        "64M",
        "write -P 1 0 4M",
        "write -P 2 1M 1M",
        "write -c -P 3 8M 256k",
        "write -P 4 8M 64k",
        snapshots=(0, 1, 2),
    )
    data = path.read_bytes()
    assert sb.get_refcount(data, sb.u64(data, sb.l2_entry_at(data, 0)) & sb.L1_OFFSET_MASK) == 4
    passes_exactly(path)


def test_a_vm_style_fragmented_image_passes() -> None:
    # clusters written in random order, as a guest does: the file is out of guest order
    rng = random.Random(5)
    order = rng.sample(range(2048), 600)
    writes = [f"write -P {i % 250 + 1} {c * C} 64k" for i, c in enumerate(order)]
    writes += [f"write -c -P 7 {(3000 + i) * C} 64k" for i in (5, 1, 3)]
    path = image("fragmented", "256M", "\n".join(writes))
    with FileSource(path) as src:
        disk = _open(src)
        assert not disk.audit().in_file_order
    passes_exactly(path)


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16, 32, 64])
def test_every_refcount_width_is_read(bits: int) -> None:
    path = image(
        f"refcount{bits}",
        "64M",
        "write -P 1 0 1M",
        "write -c -P 2 4M 256k",
        "write -P 3 40M 64k",
        options=f"refcount_bits={bits}",
    )
    passes_exactly(path)
    data = bytearray(path.read_bytes())
    host = sb.u64(data, sb.l2_entry_at(data, 40 * MiB)) & sb.L1_OFFSET_MASK
    sb.set_refcount(data, host, 0)
    assert [h.split(":")[0] for h in hazards(data)] == ["refcount"]


def test_a_small_image_of_constant_data_passes_under_the_floor() -> None:
    # zstd turns 2 MiB of one byte into a few dozen bytes: far beyond the 256:1 limit, but only
    # 4 MiB
    path = image(
        "constant",
        "64M",
        "write -c -P 0xff 0 2M",
        "write -c -P 0xfe 2M 2M",
        options="cluster_size=2M,compression_type=zstd",
    )
    with FileSource(path) as src:
        found = _open(src).audit()
    assert found.packed_bytes > 1032 * found.packed_file_bytes  # beyond deflate, too
    passes_exactly(path)


def test_a_dirty_image_left_by_a_crash_with_lazy_refcounts_passes() -> None:
    # qemu-img check reports its stale refcounts; qemu repairs them on its next write
    final = builders.cached("qcow2-storage-v1-lazy-crash.qcow2")
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        builders.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", str(tmp), "64M")
        subprocess.run(
            [
                "qemu-io",
                "-f",
                "qcow2",
                "-c",
                "write -P 7 0 4M",
                "-c",
                "write -P 8 8M 64k",
                "-c",
                "abort",
                str(tmp),
            ],
            capture_output=True,
            check=False,
        )  # abort: the process dies with the image dirty
        tmp.replace(final)
    checked = subprocess.run(
        ["qemu-img", "check", "-f", "qcow2", str(final)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode != 0 and "ERROR" in checked.stdout + checked.stderr
    passes_exactly(final)


# -- refcounts that disagree with the tables -----------------------------------------------


def test_a_data_cluster_with_refcount_0_is_refused() -> None:
    data = bytearray(written().read_bytes())
    host = sb.u64(data, sb.l2_entry_at(data, 512 * MiB)) & sb.L1_OFFSET_MASK
    sb.set_refcount(data, host, 0)
    (found,) = hazards(data)
    assert found.startswith(
        f"refcount: qcow2 host cluster at offset {host:#x} (data of guest "
        "offset 0x20000000) has refcount 0"
    )


def test_refcount_2_without_snapshots_is_refused() -> None:
    data = bytearray(written().read_bytes())
    host = sb.u64(data, sb.l2_entry_at(data, C)) & sb.L1_OFFSET_MASK
    sb.set_refcount(data, host, 2)
    (found,) = hazards(data)
    assert (
        "(data of guest offset 0x10000) has refcount 2, but the image has no internal "
        "snapshots and its active tables reference it 1 time(s)" in found
    )


def test_a_compressed_cluster_counted_wrong_is_refused() -> None:
    data = bytearray(written().read_bytes())
    entry = sb.u64(data, sb.l2_entry_at(data, 256 * 1024))
    assert entry >> 62 & 1
    host = entry & ((1 << 54) - 1) & ~(C - 1)
    sb.set_refcount(data, host, sb.get_refcount(data, host) + 1)
    (found,) = hazards(data)
    assert found.startswith(f"refcount: qcow2 host cluster at offset {host:#x} (compressed data")


def test_an_l2_table_named_by_two_l1_entries_is_refused() -> None:
    # the L2 table holds only a zero cluster: no data is shared, but the table is
    path = image("zero-l2", "1G", "write -z 0 64k")
    data = bytearray(path.read_bytes())
    l1 = sb.Qcow2Layout.of(data).l1_offset
    data[l1 + 8 : l1 + 16] = data[l1 : l1 + 8]
    (found,) = hazards(data)
    assert (
        "(the L2 table for guest offset 0x0) has refcount 1, but the image has no internal "
        "snapshots and its active tables reference it 2 time(s)" in found
    )


def test_forged_refcounts_and_a_snapshot_do_not_hide_shared_data() -> None:
    data = bytearray(sb.shared_qcow2(compressed=False, size=1 << 30).read_bytes())
    host = sb.u64(data, sb.l2_entry_at(data, 512 * MiB)) & sb.L1_OFFSET_MASK
    sb.set_refcount(data, host, 8192)
    struct.pack_into(">I", data, 60, 1)  # nb_snapshots: the refcounts are then lower bounds
    (found,) = hazards(data)
    assert found.startswith("shared-data: qcow2 guest offsets 0x20000000, 0x20010000, ")


def test_a_dirty_image_is_not_held_to_its_refcounts_but_to_sharing() -> None:
    # lazy refcounts: a dirty image's refcounts may be stale until qemu repairs them
    data = bytearray(written().read_bytes())
    host = sb.u64(data, sb.l2_entry_at(data, 512 * MiB)) & sb.L1_OFFSET_MASK
    sb.set_refcount(data, host, 0)
    incompatible = struct.unpack_from(">Q", data, 72)[0]
    struct.pack_into(">Q", data, 72, incompatible | INCOMPAT_DIRTY)
    assert hazards(data) == []
    first = sb.l2_entry_at(data, 512 * MiB)
    data[first + 8 : first + 16] = data[first : first + 8]
    assert [h.split(":")[0] for h in hazards(data)] == ["shared-data"]


# -- compressed clusters that expand beyond any compression --------------------------------


def test_compressed_clusters_one_byte_apart_are_refused() -> None:
    path = image("one-compressed-2m", "1G", "write -c -P 0x41 0 2M", options="cluster_size=2M")
    data = bytearray(path.read_bytes())
    first = sb.l2_entry_at(data, 0)
    entry = sb.u64(data, first)
    offset = entry & ((1 << 49) - 1)  # cluster_bits 21: offset in the low 62 - 13 bits
    for k in range(200):  # 200 distinct descriptors of one sector, each a byte further on
        sb.put_u64(data, first + 8 * k, (1 << 62) | (offset + k))
    (found,) = hazards(data)
    assert found.startswith(
        "expansion: qcow2 compressed data expands more than this service "
        "accepts: 200 units decode to 419430400 guest bytes and occupy "
    )
