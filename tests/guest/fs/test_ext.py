"""The ext2/3/4 reader against images that mke2fs builds from a tree this test writes.

Every variant (ext4 with extents and htree, ext2 with 1 KiB blocks and triple-indirect block
maps, ext3 with 128-byte inodes, ext4 without extents, ext4 with 1 KiB blocks and deep extent
trees, ext4 with inline data) is compared file by file with the source tree: names, types,
sizes, modes, owners, mtimes, contents and symlink targets. Hostile images are made by
patching those images: bit flips, extent cycles, zero record lengths, out-of-range blocks.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.checksums import crc32c_update
from imageport.errors import (
    CorruptImageError,
    ImageportError,
    LimitExceededError,
    UnsupportedImageError,
)
from imageport.guest.fs import ext, ext_layout
from imageport.guest.fs.base import FileType, NoSuchFileError
from imageport.guest.volumes.blockdev import BytesDevice
from support import builders
from support.file_device import FileDevice

TREE_VERSION = "4"
MiB = 1 << 20
GiB = 1 << 30
MTIME = 1_700_000_000
BIG_COUNT = 10_000
OS_RELEASE = b'NAME="Imageport Linux"\nVERSION_ID="1.0"\nID=imageport\n'
FAR_OFFSET = 5 * GiB + 12345  # beyond double-indirect reach at 4 KiB blocks
# The last piece ends the file: mke2fs 1.47.0 -d with inline_data drops a trailing hole.
SPARSE_PIECES = ((0, 4096), (3 * MiB + 100, 5000), (66 * MiB + 12345, 777), (67 * MiB - 9, 9))

# name -> (mkfs options, whether the tree has the 10,000-entry directory, image size, label)
VARIANTS: dict[str, tuple[list[str], bool, str]] = {
    "ext4": (["-t", "ext4", "-b", "4096", "-L", "rootfs"], True, "160M"),
    "ext2-1k": (["-t", "ext2", "-b", "1024", "-L", "old-root"], True, "160M"),
    "ext3-128": (["-t", "ext3", "-b", "4096", "-I", "128"], False, "96M"),
    "ext4-blockmap": (["-t", "ext4", "-b", "4096", "-O", "^extent,^64bit"], False, "96M"),
    "ext4-1k": (["-t", "ext4", "-b", "1024"], False, "96M"),
    "ext4-inline": (["-t", "ext4", "-b", "4096", "-O", "inline_data", "-I", "256"], False, "96M"),
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (e2fsprogs); these tests need it")
    return path


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def make_tree(root: Path, big: bool) -> None:
    """The source tree (deterministic content, owners, modes and times)."""
    rng = random.Random(4242)
    root.mkdir()
    (root / "etc").mkdir()
    _write(root / "etc/os-release", OS_RELEASE)
    _write(root / "etc/fstab", b"UUID=x / ext4 defaults 0 1\n")
    _write(root / "etc/shadow", b"root:*:19000:0:99999:7:::\n", 0o640)
    deep = root / "a/b/c/d/e"
    deep.mkdir(parents=True)
    _write(deep / "deep.txt", b"deep down\n")
    (root / "a/b").chmod(0o700)
    _write(root / "empty", b"")
    _write(root / "one", b"x")
    _write(root / "small.txt", b"a small file that fits inline\n")
    _write(root / "medium.txt", b"m" * 100)  # inline: 60 bytes in i_block + 40 in the xattr
    for size in (4095, 4096, 4097, 10_000, 100_000):
        _write(root / f"rand-{size}", rng.randbytes(size))
    _write(root / "setuid", b"#!/bin/sh\n", 0o4755)
    # 20 MiB of random data with a 4 KiB hole every MiB: twenty extents (a tree of depth >= 1).
    with open(root / "big.bin", "wb") as f:
        for i in range(20):
            f.seek(i * MiB + 4096)
            f.write(rng.randbytes(MiB - 4096))
    with open(root / "sparse.bin", "wb") as f:
        for offset, length in SPARSE_PIECES:
            f.seek(offset)
            f.write(rng.randbytes(length))
    with open(root / "far.bin", "wb") as f:
        f.seek(FAR_OFFSET)
        f.write(b"far away data")
    os.link(root / "small.txt", root / "a/hardlink.txt")
    (root / "ünïcødé-文件.txt").write_bytes("unicode ✓\n".encode())
    (root / "emoji-🙂").mkdir()
    os.symlink("small.txt", root / "link-fast")
    os.symlink("./" * 40 + "small.txt", root / "link-slow")
    os.symlink("/etc/os-release", root / "link-abs")
    os.symlink("a/b", root / "link-dir")
    os.symlink("/nonexistent/target", root / "dangling")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    if big:
        many = root / "many"
        many.mkdir()
        for i in range(BIG_COUNT):
            (many / f"file-{i:05d}").touch()
        _write(many / "file-04321", b"needle\n")
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames]:
            p = os.path.join(dirpath, name)
            os.lchown(p, 1234, 5678)
            os.utime(p, (MTIME, MTIME), follow_symlinks=False)
        os.utime(dirpath, (MTIME, MTIME))


@pytest.fixture(scope="session")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    base = tmp_path_factory.mktemp("ext-trees")
    out: dict[bool, Path] = {}
    for big in (False, True):
        root = base / ("big" if big else "small")
        make_tree(root, big)
        out[big] = root
    return out


def build_image(variant: str, tree: Path) -> Path:
    options, _big, size = VARIANTS[variant]
    final: Path = builders.cached(f"ext-{variant}-t{TREE_VERSION}.img")
    if final.exists():
        return final
    tmp = final.with_name(final.name + ".tmp")
    tmp.unlink(missing_ok=True)
    cmd = [
        _tool("mkfs.ext4"),
        "-q",
        "-F",
        "-T",
        "default",
        "-N",
        "12000",
        "-U",
        "0a8295fa-4020-4d15-87e4-06208f4de04a",
        *options,
        "-d",
        str(tree),
        str(tmp),
        size,
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    # e2fsck -D turns the large directories into hash-indexed (htree) ones.
    proc = subprocess.run([_tool("e2fsck"), "-fyD", str(tmp)], capture_output=True, check=False)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"e2fsck failed: {proc.stdout!r} {proc.stderr!r}")
    os.replace(tmp, final)
    return final


@pytest.fixture(scope="session")
def images(trees: dict[bool, Path]) -> dict[str, Path]:
    return {name: build_image(name, trees[spec[1]]) for name, spec in VARIANTS.items()}


def _entries(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            yield "/" + str(p.relative_to(root)), p


_KIND = {
    stat.S_IFREG: FileType.REGULAR,
    stat.S_IFDIR: FileType.DIRECTORY,
    stat.S_IFLNK: FileType.SYMLINK,
    stat.S_IFIFO: FileType.FIFO,
    stat.S_IFCHR: FileType.CHARDEV,
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_file_matches_the_source_tree(
    variant: str, images: dict[str, Path], trees: dict[bool, Path]
) -> None:
    tree = trees[VARIANTS[variant][1]]
    dev = FileDevice(images[variant])
    try:
        fs = ext.open_fs(dev)
        checked = 0
        for path, src in _entries(tree):
            st = os.lstat(src)
            got = fs.stat(path, follow=False)
            assert got.type is _KIND[stat.S_IFMT(st.st_mode)], path
            assert got.mode == stat.S_IMODE(st.st_mode), path
            assert (got.uid, got.gid, got.mtime) == (1234, 5678, MTIME), path
            if got.type is FileType.REGULAR:
                assert got.size == st.st_size, path
                if st.st_size <= 70 * MiB:
                    assert fs.read_file(path, max_bytes=70 * MiB) == src.read_bytes(), path
            elif got.type is FileType.SYMLINK:
                assert fs.readlink(path) == os.readlink(src), path
            elif got.type is FileType.DIRECTORY:
                want = sorted(os.listdir(src))
                names = fs.listdir(path)
                assert sorted(e.name for e in names) == want, path
            checked += 1
        assert checked > 30
        # listing the root names lost+found too, and types come from the entries
        root_types = {e.name: e.type for e in fs.listdir("/")}
        assert root_types["fifo"] is FileType.FIFO and root_types["link-dir"] is FileType.SYMLINK
    finally:
        dev.close()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_paths_symlinks_and_sparse_reads(variant: str, images: dict[str, Path]) -> None:
    dev = FileDevice(images[variant])
    try:
        fs = ext.open_fs(dev)
        assert fs.read_file("/link-abs") == OS_RELEASE
        assert fs.read_file("/link-slow") == fs.read_file("/small.txt")
        assert fs.read_file("/link-dir/c/d/e/deep.txt") == b"deep down\n"
        assert fs.read_file("/a/b/c/../c/d/e/deep.txt") == b"deep down\n"
        assert fs.stat("/a/hardlink.txt").ino == fs.stat("/small.txt").ino
        assert fs.stat("/null").type is FileType.CHARDEV
        assert not fs.exists("/dangling")
        with pytest.raises(LimitExceededError):
            fs.resolve("/loop1")
        with pytest.raises(NoSuchFileError):
            fs.read_file("/etc/os-release/x")
        with pytest.raises(NoSuchFileError):
            fs.read_file("/etc/missing")
        far = fs.stat("/far.bin")
        assert far.size == FAR_OFFSET + 13
        ino = fs.resolve("/far.bin")
        assert fs.read_ino(ino, FAR_OFFSET - 3, 100) == b"\0\0\0far away data"
        assert fs.read_ino(ino, 2 * GiB, 4096) == bytes(4096)
        with pytest.raises(LimitExceededError):
            fs.read_file("/far.bin")
        big = fs.resolve("/big.bin")
        whole = fs.read_file("/big.bin")
        for offset, length in (
            (0, 1),
            (4095, 2),
            (MiB - 1, 4099),
            (5 * MiB + 17, 3 * MiB + 5),
            (20 * MiB - 10, 100),
        ):
            assert fs.read_ino(big, offset, length) == whole[offset : offset + length]
    finally:
        dev.close()


def test_names_uuid_label_and_types(images: dict[str, Path]) -> None:
    kinds = {}
    for variant, path in images.items():
        dev = FileDevice(path)
        sig = ext.probe(dev)
        assert sig is not None
        blkid = subprocess.run(
            ["blkid", "-p", "-o", "export", str(path)], capture_output=True, text=True, check=True
        ).stdout
        fields = dict(line.split("=", 1) for line in blkid.splitlines() if "=" in line)
        assert sig.kind == fields["TYPE"], variant
        assert sig.uuid == fields["UUID"] == "0a8295fa-4020-4d15-87e4-06208f4de04a"
        assert sig.label == fields.get("LABEL")
        assert sig.version == fields["VERSION"]
        fs = ext.open_fs(dev)
        assert (fs.fs_type, fs.uuid, fs.label) == (sig.kind, sig.uuid, sig.label)
        kinds[variant] = fs.fs_type
        dev.close()
    assert kinds == {
        "ext4": "ext4",
        "ext2-1k": "ext2",
        "ext3-128": "ext3",
        "ext4-blockmap": "ext4",
        "ext4-1k": "ext4",
        "ext4-inline": "ext4",
    }
    assert ext.probe(BytesDevice(bytes(4096))) is None
    assert ext.probe(BytesDevice(b"")) is None


def test_the_variants_exercise_what_they_claim(images: dict[str, Path]) -> None:
    """Guard against a fixture that silently stops covering a code path."""

    def inode(variant: str, path: str) -> ext_layout.Inode:
        fs = ext.open_fs(FileDevice(images[variant]))
        return fs._inode(fs.resolve(path, follow=False))

    assert inode("ext4", "/many").flags & ext_layout.INODE_INDEX_FL
    assert inode("ext2-1k", "/many").flags & ext_layout.INODE_INDEX_FL
    assert not inode("ext2-1k", "/big.bin").flags & ext_layout.INODE_EXTENTS_FL
    assert inode("ext4-inline", "/medium.txt").flags & ext_layout.INODE_INLINE_DATA_FL
    assert inode("ext4-inline", "/link-slow").flags & ext_layout.INODE_INLINE_DATA_FL
    assert inode("ext4-inline", "/etc").flags & ext_layout.INODE_INLINE_DATA_FL
    root = inode("ext4-1k", "/big.bin").block
    assert ext_layout.ExtentHeader.from_bytes(root).depth >= 1
    slow = inode("ext4", "/link-slow")
    assert slow.blocks > 0 and inode("ext4", "/link-fast").blocks == 0


def test_small_files_open_fast_and_big_directories_resolve_fast(images: dict[str, Path]) -> None:
    dev = FileDevice(images["ext4"])
    try:
        start = time.perf_counter()
        fs = ext.open_fs(dev)
        assert fs.read_file("/etc/os-release") == OS_RELEASE
        assert fs.read_file("/etc/fstab").startswith(b"UUID=")
        elapsed = time.perf_counter() - start
        assert elapsed < 0.1, elapsed  # typically ~2 ms
        start = time.perf_counter()
        assert fs.read_file("/many/file-04321") == b"needle\n"
        for i in range(0, BIG_COUNT, 97):
            assert fs.stat(f"/many/file-{i:05d}").size == 0
        assert not fs.exists("/many/file-99999")
        elapsed = time.perf_counter() - start
        assert elapsed < 1.0, elapsed  # typically ~40 ms
    finally:
        dev.close()


# -- hostile images ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 1 MiB ext4 (1 KiB blocks, no journal) with a few files: the fuzzing seed."""
    final: Path = builders.cached(f"ext-fuzz-t{TREE_VERSION}.img")
    if not final.exists():
        root = tmp_path_factory.mktemp("ext-fuzz") / "t"
        root.mkdir()
        (root / "etc").mkdir()
        (root / "etc/os-release").write_bytes(OS_RELEASE)
        (root / "d1/d2").mkdir(parents=True)
        (root / "d1/d2/f").write_bytes(bytes(range(256)) * 40)
        with open(root / "frag", "wb") as f:
            for i in range(6):
                f.seek(i * 8192 + 1024)
                f.write(bytes([i + 1]) * 4096)
        os.symlink("etc/os-release", root / "fast")
        os.symlink("d1/" + "./" * 30 + "d2/f", root / "slow")
        tmp = final.with_name(final.name + ".tmp")
        tmp.unlink(missing_ok=True)
        subprocess.run(
            [
                _tool("mkfs.ext4"),
                "-q",
                "-F",
                "-T",
                "default",
                "-b",
                "1024",
                "-O",
                "^has_journal,^resize_inode",
                "-N",
                "32",
                "-d",
                str(root),
                str(tmp),
                "1M",
            ],
            check=True,
            capture_output=True,
        )
        os.replace(tmp, final)
    return final.read_bytes()


