"""The production ZVHD2 / ZVHD writer: byte-exact round trips from every format qemu-img
writes, output that passes our own probe and safety checks, sparse inputs that cost only their
data, bounded parallelism, and damaged ZVHD2 files refused by our reader."""

from __future__ import annotations

import filecmp
import os
import struct
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from imageport.disk import zvhd_layout as layout
from imageport.disk.base import ExtentState
from imageport.disk.raw import RawDisk
from imageport.errors import ImageportError
from imageport.fastimport import zvhd_packing as packing
from imageport.fastimport import zvhd_writer as zw
from imageport.findings import Severity
from imageport.formats import registry
from imageport.formats.base import Container
from imageport.service.tools.check import check_image
from imageport.service.tools.convert import ConvertOptions, convert_image
from imageport.service.tools.to_raw import ImageRefusedError, open_checked
from imageport.source import BytesSource, FileSource
from support import builders

MiB = 1 << 20
GiB = 1 << 30
FIXED = zw.WriterOptions(timestamp=0, uuid=bytes(16))

#: (qemu-img format, -o options, compressed): every input qemu-img can write.
INPUTS = [
    ("raw", "", False),
    ("qcow2", "", False),
    ("qcow2", "", True),
    ("qcow2", "compression_type=zstd", True),
    ("vmdk", "", False),
    ("vmdk", "subformat=streamOptimized", False),
    ("vpc", "subformat=fixed,force_size=on", False),
    ("vpc", "subformat=dynamic,force_size=on", False),
    ("vhdx", "", False),
    ("vdi", "", False),
    ("qed", "", False),
    ("qcow", "", False),
]


def _input(fmt: str, options: str, compress: bool) -> tuple[Path, Path]:
    """The pattern disk in ``fmt`` and qemu-img's raw conversion of it."""
    if fmt == "raw":
        image = builders.pattern_raw()
        return image, image
    image = builders.converted(fmt, options=options, compress=compress)
    return image, builders.reference_raw(image, fmt)


def _label(case: tuple[str, str, bool]) -> str:
    fmt, options, compress = case
    return "-".join(x for x in (fmt, options.replace(",", "_"), "c" if compress else "") if x)


@pytest.mark.parametrize("case", INPUTS, ids=_label)
def test_every_input_round_trips_through_zvhd2(case: tuple[str, str, bool], tmp_path: Path) -> None:
    image, reference = _input(*case)
    out = tmp_path / "out.zvhd2"
    done = convert_image(image, out, "zvhd2")
    assert done.format == "zvhd2" and done.file_size == out.stat().st_size
    back = tmp_path / "back.raw"
    convert_image(out, back, "raw")
    assert filecmp.cmp(back, reference, shallow=False), "IN -> zvhd2 -> raw differs from qemu"


@pytest.mark.parametrize("case", INPUTS, ids=_label)
def test_inputs_round_trip_through_zvhd(case: tuple[str, str, bool], tmp_path: Path) -> None:
    image, reference = _input(*case)
    out = tmp_path / "out.zvhd"
    convert_image(image, out, "zvhd")
    back = tmp_path / "back.raw"
    convert_image(out, back, "raw")
    assert filecmp.cmp(back, reference, shallow=False)


