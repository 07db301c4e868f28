"""Initrd reader against archives made by cpio and compressed by gzip, xz, lzma, zstd, lz4 -l and
bzip2; early-microcode concatenation as dracut and initramfs-tools write it; hostile inputs
(bombs, absurd cpio sizes, truncation, garbage, endless padding, bit flips).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from imageport.errors import CorruptImageError, ImageportError, LimitExceededError
from imageport.guest.boot import initrd
from imageport.guest.boot.decompress import lz4_block_decode
from imageport.guest.fs.base import FileType
from support import builders

VERSION = "v1"
KVER = "6.1.0-test"
RULES = b'SUBSYSTEM=="net", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"\n'
COMPRESSORS: dict[str, list[str]] = {
    "gzip": ["gzip", "-9", "-n", "-c"],
    "xz": ["xz", "--check=crc32", "-c"],
    "lzma": ["xz", "--format=lzma", "-c"],
    "zstd": ["zstd", "-q", "-19", "-c"],
    "lz4": ["lz4", "-l", "-9", "-c"],
    "bzip2": ["bzip2", "-c"],
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; it is needed to build the initrd fixtures")
    return path


def _run(args: list[str], *, stdin: bytes | None = None, cwd: Path | None = None) -> bytes:
    proc = subprocess.run(
        [_tool(args[0]), *args[1:]], input=stdin, capture_output=True, cwd=cwd, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _main_tree() -> Path:
    final = builders.cached(f"initrd-tree-{VERSION}")
    if final.exists():
        return final
    rng = random.Random(99)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)

    def put(rel: str, data: bytes) -> None:
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    mods = f"lib/modules/{KVER}"
    put(f"{mods}/kernel/drivers/block/virtio_blk.ko", b"\x7fELF dummy virtio_blk" * 50)
    put(
        f"{mods}/kernel/drivers/net/virtio_net.ko.xz",
        _run(["xz", "-c"], stdin=b"\x7fELF dummy virtio_net" * 50),
    )
    put(
        f"{mods}/kernel/drivers/scsi/virtio-scsi.ko.zst",
        _run(["zstd", "-q", "-c"], stdin=b"\x7fELF dummy virtio_scsi" * 50),
    )
    put(
        f"{mods}/modules.builtin", b"kernel/drivers/block/xen-blkfront.ko\nkernel/fs/ext4/ext4.ko\n"
    )
    put(f"{mods}/modules.dep", b"kernel/drivers/block/virtio_blk.ko:\n")
    put("etc/udev/rules.d/70-persistent-net.rules", RULES)
    put("etc/modprobe.d/blacklist.conf", b"blacklist floppy\n")
    put("conf/initramfs.conf", b"MODULES=most\n")
    put("conf/conf.d/resume", b"RESUME=none\n")
    put("bin/busybox", rng.randbytes(300_000))
    put("big/blob", rng.randbytes(3 * 1024 * 1024 + 7))
    (tmp / "bin/sh").symlink_to("busybox")
    (tmp / "lib64").symlink_to("lib")
    (tmp / "run").mkdir()
    os.replace(tmp, final)
    return final


BIG = ("big/blob", "bin/busybox")


def _cpio(tree: Path, fmt: str = "newc", *, small: bool = False) -> bytes:
    """``tree`` archived by cpio (``small``: without the two big random files)."""
    names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    names = [n for n in names if not (small and n in BIG)]
    listing = ("\n".join([".", *names]) + "\n").encode()
    return _run(["cpio", "-o", "-H", fmt, "-R", "0:0", "--quiet"], stdin=listing, cwd=tree)


def _early_cpio() -> bytes:
    final = builders.cached(f"initrd-early-{VERSION}.cpio")
    if not final.exists():
        tree = final.with_name(final.name + ".tree")
        shutil.rmtree(tree, ignore_errors=True)
        (tree / "kernel/x86/microcode").mkdir(parents=True)
        (tree / "kernel/x86/microcode/GenuineIntel.bin").write_bytes(b"microcode" * 1000)
        final.write_bytes(_cpio(tree))
        shutil.rmtree(tree)
    return final.read_bytes()


def initrd_image(compression: str, fmt: str = "newc", *, small: bool = False) -> bytes:
    """The main tree archived by cpio -H ``fmt`` and compressed (``none``: not compressed)."""
    tag = "-small" if small else ""
    final = builders.cached(f"initrd-{fmt}-{compression}{tag}-{VERSION}.img")
    if not final.exists():
        archive = _cpio(_main_tree(), fmt, small=small)
        data = archive if compression == "none" else _run(COMPRESSORS[compression], stdin=archive)
        tmp = final.with_name(final.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, final)
    return final.read_bytes()


def _expected_members() -> dict[str, tuple[FileType, int]]:
    tree = _main_tree()
    out = {".": (FileType.DIRECTORY, 0)}
    for p in tree.rglob("*"):
        rel = str(p.relative_to(tree))
        if p.is_symlink():
            out[rel] = (FileType.SYMLINK, len(os.readlink(p)))
        elif p.is_dir():
            out[rel] = (FileType.DIRECTORY, 0)
        else:
            out[rel] = (FileType.REGULAR, p.stat().st_size)
    return out


KEEP = ("etc/udev/rules.d/70-persistent-net.rules", "conf/*", "etc/modprobe.d/*", "big/*")


def _check_main(contents: initrd.InitrdContents) -> None:
    got = {m.path: (m.type, m.size) for m in contents.members}
    expected = _expected_members()
    assert {k: v for k, v in got.items() if not k.startswith("kernel")} == expected
    assert contents.kernel_versions == (KVER,)
    assert contents.modules == {"virtio_blk", "virtio_net", "virtio_scsi"}
    assert contents.modules_by_version == {KVER: contents.modules}
    assert contents.builtin_modules == {"xen_blkfront", "ext4"}
    assert contents.kept["etc/udev/rules.d/70-persistent-net.rules"].data == RULES
    assert contents.kept["conf/conf.d/resume"].data == b"RESUME=none\n"
    assert contents.kept["etc/modprobe.d/blacklist.conf"].data == b"blacklist floppy\n"
    blob = contents.kept["big/blob"]
    assert blob.truncated and len(blob.data) == initrd.MAX_KEPT_BYTES
    assert blob.data == (_main_tree() / "big/blob").read_bytes()[: initrd.MAX_KEPT_BYTES]
    assert "bin/busybox" not in contents.kept
    sh = next(m for m in contents.members if m.path == "bin/sh")
    assert sh.link_target == "busybox"
    assert contents.has("/etc/udev/rules.d/70-persistent-net.rules")
    assert not contents.problems


@pytest.mark.parametrize("compression", ["none", *COMPRESSORS])
def test_each_compression_reads_the_whole_tree(compression: str) -> None:
    data = initrd_image(compression)
    contents = initrd.read_initrd(data, keep=KEEP)
    _check_main(contents)
    assert [s.compression for s in contents.segments] == [compression]
    assert contents.segments[0].stored_bytes <= len(data)


@pytest.mark.parametrize("fmt", ["crc", "odc", "bin"])
def test_other_cpio_formats(fmt: str) -> None:
    _check_main(initrd.read_initrd(initrd_image("gzip", fmt), keep=KEEP))


class FileDevice:
    """The initrd file read lazily (what a guest filesystem gives), counting the bytes read."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.bytes_read = 0

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        out = self._data[offset : offset + length]
        self.bytes_read += len(out)
        return out