def walk_all(fs: ext.ExtFilesystem) -> int:
    """Visit every reachable inode: stat, list, read, readlink. Returns the count visited."""
    seen: set[int] = set()
    todo = [fs.root_ino]
    while todo:
        ino = todo.pop()
        if ino in seen:
            continue
        seen.add(ino)
        st = fs.stat_ino(ino)
        if st.type is FileType.DIRECTORY:
            todo.extend(e.ino for e in fs.list_ino(ino))
        elif st.type is FileType.REGULAR:
            fs.read_ino(ino, 0, min(st.size, 1 * MiB))
        elif st.type is FileType.SYMLINK:
            fs.readlink_ino(ino)
    return len(seen)


def _fix_sb_checksum(img: bytearray) -> None:
    sb = ext_layout.Superblock.from_bytes(bytes(img[1024:2048]))
    if sb.feature_ro_compat & ext_layout.RO_COMPAT_METADATA_CSUM:
        struct.pack_into("<I", img, 1024 + 0x3FC, crc32c_update(0xFFFFFFFF, bytes(img[1024:2044])))


def _try(img: bytes | bytearray) -> None:
    try:
        walk_all(ext.open_fs(BytesDevice(bytes(img))))
    except ImageportError:
        pass


def test_seed_image_walks(small_image: bytes) -> None:
    fs = ext.open_fs(BytesDevice(small_image))
    assert walk_all(fs) >= 9
    assert fs.read_file("/slow") == bytes(range(256)) * 40
    frag = fs.read_file("/frag")
    assert frag[1024:5120] == b"\1" * 4096 and frag[:1024] == bytes(1024)


