"""Btrfs reader tests against images made by btrfs-progs and the Linux kernel.

Fixtures (built once, cached): a filesystem made by ``mkfs.btrfs`` then filled through a loop
mount, with subvolumes ``@`` (set as default, holding the guest tree) and ``@home``, and
directories compressed with zlib, LZO and zstd (``btrfs property set ... compression``); one
made by ``mkfs.btrfs --rootdir`` with DUP data and metadata; and a tiny one for the hostile
cases. Every name, type, size, content and link target is checked against the source tree.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imageport.checksums import crc32c
from imageport.errors import (
    CorruptImageError,
    ImageportError,
    LimitExceededError,
    TruncatedImageError,
    UnsupportedImageError,
)
from imageport.guest.fs import btrfs
from imageport.guest.fs import btrfs_layout as L
from imageport.guest.fs.base import BrokenLinkError, FileType, NoSuchFileError
from imageport.guest.fs.btrfs_tree import Item
from imageport.guest.volumes.blockdev import BlockDevice, BytesDevice
from support import builders
from support.file_device import FileDevice

FIXTURE_VERSION = "3"
FS_UUID = "6a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
SMALL_UUID = "0d2e4f60-7182-4394-a5b6-c7d8e9fa0b1c"
COMPRESSORS = ("zlib", "lzo", "zstd")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (btrfs-progs): needed to build btrfs fixtures")
    return path


def run(*args: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")


def text_blob(seed: int, size: int) -> bytes:
    """Compressible text of ``size`` bytes that still differs everywhere."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(1, 6)).hex().encode() for _ in range(500)]
    out = bytearray()
    line = 0
    while len(out) < size:
        out += b"%07d " % line + b" ".join(rng.choice(words) for _ in range(8)) + b"\n"
        line += 1
    return bytes(out[:size])


def make_root_tree(root: Path, scale: str) -> None:
    """The guest tree of the default subvolume (``big``: MiBs and 2,000 entries; ``tiny``: for
    the hostile cases, where every mutation walks the whole tree)."""
    rng = random.Random(99)
    (root / "etc").mkdir(parents=True)
    (root / "etc/fstab").write_text(
        "UUID=x / btrfs subvol=@ 0 0\nUUID=x /home btrfs subvol=@home 0 0\n"
    )
    (root / "etc/os-release").write_text('NAME="Test"\nID=test\n')
    deep = root / "a/b/c/d/e"
    deep.mkdir(parents=True)
    (deep / "deep.txt").write_bytes(b"deep file\n")
    (root / "inline.txt").write_bytes(b"small inline file\n" * 20)
    (root / "empty").write_bytes(b"")
    (root / "random.bin").write_bytes(rng.randbytes(300_000 + 17 if scale == "big" else 9000))
    (root / "exactly4k").write_bytes(rng.randbytes(4096))
    write_holey_files(root)
    os.symlink("etc/fstab", root / "link-rel")
    os.symlink("/etc/os-release", root / "link-abs")
    os.symlink("nowhere/at/all", root / "link-dangling")
    os.symlink("x" * 1000, root / "link-long")
    os.symlink("a/b", root / "link-dir")
    (root / "caf\u00e9 \u2603 name").write_bytes(b"unicode\n")
    count = {"big": 2000, "small": 60, "tiny": 20}[scale]
    bigdir = root / "bigdir"
    bigdir.mkdir()
    for i in range(count):
        (bigdir / f"entry-{i:05d}-{'x' * (i % 40)}").write_bytes(b"%d\n" % i)
    size = {"big": (3 << 20) + 12345, "small": 150_000, "tiny": 20_000}[scale]
    for n, algo in enumerate(COMPRESSORS):
        d = root / algo
        d.mkdir()
        (d / "big.txt").write_bytes(text_blob(n, size))
        (d / "small.txt").write_bytes(text_blob(n + 10, 1500))  # inline, compressed
        if scale != "tiny":
            (d / "tail.txt").write_bytes(text_blob(n + 20, 130_000))


