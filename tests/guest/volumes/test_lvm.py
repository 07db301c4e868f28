"""LVM2 PVs written by the real LVM tools (no device-mapper), read back and compared with lvs/pvs.

The fixture runs ``pvcreate``/``vgcreate``/``lvcreate -an -Zn``/``lvextend`` on two loop
devices with activation, udev, backups and the devices file switched off and a device filter
that admits only those two loops, then asks ``pvs``/``vgs``/``lvs --segments`` (JSON) where
every extent is. A pattern is then written into each LV's extents following that layout (and
dm-stripe's chunk rule), so reading the LV through :class:`LogicalVolumeDevice` must give it.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imageport.errors import CorruptImageError, LimitExceededError, UnsupportedImageError
from imageport.guest.volumes.blockdev import BytesDevice
from imageport.guest.volumes.lvm import lvm_crc, probe, read_physical_volume, read_volume_group
from imageport.guest.volumes.lvm_metadata import MAX_DEPTH, parse_metadata
from support import builders
from support.file_device import FileDevice

MiB = 1 << 20
PV_SIZE = 64 * MiB
VG = "imageportvg"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (needs util-linux and lvm2); it builds the fixtures")
    return path


def _run(*cmd: str) -> str:
    env = dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _lvm_config(loops: list[str]) -> str:
    accept = ", ".join(f'"a|^{loop}$|"' for loop in loops)
    return (
        "global { activation = 0 } "
        f'devices {{ filter = [ {accept}, "r|.*|" ] obtain_device_list_from_udev = 0 '
        "use_devicesfile = 0 } "
        "activation { udev_sync = 0 udev_rules = 0 } "
        "backup { backup = 0 archive = 0 }"
    )


def _pattern(lv: str, offset: int, length: int) -> bytes:
    """The bytes the test puts at ``offset`` of LV ``lv``: each 512-byte sector names itself."""
    first, last = offset // 512, (offset + length - 1) // 512
    text = b"".join(f"{lv}:{n:010d}".encode().ljust(512, b".") for n in range(first, last + 1))
    return text[offset - first * 512 : offset - first * 512 + length]


def _write_pattern(files: list[Path], layout: dict[str, Any]) -> None:
    """Put each LV's pattern where lvs says its extents are (dm-stripe chunk order)."""
    extent = layout["extent_size"]
    pe_start = {pv["pv_name"]: pv["pe_start"] for pv in layout["pvs"]}
    handles = {name: open(files[i], "r+b") for i, name in enumerate(layout["loops"])}
    try:
        for seg in layout["segments"]:
            ranges = [r.rsplit(":", 1) for r in seg["seg_pe_ranges"].split()]
            areas = [(dev, int(r.split("-")[0])) for dev, r in ranges]
            seg_start = int(seg["seg_start_pe"]) * extent
            length = int(seg["seg_size_pe"]) * extent
            chunk = int(seg["stripe_size"].rstrip("B") or 0) if len(areas) > 1 else length
            for c in range(length // chunk):
                dev, first = areas[c % len(areas)]
                handles[dev].seek(pe_start[dev] + first * extent + (c // len(areas)) * chunk)
                handles[dev].write(_pattern(seg["lv_name"], seg_start + c * chunk, chunk))
    finally:
        for h in handles.values():
            h.close()


def _build() -> tuple[list[Path], dict[str, Any]]:
    files = [builders.cached(f"lvm-pv{i}.raw") for i in range(2)]
    meta = builders.cached("lvm-layout.json")
    if meta.exists() and all(f.exists() for f in files):
        return files, json.loads(meta.read_text())
    tmps = [f.with_name(f.name + ".tmp") for f in files]
    for t in tmps:
        with open(t, "wb") as blank:
            blank.truncate(PV_SIZE)
    loops: list[str] = []
    try:
        for t in tmps:
            loops.append(_run(_tool("losetup"), "--find", "--show", str(t)).strip())
        cfg = ["--config", _lvm_config(loops)]
        _run(_tool("pvcreate"), *cfg, *loops)
        _run(_tool("vgcreate"), *cfg, "-s", "1m", VG, *loops)
        _run(_tool("lvcreate"), *cfg, "-an", "-Zn", "-L", "10m", "-n", "root", VG, loops[0])
        _run(
            _tool("lvcreate"),
            *cfg,
            "-an",
            "-Zn",
            "-L",
            "8m",
            "-i",
            "2",
            "-I",
            "64k",
            "-n",
            "data",
            VG,
        )
        _run(_tool("lvextend"), *cfg, "-L", "+3m", f"{VG}/root", loops[1])
        report = ["--units", "b", "--nosuffix", "--reportformat", "json"]
        segs = json.loads(
            _run(
                _tool("lvs"),
                *cfg,
                *report,
                "--segments",
                "-o",
                "lv_name,lv_uuid,lv_size,seg_start_pe,seg_size_pe,segtype,"
                "stripes,stripe_size,seg_pe_ranges",
                VG,
            )
        )["report"][0]["seg"]
        pvs = json.loads(
            _run(_tool("pvs"), *cfg, *report, "-o", "pv_name,pv_uuid,pe_start,pv_pe_count", *loops)
        )["report"][0]["pv"]
        vgs = json.loads(
            _run(_tool("vgs"), *cfg, *report, "-o", "vg_name,vg_uuid,vg_extent_size,vg_seqno", VG)
        )["report"][0]["vg"]
    finally:
        for loop in loops:
            subprocess.run([_tool("losetup"), "-d", loop], check=False)
    for pv in pvs:
        pv["pe_start"] = int(pv["pe_start"])
    layout = {
        "loops": loops,
        "segments": segs,
        "pvs": pvs,
        "vg": vgs[0],
        "extent_size": int(vgs[0]["vg_extent_size"]),
    }
    _write_pattern(tmps, layout)
    meta.write_text(json.dumps(layout))
    for t, f in zip(tmps, files, strict=True):
        os.replace(t, f)
    return files, layout


@pytest.fixture(scope="module")
def pvs() -> Any:
    files, layout = _build()
    devs = [FileDevice(f) for f in files]
    yield devs, layout
    for d in devs:
        d.close()


def test_probe_names_the_pv(pvs: Any) -> None:
    devs, layout = pvs
    for dev, pv in zip(devs, layout["pvs"], strict=True):
        sig = probe(dev)
        assert sig is not None and sig.kind == "lvm2"
        assert sig.uuid == pv["pv_uuid"]
    assert probe(BytesDevice(bytes(8192))) is None
    assert probe(BytesDevice(b"LABELONE")) is None


def test_volume_group_matches_lvs(pvs: Any) -> None:
    devs, layout = pvs
    vg = read_volume_group(devs)
    assert (vg.name, vg.uuid) == (VG, layout["vg"]["vg_uuid"])
    assert vg.seqno == int(layout["vg"]["vg_seqno"])
    assert vg.extent_size == layout["extent_size"]
    assert vg.missing_pvs == () and vg.problems == ()
    assert [(p.uuid, p.pe_start, p.pe_count) for p in vg.physical_volumes] == [
        (p["pv_uuid"], p["pe_start"], int(p["pv_pe_count"])) for p in layout["pvs"]
    ]
    key_to_loop = {p.key: layout["pvs"][i]["pv_name"] for i, p in enumerate(vg.physical_volumes)}
    got = []
    for lv in vg.logical_volumes:
        for seg in lv.segments:
            per = seg.extent_count // len(seg.areas)
            got.append(
                {
                    "lv_name": lv.name,
                    "lv_uuid": lv.uuid,
                    "lv_size": str(lv.size),
                    "seg_start_pe": str(seg.start_extent),
                    "seg_size_pe": str(seg.extent_count),
                    "segtype": seg.kind,
                    "stripes": str(len(seg.areas)),
                    "stripe_size": str(seg.stripe_size),
                    "seg_pe_ranges": " ".join(
                        f"{key_to_loop[a.pv]}:{a.start_extent}-{a.start_extent + per - 1}"
                        for a in seg.areas
                    ),
                }
            )

    def order(seg: dict[str, str]) -> tuple[str, int]:
        return seg["lv_name"], int(seg["seg_start_pe"])

    assert sorted(got, key=order) == sorted(layout["segments"], key=order)
    root = vg.logical_volume("root")
    assert root is not None and len(root.segments) == 2 and root.visible


@pytest.mark.parametrize("step", [17, 4096, 65536 + 3, 3 * MiB])
def test_lv_reads_the_pattern(pvs: Any, step: int) -> None:
    devs, _ = pvs
    for lv in read_volume_group(devs).logical_volumes:
        dev = lv.device()
        assert dev.size == lv.size
        span = lv.size if step >= 4096 else 300_000  # byte-sized steps: a slice only
        start = (lv.size - span) // 3 if step < 4096 else 0
        for off in range(start, start + span, step):
            assert dev.read(off, step) == _pattern(lv.name, off, min(step, lv.size - off)), off
        assert dev.read(lv.size, 10) == b""


def test_missing_pv(pvs: Any) -> None:
    devs, layout = pvs
    vg = read_volume_group(devs[:1])
    assert vg.missing_pvs == (layout["pvs"][1]["pv_uuid"],)
    data, root = vg.logical_volume("data"), vg.logical_volume("root")
    assert data is not None and root is not None
    assert data.missing_pvs == (layout["pvs"][1]["pv_uuid"],)
    with pytest.raises(CorruptImageError, match="needs PVs"):
        data.device()


# -- hostile metadata ----------------------------------------------------------------------


def _pv_bytes(pvs: Any, index: int = 0, length: int = 2 * MiB) -> bytearray:
    devs, _ = pvs
    return bytearray(devs[index].read(0, length))


def _mda(buf: bytearray) -> tuple[int, int]:
    """(start, size) of the first metadata area of the PV in ``buf``."""
    pv = read_physical_volume(BytesDevice(bytes(buf)))
    assert pv is not None
    area = pv.header.metadata_areas[0]
    return area.offset, area.size


def _rewrite(buf: bytearray, text: bytes, at: int | None = None, size: int | None = None) -> None:
    """Store ``text`` as the current metadata (at area offset ``at``, wrapping if needed)."""
    start, area_size = _mda(buf)
    loc = 512 if at is None else at
    first = min(len(text), area_size - loc)
    buf[start + loc : start + loc + first] = text[:first]
    buf[start + 512 : start + 512 + len(text) - first] = text[first:]
    struct.pack_into(
        "<QQII", buf, start + 40, loc, len(text) if size is None else size, lvm_crc(text), 0
    )
    struct.pack_into("<I", buf, start, lvm_crc(bytes(buf[start + 4 : start + 512])))


def _text(pvs: Any) -> bytes:
    pv = read_physical_volume(BytesDevice(bytes(_pv_bytes(pvs))))
    assert pv is not None
    return pv.metadata[0]


class PatchedDevice:
    """A PV device whose first bytes are replaced by ``head`` (edited metadata)."""

    def __init__(self, base: FileDevice, head: bytearray) -> None:
        self._base, self._head = base, bytes(head)

    @property
    def size(self) -> int:
        return self._base.size

    def read(self, offset: int, length: int) -> bytes:
        data = self._base.read(offset, length)
        if offset < len(self._head):
            patch = self._head[offset : offset + length]
            data = patch + data[len(patch) :]
        return data


def _vg_from(buf: bytearray, pvs: Any = None) -> Any:
    """The VG read from the edited first PV (and the second PV, when ``pvs`` is given)."""
    if pvs is None:
        return read_volume_group([BytesDevice(bytes(buf))])
    return read_volume_group([PatchedDevice(pvs[0][0], buf), pvs[0][1]])


def test_wrapped_metadata(pvs: Any) -> None:
    buf = _pv_bytes(pvs)
    text = _text(pvs)
    _, size = _mda(buf)
    _rewrite(buf, text, at=size - 100)  # the circular buffer wraps after 100 bytes
    assert [lv.name for lv in _vg_from(buf).logical_volumes] == ["root", "data"]


def test_metadata_size_claiming_a_terabyte(pvs: Any) -> None:
    buf = _pv_bytes(pvs)
    _rewrite(buf, _text(pvs), size=1 << 40)
    with pytest.raises(LimitExceededError):
        _vg_from(buf)


def test_bad_metadata_checksum(pvs: Any) -> None:
    buf = _pv_bytes(pvs)
    _rewrite(buf, _text(pvs))
    start, _ = _mda(buf)
    buf[start + 512 + 20] ^= 1
    with pytest.raises(CorruptImageError, match="CRC"):
        _vg_from(buf)


def test_nesting_bomb(pvs: Any) -> None:
    buf = _pv_bytes(pvs)
    _rewrite(buf, b"a {" * 100_000 + b"}" * 100_000)
    with pytest.raises(LimitExceededError, match="nest"):
        _vg_from(buf)
    with pytest.raises(LimitExceededError):
        parse_metadata(b"x {" * (MAX_DEPTH + 1) + b"}" * (MAX_DEPTH + 1))
    parse_metadata(b"x {" * MAX_DEPTH + b"}" * MAX_DEPTH)


@pytest.mark.parametrize(
    "junk",
    [
        b'a = "unterminated',
        b"a = [1, 2",
        b"a = 1e999x",
        b"{}",
        b"a b",
        b"a = 9" + b"9" * 5000,
        b"a {",
        b"a = 1\na = 2",
    ],
)
def test_parser_rejects_junk(junk: bytes) -> None:
    with pytest.raises(CorruptImageError):
        parse_metadata(junk)


def test_parser_values() -> None:
    root = parse_metadata(b'# c\nv { s = "a\\"b" i = -3 f = 1.5 l = ["x", 2,] e = [] }\0junk')
    v = root.section("v")
    assert v.get_str("s") == 'a"b' and v.get_int("i") == -3
    assert v.get("f") == 1.5 and v.get_list("l") == ["x", 2] and v.get_list("e") == []


def _edit(text: bytes, old: bytes, new: bytes) -> bytes:
    assert old in text, old
    return text.replace(old, new, 1)


# The striped LV "data" is written by lvcreate as:  stripe_count = 2 ... stripes = [ "pv0", N, ...
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"stripe_count = 2", b"stripe_count = 0", "stripe count 0"),
        (b"stripe_count = 2", b"stripe_count = 2147483648", "stripe count 2147483648"),
        (b"stripe_count = 2", b"stripe_count = 3", "stripe_count says 3"),  # list has 2
        (b'"pv1", 0', b'"pv1", 60', "lie beyond PV pv1"),
        (b'"pv1", 0', b'"pv7", 0', "unknown PV"),
        (b'type = "striped"\nstripe_count = 2', b'type = "thin"\nstripe_count = 2', ""),
    ],
)
def test_hostile_segments(pvs: Any, old: bytes, new: bytes, message: str) -> None:
    buf = _pv_bytes(pvs)
    _rewrite(buf, _edit(_text(pvs), old, new))
    vg = _vg_from(buf, pvs)
    data = vg.logical_volume("data")
    assert data is not None
    if not message:
        assert data.unsupported == ("thin",)
        with pytest.raises(UnsupportedImageError, match="thin"):
            data.device()
    else:
        assert any(message in p for p in data.problems), data.problems
        with pytest.raises(CorruptImageError):
            data.device()
    root = vg.logical_volume("root")
    assert root is not None and root.problems == ()  # the other LV stays readable
    assert root.device().read(0, 600) == _pattern("root", 0, 600)


@pytest.mark.parametrize(
    ("new_start", "message"), [(b"start_extent = 11", "gap"), (b"start_extent = 9", "overlap")]
)
def test_segment_gap_and_overlap(pvs: Any, new_start: bytes, message: str) -> None:
    buf = _pv_bytes(pvs)
    text = _text(pvs)
    # root's second segment follows its first at extent 10
    text = _edit(text, b"segment2 {\nstart_extent = 10", b"segment2 {\n" + new_start)
    _rewrite(buf, text)
    vg = _vg_from(buf, pvs)
    root = vg.logical_volume("root")
    assert root is not None and any(message in p for p in root.problems)
    with pytest.raises(CorruptImageError):
        root.device()


def test_overlapping_allocations_are_reported(pvs: Any) -> None:
    buf = _pv_bytes(pvs)
    text = _edit(_text(pvs), b'"pv0", 10', b'"pv0", 5')  # data's stripe 0 over root's extents
    _rewrite(buf, text)
    vg = _vg_from(buf, pvs)
    assert any("used by LV root and LV data" in p for p in vg.problems)