@pytest.mark.parametrize("main", ["zstd", "gzip", "lz4", "xz"])
def test_early_microcode_then_compressed_main(main: str) -> None:
    early = _early_cpio()
    assert len(early) % 512 == 0  # cpio pads to its block size with zeros
    data = early + bytes(4096) + initrd_image(main)
    dev = FileDevice(data)
    contents = initrd.read_initrd(dev, keep=KEEP)
    _check_main(contents)
    assert [s.compression for s in contents.segments] == ["none", main]
    assert contents.has("kernel/x86/microcode/GenuineIntel.bin")
    assert dev.bytes_read < 2 * len(data)


def test_endless_zero_padding_and_garbage_between_archives() -> None:
    early, main = _early_cpio(), initrd_image("zstd")
    padded = initrd.read_initrd(early + bytes(64 << 20) + main)
    assert [s.compression for s in padded.segments] == ["none", "zstd"]
    garbage = initrd.read_initrd(early + b"GARBAGE!" + main)
    assert [s.compression for s in garbage.segments] == ["none"]
    assert "unrecognised data" in garbage.problems[0]
    with pytest.raises(CorruptImageError, match="not an initrd"):
        initrd.read_initrd(bytes(1 << 20))
    with pytest.raises(CorruptImageError, match="not an initrd"):
        initrd.read_initrd(b"\x7fELF" + bytes(100))