def _regions(img: bytes) -> list[tuple[int, int]]:
    """Byte ranges worth mutating: superblock, descriptors, inode table, directory blocks."""
    fs = ext.open_fs(BytesDevice(img))
    bs = fs.block_size
    regions = [(1024, 1024), (fs._descriptor_block(0) * bs, 64)]
    table = fs._group(0).inode_table * bs
    regions.append((table, 20 * fs.inode_size))
    for path in ("/", "/etc", "/d1", "/d1/d2"):
        ino = fs.resolve(path)
        for _lblk, _n, phys in fs._runs(ino, fs._inode(ino), 0, 1):
            if phys is not None:
                regions.append((phys * bs, 64))
    return regions


def test_mutations_raise_only_our_errors(small_image: bytes) -> None:
    rng = random.Random(1234)
    regions = _regions(small_image)
    for _ in range(400):
        img = bytearray(small_image)
        start, length = rng.choice(regions)
        for _flip in range(rng.randint(1, 3)):
            pos = start + rng.randrange(length)
            if rng.random() < 0.5:
                img[pos] ^= 1 << rng.randrange(8)
            else:
                img[pos] = rng.choice((0, 0xFF, rng.randrange(256)))
        _fix_sb_checksum(img)
        _try(img)


def _patched(img: bytes, offset: int, data: bytes) -> ext.ExtFilesystem:
    out = bytearray(img)
    out[offset : offset + len(data)] = data
    return ext.open_fs(BytesDevice(bytes(out)))