@pytest.mark.parametrize(
    ("method", "block_mib"), [("zlib", 2), ("zstd", 1), ("zstd", 32), ("zlib", 4)]
)
def test_methods_and_block_sizes_round_trip(
    method: str, block_mib: int, pattern_raw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.zvhd2"
    convert_image(
        pattern_raw, out, "zvhd2", ConvertOptions(compression=method, block_size=block_mib * MiB)
    )
    with FileSource(out) as src:
        c = registry.probe(src)
        assert c.variant == f"zvhd2 ({method})" and c.readable
        assert c.properties["block size"] == str(block_mib * MiB)
    back = tmp_path / "back.raw"
    convert_image(out, back, "raw")
    assert filecmp.cmp(back, pattern_raw, shallow=False)


def test_output_passes_our_probe_and_safety_checks(pattern_raw: Path, tmp_path: Path) -> None:
    for fmt in ("zvhd2", "zvhd"):
        out = tmp_path / f"out.{fmt}"
        convert_image(pattern_raw, out, fmt)
        report = check_image(out)
        c = report.container
        assert (c.format, c.accepted, c.readable, c.hazards, c.damage) == (
            fmt,
            True,
            True,
            (),
            None,
        )
        assert c.virtual_size == pattern_raw.stat().st_size
        bad = [
            f.rule_id
            for f in report.findings
            if f.severity is Severity.ERROR and f.rule_id in ("IMG-FORMAT", "IMG-SAFE")
        ]
        assert bad == []


def test_holes_and_zero_blocks_are_not_stored(pattern_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.zvhd2"
    with FileSource(pattern_raw) as src:
        done = zw.write_zvhd2(RawDisk(src), out, FIXED)
    with FileSource(pattern_raw) as src:
        disk = RawDisk(src)
        want = [n for n in range(24) if disk.read(n * 2 * MiB, 2 * MiB).count(0) != 2 * MiB]
    assert done.blocks == len(want)
    with FileSource(out) as src:
        c = registry.probe(src)
        assert c.opener is not None
        stored = [e for e in c.opener(src).allocation() if e.state is ExtentState.DATA]
    assert sum(e.length for e in stored) == len(want) * 2 * MiB
    # a fully written file of zeros stores nothing
    zeros = tmp_path / "zeros.raw"
    zeros.write_bytes(bytes(6 * MiB))
    with FileSource(zeros) as src:
        assert zw.write_zvhd2(RawDisk(src), tmp_path / "z.zvhd2", FIXED).blocks == 0
    # header, footer copy, an empty index, one bitmap segment, final footer
    assert (tmp_path / "z.zvhd2").stat().st_size == 4 * 4096
    assert _probe((tmp_path / "z.zvhd2").read_bytes()).readable


def test_parallel_output_equals_sequential_output(pattern_raw: Path, tmp_path: Path) -> None:
    for write, ext in ((zw.write_zvhd2, "zvhd2"), (zw.write_zvhd, "zvhd")):
        outs: list[Path] = []
        for workers in (1, 3):
            out = tmp_path / f"w{workers}.{ext}"
            with FileSource(pattern_raw) as src:
                write(
                    RawDisk(src),
                    out,
                    zw.WriterOptions(timestamp=0, uuid=bytes(16), workers=workers),
                )
            outs.append(out)
        assert filecmp.cmp(outs[0], outs[1], shallow=False)


def test_zvhd_records_form_one_zlib_stream(pattern_raw: Path, tmp_path: Path) -> None:
    """A stateful reader (the vendor's) decodes ZVHD records as one stream, in order."""
    out = tmp_path / "one.zvhd"
    with FileSource(pattern_raw) as src:
        zw.write_zvhd(RawDisk(src), out, FIXED)
    data = out.read_bytes()
    decoder = zlib.decompressobj()
    pos, got = 4096, bytearray()
    while data[pos : pos + 6] != b"stream":
        size = struct.unpack_from("<I", data, pos + 12)[0]
        piece = decoder.decompress(data[pos + 48 : pos + 48 + size])
        assert len(piece) == 2 * MiB and not decoder.eof
        got += piece
        pos += layout.record_size(size)
    with FileSource(pattern_raw) as src:
        disk = RawDisk(src)
        nonzero = b"".join(b for _n, b in zw.data_blocks(disk, 2 * MiB))
    assert bytes(got) == nonzero


def test_sparse_200_gib_input_costs_only_its_data(tmp_path: Path) -> None:
    big = tmp_path / "big.raw"
    chunk = os.urandom(3 * MiB)
    with open(big, "wb") as f:
        f.truncate(200 * GiB)
        for at in (0, 100 * GiB + 12345, 200 * GiB - 1 * MiB):
            f.seek(at)
            f.write(chunk[: min(3 * MiB, 200 * GiB - at)])
    out = tmp_path / "big.zvhd2"
    started = time.monotonic()
    done = convert_image(big, out, "zvhd2")
    assert time.monotonic() - started < 20
    assert done.virtual_size == 200 * GiB and out.stat().st_size < 16 * MiB
    with FileSource(out) as src:
        c = registry.probe(src)
        assert c.readable and c.opener is not None
        disk = c.opener(src)
        assert disk.read(100 * GiB + 12345, 3 * MiB) == chunk
        assert disk.read(200 * GiB - 1 * MiB, 2 * MiB) == chunk[: 1 * MiB]
        assert disk.read(50 * GiB, 4096) == bytes(4096)
    assert "non-zero blocks" in c.properties and int(c.properties["non-zero blocks"]) <= 6


def test_in_flight_blocks_are_bounded(tmp_path: Path) -> None:
    raw = tmp_path / "r.raw"
    raw.write_bytes(os.urandom(64 * 1024) * 32 * 8)  # 16 MiB: 16 blocks of 1 MiB
    live, peak = 0, 0

    def submit(pool: ThreadPoolExecutor, data: bytes) -> Future[bytes]:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        return pool.submit(zlib.compress, data, 1)

    with FileSource(raw) as src:
        for _n, _payload in zw._pipeline(RawDisk(src), MiB, 2, submit):
            live -= 1
    assert peak <= 4


def test_progress_reaches_the_total(pattern_raw: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    convert_image(
        pattern_raw, tmp_path / "p.zvhd2", "zvhd2", progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (pattern_raw.stat().st_size,) * 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_bad_options_and_unsafe_inputs_are_refused(pattern_raw: Path, tmp_path: Path) -> None:
    for bad in (3 * MiB, 64 * MiB, 512 * 1024):
        with pytest.raises(ImageportError, match="power of two"):
            convert_image(
                pattern_raw, tmp_path / "x.zvhd2", "zvhd2", ConvertOptions(block_size=bad)
            )
    with pytest.raises(ImageportError, match="always zlib"):
        convert_image(pattern_raw, tmp_path / "x.zvhd", "zvhd", ConvertOptions("zstd"))
    with pytest.raises(ImageportError, match="input file"):
        convert_image(pattern_raw, pattern_raw, "zvhd2")
    hostile = builders.cached("zvhd-writer-hostile-backing.qcow2")
    if not hostile.exists():  # -u: qemu-img does not open the backing file, so give the size
        builders.qemu_img(
            "create", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", "-u", str(hostile), "64M"
        )
    with pytest.raises(ImageRefusedError, match="IMG-SAFE"):
        convert_image(hostile, tmp_path / "h.zvhd2", "zvhd2")
    assert not (tmp_path / "h.zvhd2").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left behind


# -- damaged ZVHD2 files from the production writer ------------------------------------------


@pytest.fixture(scope="module")
def small_zvhd2(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("dmg")
    raw = d / "s.raw"
    raw.write_bytes(os.urandom(2 * MiB) + bytes(2 * MiB) + b"x" * (3 * MiB))
    with FileSource(raw) as src:
        zw.write_zvhd2(RawDisk(src), d / "s.zvhd2", FIXED)
    return (d / "s.zvhd2").read_bytes()


def _probe(data: bytes | bytearray) -> Container:
    return registry.probe(BytesSource(bytes(data)))


def _final_at(data: bytearray) -> int:
    return len(data) - 4096


def _refit(data: bytearray) -> bytearray:
    at = _final_at(data)
    data[at : at + 512] = packing.with_checksum(data[at : at + 512])
    return data


def _field(data: bytearray, offset: int, fmt: str) -> int:
    return int(struct.unpack_from(fmt, data, _final_at(data) + offset)[0])


def test_intact_small_file_reads(small_zvhd2: bytes) -> None:
    c = _probe(small_zvhd2)
    assert c.readable and c.properties["non-zero blocks"] == "3"


def test_bad_index_entry_is_refused(small_zvhd2: bytes) -> None:
    data = bytearray(small_zvhd2)
    index = _field(data, 96, "<Q")
    first = struct.unpack_from("<Q", data, index)[0]
    struct.pack_into("<Q", data, index + 16, first)  # entry 1 points at entry 0's record
    assert "overlapping another record" in (_probe(data).damage or "")
    data = bytearray(small_zvhd2)
    struct.pack_into("<I", data, index + 16 + 8, 0)  # entry 1 repeats block 0
    assert "out of order" in (_probe(data).damage or "")


def test_index_pointing_outside_the_file_is_refused(small_zvhd2: bytes) -> None:
    data = bytearray(small_zvhd2)
    struct.pack_into("<Q", data, _field(data, 96, "<Q"), len(data) + 4096)
    assert "outside the record area" in (_probe(data).damage or "")
    data = bytearray(small_zvhd2)
    struct.pack_into("<Q", data, _final_at(data) + 96, len(data) * 2)  # index_lba
    damage = _probe(_refit(data)).damage or ""
    assert "index" in damage and "outside the file" in damage


def test_bad_footer_checksum_is_refused(small_zvhd2: bytes) -> None:
    data = bytearray(small_zvhd2)
    data[_final_at(data) + 41] ^= 0x40  # orig_size, checksum now stale
    assert "checksum" in (_probe(data).damage or "")
    data = bytearray(small_zvhd2)
    data[41] ^= 0x40  # the header copy at offset 0
    assert "checksum" in (_probe(data).damage or "")


def test_truncated_tail_is_refused(small_zvhd2: bytes) -> None:
    for cut in (1, 512, 4096, 4096 + 512 * 1024, len(small_zvhd2) // 2):
        c = _probe(small_zvhd2[:-cut])
        assert c.format == "zvhd2" and c.damage is not None and not c.readable, cut


def test_bitmap_index_disagreement_is_refused(small_zvhd2: bytes) -> None:
    bitmap = _field(bytearray(small_zvhd2), 104, "<Q")
    assert small_zvhd2[bitmap] == 0b1101  # blocks 0, 2, 3
    data = bytearray(small_zvhd2)
    data[bitmap] = 0b1111  # block 1 marked, not listed
    assert "the bitmap marks 4 blocks, the index lists 3" in (_probe(data).damage or "")
    data = bytearray(small_zvhd2)
    data[bitmap] = 0b1001  # block 2 listed, not marked
    assert "not marked in the bitmap" in (_probe(data).damage or "")
    data = bytearray(small_zvhd2)
    data[bitmap] = 0b11101  # block 4 is beyond max_blk_num (4 blocks)
    assert "beyond max_blk_num" in (_probe(data).damage or "")


def test_damaged_file_is_refused_by_convert(small_zvhd2: bytes, tmp_path: Path) -> None:
    data = bytearray(small_zvhd2)
    data[_field(data, 104, "<Q")] = 0b1111
    bad = tmp_path / "bad.zvhd2"
    bad.write_bytes(data)
    with pytest.raises(ImageRefusedError):
        convert_image(bad, tmp_path / "out.raw", "raw")
    with pytest.raises(ImageRefusedError):
        with open_checked(bad):
            pass


def test_oversized_record_length_is_a_limit_error(small_zvhd2: bytes) -> None:
    data = bytearray(small_zvhd2)
    struct.pack_into("<I", data, _field(data, 96, "<Q") + 12, 0xFFFFF000)
    c = _probe(data)
    assert c.damage is not None and "record length" in c.damage


def test_input_damaged_past_the_probe_leaves_no_output(small_zvhd2: bytes, tmp_path: Path) -> None:
    data = bytearray(small_zvhd2)
    first = struct.unpack_from("<Q", data, _field(data, 96, "<Q"))[0]
    data[first + 48 : first + 64] = b"\xff" * 16  # garbage compressed bytes in block 0
    bad = tmp_path / "bad.zvhd2"
    bad.write_bytes(data)
    assert _probe(data).readable  # the probe reads tables, not data
    with pytest.raises(ImageportError, match="block 0 cannot be decompressed"):
        convert_image(bad, tmp_path / "out.zvhd2", "zvhd2")
    assert [p.name for p in tmp_path.iterdir()] == ["bad.zvhd2"]