HOLEY_FILES = ("sparse.img", "prealloc.bin")


def write_holey_files(root: Path) -> None:
    """A sparse file (holes) and a preallocated one (unwritten extents read as zeros).

    Written in place, never copied: a copy would fill the holes.
    """
    with open(root / "sparse.img", "wb") as f:
        f.write(b"head" * 1000)
        f.seek(3 << 20)
        f.write(b"middle" * 1000)
        f.truncate(8 << 20)
    fd = os.open(root / "prealloc.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.posix_fallocate(fd, 0, 1 << 20)
        os.pwrite(fd, b"written", 8192)
    finally:
        os.close(fd)


def make_home_tree(root: Path) -> None:
    (root / "alice").mkdir(parents=True)
    (root / "alice/.bashrc").write_text("export PS1='$ '\n")
    (root / "alice/notes.txt").write_bytes(text_blob(42, 20000))


@contextlib.contextmanager
def loop_mount(image: Path) -> Iterator[Path]:
    mnt = Path(tempfile.mkdtemp(prefix="btrfs-mnt-"))
    run(tool("mount"), "-o", "loop", str(image), str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run([tool("umount"), str(mnt)], check=False)
        mnt.rmdir()


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)


def build_subvol_image(name: str, scale: str, fs_uuid: str) -> tuple[Path, Path]:
    """A btrfs with subvolumes @ (default, with the root tree) and @home, compressed dirs.

    Returns (image, source dir); the source dir holds ``@``, ``@home`` and ``top`` trees.
    """
    final = builders.cached(f"btrfs-{name}-v{FIXTURE_VERSION}.img")
    src = builders.cached(f"btrfs-{name}-v{FIXTURE_VERSION}.src")
    if final.exists() and src.exists():
        return final, src
    if src.exists():
        shutil.rmtree(src)
    src_tmp = src.with_name(src.name + ".tmp")
    shutil.rmtree(src_tmp, ignore_errors=True)
    make_root_tree(src_tmp / "@", scale)
    make_home_tree(src_tmp / "@home")
    (src_tmp / "top").mkdir()
    (src_tmp / "top/README").write_text("top-level subvolume\n")
    tmp = final.with_name(final.name + ".tmp")
    with open(tmp, "wb") as f:
        f.truncate((256 if scale == "big" else 128) << 20)
    run(tool("mkfs.btrfs"), "-q", "-f", "-L", f"imageport-{name}", "-U", fs_uuid, str(tmp))
    with loop_mount(tmp) as mnt:
        run(tool("btrfs"), "subvolume", "create", str(mnt / "@"))
        run(tool("btrfs"), "subvolume", "create", str(mnt / "@home"))
        for algo in COMPRESSORS:
            (mnt / "@" / algo).mkdir()
            run(tool("btrfs"), "property", "set", str(mnt / "@" / algo), "compression", algo)
        shutil.copytree(
            src_tmp / "@",
            mnt / "@",
            symlinks=True,
            dirs_exist_ok=True,
            ignore=lambda _d, names: [n for n in names if n in HOLEY_FILES],
        )
        write_holey_files(mnt / "@")
        copy_tree(src_tmp / "@home", mnt / "@home")
        copy_tree(src_tmp / "top", mnt)
        run(tool("btrfs"), "subvolume", "set-default", str(mnt / "@"))
        run(tool("sync"))
    os.replace(src_tmp, src)
    os.replace(tmp, final)
    return final, src


def build_rootdir_image() -> tuple[Path, Path]:
    """``mkfs.btrfs --rootdir`` with DUP data: no subvolumes, the top level is the root."""
    final = builders.cached(f"btrfs-rootdir-v{FIXTURE_VERSION}.img")
    src = builders.cached(f"btrfs-rootdir-v{FIXTURE_VERSION}.src")
    if final.exists() and src.exists():
        return final, src
    shutil.rmtree(src, ignore_errors=True)
    src_tmp = src.with_name(src.name + ".tmp")
    shutil.rmtree(src_tmp, ignore_errors=True)
    make_root_tree(src_tmp, "small")
    tmp = final.with_name(final.name + ".tmp")
    with open(tmp, "wb") as f:
        f.truncate(160 << 20)
    run(
        tool("mkfs.btrfs"),
        "-q",
        "-f",
        "-d",
        "dup",
        "-m",
        "dup",
        "-L",
        "rootdir",
        "--rootdir",
        str(src_tmp),
        str(tmp),
    )
    os.replace(src_tmp, src)
    os.replace(tmp, final)
    return final, src


# -- devices ------------------------------------------------------------------------------------


class PatchedDevice:
    """Another device with some byte ranges replaced (the hostile cases)."""

    def __init__(self, base: FileDevice, patches: dict[int, bytes]) -> None:
        self.base = base
        self.patches = patches

    @property
    def size(self) -> int:
        return self.base.size

    def read(self, offset: int, length: int) -> bytes:
        data = bytearray(self.base.read(offset, length))
        for where, new in self.patches.items():
            lo, hi = max(where, offset), min(where + len(new), offset + len(data))
            if lo < hi:
                data[lo - offset : hi - offset] = new[lo - where : hi - where]
        return bytes(data)


@pytest.fixture(scope="session")
def big() -> tuple[Path, Path]:
    return build_subvol_image("big", "big", FS_UUID)


@pytest.fixture(scope="session")
def tiny() -> tuple[Path, Path]:
    return build_subvol_image("tiny", "tiny", SMALL_UUID)


@pytest.fixture(scope="session")
def rootdir() -> tuple[Path, Path]:
    return build_rootdir_image()


# -- comparing with the source tree ------------------------------------------------------------


def compare_tree(
    fs: btrfs.BtrfsFilesystem, fs_path: str, src: Path, subvol_dirs: frozenset[str] = frozenset()
) -> int:
    """Check ``fs_path`` in ``fs`` against directory ``src``; returns the entries compared."""
    expected = sorted(os.listdir(src)) + sorted(subvol_dirs)
    entries = {e.name: e for e in fs.listdir(fs_path)}
    assert sorted(entries) == sorted(expected), fs_path
    compared = 0
    for name in os.listdir(src):
        path = src / name
        child = f"{fs_path.rstrip('/')}/{name}"
        st = fs.stat(child, follow=False)
        info = os.lstat(path)
        assert st.mode == stat.S_IMODE(info.st_mode), child
        if stat.S_ISLNK(info.st_mode):
            assert st.type is FileType.SYMLINK and entries[name].type is FileType.SYMLINK
            assert fs.readlink(child) == os.readlink(path), child
        elif stat.S_ISDIR(info.st_mode):
            assert st.type is FileType.DIRECTORY and entries[name].type is FileType.DIRECTORY
            compared += compare_tree(fs, child, path)
        else:
            assert st.type is FileType.REGULAR and entries[name].type is FileType.REGULAR
            assert st.size == info.st_size, child
            assert fs.read_file(child) == path.read_bytes(), child
        compared += 1
    return compared


def test_default_subvolume_matches_source(big: tuple[Path, Path]) -> None:
    image, src = big
    fs = btrfs.open_fs(FileDevice(image))
    assert (fs.fs_type, fs.uuid, fs.label) == ("btrfs", FS_UUID, "imageport-big")
    assert fs.subvol_id == fs.default_subvol_id == 256
    assert compare_tree(fs, "/", src / "@") > 2000
    assert fs.read_file("/link-abs") == (src / "@/etc/os-release").read_bytes()
    assert fs.stat("/link-dir/c/d/e/deep.txt").size == 10
    with pytest.raises(BrokenLinkError):  # not "absent": the name is there, its target not
        fs.read_file("/link-dangling")


def test_subvolumes_by_path_and_id(big: tuple[Path, Path]) -> None:
    image, src = big
    dev = FileDevice(image)
    fs = btrfs.open_fs(dev)
    assert [(s.id, s.path, s.parent_id) for s in fs.subvolumes()] == [
        (256, "@", 5),
        (257, "@home", 5),
    ]
    for spec in ("@home", "/@home/", 257):
        home = btrfs.open_fs(dev, spec)
        assert home.subvol_id == 257
        compare_tree(home, "/", src / "@home")
    top = btrfs.open_fs(dev, 5)
    # Subvolumes appear as directories inside their parent, and lead into the subvolume.
    compare_tree(top, "/", src / "top", frozenset({"@", "@home"}))
    assert top.stat("/@").type is FileType.DIRECTORY
    assert top.read_file("/@/etc/fstab") == (src / "@/etc/fstab").read_bytes()
    assert top.read_file("/@home/alice/.bashrc") == (src / "@home/alice/.bashrc").read_bytes()
    assert top.resolve("/@") == fs.root_ino
    for bad in ("@/etc", "nothing", "README"):
        with pytest.raises(NoSuchFileError):
            btrfs.open_fs(dev, bad)
    for bad_id in (258, 4, 1 << 70):
        with pytest.raises(NoSuchFileError):
            btrfs.open_fs(dev, bad_id)


def test_mkfs_rootdir_dup_image(rootdir: tuple[Path, Path]) -> None:
    image, src = rootdir
    dev = FileDevice(image)
    fs = btrfs.open_fs(dev)
    assert fs.subvol_id == 5 and fs.subvolumes() == [] and fs.label == "rootdir"
    compare_tree(fs, "/", src)
    profiles = {c.type & L.MIRROR_PROFILES for c in fs.tree.chunks._chunks}
    assert L.BG_DUP in profiles
    assert btrfs.probe(dev) == btrfs.probe(dev) is not None


def extent_items(fs: btrfs.BtrfsFilesystem, path: str) -> list[Item]:
    ino = fs.resolve(path)
    root = fs._root_item(ino >> 64)
    obj = ino & ((1 << 64) - 1)
    lo, hi = L.Key(obj, L.EXTENT_DATA, 0), L.Key(obj, L.EXTENT_DATA, (1 << 64) - 1)
    return list(fs.tree.items(root.bytenr, root.level, lo, hi))


def test_fixture_exercises_every_extent_kind(big: tuple[Path, Path]) -> None:
    fs = btrfs.open_fs(FileDevice(big[0]))
    for algo, code in (("zlib", 1), ("lzo", 2), ("zstd", 3)):
        extents = [
            L.FileExtent.from_bytes(i.key.offset, i.data)
            for i in extent_items(fs, f"/{algo}/big.txt")
        ]
        assert len(extents) > 10 and all(e.compression == code for e in extents), algo
        (small,) = [
            L.FileExtent.from_bytes(i.key.offset, i.data)
            for i in extent_items(fs, f"/{algo}/small.txt")
        ]
        assert small.type == L.EXTENT_INLINE and small.compression == code
    sparse = [
        L.FileExtent.from_bytes(i.key.offset, i.data) for i in extent_items(fs, "/sparse.img")
    ]
    assert sparse[0].file_offset == 0 and sparse[-1].file_offset == 3 << 20  # holes between
    prealloc = [
        L.FileExtent.from_bytes(i.key.offset, i.data) for i in extent_items(fs, "/prealloc.bin")
    ]
    assert L.EXTENT_PREALLOC in {e.type for e in prealloc}


def test_reads_at_many_offsets(big: tuple[Path, Path]) -> None:
    image, src = big
    fs = btrfs.open_fs(FileDevice(image))
    rng = random.Random(5)
    for name in (
        "lzo/big.txt",
        "zstd/big.txt",
        "zlib/tail.txt",
        "sparse.img",
        "random.bin",
        "inline.txt",
        "zlib/small.txt",
    ):
        data = (src / "@" / name).read_bytes()
        ino = fs.resolve(name)
        for _ in range(25):
            off = rng.randrange(len(data) + 10)
            n = rng.choice((1, 17, 4095, 4096, 65537, 131073, 300_000))
            assert fs.read_ino(ino, off, n) == data[off : off + n], (name, off, n)


def test_lookup_uses_the_name_hash(big: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    fs = btrfs.open_fs(FileDevice(big[0]))

    def no_listing(ino: int) -> Iterator[object]:
        raise AssertionError("lookup listed a directory")

    monkeypatch.setattr(fs, "list_ino", no_listing)
    assert fs.exists(f"/bigdir/entry-01999-{'x' * (1999 % 40)}")
    assert not fs.exists("/bigdir/entry-01999")
    assert fs.read_file("/caf\u00e9 \u2603 name") == b"unicode\n"
    assert L.name_hash(b"default") == 2378154706  # as dump-tree shows the "default" DIR_ITEM


def test_probe() -> None:
    assert btrfs.probe(BytesDevice(bytes(1 << 20))) is None
    assert btrfs.probe(BytesDevice(b"x" * 100)) is None


def test_probe_and_checksums(big: tuple[Path, Path]) -> None:
    dev = FileDevice(big[0])
    sig = btrfs.probe(dev)
    assert sig is not None and (sig.kind, sig.uuid, sig.label) == (
        "btrfs",
        FS_UUID,
        "imageport-big",
    )
    bad = PatchedDevice(dev, {L.SUPERBLOCK_OFFSET + 0x100: b"\x01"})
    assert btrfs.probe(bad) is None
    with pytest.raises(CorruptImageError, match="checksum"):
        btrfs.open_fs(bad)
    # Other checksum types are named and accepted without verifying them.
    xx = resigned(dev, {0xC4: struct.pack("<H", L.CSUM_XXHASH), 0: b"\xff" * 4}, sign=False)
    fs = btrfs.open_fs(xx)
    assert fs.csum_name == "xxhash64" and fs.exists("/etc/fstab")
    with pytest.raises(UnsupportedImageError):
        btrfs.open_fs(resigned(dev, {0xC4: struct.pack("<H", 9)}))


# -- hostile images -----------------------------------------------------------------------------


def resigned(dev: FileDevice, sb_patches: dict[int, bytes], *, sign: bool = True) -> PatchedDevice:
    """``dev`` with superblock bytes replaced and its crc32c recomputed."""
    raw = bytearray(dev.read(L.SUPERBLOCK_OFFSET, L.SUPERBLOCK_SIZE))
    for off, new in sb_patches.items():
        raw[off : off + len(new)] = new
    if sign:
        raw[:4] = struct.pack("<I", crc32c(bytes(raw[32:])))
    return PatchedDevice(dev, {L.SUPERBLOCK_OFFSET: bytes(raw)})


def walk_everything(dev: BlockDevice, subvol: str | int | None = None) -> int:
    """Open, list subvolumes, and visit every entry of the subvolume (reads capped)."""
    fs = btrfs.open_fs(dev, subvol)
    fs.subvolumes()
    seen = 0
    stack = [fs.root_ino]
    while stack and seen < 5000:
        ino = stack.pop()
        for entry in fs.list_ino(ino):
            seen += 1
            st = fs.stat_ino(entry.ino)
            if st.type is FileType.DIRECTORY:
                stack.append(entry.ino)
            elif st.type is FileType.REGULAR:
                fs.read_ino(entry.ino, 0, min(st.size, 256 << 10))
            elif st.type is FileType.SYMLINK:
                fs.readlink_ino(entry.ino)
    for name in ("etc/fstab", "lzo/big.txt", "bigdir/entry-00007-xxxxxxx"):
        with contextlib.suppress(NoSuchFileError):
            fs.lookup_child(fs.root_ino, name.split("/")[0])
    return seen


def only_our_errors(action: Callable[[], object]) -> str:
    try:
        action()
    except ImageportError as exc:
        return type(exc).__name__
    return "ok"


def node_physical(fs: btrfs.BtrfsFilesystem, logical: int) -> int:
    return fs.tree.chunks.physical(logical, fs.superblock.nodesize)


def mutate(rng: random.Random, region: bytes, base: int) -> dict[int, bytes]:
    """One deterministic mutation of ``region`` (at physical ``base``)."""
    kind = rng.randrange(4)
    pos = rng.randrange(len(region))
    if kind == 0:
        return {base + pos: bytes([rng.randrange(256)])}
    if kind == 1:
        return {base + pos: bytes([region[pos] ^ (1 << rng.randrange(8))])}
    width = rng.choice((2, 4, 8))
    value = rng.choice(
        (0, 1, 0x7F, 0xFF, 0xFFFF, 0xFFFFFFFF, (1 << 64) - 1, 1 << 40, 4096, 16384, 65536)
    )
    return {base + pos: (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")}


def test_hostile_mutations(tiny: tuple[Path, Path]) -> None:
    image, _src = tiny
    dev = FileDevice(image)
    assert walk_everything(dev) > 30
    fs = btrfs.open_fs(dev)
    sb = fs.superblock
    nodesize = sb.nodesize
    rng = random.Random(2026)
    outcomes: dict[str, int] = {}
    cases = 0
    # Superblock fields and sys_chunk_array, re-signed so that parsing goes past the checksum.
    sb_raw = dev.read(L.SUPERBLOCK_OFFSET, L.SUPERBLOCK_SIZE)
    for _ in range(120):
        m = mutate(rng, sb_raw[32 : L.SUPER_SYS_CHUNK_ARRAY_OFFSET + sb.sys_chunk_array_size], 32)
        ((off, new),) = m.items()
        bad = resigned(dev, {off: new})
        result = only_our_errors(functools.partial(walk_everything, bad))
        outcomes[result] = outcomes.get(result, 0) + 1
        cases += 1
    # Tree blocks: the chunk tree, the root tree and every leaf/node of the default subvolume.
    root = fs._root_item(fs.subvol_id)
    blocks = [sb.chunk_root, sb.root, root.bytenr]
    if root.level:
        blocks += list(fs.tree.node(root.bytenr, root.level).children)
    for block in blocks:
        phys = node_physical(fs, block)
        raw = dev.read(phys, nodesize)
        nritems = struct.unpack_from("<I", raw, 0x60)[0]
        used = 101 + nritems * 33
        for _ in range(max(25, 240 // len(blocks))):
            # Half of the mutations hit the header and item table, half anywhere in the block.
            region = raw[32:used] if rng.random() < 0.5 else raw[32:]
            m = mutate(rng, region, phys + 32)
            bad = PatchedDevice(dev, m)
            result = only_our_errors(functools.partial(walk_everything, bad))
            outcomes[result] = outcomes.get(result, 0) + 1
            cases += 1
    assert cases >= 300
    assert outcomes.get("CorruptImageError", 0) > 50, outcomes


def test_tree_cycle_and_misplaced_child(big: tuple[Path, Path]) -> None:
    dev = FileDevice(big[0])
    fs = btrfs.open_fs(dev)
    root = fs._root_item(fs.subvol_id)
    assert root.level >= 1, "the 2,000-entry directory should make a two-level tree"
    phys = node_physical(fs, root.bytenr)
    node = fs.tree.node(root.bytenr, root.level)
    ptr0 = 101 + 17  # block pointer of the first key pointer
    # A child pointing back at its parent (a cycle).
    cyc = PatchedDevice(dev, {phys + ptr0: struct.pack("<Q", root.bytenr)})
    with pytest.raises(CorruptImageError):
        walk_everything(cyc)
    # Two pointers to one child: keys outside the range, or reached twice.
    dup = PatchedDevice(dev, {phys + ptr0 + 33: struct.pack("<Q", node.children[0])})
    with pytest.raises(CorruptImageError):
        # every item of the subvolume's tree, so the patched pointer is always reached
        # (a directory walk stops at its cap and may not get there)
        bad = btrfs.open_fs(dup)
        bad_root = bad._root_item(bad.subvol_id)
        for _ in bad.tree.items(
            bad_root.bytenr, bad_root.level, L.KEY_MIN, L.Key(2**64 - 1, 255, 2**64 - 1)
        ):
            pass


def test_item_data_outside_the_leaf(big: tuple[Path, Path]) -> None:
    dev = FileDevice(big[0])
    fs = btrfs.open_fs(dev)
    item = extent_items(fs, "/inline.txt")[0]
    phys = node_physical(fs, item.node)
    leaf = fs.tree.node(item.node, 0)
    for index, value in ((0, 0xFFFFFFF0), (len(leaf.keys) - 1, 0), (1, nodesize_minus(fs))):
        bad = PatchedDevice(dev, {phys + 101 + index * 25 + 17: struct.pack("<I", value)})
        with pytest.raises(CorruptImageError, match="outside the leaf"):
            btrfs.open_fs(bad).tree.node(item.node, 0)


def nodesize_minus(fs: btrfs.BtrfsFilesystem) -> int:
    return fs.superblock.nodesize - 101 - 1


def test_chunk_mapping_beyond_the_device(tiny: tuple[Path, Path]) -> None:
    dev = FileDevice(tiny[0])
    # The first stripe offset of the first bootstrap chunk, pointed past the end of the device.
    stripe = L.SUPER_SYS_CHUNK_ARRAY_OFFSET + 17 + 48 + 8
    bad = resigned(dev, {stripe: struct.pack("<Q", dev.size - 4096)})
    with pytest.raises(TruncatedImageError):
        btrfs.open_fs(bad)
    # Both DUP copies on another device (one copy elsewhere still reads from the other).
    bad = resigned(dev, {stripe - 8: struct.pack("<Q", 7), stripe + 24: struct.pack("<Q", 7)})
    with pytest.raises(UnsupportedImageError, match="another device"):
        btrfs.open_fs(bad)
    for profile, name in ((L.BG_RAID0, "raid0"), (L.BG_RAID5, "raid5")):
        chunk_type = L.BG_SYSTEM | profile
        bad = resigned(
            dev, {L.SUPER_SYS_CHUNK_ARRAY_OFFSET + 17 + 24: struct.pack("<Q", chunk_type)}
        )
        with pytest.raises(UnsupportedImageError, match=name):
            btrfs.open_fs(bad)


@pytest.mark.parametrize("algo", ["zlib", "lzo", "zstd"])
def test_extent_decoding_beyond_ram_bytes(big: tuple[Path, Path], algo: str) -> None:
    dev = FileDevice(big[0])
    fs = btrfs.open_fs(dev)
    for name in ("big.txt", "small.txt"):
        item = extent_items(fs, f"/{algo}/{name}")[0]
        at = node_physical(fs, item.node) + item.pos
        ext = L.FileExtent.from_bytes(item.key.offset, item.data)
        patches = {at + 8: struct.pack("<Q", 1000)}  # ram_bytes
        if ext.type != L.EXTENT_INLINE:
            patches[at + 21 + 24] = struct.pack("<Q", 1000)  # num_bytes
        bad_fs = btrfs.open_fs(PatchedDevice(dev, patches))
        with pytest.raises(CorruptImageError):
            bad_fs.read_file(f"/{algo}/{name}")
        huge = {at + 8: struct.pack("<Q", 1 << 40)}
        with pytest.raises(CorruptImageError):
            btrfs.open_fs(PatchedDevice(dev, huge)).read_file(f"/{algo}/{name}")


def test_limits_are_named(big: tuple[Path, Path]) -> None:
    fs = btrfs.open_fs(FileDevice(big[0]))
    with pytest.raises(LimitExceededError):
        fs.read_file("/zstd/big.txt", max_bytes=1000)
