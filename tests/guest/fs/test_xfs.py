"""XFS: images made by the real mkfs.xfs (from a protofile; what a protofile cannot express is
written through a loop mount) are read back exactly; hostile images fail with our errors only.

The expected tree is described once as :class:`Node` objects; the same description writes the
protofile and is what the reader is compared against. Images are cached by ``builders.cached``.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imageport.errors import (
    CorruptImageError,
    ImageportError,
    LimitExceededError,
    TruncatedImageError,
    UnsupportedImageError,
)
from imageport.guest.fs import xfs
from imageport.guest.fs.base import FileType, NoSuchFileError
from imageport.guest.fs.xfs_layout import FMT_BTREE, FMT_EXTENTS, FMT_LOCAL
from imageport.guest.volumes.blockdev import BytesDevice
from support import builders

# -- fixtures ------------------------------------------------------------------------------

#: Bump when the trees or build steps change, so cached images are rebuilt.
XFS_FIXTURES_VERSION = "4"
IMAGE_BYTES = 320 << 20  # mkfs.xfs 6.x refuses filesystems under 300 MiB
BLOCK = 4096
LONG_TARGET = "/" + "/".join(f"segment{i:03d}" for i in range(40))  # 440 bytes: remote
UNICODE_FILE = "héllo_wörld_日本語.txt"
UNICODE_DIR = "Ωmega_дир"
FRAG_BLOCKS = 600  #: frag.bin: data in every other block: hundreds of extents, a btree fork
FALLOC_BYTES = 256 << 10  #: prealloc.bin: an unwritten (preallocated) extent, then data
BTREE_DIR_FILES = 400  #: bdir: long names, each file fsync'd: a fragmented (btree) directory
FLAVOURS = ["v5", "v5-nrext64", "v4", "v4-noftype"]


@dataclass
class Node:
    """One entry of the expected tree; ``mounted`` entries are written through a loop mount."""

    kind: str  # "file", "dir", "symlink", "chardev", "fifo"
    mode: int = 0o644
    data: bytes = b""
    target: str = ""
    children: dict[str, Node] = field(default_factory=dict)
    mounted: bool = False


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (xfsprogs is needed to build XFS fixtures)")
    return path


def _big_dir(count: int, stem: str) -> Node:
    d = Node("dir", 0o755)
    for i in range(count):
        if i % 7 == 3:
            d.children[f"{stem}{i:06d}_link"] = Node("symlink", 0o777, target=f"t{i}")
        else:
            d.children[f"{stem}{i:06d}"] = Node("file")
    return d


def frag_content() -> bytes:
    out = bytearray(FRAG_BLOCKS * BLOCK)
    for i in range(0, FRAG_BLOCKS, 2):
        out[i * BLOCK : (i + 1) * BLOCK] = bytes([(i // 2) % 251 + 1]) * BLOCK
    return bytes(out)


def bdir_name(i: int) -> str:
    return f"{i:05d}_" + "n" * 200


def expected_tree(flavour: str) -> Node:
    """The tree the fixture of ``flavour`` holds."""
    rng = random.Random(4242)
    v5 = flavour.startswith("v5")
    root = Node("dir", 0o755)
    etc = Node("dir", 0o755)
    etc.children["hostname"] = Node("file", data=b"xfs-guest\n")
    etc.children["os-release"] = Node("file", data=b'ID=imageport\nVERSION_ID="1"\n')
    root.children["etc"] = etc
    cur = root.children["a"] = Node("dir", 0o700)
    for name in ("b", "c", "d"):
        cur = cur.children.setdefault(name, Node("dir", 0o755))
    cur.children["deep.txt"] = Node("file", data=b"deep inside\n")
    five = root.children["dir5"] = Node("dir", 0o755)
    for i in range(5):
        five.children[f"f{i}"] = Node("file", data=b"file %d\n" % i)
    root.children["dir60"] = _big_dir(60, "e")
    root.children["dir200"] = _big_dir(200, "entry_with_a_longer_name_")
    root.children["dir5000"] = _big_dir(5000, "name_")
    if flavour == "v5":
        root.children["dir50000"] = _big_dir(50000, "file_number_")
    root.children["big.bin"] = Node("file", data=rng.randbytes(3 * (1 << 20) + 123))
    root.children["empty"] = Node("file")
    root.children["setuid"] = Node("file", 0o4755, data=b"#!/bin/sh\n")
    root.children["link_rel"] = Node("symlink", 0o777, target="etc/hostname")
    root.children["link_abs"] = Node("symlink", 0o777, target="/etc/os-release")
    root.children["dangling"] = Node("symlink", 0o777, target="nowhere/at/all")
    # mkfs.xfs 6.1 writes v5 remote symlinks from a protofile without their "XSLM" header
    # (the kernel then refuses to read them, as do we), so on v5 the kernel writes this one.
    root.children["link_long"] = Node("symlink", 0o777, target=LONG_TARGET, mounted=v5)
    root.children["null"] = Node("chardev", 0o666)
    root.children["fifo"] = Node("fifo", 0o644)
    uni = root.children[UNICODE_DIR] = Node("dir", 0o755)
    uni.children[UNICODE_FILE] = Node("file", data="grüße\n".encode())
    if v5:
        root.children["frag.bin"] = Node("file", data=frag_content(), mounted=True)
        root.children["prealloc.bin"] = Node(
            "file", data=bytes(FALLOC_BYTES) + b"tail after unwritten\n", mounted=True
        )
        bdir = root.children["bdir"] = Node("dir", 0o755, mounted=True)
        for i in range(BTREE_DIR_FILES):
            bdir.children[bdir_name(i)] = Node("file", data=b"%d\n" % i * 1000, mounted=True)
    return root


def _proto(root: Node, srcdir: Path) -> str:
    """The mkfs.xfs protofile for ``root`` (file contents are written under ``srcdir``)."""
    lines = ["imageport", "0 0", "d--755 0 0"]
    empty = srcdir / "empty"
    empty.write_bytes(b"")
    first = {"file": "-", "dir": "d", "symlink": "l", "chardev": "c", "fifo": "p"}

    def walk(node: Node) -> None:
        for name, child in node.children.items():
            if child.mounted:
                continue
            m = child.mode
            mode = (
                f"{first[child.kind]}{'u' if m & 0o4000 else '-'}"
                f"{'g' if m & 0o2000 else '-'}{m & 0o777:03o}"
            )
            spec = f"{name} {mode} 0 0"
            if child.kind == "file":
                src = empty
                if child.data:
                    src = srcdir / f"c{len(lines)}"
                    src.write_bytes(child.data)
                lines.append(f"{spec} {src}")
            elif child.kind == "symlink":
                lines.append(f"{spec} {child.target}")
            elif child.kind == "chardev":
                lines.append(f"{spec} 1 3")
            else:
                lines.append(spec)
                if child.kind == "dir":
                    walk(child)
                    lines.append("$")

    walk(root)
    lines.append("$")
    return "\n".join(lines) + "\n"


def _mounted_extras(image: Path, root: Node) -> None:
    """Write the ``mounted`` entries of ``root`` through a loop mount (always unmounted)."""
    mnt = Path(tempfile.mkdtemp(prefix="xfsmnt"))
    proc = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        os.rmdir(mnt)
        raise RuntimeError(f"loop mount of the XFS fixture failed: {proc.stderr.strip()}")
    try:
        os.symlink(LONG_TARGET, mnt / "link_long")
        fd = os.open(mnt / "frag.bin", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            for i in range(0, FRAG_BLOCKS, 2):
                os.pwrite(fd, bytes([(i // 2) % 251 + 1]) * BLOCK, i * BLOCK)
                os.fsync(fd)
            os.ftruncate(fd, FRAG_BLOCKS * BLOCK)
        finally:
            os.close(fd)
        fd = os.open(mnt / "prealloc.bin", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.posix_fallocate(fd, 0, FALLOC_BYTES)
            os.pwrite(fd, b"tail after unwritten\n", FALLOC_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
        (mnt / "bdir").mkdir()
        os.chmod(mnt / "bdir", 0o755)  # noqa: S103 (the expected mode of a fixture dir)
        for name, child in root.children["bdir"].children.items():
            fd = os.open(mnt / "bdir" / name, os.O_CREAT | os.O_WRONLY, 0o644)
            try:
                os.write(fd, child.data)
                os.fsync(fd)
            finally:
                os.close(fd)
        os.sync()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        os.rmdir(mnt)


def xfs_image(flavour: str) -> Path:
    """The cached image of ``flavour`` (see :data:`FLAVOURS`)."""
    options = {
        "v5": ["-L", "guestroot"],
        "v5-nrext64": ["-i", "nrext64=1", "-L", "nrext64"],
        "v4": ["-m", "crc=0", "-L", "xfs-v4"],
        "v4-noftype": ["-m", "crc=0", "-n", "ftype=0"],
    }[flavour]
    final = builders.cached(f"xfs-{XFS_FIXTURES_VERSION}-{flavour}.img")
    if final.exists():
        return final
    tmp = final.with_name(final.name + ".tmp")
    root = expected_tree(flavour)
    with tempfile.TemporaryDirectory() as src:
        proto = Path(src) / "proto"
        proto.write_text(_proto(root, Path(src)), encoding="utf-8")
        with open(tmp, "wb") as f:
            f.truncate(IMAGE_BYTES)
        proc = subprocess.run(
            [_tool("mkfs.xfs"), "-q", "-f", *options, "-p", str(proto), str(tmp)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mkfs.xfs {options} failed: {proc.stderr.strip()}")
    if flavour.startswith("v5"):
        _mounted_extras(tmp, root)
    os.replace(tmp, final)
    return final


class FileDevice:
    """A read-only image file as a block device, with optional patched bytes on top."""

    def __init__(
        self, path: Path, patches: dict[int, bytes] | None = None, size: int | None = None
    ) -> None:
        self.path = path
        self._size = path.stat().st_size if size is None else size
        self.patches = patches or {}

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self._size - offset))
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = bytearray(f.read(length))
        for at, patch in self.patches.items():
            lo, hi = max(at, offset), min(at + len(patch), offset + length)
            if lo < hi:
                data[lo - offset : hi - offset] = patch[lo - at : hi - at]
        return bytes(data)


@pytest.fixture(scope="session", params=FLAVOURS)
def flavour_image(request: pytest.FixtureRequest) -> tuple[str, Path]:
    return request.param, xfs_image(request.param)


# -- reading real images -------------------------------------------------------------------


def _blkid(image: Path) -> dict[str, str]:
    out = subprocess.run(
        [_tool("blkid"), "-p", "-o", "export", str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_probe_and_identity_match_blkid(flavour_image: tuple[str, Path]) -> None:
    flavour, image = flavour_image
    dev = FileDevice(image)
    sig = xfs.probe(dev)
    ref = _blkid(image)
    assert sig is not None and ref["TYPE"] == "xfs"
    assert (sig.kind, sig.version) == ("xfs", flavour[:2])
    assert sig.uuid == ref["UUID"] and sig.label == ref.get("LABEL")
    fs = xfs.open_fs(dev)
    assert (fs.fs_type, fs.uuid, fs.label) == ("xfs", ref["UUID"], ref.get("LABEL"))


_KINDS = {
    "file": FileType.REGULAR,
    "dir": FileType.DIRECTORY,
    "symlink": FileType.SYMLINK,
    "chardev": FileType.CHARDEV,
    "fifo": FileType.FIFO,
}


def test_whole_tree_matches_what_was_built(flavour_image: tuple[str, Path]) -> None:
    flavour, image = flavour_image
    fs = xfs.open_fs(FileDevice(image))
    has_ftype = flavour != "v4-noftype"
    todo: list[tuple[str, Node]] = [("/", expected_tree(flavour))]
    while todo:
        path, node = todo.pop()
        entries = {e.name: e for e in fs.listdir(path)}
        assert set(entries) == set(node.children), path
        for name, child in node.children.items():
            full = path.rstrip("/") + "/" + name
            st = fs.stat(full, follow=False)
            assert st.type is _KINDS[child.kind], full
            assert entries[name].ino == st.ino
            assert entries[name].type is (_KINDS[child.kind] if has_ftype else None)
            if child.kind != "symlink":
                assert st.mode == child.mode, full
            if child.kind == "file":
                assert st.size == len(child.data), full
                if child.data:
                    assert fs.read_file(full) == child.data, full
            elif child.kind == "symlink":
                assert fs.readlink(full) == child.target, full
            elif child.kind == "dir" and len(child.children) < 1000:
                todo.append((full, child))
            elif child.kind == "dir":
                sample = sorted(child.children)[:: max(1, len(child.children) // 300)]
                for sub in sample:  # huge directories: every name listed, a sample stat'd
                    want = _KINDS[child.children[sub].kind]
                    assert fs.stat(f"{full}/{sub}", follow=False).type is want
    assert fs.read_file("/link_rel") == b"xfs-guest\n"
    assert fs.read_file("/link_abs").startswith(b"ID=imageport")
    assert not fs.exists("/dangling")
    assert fs.read_file(f"/{UNICODE_DIR}/{UNICODE_FILE}") == "grüße\n".encode()


def test_directory_formats_and_hashed_lookup() -> None:
    """The v5 fixture holds every directory format; every name is found by hash lookup."""
    fs = xfs.open_fs(FileDevice(xfs_image("v5")))
    tree = expected_tree("v5")

    def core(path: str) -> tuple[int, int]:
        c = fs._inode(fs.resolve(path))
        return c.format, c.size

    assert core("/dir5")[0] == FMT_LOCAL  # shortform
    assert core("/dir60") == (FMT_EXTENTS, fs.dirblksize)  # block directory
    fmt, size = core("/dir200")
    assert fmt == FMT_EXTENTS and size > fs.dirblksize  # leaf directory
    assert core("/dir5000")[0] == FMT_BTREE  # node directory in a btree fork
    assert core("/dir50000")[0] == FMT_BTREE and core("/bdir")[0] == FMT_BTREE
    for path in ("/dir60", "/dir200", "/dir5000", "/bdir"):
        ino = fs.resolve(path)
        for name in tree.children[path[1:]].children:
            assert fs.lookup_child(ino, name) is not None, name
        assert fs.lookup_child(ino, "no-such-name") is None
    ino = fs.resolve("/dir50000")
    names = sorted(tree.children["dir50000"].children)
    start = time.monotonic()
    for name in names[::97]:
        assert fs.lookup_child(ino, name) is not None
        assert fs.lookup_child(ino, name + "x") is None
    assert time.monotonic() - start < 5
    assert fs.read_file("/bdir/" + bdir_name(399)) == b"399\n" * 1000


@pytest.mark.parametrize("flavour", ["v5", "v5-nrext64"])
def test_fragmented_and_preallocated_files_at_many_read_sizes(flavour: str) -> None:
    fs = xfs.open_fs(FileDevice(xfs_image(flavour)))
    ino = fs.resolve("/frag.bin")
    assert fs._inode(ino).format == FMT_BTREE
    want = frag_content()
    assert fs.read_file("/frag.bin") == want
    rng = random.Random(7)
    for chunk in (1, 17, 512, 4095, 4097, 65536, 1 << 20):
        for _ in range(12):
            off = rng.randrange(len(want) + 100)
            assert fs.read_ino(ino, off, chunk) == want[off : off + chunk]
    pre = fs.read_file("/prealloc.bin")
    assert pre == bytes(FALLOC_BYTES) + b"tail after unwritten\n"
    pino = fs.resolve("/prealloc.bin")
    assert any(e.unwritten for e in fs._extent_list(pino, fs._inode(pino)).extents)


def test_big_file_read_across_blocks() -> None:
    fs = xfs.open_fs(FileDevice(xfs_image("v4")))
    data = expected_tree("v4").children["big.bin"].data
    ino = fs.resolve("/big.bin")
    for off, n in ((0, 1), (4095, 2), (123457, 70000), (len(data) - 5, 100), (len(data), 10)):
        assert fs.read_ino(ino, off, n) == data[off : off + n]


# -- hostile images ------------------------------------------------------------------------

WALK_ENTRIES = 40  #: entries per directory the hostile walk visits
WALK_BYTES = 1 << 20


def _walk(fs: xfs.XfsFilesystem) -> int:
    """Visit a bounded part of the tree the way an inspector would; returns steps taken."""
    steps = 0
    todo = [fs.root_ino]
    seen: set[int] = set()
    while todo and steps < 400:
        ino = todo.pop()
        if ino in seen:
            continue
        seen.add(ino)
        for n, entry in enumerate(fs.list_ino(ino)):
            if n >= WALK_ENTRIES:
                break
            steps += 1
            try:
                st = fs.stat_ino(entry.ino)
                if st.type is FileType.DIRECTORY:
                    todo.append(entry.ino)
                    fs.lookup_child(ino, entry.name)
                elif st.type is FileType.REGULAR:
                    fs.read_ino(entry.ino, 0, min(st.size, WALK_BYTES))
                elif st.type is FileType.SYMLINK:
                    fs.readlink_ino(entry.ino)
            except ImageportError:
                continue
    for path in ("/etc/hostname", "/dir5000/name_004999", "/frag.bin", "/link_long"):
        try:
            fs.stat(path)
        except ImageportError:
            pass
    return steps


def _regions(image: Path) -> dict[str, tuple[int, int]]:
    """(offset, length) of the structures the mutation test flips bits in."""
    fs = xfs.open_fs(FileDevice(image))
    sb = fs.sb
    out = {"superblock": (0, 264), "agi": (2 * sb.sectsize, sb.sectsize)}
    for path in (
        "/",
        "/dir5",
        "/dir60",
        "/dir200",
        "/dir5000",
        "/frag.bin",
        "/link_long",
        "/big.bin",
    ):
        out[f"inode {path}"] = (fs._inode_offset(fs.resolve(path, follow=False)), sb.inodesize)
    for path in ("/dir60", "/dir200", "/dir5000", "/frag.bin"):
        ino = fs.resolve(path)
        exts = fs._extent_list(ino, fs._inode(ino)).extents
        for tag, ext in (("first", exts[0]), ("last", exts[-1])):
            out[f"block {path} {tag}"] = (fs._fsb_offset(ext.block), sb.blocksize)
    frag = fs._inode(fs.resolve("/frag.bin")).fork
    out["bmbt leaf /frag.bin"] = (
        fs._fsb_offset(int.from_bytes(frag[4 + 8 * ((len(frag) - 4) // 16) :][:8], "big")),
        72,
    )
    return out


def test_bit_flips_raise_only_our_errors_in_bounded_time() -> None:
    image = xfs_image("v5-nrext64")
    regions = _regions(image)
    rng = random.Random(20261127)
    cases = 0
    for name, (offset, length) in regions.items():
        for _ in range(300 // len(regions) + 1):
            patches = {}
            for _ in range(rng.choice((1, 1, 2, 8))):
                at = offset + rng.randrange(length)
                base = FileDevice(image).read(at, 1)[0]
                patches[at] = bytes([base ^ (1 << rng.randrange(8))])
            start = time.monotonic()
            try:
                _walk(xfs.open_fs(FileDevice(image, patches)))
            except ImageportError:
                pass
            assert time.monotonic() - start < 5, (name, patches)
            cases += 1
    assert cases >= 300


def _patched(image: Path, at: int, data: bytes) -> xfs.XfsFilesystem:
    return xfs.open_fs(FileDevice(image, {at: data}))


def test_bmap_btree_cycle_and_depth_bomb() -> None:
    image = xfs_image("v5")
    fs = xfs.open_fs(FileDevice(image))
    ino = fs.resolve("/frag.bin")
    ioff = fs._inode_offset(ino)
    fork = fs._inode(ino).fork
    maxrecs = (len(fork) - 4) // 16
    leaf_fsb = int.from_bytes(fork[4 + maxrecs * 8 : 12 + maxrecs * 8], "big")
    leaf_off = fs._fsb_offset(leaf_fsb)
    # root says level 2; the first child claims level 1 and points at itself
    patches = {
        ioff + 176: struct.pack(">H", 2),
        leaf_off + 4: struct.pack(">HH", 1, 1),
        leaf_off + 72 + ((BLOCK - 72) // 16) * 8: leaf_fsb.to_bytes(8, "big"),
    }
    bad = xfs.open_fs(FileDevice(image, patches))
    with pytest.raises(CorruptImageError, match="cycle"):
        bad.read_file("/frag.bin")
    bomb = _patched(image, ioff + 176, struct.pack(">H", 60000))
    with pytest.raises(CorruptImageError, match="bmap btree root"):
        bomb.read_file("/frag.bin")


def test_extent_beyond_device_and_huge_sizes() -> None:
    image = xfs_image("v4")
    fs = xfs.open_fs(FileDevice(image))
    ino = fs.resolve("/big.bin")
    ioff = fs._inode_offset(ino)
    ext = fs._extent_list(ino, fs._inode(ino)).extents[0]
    # the image cut just after the first block of big.bin's data
    cut = FileDevice(image, size=fs._fsb_offset(ext.block) + BLOCK)
    with pytest.raises(TruncatedImageError):
        xfs.open_fs(cut).read_file("/big.bin")
    # an extent pointing at an AG that does not exist
    rec = int.from_bytes(FileDevice(image).read(ioff + 100, 16), "big")
    rec |= (fs.sb.agcount + 3) << (fs.sb.agblklog + 21)
    with pytest.raises(CorruptImageError, match="outside"):
        _patched(image, ioff + 100, rec.to_bytes(16, "big")).read_file("/big.bin")
    # di_size 2^62: whole-file reads are refused, bounded reads still work
    huge = _patched(image, ioff + 56, (1 << 62).to_bytes(8, "big"))
    with pytest.raises(LimitExceededError):
        huge.read_file("/big.bin")
    assert len(huge.read_ino(ino, (1 << 62) - 10, 1 << 20)) == 10
    lino = fs.resolve("/link_long", follow=False)
    sym = _patched(image, fs._inode_offset(lino) + 56, (1 << 62).to_bytes(8, "big"))
    with pytest.raises(CorruptImageError):
        sym.readlink("/link_long")
    dino = fs.resolve("/dir200")
    bigdir = _patched(image, fs._inode_offset(dino) + 56, (1 << 62).to_bytes(8, "big"))
    assert len(bigdir.listdir("/dir200")) == 200
    assert bigdir.exists("/dir200/entry_with_a_longer_name_000198")


def test_unsupported_features_are_named_and_probe_is_quiet() -> None:
    image = xfs_image("v5-nrext64")
    incompat = int.from_bytes(FileDevice(image).read(216, 4), "big")
    dev = FileDevice(image, {216: (incompat | 0x100 | 1 << 20).to_bytes(4, "big")})
    with pytest.raises(UnsupportedImageError, match=r"metadir, unknown bits 0x100000"):
        xfs.open_fs(dev)
    sig = xfs.probe(dev)
    assert sig is not None and sig.kind == "xfs"
    assert xfs.probe(BytesDevice(b"")) is None
    assert xfs.probe(BytesDevice(bytes(4096))) is None
    assert xfs.probe(BytesDevice(b"XFSB" + bytes(600))) is None
    with pytest.raises(CorruptImageError):
        xfs.open_fs(BytesDevice(b"XFSB" + bytes(600)))
    with pytest.raises(NoSuchFileError):
        xfs.open_fs(FileDevice(image)).read_file("/no/such/file")
