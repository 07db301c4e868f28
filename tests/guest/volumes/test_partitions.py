"""Partition tables made by sfdisk (util-linux), read back and compared with sfdisk --json."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from imageport.guest.volumes.blockdev import BytesDevice
from imageport.guest.volumes.partitions import PartitionTable, read_partitions
from support import builders

MiB = 1 << 20
DISK = 40 * MiB

GPT_SCRIPT = """label: gpt
size=1M, type=21686148-6449-6E6F-744E-656564454649, name="bios"
size=8M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System"
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root \u00e9"
"""

MBR_SCRIPT = """label: dos
{d}1 : size=4M, type=83, bootable
{d}2 : size=30M, type=5
{d}5 : size=5M, type=82
{d}6 : size=5M, type=83
{d}7 : type=8e
{d}3 : type=fd
"""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (util-linux / fdisk package); it builds the fixtures")
    return path


def _run(*cmd: str, stdin: str | None = None) -> str:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _sfdisk_disk(name: str, script: str, size: int = DISK) -> tuple[bytes, dict[str, object]]:
    """A disk partitioned by sfdisk from ``script`` and sfdisk's own JSON view of it (cached)."""
    final = builders.cached(f"{name}.raw")
    meta = final.with_suffix(".json")
    if not (final.exists() and meta.exists()):
        tmp = final.with_name(final.name + ".tmp")
        tmp.unlink(missing_ok=True)
        with open(tmp, "wb") as f:
            f.truncate(size)
        _run(_tool("sfdisk"), "-q", "--no-reread", str(tmp), stdin=script.format(d=tmp))
        table = json.loads(_run(_tool("sfdisk"), "--json", str(tmp)))["partitiontable"]
        mtmp = meta.with_name(meta.name + ".tmp")
        mtmp.write_text(json.dumps(table))
        os.replace(mtmp, meta)
        os.replace(tmp, final)
    return final.read_bytes(), json.loads(meta.read_text())


def _number(node: str) -> int:
    """The partition number at the end of sfdisk's node name (``disk.tmp5``, ``loop0p1``)."""
    match = re.search(r"(\d+)$", node)
    assert match is not None, node
    return int(match.group(1))


def _assert_matches_sfdisk(table: PartitionTable, sf: dict[str, object], ss: int = 512) -> None:
    parts = sf["partitions"]
    assert isinstance(parts, list)
    assert len(table.partitions) == len(parts)
    for want in parts:
        got = table.by_number(_number(want["node"]))
        assert got is not None, want
        assert got.start == want["start"] * ss
        assert got.size == want["size"] * ss
        if sf["label"] == "gpt":
            assert got.type == want["type"].lower()
            assert got.partuuid == want["uuid"].lower()
            assert got.name == want.get("name", "")
        else:
            assert int(got.type, 16) == int(want["type"], 16)
            assert got.bootable == want.get("bootable", False)
            assert got.partuuid == f"{int(str(sf['id']), 16):08x}-{_number(want['node']):02x}"


@pytest.fixture(scope="module")
def gpt_disk() -> tuple[bytes, dict[str, object]]:
    return _sfdisk_disk("parts-gpt", GPT_SCRIPT)


@pytest.fixture(scope="module")
def mbr_disk() -> tuple[bytes, dict[str, object]]:
    return _sfdisk_disk("parts-mbr", MBR_SCRIPT)


def test_gpt_matches_sfdisk(gpt_disk: tuple[bytes, dict[str, object]]) -> None:
    data, sf = gpt_disk
    table = read_partitions(BytesDevice(data))
    assert table.scheme == "gpt"
    assert table.disk_id == str(sf["id"]).lower()
    assert table.problems == () and table.notes == ()
    _assert_matches_sfdisk(table, sf)
    assert [p.type_name for p in table.partitions] == ["bios-boot", "efi-system", "linux"]
    assert table.partitions[2].name == "root \u00e9"
    assert table.mbr_boot_code == "none" and not table.boot_code_present