def _zstd_zero_bomb(total: int) -> bytes:
    """``total`` zero bytes, zstd-compressed in a stream (never held uncompressed)."""
    final = builders.cached(f"initrd-bomb-{total}-{VERSION}.zst")
    if not final.exists():
        comp = zstandard.ZstdCompressor(level=3).compressobj()
        zeros = bytes(16 << 20)
        parts = [comp.compress(zeros) for _ in range(total // len(zeros))]
        parts.append(comp.flush())
        final.write_bytes(b"".join(parts))
    return final.read_bytes()


def test_decompression_bombs_hit_the_cap() -> None:
    bomb = _zstd_zero_bomb(2 << 30)
    assert len(bomb) < 1 << 20
    with pytest.raises(LimitExceededError, match="bomb"):
        initrd.read_initrd(_early_cpio() + bomb)
    xz_bomb = _run(["xz", "-0", "-c"], stdin=_cpio(_main_tree()) + bytes(64 << 20))
    with pytest.raises(LimitExceededError, match="bomb"):
        initrd.read_initrd(xz_bomb, max_unpacked=16 << 20)


def _newc(name: bytes, size: int, namesize: int | None = None, mode: int = 0o100644) -> bytes:
    ns = len(name) + 1 if namesize is None else namesize
    fields = [1, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, ns, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields)
    body = head + name + b"\x00"
    return body + bytes(-len(body) % 4)


def test_junk_after_the_archive_inside_a_compressed_segment() -> None:
    junk = _run(["gzip", "-c"], stdin=_cpio(_main_tree(), small=True) + b"junk")
    contents = initrd.read_initrd(_early_cpio() + junk)
    assert "data after its archives" in contents.problems[0]
    assert contents.has("etc/udev/rules.d/70-persistent-net.rules")


def test_absurd_cpio_numbers_are_reported() -> None:
    early = _early_cpio()
    huge_name = initrd.read_initrd(early + _newc(b"x", 0, namesize=1 << 31))
    assert "name size" in huge_name.problems[0]
    beyond = initrd.read_initrd(early + _newc(b"etc/passwd", 0xFFFFFFFF) + b"root:x:0:0")
    assert "cut short" in beyond.problems[0]
    with pytest.raises(CorruptImageError):
        initrd.read_initrd(_newc(b"x", 0, namesize=1 << 31))
    spaced = _newc(b"x", 0).replace(b"00000002", b"+0000002", 1)
    with pytest.raises(CorruptImageError, match="hexadecimal"):
        initrd.read_initrd(spaced)
    with pytest.raises(LimitExceededError, match="members"):
        initrd.read_initrd(initrd_image("gzip"), max_members=10)


@pytest.mark.parametrize("compression", ["none", *COMPRESSORS])
def test_truncated_archives_keep_what_was_read(compression: str) -> None:
    data = initrd_image(compression)
    last = len(data) - (600 if compression == "none" else 1)  # cpio pads its end with zeros
    for cut in (len(data) // 3, len(data) * 2 // 3, last):
        try:
            contents = initrd.read_initrd(data[:cut])
        except CorruptImageError:
            continue
        assert contents.problems
        assert len(contents.members) <= len(_expected_members())


def test_bit_flips_raise_only_our_errors() -> None:
    rng = random.Random(4242)
    seeds = [initrd_image(c, small=True) for c in ("none", "gzip", "zstd", "lz4", "xz", "bzip2")]
    seeds.append(_early_cpio() + initrd_image("lzma", small=True))
    outcomes = {"ok": 0, "error": 0}
    for i in range(300):
        data = bytearray(seeds[i % len(seeds)])
        for _ in range(rng.randint(1, 4)):
            head = rng.random() < 0.7  # headers sit near the start; aim most flips there
            pos = rng.randrange(min(len(data), 4096) if head else len(data))
            data[pos] ^= 1 << rng.randrange(8)
        try:
            initrd.read_initrd(bytes(data), keep=KEEP, max_unpacked=64 << 20)
            outcomes["ok"] += 1
        except ImageportError:
            outcomes["error"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0


def test_lz4_block_decoder_overlapping_matches() -> None:
    # literal "ab", then a match of offset 2 and length 4+6=10 (overlapping), then literal "z"
    block = bytes([0x26]) + b"ab" + b"\x02\x00" + bytes([0x10]) + b"z"
    assert lz4_block_decode(block, 100) == b"ab" + b"abababababab"[:10] + b"z"
    with pytest.raises(CorruptImageError):
        lz4_block_decode(bytes([0x10]) + b"a" + b"\x05\x00", 100)  # offset beyond output
    with pytest.raises(CorruptImageError):
        lz4_block_decode(block, 5)  # output cap


def test_kernel_config_and_modules_builtin_parsing() -> None:
    config = initrd.parse_kernel_config(
        "# comment\nCONFIG_VIRTIO_BLK=y\nCONFIG_VIRTIO_NET=m\n"
        "# CONFIG_XEN_BLKDEV_FRONTEND is not set\n"
        'CONFIG_LOCALVERSION="-cloud"\nCONFIG_HZ=250\n'
    )
    assert config == {
        "CONFIG_VIRTIO_BLK": "y",
        "CONFIG_VIRTIO_NET": "m",
        "CONFIG_XEN_BLKDEV_FRONTEND": "n",
        "CONFIG_LOCALVERSION": "-cloud",
        "CONFIG_HZ": "250",
    }
    builtin = initrd.parse_modules_builtin(
        "kernel/drivers/block/virtio_blk.ko\nkernel/drivers/block/xen-blkfront.ko\n\n"
    )
    assert builtin == {"virtio_blk", "xen_blkfront"}
