"""A read-only reader for single-device Btrfs: subvolumes, directories, files, symlinks.

Learned from the btrfs documentation (btrfs.readthedocs.io: "On-disk format", "Subvolumes",
"Compression") and ``btrfs inspect-internal dump-super`` / ``dump-tree`` output of images
made by btrfs-progs and the Linux kernel. Layout is in ``btrfs_layout``, address mapping and
tree walking in ``btrfs_tree``, compressed extents in ``btrfs_extents``.

How a path is found: the superblock names the chunk tree (bootstrapped from its
``sys_chunk_array``) and the root tree. The root tree holds a ROOT_ITEM per subvolume, the
ROOT_REF names that place each subvolume in its parent, and the "default" DIR_ITEM (in
directory 6) naming the subvolume mounted by default. Each subvolume is an fs tree of
INODE_ITEMs, DIR_ITEM (keyed by name hash) / DIR_INDEX (keyed by position) entries and
EXTENT_DATA items. A directory entry whose location is a ROOT_ITEM is a nested subvolume; it
appears as a directory, its root directory. Inode handles fold the subvolume in:
``(tree id << 64) | inode number``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from imageport.checksums import crc32c
from imageport.errors import (
    CorruptImageError,
    ImageportError,
    LimitExceededError,
    UnsupportedImageError,
)
from imageport.guest.fs import btrfs_extents as X
from imageport.guest.fs import btrfs_layout as L
from imageport.guest.fs.base import (
    MAX_DIR_ENTRIES,
    MAX_PATH_COMPONENTS,
    MAX_SYMLINK_BYTES,
    DirEntry,
    Filesystem,
    FileType,
    NoSuchFileError,
    Stat,
    decode_name,
)
from imageport.guest.fs.btrfs_tree import (
    ChunkMap,
    TreeReader,
    load_chunk_tree,
    parse_sys_chunk_array,
)
from imageport.guest.fs.signature import Signature
from imageport.guest.volumes.blockdev import BlockDevice, read_exact_dev

__all__ = ["BtrfsFilesystem", "Subvolume", "open_fs", "probe"]

#: Largest single read_ino request (the generic read_file caps files well below this).
MAX_READ_BYTES = 256 << 20
#: Subvolumes listed / resolved.
MAX_SUBVOLUMES = 1 << 16
#: Entries packed into one DIR_ITEM (hash collisions) or names in one INODE_REF.
MAX_PACKED_ENTRIES = 1024
#: Inodes and decoded extents kept in memory.
INODE_CACHE_ENTRIES = 4096
EXTENT_CACHE_ENTRIES = 16

_OBJ_MASK = (1 << 64) - 1
_KNOWN_CSUMS = set(L.CSUM_NAMES)
_UNSUPPORTED_INCOMPAT = {
    L.INCOMPAT_EXTENT_TREE_V2: "extent-tree-v2",
    L.INCOMPAT_RAID_STRIPE_TREE: "raid-stripe-tree",
    L.INCOMPAT_ENCRYPT: "encryption",
}
_MODE_TYPES = {
    0o100000: FileType.REGULAR,
    0o040000: FileType.DIRECTORY,
    0o120000: FileType.SYMLINK,
    0o020000: FileType.CHARDEV,
    0o060000: FileType.BLOCKDEV,
    0o010000: FileType.FIFO,
    0o140000: FileType.SOCKET,
}
_DIR_TYPES = {
    L.FT_REG_FILE: FileType.REGULAR,
    L.FT_DIR: FileType.DIRECTORY,
    L.FT_SYMLINK: FileType.SYMLINK,
    L.FT_CHRDEV: FileType.CHARDEV,
    L.FT_BLKDEV: FileType.BLOCKDEV,
    L.FT_FIFO: FileType.FIFO,
    L.FT_SOCK: FileType.SOCKET,
}


@dataclass(frozen=True, slots=True)
class Subvolume:
    """A subvolume: its tree id and its path from the top level (as ``btrfs subvolume list``)."""

    id: int
    path: str
    parent_id: int


def _read_superblock(dev: BlockDevice) -> L.Superblock:
    raw = read_exact_dev(dev, L.SUPERBLOCK_OFFSET, L.SUPERBLOCK_SIZE, "btrfs superblock")
    sb = L.Superblock.from_bytes(raw)
    if sb.magic != L.MAGIC:
        raise CorruptImageError("no btrfs superblock magic at 64 KiB")
    if sb.csum_type not in _KNOWN_CSUMS:
        raise UnsupportedImageError(f"btrfs checksum type {sb.csum_type}")
    if sb.csum_type == L.CSUM_CRC32C and crc32c(raw[L.CSUM_SIZE :]) != int.from_bytes(
        sb.csum[:4], "little"
    ):
        raise CorruptImageError("btrfs superblock checksum mismatch")
    return sb


def _check_superblock(sb: L.Superblock) -> None:
    if sb.bytenr != L.SUPERBLOCK_OFFSET:
        raise CorruptImageError(f"btrfs superblock claims to be at {sb.bytenr}")
    if sb.sectorsize not in (4096, 8192, 16384, 32768, 65536):
        raise CorruptImageError(f"btrfs sector size {sb.sectorsize} is invalid")
    if sb.nodesize not in (4096, 8192, 16384, 32768, 65536) or sb.nodesize < sb.sectorsize:
        raise CorruptImageError(f"btrfs node size {sb.nodesize} is invalid")
    for bit, name in _UNSUPPORTED_INCOMPAT.items():
        if sb.incompat_flags & bit:
            raise UnsupportedImageError(f"btrfs feature {name}")


class BtrfsFilesystem(Filesystem):
    """One subvolume of a btrfs filesystem, seen as a filesystem (see the module docstring)."""

    fs_type = "btrfs"

    def __init__(self, dev: BlockDevice, subvol: str | int | None = None) -> None:
        sb = _read_superblock(dev)
        _check_superblock(sb)
        self.superblock = sb
        self.dev = dev
        self.uuid = L.format_uuid(sb.fsid)
        self.label = sb.label.split(b"\0", 1)[0].decode("utf-8", "replace") or None
        self.csum_name = L.CSUM_NAMES[sb.csum_type]
        meta_fsid = sb.metadata_uuid if sb.incompat_flags & L.INCOMPAT_METADATA_UUID else sb.fsid
        chunks = ChunkMap(dev, sb.dev_item.devid)
        parse_sys_chunk_array(sb, chunks)
        self.tree = TreeReader(chunks, sb.nodesize, meta_fsid)
        load_chunk_tree(sb, self.tree)
        self._roots: dict[int, L.RootItem] = {}
        self._inodes: OrderedDict[int, L.InodeItem] = OrderedDict()
        self._extents: OrderedDict[tuple[int, int, int, int], bytes] = OrderedDict()
        self.default_subvol_id = self._default_subvol()
        if subvol is None:
            tree_id = self.default_subvol_id
        elif isinstance(subvol, int):
            tree_id = subvol
        else:
            tree_id = self._subvol_by_path(subvol)
        self.subvol_id = tree_id
        self._root_ino = self._subvol_root_ino(tree_id)
        self.stat_ino(self._root_ino)  # the subvolume's root directory must exist

    # -- trees -------------------------------------------------------------------------------

    def _root_item(self, tree_id: int) -> L.RootItem:
        cached = self._roots.get(tree_id)
        if cached is not None:
            return cached
        if tree_id != L.FS_TREE_OBJECTID and not (
            L.FIRST_FREE_OBJECTID <= tree_id <= L.LAST_FREE_OBJECTID
        ):
            raise NoSuchFileError(f"btrfs subvolume id {tree_id} is not a subvolume id")
        sb = self.superblock
        found = None
        lo, hi = L.Key(tree_id, L.ROOT_ITEM, 0), L.Key(tree_id, L.ROOT_ITEM, _OBJ_MASK)
        for item in self.tree.items(sb.root, sb.root_level, lo, hi):
            found = item  # the newest root item of that tree sorts last
        if found is None:
            raise NoSuchFileError(f"btrfs subvolume {tree_id} does not exist")
        root = L.RootItem.from_bytes(found.data)
        if root.level > 7:
            raise CorruptImageError(f"btrfs subvolume {tree_id} root level {root.level}")
        if len(self._roots) >= MAX_SUBVOLUMES:
            self._roots.clear()
        self._roots[tree_id] = root
        return root

    def _items(self, tree_id: int, lo: L.Key, hi: L.Key) -> Iterator[tuple[L.Key, bytes]]:
        root = self._root_item(tree_id)
        for item in self.tree.items(root.bytenr, root.level, lo, hi):
            yield item.key, item.data

    def _item(self, tree_id: int, key: L.Key) -> bytes | None:
        for _key, data in self._items(tree_id, key, key):
            return data
        return None

    def _default_subvol(self) -> int:
        sb = self.superblock
        key = L.Key(L.ROOT_TREE_DIR_OBJECTID, L.DIR_ITEM, L.name_hash(b"default"))
        item = self.tree.first(sb.root, sb.root_level, key, key)
        if item is None:
            return L.FS_TREE_OBJECTID
        for entry in L.DirEntryItem.parse_all(item.data, MAX_PACKED_ENTRIES):
            if entry.name == b"default":
                return entry.location.objectid
        return L.FS_TREE_OBJECTID

    def _subvol_root_ino(self, tree_id: int) -> int:
        root = self._root_item(tree_id)
        if not 0 < root.root_dirid <= _OBJ_MASK:
            raise CorruptImageError(f"btrfs subvolume {tree_id} has root dir {root.root_dirid}")
        return (tree_id << 64) | root.root_dirid

    def _subvol_by_path(self, path: str) -> int:
        """The id of the subvolume at ``path`` from the top level (``@``, ``/@home`` ...)."""
        parts = [p for p in path.split("/") if p and p != "."]
        if len(parts) > MAX_PATH_COMPONENTS or ".." in parts:
            raise NoSuchFileError(f"btrfs subvolume path {path!r} is not usable")
        ino = self._subvol_root_ino(L.FS_TREE_OBJECTID)
        for name in parts:
            if self.stat_ino(ino).type is not FileType.DIRECTORY:
                raise NoSuchFileError(f"btrfs subvolume path {path!r}: not a directory")
            child = self.lookup_child(ino, name)
            if child is None:
                raise NoSuchFileError(f"btrfs subvolume path {path!r} does not exist")
            ino = child
        tree_id = ino >> 64
        if ino != self._subvol_root_ino(tree_id):
            raise NoSuchFileError(f"btrfs path {path!r} is not a subvolume")
        return tree_id

    # -- subvolumes ----------------------------------------------------------------------------

    def subvolumes(self) -> list[Subvolume]:
        """Every subvolume except the top level, with its path from the top level, by id."""
        sb = self.superblock
        refs: dict[int, tuple[int, L.RootRef]] = {}
        for item in self.tree.items(sb.root, sb.root_level, L.KEY_MIN, L.KEY_MAX):
            if item.key.type != L.ROOT_REF:
                continue
            if len(refs) >= MAX_SUBVOLUMES:
                raise LimitExceededError(f"btrfs lists more than {MAX_SUBVOLUMES} subvolumes")
            refs[item.key.offset] = (item.key.objectid, L.RootRef.from_bytes(item.data))
        paths: dict[int, str] = {L.FS_TREE_OBJECTID: ""}

        def path_of(subvol_id: int) -> str:
            chain: list[int] = []
            tree_id = subvol_id
            while tree_id not in paths:
                if tree_id not in refs or tree_id in chain or len(chain) > MAX_SUBVOLUMES:
                    raise CorruptImageError(f"btrfs subvolume {tree_id} has no path to the top")
                chain.append(tree_id)
                tree_id = refs[tree_id][0]
            for child in reversed(chain):
                parent, ref = refs[child]
                inner = self._dir_path(parent, ref.dirid)
                parts = [p for p in (paths[parent], inner, decode_name(ref.name)) if p]
                paths[child] = "/".join(parts)
            return paths[subvol_id]

        return [Subvolume(i, path_of(i), refs[i][0]) for i in sorted(refs)]

    def _dir_path(self, tree_id: int, dirid: int) -> str:
        """Path of directory ``dirid`` inside subvolume ``tree_id`` (from INODE_REF items)."""
        root_dir = self._root_item(tree_id).root_dirid
        names: list[str] = []
        seen: set[int] = set()
        while dirid != root_dir:
            if dirid in seen or len(names) >= MAX_PATH_COMPONENTS:
                raise CorruptImageError(f"btrfs directory {dirid} has no path to its root")
            seen.add(dirid)
            lo, hi = L.Key(dirid, L.INODE_REF, 0), L.Key(dirid, L.INODE_REF, _OBJ_MASK)
            ref = next(self._items(tree_id, lo, hi), None)
            if ref is None:
                raise CorruptImageError(f"btrfs directory {dirid} has no INODE_REF")
            names.append(decode_name(L.parse_inode_ref_names(ref[1], MAX_PACKED_ENTRIES)[0]))
            dirid = ref[0].offset
        return "/".join(reversed(names))

    # -- the Filesystem interface --------------------------------------------------------------

    @property
    def root_ino(self) -> int:
        return self._root_ino

    def _inode(self, ino: int) -> L.InodeItem:
        cached = self._inodes.get(ino)
        if cached is not None:
            return cached
        data = self._item(ino >> 64, L.Key(ino & _OBJ_MASK, L.INODE_ITEM, 0))
        if data is None:
            raise CorruptImageError(
                f"btrfs inode {ino & _OBJ_MASK} of subvolume {ino >> 64} is missing"
            )
        inode = L.InodeItem.from_bytes(data)
        self._inodes[ino] = inode
        if len(self._inodes) > INODE_CACHE_ENTRIES:
            self._inodes.popitem(last=False)
        return inode

    def stat_ino(self, ino: int) -> Stat:
        inode = self._inode(ino)
        return Stat(
            ino=ino,
            type=_MODE_TYPES.get(inode.mode & 0o170000, FileType.UNKNOWN),
            size=inode.size,
            mode=inode.mode & 0o7777,
            uid=inode.uid,
            gid=inode.gid,
            mtime=inode.mtime,
        )

    def _entry_ino(self, tree_id: int, entry: L.DirEntryItem) -> int:
        loc = entry.location
        if loc.type == L.INODE_ITEM:
            if not 0 < loc.objectid <= _OBJ_MASK:
                raise CorruptImageError(f"btrfs directory entry points to inode {loc.objectid}")
            return (tree_id << 64) | loc.objectid
        if loc.type == L.ROOT_ITEM:
            return self._subvol_root_ino(loc.objectid)
        raise CorruptImageError(f"btrfs directory entry has location type {loc.type}")

    def list_ino(self, ino: int) -> Iterator[DirEntry]:
        tree_id, obj = ino >> 64, ino & _OBJ_MASK
        lo, hi = L.Key(obj, L.DIR_INDEX, 0), L.Key(obj, L.DIR_INDEX, _OBJ_MASK)
        count = 0
        for _key, data in self._items(tree_id, lo, hi):
            for entry in L.DirEntryItem.parse_all(data, 1):
                count += 1
                if count > MAX_DIR_ENTRIES:
                    raise LimitExceededError(f"btrfs directory has over {MAX_DIR_ENTRIES} entries")
                yield DirEntry(
                    decode_name(entry.name),
                    self._entry_ino(tree_id, entry),
                    _DIR_TYPES.get(entry.type, FileType.UNKNOWN),
                )

    def lookup_child(self, dir_ino: int, name: str) -> int | None:
        """Find ``name`` by its hash (the DIR_ITEM key), without listing the directory."""
        raw = name.encode("utf-8", "surrogateescape")
        tree_id, obj = dir_ino >> 64, dir_ino & _OBJ_MASK
        data = self._item(tree_id, L.Key(obj, L.DIR_ITEM, L.name_hash(raw)))
        if data is None:
            return None
        for entry in L.DirEntryItem.parse_all(data, MAX_PACKED_ENTRIES):
            if entry.name == raw:
                return self._entry_ino(tree_id, entry)
        return None

    def read_ino(self, ino: int, offset: int, length: int) -> bytes:
        inode = self._inode(ino)
        if offset < 0 or length < 0:
            raise ImageportError(f"invalid read at {offset} length {length}")
        end = min(inode.size, offset + length)
        if end <= offset:
            return b""
        if end - offset > MAX_READ_BYTES:
            raise LimitExceededError(f"btrfs read of {end - offset} bytes is too large")
        out = bytearray(end - offset)  # holes (gaps between extents) read as zeros
        tree_id, obj = ino >> 64, ino & _OBJ_MASK
        lo, hi = L.Key(obj, L.EXTENT_DATA, 0), L.Key(obj, L.EXTENT_DATA, _OBJ_MASK)
        for key, data in self._items(tree_id, lo, hi):
            if key.offset >= end:
                break
            extent = L.FileExtent.from_bytes(key.offset, data)
            self._copy_extent(extent, offset, end, out)
        return bytes(out)

    def _copy_extent(self, ext: L.FileExtent, start: int, end: int, out: bytearray) -> None:
        """Copy the part of ``ext`` inside file range ``[start, end)`` into ``out``."""
        if ext.encryption or ext.other_encoding:
            raise UnsupportedImageError("btrfs encrypted or encoded file extent")
        if ext.type == L.EXTENT_INLINE:
            if ext.compression:
                body = self._decode(ext.compression, ext.inline, ext.ram_bytes)
            else:
                body = ext.inline[: ext.ram_bytes]
            lo, hi = max(start, ext.file_offset), min(end, ext.file_offset + len(body))
            if lo < hi:
                out[lo - start : hi - start] = body[lo - ext.file_offset : hi - ext.file_offset]
            return
        if ext.type not in (L.EXTENT_REGULAR, L.EXTENT_PREALLOC):
            raise CorruptImageError(f"btrfs file extent type {ext.type}")
        lo, hi = max(start, ext.file_offset), min(end, ext.file_offset + ext.num_bytes)
        if lo >= hi or ext.type == L.EXTENT_PREALLOC or ext.disk_bytenr == 0:
            return  # outside the range, or preallocated / a hole: zeros
        inner = ext.offset + (lo - ext.file_offset)  # position inside the decoded extent
        if ext.compression:
            if ext.offset + ext.num_bytes > ext.ram_bytes:
                raise CorruptImageError("btrfs compressed extent range exceeds its ram_bytes")
            if not 0 < ext.disk_num_bytes <= X.MAX_COMPRESSED_DISK_BYTES:
                raise LimitExceededError(f"btrfs compressed extent of {ext.disk_num_bytes} bytes")
            body = self._cached_decode(ext)
            out[lo - start : hi - start] = body[inner : inner + (hi - lo)]
        else:
            data = self.tree.chunks.read(ext.disk_bytenr + inner, hi - lo, "btrfs file data")
            out[lo - start : hi - start] = data

    def _cached_decode(self, ext: L.FileExtent) -> bytes:
        key = (ext.disk_bytenr, ext.disk_num_bytes, ext.compression, ext.ram_bytes)
        body = self._extents.get(key)
        if body is None:
            stored = self.tree.chunks.read(ext.disk_bytenr, ext.disk_num_bytes, "btrfs extent")
            body = self._decode(ext.compression, stored, ext.ram_bytes)
            self._extents[key] = body
            if len(self._extents) > EXTENT_CACHE_ENTRIES:
                self._extents.popitem(last=False)
        return body

    def _decode(self, compression: int, stored: bytes, ram_bytes: int) -> bytes:
        return X.decompress(compression, stored, ram_bytes, self.superblock.sectorsize)

    def readlink_ino(self, ino: int) -> str:
        inode = self._inode(ino)
        if inode.size > MAX_SYMLINK_BYTES:
            raise LimitExceededError(f"btrfs symlink target of {inode.size} bytes")
        data = self.read_ino(ino, 0, inode.size)
        return decode_name(data)


def probe(dev: BlockDevice) -> Signature | None:
    """A btrfs signature if ``dev`` has a valid primary superblock (crc32c checked)."""
    if dev.size < L.SUPERBLOCK_OFFSET + L.SUPERBLOCK_SIZE:
        return None
    head = dev.read(L.SUPERBLOCK_OFFSET + 0x40, 8)
    if head != L.MAGIC:
        return None
    try:
        sb = _read_superblock(dev)
    except (CorruptImageError, UnsupportedImageError):
        return None
    label = sb.label.split(b"\0", 1)[0].decode("utf-8", "replace") or None
    return Signature(kind="btrfs", uuid=L.format_uuid(sb.fsid), label=label)


def open_fs(dev: BlockDevice, subvol: str | int | None = None) -> BtrfsFilesystem:
    """Open the btrfs on ``dev`` at subvolume ``subvol``: a path from the top level (as in
    ``subvol=@`` in fstab), a subvolume id (as ``subvolid=``), or None for the default one."""
    return BtrfsFilesystem(dev, subvol)