def test_partition_device_reads_its_bytes(gpt_disk: tuple[bytes, dict[str, object]]) -> None:
    data, _ = gpt_disk
    part = read_partitions(BytesDevice(data)).partitions[1]
    dev = part.device()
    assert dev.size == part.size
    assert dev.read(0, 4096) == data[part.start : part.start + 4096]
    end = part.start + part.size
    assert dev.read(part.size - 10, 100) == data[end - 10 : end]


def test_mbr_primary_extended_logical(mbr_disk: tuple[bytes, dict[str, object]]) -> None:
    data, sf = mbr_disk
    table = read_partitions(BytesDevice(data))
    assert table.scheme == "mbr"
    assert table.problems == ()
    _assert_matches_sfdisk(table, sf)
    assert [p.number for p in table.partitions] == [1, 2, 3, 5, 6, 7]
    assert [p.type_name for p in table.partitions] == [
        "linux",
        "extended",
        "linux-raid",
        "swap",
        "linux",
        "linux-lvm",
    ]
    assert [p.logical for p in table.partitions] == [False] * 3 + [True] * 3
    assert table.disk_id == f"{int(str(sf['id']), 16):08x}"


def _put(data: bytearray, offset: int, raw: bytes) -> None:
    data[offset : offset + len(raw)] = raw


def _regpt(data: bytearray, header_at: int, **changes: int) -> None:
    """Patch GPT header fields and recompute its CRC (a self-consistent hostile header)."""
    fields = {"entry_count": (80, "<I"), "entry_size": (84, "<I"), "entries_lba": (72, "<Q")}
    for key, value in changes.items():
        off, fmt = fields[key]
        struct.pack_into(fmt, data, header_at + off, value)
    struct.pack_into("<I", data, header_at + 16, 0)
    size = struct.unpack_from("<I", data, header_at + 12)[0]
    crc = zlib.crc32(bytes(data[header_at : header_at + size]))
    struct.pack_into("<I", data, header_at + 16, crc)


def test_damaged_primary_gpt_uses_backup(gpt_disk: tuple[bytes, dict[str, object]]) -> None:
    data, sf = gpt_disk
    bad = bytearray(data)
    bad[512 + 60] ^= 0xFF  # inside the disk GUID: the header CRC no longer matches
    table = read_partitions(BytesDevice(bytes(bad)))
    assert table.scheme == "gpt"
    assert any("primary GPT header fails its CRC32 check; backup used" in p for p in table.problems)
    _assert_matches_sfdisk(table, sf)


def test_damaged_primary_entries_use_backup(gpt_disk: tuple[bytes, dict[str, object]]) -> None:
    data, sf = gpt_disk
    bad = bytearray(data)
    bad[1024 + 200] ^= 1  # an entry byte: the entries CRC fails
    table = read_partitions(BytesDevice(bytes(bad)))
    assert any("entries array that fails" in p and "backup used" in p for p in table.problems)
    _assert_matches_sfdisk(table, sf)


def test_both_gpt_headers_damaged(gpt_disk: tuple[bytes, dict[str, object]]) -> None:
    data, _ = gpt_disk
    bad = bytearray(data)
    bad[512 + 60] ^= 0xFF
    bad[len(bad) - 512 + 60] ^= 0xFF
    table = read_partitions(BytesDevice(bytes(bad)))
    assert table.scheme == "none" and table.partitions == ()
    assert any("no valid GPT" in p for p in table.problems)
    assert "protective MBR but no valid GPT" in table.problems


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"entry_count": 1 << 31}, "declares 2147483648 entries"),
        ({"entry_size": 100}, "entry size of 100"),
        ({"entry_size": 1 << 20}, "entry size of 1048576"),
        ({"entries_lba": 1 << 60}, "beyond the end of the disk"),
    ],
)
def test_hostile_gpt_header_falls_back(
    gpt_disk: tuple[bytes, dict[str, object]], change: dict[str, int], message: str
) -> None:
    data, sf = gpt_disk
    bad = bytearray(data)
    _regpt(bad, 512, **change)
    table = read_partitions(BytesDevice(bytes(bad)))
    assert any(message in p and "backup used" in p for p in table.problems), table.problems
    _assert_matches_sfdisk(table, sf)
    _regpt(bad, len(bad) - 512, **change)
    assert read_partitions(BytesDevice(bytes(bad))).scheme == "none"


