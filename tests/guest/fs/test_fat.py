"""FAT12/16/32 reader against volumes made by mkfs.vfat and filled by mtools (no mount).

Each volume is compared with the source tree it was filled from (names, types, sizes, bytes) and
its identity with what ``blkid -p`` says. Hostile volumes: a looping chain, clusters beyond the
FAT, zero divisors in the BPB, and a few hundred deterministic bit flips walked end to end.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from imageport.errors import CorruptImageError, ImageportError
from imageport.guest.fs import fat
from imageport.guest.fs.base import FileType, NoSuchFileError, WrongTypeError
from imageport.guest.fs.fat_layout import ATTR_LFN, LfnEntry
from imageport.guest.volumes.blockdev import BytesDevice
from support import builders

VERSION = "v4"
SERIAL = {12: "12AB34CD", 16: "0000BEEF", 32: "DEADBEEF"}
SIZE_KIB = {12: 8192, 16: 32768, 32: 49152}
LONG = "A Long File Name with Spaces and Ünïcödé 名前.txt"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (dosfstools / mtools are needed for the FAT tests)")
    return path


def _run(*args: str) -> str:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(
        [_tool(args[0]), *args[1:]], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _source_tree() -> Path:
    """The files every volume holds (deterministic), cached."""
    final = builders.cached(f"fat-src-{VERSION}")
    if final.exists():
        return final
    rng = random.Random(1234)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)

    def put(rel: str, data: bytes) -> None:
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    put("EFI/BOOT/BOOTX64.EFI", rng.randbytes(150_000))
    put("EFI/debian/grub.cfg", b"search.fs_uuid 1234 root\nset prefix=($root)'/boot/grub'\n")
    put("EFI/debian/shimx64.efi", rng.randbytes(40_000))
    put(LONG, b"long name\n")
    put("MixedCase.Conf", b"mixed\n")
    put("lower.txt", b"lower\n")
    put("empty", b"")
    put("a/b/c/d/e/f/g/h/i/j/deep leaf.txt", b"deep\n")
    for i in range(1000):
        put(f"many/entry number {i:04d} of a large directory.txt", b"%d\n" % i)
    put("big.bin", rng.randbytes(3 * 1024 * 1024 + 123))
    os.replace(tmp, final)
    return final


def fat_image(bits: int) -> Path:
    """A FAT``bits`` volume holding the source tree; big.bin is fragmented around deleted files."""
    final = builders.cached(f"fat{bits}-{VERSION}.img")
    if final.exists():
        return final
    src = _source_tree()
    tmp = final.with_name(final.name + ".tmp")
    tmp.unlink(missing_ok=True)
    sectors_per_cluster = {12: "4", 16: "4", 32: "1"}[bits]
    _run(
        "mkfs.vfat",
        "-C",
        "-F",
        str(bits),
        "-s",
        sectors_per_cluster,
        "-n",
        f"ESP{bits}",
        "-i",
        SERIAL[bits],
        str(tmp),
        str(SIZE_KIB[bits]),
    )
    img = ["-i", str(tmp)]
    filler = src.parent / f"fat-filler-{VERSION}"
    filler.mkdir(exist_ok=True)
    for i in range(12):
        (filler / f"gap{i}.bin").write_bytes(bytes([i]) * 5000)
    _run("mmd", *img, "::/gaps")
    _run("mcopy", *img, *[str(filler / f"gap{i}.bin") for i in range(12)], "::/gaps/")
    for i in range(0, 12, 2):
        _run("mdel", *img, f"::/gaps/gap{i}.bin")
    if bits == 32:  # FSInfo's next-free hint to "unknown", so that mtools fills the holes
        with open(tmp, "r+b") as f:
            f.seek(48)
            (fsinfo,) = struct.unpack("<H", f.read(2))
            f.seek(fsinfo * 512 + 492)
            f.write(b"\xff\xff\xff\xff")
    _run("mcopy", *img, str(src / "big.bin"), "::/")  # into the holes: a fragmented chain
    _run(
        "mcopy", *img, "-s", *[str(p) for p in sorted(src.iterdir()) if p.name != "big.bin"], "::/"
    )
    for i in range(1, 12, 2):
        _run("mdel", *img, f"::/gaps/gap{i}.bin")
    _run("mrd", *img, "::/gaps")
    os.replace(tmp, final)
    return final


def _walk(fs: fat.FatFilesystem, path: str, out: dict[str, bytes | None], depth: int = 0) -> None:
    """Every path under ``path`` with its bytes (None for directories); depth-capped because a
    hostile directory entry may point back at an ancestor."""
    if depth > 16:
        return
    for entry in fs.listdir(path or "/"):
        child = f"{path}/{entry.name}"
        st = fs.stat_ino(entry.ino)
        if st.type is FileType.DIRECTORY:
            out[child.lstrip("/")] = None
            _walk(fs, child, out, depth + 1)
        else:
            out[child.lstrip("/")] = fs.read_file(child)


def _expected(src: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in src.rglob("*"):
        out[str(p.relative_to(src))] = None if p.is_dir() else p.read_bytes()
    return out


def _blkid(image: Path) -> dict[str, str]:
    text = _run("blkid", "-p", "-o", "export", str(image))
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.mark.parametrize("bits", [12, 16, 32])
def test_volume_matches_source_tree_and_blkid(bits: int) -> None:
    image = fat_image(bits)
    dev = BytesDevice(image.read_bytes())
    fs = fat.open_fs(dev)
    seen: dict[str, bytes | None] = {}
    _walk(fs, "", seen)
    assert seen == _expected(_source_tree())
    ref = _blkid(image)
    sig = fat.probe(dev)
    assert sig is not None
    assert (sig.kind, sig.uuid, sig.version) == ("vfat", ref["UUID"], ref["VERSION"])
    assert (fs.fs_type, fs.uuid, fs.label) == ("vfat", ref["UUID"], ref["LABEL"])
    assert fs.version == f"FAT{bits}"


@pytest.mark.parametrize("bits", [12, 32])
def test_lookups_reads_and_stat(bits: int) -> None:
    fs = fat.open_fs(BytesDevice(fat_image(bits).read_bytes()))
    src = _source_tree()
    # case-insensitive, like the Linux vfat driver
    assert fs.read_file("/efi/boot/bootx64.efi") == (src / "EFI/BOOT/BOOTX64.EFI").read_bytes()
    assert fs.exists("/EFI/Debian/GRUB.CFG")
    assert fs.stat("/many").type is FileType.DIRECTORY
    assert len(fs.listdir("/many")) == 1000
    assert fs.stat("/many/ENTRY NUMBER 0999 OF A LARGE DIRECTORY.TXT").size == 4
    big = (src / "big.bin").read_bytes()
    ino = fs.resolve("/big.bin")
    for offset, length in [(0, 1), (511, 2), (4095, 10_000), (len(big) - 5, 100), (len(big), 9)]:
        assert fs.read_ino(ino, offset, length) == big[offset : offset + length]
    first = fs._node(ino).first_cluster
    chain = list(fs._chain(first, 1 << 20))
    assert sum(b != a + 1 for a, b in itertools.pairwise(chain)) >= 5  # fragmented
    assert fs.stat("/empty").size == 0 and fs.read_file("/empty") == b""
    with pytest.raises(NoSuchFileError):
        fs.readlink("/lower.txt")
    with pytest.raises(NoSuchFileError):
        fs.read_file("/no/such/file")
    with pytest.raises(WrongTypeError):  # a file where a directory is listed
        fs.listdir("/lower.txt")


def _image_bytes(bits: int) -> bytearray:
    return bytearray(fat_image(bits).read_bytes())


def _fat_entry_offset(fs: fat.FatFilesystem, cluster: int) -> int:
    geo = fs.geometry
    assert geo.fat_bits == 16
    return geo.fat_offset + 2 * cluster


def test_looping_chain_and_cluster_beyond_fat_are_corrupt() -> None:
    data = _image_bytes(16)
    fs = fat.open_fs(BytesDevice(bytes(data)))
    node = fs.stat("/big.bin")
    first = fs._node(node.ino).first_cluster
    second = fs._next(first)
    assert second is not None
    loop = bytearray(data)
    struct.pack_into("<H", loop, _fat_entry_offset(fs, second), first)  # second -> first
    with pytest.raises(CorruptImageError, match="loops"):
        fat.open_fs(BytesDevice(bytes(loop))).read_file("/big.bin")
    beyond = bytearray(data)
    struct.pack_into("<H", beyond, _fat_entry_offset(fs, second), 0xFFF0)
    with pytest.raises(CorruptImageError, match="invalid cluster"):
        fat.open_fs(BytesDevice(bytes(beyond))).read_file("/big.bin")
    short = bytearray(data)
    struct.pack_into("<H", short, _fat_entry_offset(fs, second), 0xFFFF)  # chain ends early
    with pytest.raises(CorruptImageError, match="ends early"):
        fat.open_fs(BytesDevice(bytes(short))).read_file("/big.bin")


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (11, "<H", 0, "bytes per sector"),
        (11, "<H", 1000, "bytes per sector"),
        (13, "B", 0, "sectors per cluster"),
        (13, "B", 3, "sectors per cluster"),
        (14, "<H", 0, "reserved"),
        (16, "B", 0, "FATs"),
        (22, "<H", 0, "FAT size|fixed root"),  # FAT16 turned into a FAT32 layout
        (32, "<I", 0, "zero"),
        (32, "<I", None, "larger than its device"),
    ],
)
def test_insane_boot_sector_is_refused(
    offset: int, fmt: str, value: int | None, message: str
) -> None:
    data = _image_bytes(16)
    if offset == 32:
        total = struct.unpack_from("<H", data, 19)[0] or struct.unpack_from("<I", data, 32)[0]
        struct.pack_into("<H", data, 19, 0)  # make the 32-bit total count the one used
        value = total + 64 if value is None else value
    struct.pack_into(fmt, data, offset, value)
    dev = BytesDevice(bytes(data))
    with pytest.raises(CorruptImageError, match=message):
        fat.open_fs(dev)


def test_probe_rejects_other_data_without_raising() -> None:
    assert fat.probe(BytesDevice(b"")) is None
    assert fat.probe(BytesDevice(bytes(4096))) is None
    mbr = bytearray(random.Random(7).randbytes(512))
    mbr[510:512] = b"\x55\xaa"
    assert fat.probe(BytesDevice(bytes(mbr))) is None


def _small_volume() -> bytes:
    """A 1 MiB FAT12 volume with a few entries (fast to walk many times)."""
    final = builders.cached(f"fat12-small-{VERSION}.img")
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        tmp.unlink(missing_ok=True)
        _run("mkfs.vfat", "-C", "-F", "12", "-s", "1", "-n", "SMALL", str(tmp), "1024")
        src = _source_tree()
        img = ["-i", str(tmp)]
        _run("mcopy", *img, "-s", str(src / "EFI"), str(src / LONG), str(src / "a"), "::/")
        os.replace(tmp, final)
    return final.read_bytes()


def test_bit_flips_raise_only_our_errors() -> None:
    base = _small_volume()
    fs = fat.open_fs(BytesDevice(base))
    metadata_end = fs.geometry.data_offset + 40 * fs.geometry.cluster_bytes
    rng = random.Random(20260101)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(metadata_end)
            data[pos] ^= 1 << rng.randrange(8)
        try:
            mutated = fat.open_fs(BytesDevice(bytes(data)))
            _walk(mutated, "", {})
            outcomes["ok"] += 1
        except ImageportError:
            outcomes["error"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0


def test_long_name_with_bad_checksum_falls_back_to_the_short_name() -> None:
    data = _image_bytes(16)
    fs = fat.open_fs(BytesDevice(bytes(data)))
    geo = fs.geometry
    first_part = LONG[:13].encode("utf-16-le")
    for pos in range(geo.root_offset, geo.root_offset + geo.root_bytes, 32):
        entry = data[pos : pos + 32]
        if entry[11] == ATTR_LFN and LfnEntry.from_bytes(bytes(entry)).chars == first_part:
            data[pos + 13] ^= 0xFF
            break
    else:
        pytest.fail("the long name's first entry was not found")
    names = {e.name for e in fat.open_fs(BytesDevice(bytes(data))).listdir("/")}
    assert LONG not in names
    assert any(n.startswith("ALONG") and n.endswith("~1.TXT") for n in names), names