def test_extent_tree_cycle_and_depth(small_image: bytes) -> None:
    fs = ext.open_fs(BytesDevice(small_image))
    ino = fs.resolve("/d1/d2/f")
    at = fs.inode_offset(ino) + 40  # i_block
    node_block = fs._descriptor_block(0)  # any block; make it point at itself below
    # depth 100 at the root
    deep = ext_layout.EXTENT_HEADER.pack(0xF30A, 1, 4, 100, 0)
    with pytest.raises(LimitExceededError):
        _patched(small_image, at, deep).read_file("/d1/d2/f")
    # root (depth 1) -> a block whose header says depth 1 and points at itself
    root = ext_layout.EXTENT_HEADER.pack(0xF30A, 1, 4, 1, 0) + struct.pack(
        "<IIHH", 0, node_block, 0, 0
    )
    bs = fs.block_size
    node = ext_layout.EXTENT_HEADER.pack(0xF30A, 1, 4, 1, 0) + struct.pack(
        "<IIHH", 0, node_block, 0, 0
    )
    img = bytearray(small_image)
    img[at : at + len(root)] = root
    img[node_block * bs : node_block * bs + len(node)] = node
    with pytest.raises(CorruptImageError):
        ext.open_fs(BytesDevice(bytes(img))).read_file("/d1/d2/f")