def test_hybrid_mbr_uses_gpt(gpt_disk: tuple[bytes, dict[str, object]]) -> None:
    data, sf = gpt_disk
    hybrid = bytearray(data)
    # what gdisk's hybrid MBR looks like: the 0xEE entry plus a copy of partition 3
    _put(hybrid, 446, struct.pack("<B3sB3sII", 0, b"", 0xEE, b"", 1, 20479))
    _put(hybrid, 462, struct.pack("<B3sB3sII", 0x80, b"", 0x83, b"", 20480, 59392))
    table = read_partitions(BytesDevice(bytes(hybrid)))
    assert table.scheme == "gpt"
    assert any("hybrid MBR" in n for n in table.notes)
    _assert_matches_sfdisk(table, sf)


def test_gpt_without_protective_mbr_is_read_as_mbr_when_mbr_is_valid(
    gpt_disk: tuple[bytes, dict[str, object]],
) -> None:
    data, _ = gpt_disk
    mixed = bytearray(data)
    _put(mixed, 446, struct.pack("<B3sB3sII", 0, b"", 0x83, b"", 2048, 4096))
    table = read_partitions(BytesDevice(bytes(mixed)))
    assert table.scheme == "mbr"
    assert any("no 0xEE entry" in n for n in table.notes)
    mixed[510:512] = b"\0\0"  # no MBR at all: the GPT alone is used
    table = read_partitions(BytesDevice(bytes(mixed)))
    assert table.scheme == "gpt" and "GPT without a protective MBR" in table.notes


def _ebr_sectors(data: bytes) -> list[int]:
    """LBAs of the EBR chain of partition 2 (the extended one)."""
    ext = struct.unpack_from("<I", data, 446 + 16 + 8)[0]
    out, lba = [], ext
    while True:
        out.append(lba)
        link_start, link_size = struct.unpack_from("<II", data, lba * 512 + 462 + 8)
        if link_size == 0:
            return out
        lba = ext + link_start


def test_ebr_loop_is_detected(mbr_disk: tuple[bytes, dict[str, object]]) -> None:
    data, _ = mbr_disk
    looped = bytearray(data)
    ebrs = _ebr_sectors(data)
    assert len(ebrs) == 3
    last = ebrs[-1] * 512 + 462
    _put(looped, last, struct.pack("<B3sB3sII", 0, b"", 0x05, b"", 0, 2048))  # back to the 1st
    table = read_partitions(BytesDevice(bytes(looped)))
    assert [p.number for p in table.partitions] == [1, 2, 3, 5, 6, 7]
    assert any("loops back" in p for p in table.problems)


def test_long_ebr_chain_is_capped() -> None:
    # 300 EBRs, each linking to the next: stops at MAX_LOGICAL with a problem.
    n = 300
    data = bytearray(512 * (n + 10))
    _put(data, 446, struct.pack("<B3sB3sII", 0, b"", 0x05, b"", 1, n + 5))
    data[510:512] = b"\x55\xaa"
    for i in range(n):
        base = (1 + i) * 512
        _put(data, base + 446, struct.pack("<B3sB3sII", 0, b"", 0x83, b"", 0, 1))
        _put(data, base + 462, struct.pack("<B3sB3sII", 0, b"", 0x05, b"", i + 1, 1))
        data[base + 510 : base + 512] = b"\x55\xaa"
    table = read_partitions(BytesDevice(bytes(data)))
    assert len([p for p in table.partitions if p.logical]) == 128
    assert any("more than 128 logical" in p for p in table.problems)


def test_partition_beyond_disk_is_clipped() -> None:
    data = bytearray(MiB)
    _put(data, 446, struct.pack("<B3sB3sII", 0x80, b"", 0x83, b"", 2000, 10_000))
    _put(data, 462, struct.pack("<B3sB3sII", 0, b"", 0x83, b"", 1 << 31, 10))
    data[510:512] = b"\x55\xaa"
    table = read_partitions(BytesDevice(bytes(data)))
    assert table.partitions[0].size == MiB - 2000 * 512
    assert table.partitions[1].size == 0
    assert len(table.problems) == 2


def test_not_a_partition_table() -> None:
    assert read_partitions(BytesDevice(bytes(MiB))).scheme == "none"
    assert read_partitions(BytesDevice(b"")).scheme == "none"
    fat_like = bytearray(MiB)
    fat_like[446:510] = bytes(range(64))  # boot code where entries would be: bad status bytes
    fat_like[510:512] = b"\x55\xaa"
    table = read_partitions(BytesDevice(bytes(fat_like)))
    assert table.scheme == "none" and table.notes


def _sector0(code: bytes, at: int = 0) -> BytesDevice:
    data = bytearray(4096)
    _put(data, at, code)
    data[510:512] = b"\x55\xaa"
    return BytesDevice(bytes(data))


def test_boot_code_kinds() -> None:
    grub = bytearray(440)
    grub[0:2] = b"\xeb\x63"
    struct.pack_into("<Q", grub, 0x5C, 2048)
    grub[0x180:0x186] = b"GRUB \0"
    table = read_partitions(_sector0(bytes(grub)))
    assert (table.mbr_boot_code, table.grub_core_lba) == ("grub", 2048)
    assert table.boot_code_present
    sys_code = b"\xfa\x31\xc0" + b"Missing OS\r\n" + b"Multiple active partitions\r\n"
    assert read_partitions(_sector0(sys_code)).mbr_boot_code == "syslinux"
    windows = b"\xfa\x33\xc0Invalid partition table"
    assert read_partitions(_sector0(windows)).mbr_boot_code == "other"
    assert read_partitions(_sector0(b"")).mbr_boot_code == "none"


@pytest.fixture(scope="module")
def gpt4k_disk() -> tuple[bytes, dict[str, object]]:
    """A GPT written by sfdisk through a loop device with 4096-byte logical sectors."""
    final = builders.cached("parts-gpt4k.raw")
    meta = final.with_suffix(".json")
    if not (final.exists() and meta.exists()):
        tmp = final.with_name(final.name + ".tmp")
        tmp.unlink(missing_ok=True)
        with open(tmp, "wb") as f:
            f.truncate(64 * MiB)
        loop = _run(_tool("losetup"), "--find", "--show", "-b", "4096", str(tmp)).strip()
        try:
            script = (
                "label: gpt\nsize=8M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
                "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
            )
            _run(_tool("sfdisk"), "-q", "--no-reread", loop, stdin=script)
            table = json.loads(_run(_tool("sfdisk"), "--json", loop))["partitiontable"]
        finally:
            _run(_tool("losetup"), "-d", loop)
        meta.write_text(json.dumps(table))
        os.replace(tmp, final)
    return Path(final).read_bytes(), json.loads(meta.read_text())


def test_gpt_with_4096_byte_sectors(gpt4k_disk: tuple[bytes, dict[str, object]]) -> None:
    data, sf = gpt4k_disk
    table = read_partitions(BytesDevice(data))
    assert (table.scheme, table.sector_size) == ("gpt", 4096)
    _assert_matches_sfdisk(table, sf, ss=4096)