def test_bad_directory_and_block_numbers(small_image: bytes) -> None:
    fs = ext.open_fs(BytesDevice(small_image))
    bs = fs.block_size
    root_block = fs._runs(2, fs._inode(2), 0, 1)[0][2]
    assert root_block is not None
    bad = _patched(small_image, root_block * bs + 4, b"\0\0")  # rec_len of "." = 0
    with pytest.raises(CorruptImageError):
        bad.listdir("/")
    # a data extent beyond the filesystem
    ino = fs.resolve("/d1/d2/f")
    leaf = fs.inode_offset(ino) + 40 + 12
    far = struct.pack("<IHHI", 0, 10, 0, fs.blocks_count + 5)
    with pytest.raises(CorruptImageError):
        _patched(small_image, leaf, far).read_file("/d1/d2/f")
    # a device cut short: the data lies beyond its end
    data_block = fs._runs(ino, fs._inode(ino), 0, 1)[0][2]
    assert data_block is not None
    cut = ext.open_fs(BytesDevice(small_image[: data_block * bs + 100]))
    with pytest.raises(CorruptImageError):
        cut.read_file("/d1/d2/f")
    # i_size of 2**60
    size = fs.inode_offset(ino)
    huge = _patched(small_image, size + 108, struct.pack("<I", 1 << 28))
    assert huge.stat("/d1/d2/f").size == (1 << 60) | (256 * 40)
    with pytest.raises(LimitExceededError):
        huge.read_file("/d1/d2/f")
    with pytest.raises(LimitExceededError):
        huge.read_ino(ino, 0, 1 << 40)


def test_superblock_checks(small_image: bytes) -> None:
    img = bytearray(small_image)
    img[1024 + 0x78] ^= 0x20  # change the label without fixing the checksum
    with pytest.raises(CorruptImageError, match="checksum"):
        ext.open_fs(BytesDevice(bytes(img)))
    img = bytearray(small_image)
    struct.pack_into("<I", img, 1024 + 0x60, 0x1 | 0x2 | 0x40)  # compression
    _fix_sb_checksum(img)
    with pytest.raises(UnsupportedImageError, match="compression"):
        ext.open_fs(BytesDevice(bytes(img)))
    img = bytearray(small_image)
    struct.pack_into("<I", img, 1024 + 0x18, 7)  # 128 KiB blocks: not an ext superblock
    assert ext.probe(BytesDevice(bytes(img))) is None
    with pytest.raises(CorruptImageError):
        ext.open_fs(BytesDevice(bytes(img)))


def test_external_journal_is_named_but_not_opened(tmp_path: Path) -> None:
    journal = tmp_path / "journal.img"
    subprocess.run(
        [_tool("mkfs.ext4"), "-q", "-F", "-O", "journal_dev", "-b", "4096", str(journal), "8M"],
        check=True,
        capture_output=True,
    )
    dev = BytesDevice(journal.read_bytes())
    sig = ext.probe(dev)
    assert sig is not None and sig.kind == "jbd"
    with pytest.raises(UnsupportedImageError, match="journal"):
        ext.open_fs(dev)
