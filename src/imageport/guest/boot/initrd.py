"""What an initrd (initramfs) holds: members, kernel modules, kernel versions, chosen files.

An initramfs is a sequence of segments, as the kernel's ``init/initramfs.c`` unpacks it and as
``Documentation/driver-api/early-userspace/buffer-format.rst`` describes: uncompressed cpio
archives (dracut and initramfs-tools put CPU microcode first this way), zero padding, and
compressed segments (see :mod:`imageport.guest.boot.decompress`) that each hold whole cpio archives,
themselves separated by zero padding. We walk them in order and stream every member: contents
are dropped unless a caller asked for the path with ``keep`` (each kept file at most
:data:`MAX_KEPT_BYTES`), so memory stays bounded whatever the size of the initrd.

Damage stops the walk where it is found and is recorded in :attr:`InitrdContents.problems`
(the kernel, too, keeps what it unpacked before an error); a file with no readable archive at
all raises :class:`CorruptImageError`. Caps raise :class:`LimitExceededError`: total unpacked
bytes (:data:`MAX_UNPACKED_BYTES`, a decompression bomb) and member count (:data:`MAX_MEMBERS`).

Also here: :func:`parse_kernel_config` (``/boot/config-*``) and :func:`parse_modules_builtin`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from imageport.errors import CorruptImageError, LimitExceededError
from imageport.guest.boot.cpio import TRAILER, ByteStream, is_cpio_magic, read_header
from imageport.guest.boot.decompress import Decoder, compression_of, decoder_for
from imageport.guest.fs.base import FileType, decode_name
from imageport.guest.volumes.blockdev import BlockDevice, BytesDevice

MiB = 1 << 20
#: Total bytes unpacked from all compressed segments before we give up (a bomb).
MAX_UNPACKED_BYTES = 1 << 30
#: Members in all archives of one initrd.
MAX_MEMBERS = 200_000
#: Bytes kept of one requested file (the rest is skipped; the file is marked truncated).
MAX_KEPT_BYTES = 1 * MiB
#: Symlink targets longer than this are not kept.
MAX_LINK_BYTES = 4096
_SCAN = 64 * 1024
_ZEROS = bytes(1 << 20)

_FILE_TYPES = {
    0o040000: FileType.DIRECTORY,
    0o100000: FileType.REGULAR,
    0o120000: FileType.SYMLINK,
    0o020000: FileType.CHARDEV,
    0o060000: FileType.BLOCKDEV,
    0o010000: FileType.FIFO,
    0o140000: FileType.SOCKET,
}
_MODULES_DIR = re.compile(r"^(?:usr/)?lib/modules/([^/]+)(?:/|$)")
_MODULE = re.compile(r"^(?:usr/)?lib/modules/([^/]+)/.*?([^/]+)\.ko(?:\.(?:xz|zst|gz))?$")
_BUILTIN = re.compile(r"^(?:usr/)?lib/modules/([^/]+)/modules\.builtin$")


@dataclass(frozen=True, slots=True)
class Member:
    """One archive member (paths relative, without a leading ``/`` or ``./``)."""

    path: str
    type: FileType
    size: int
    mode: int  #: permission bits
    link_target: str | None = None


@dataclass(frozen=True, slots=True)
class KeptFile:
    """The contents of a requested member, at most :data:`MAX_KEPT_BYTES`."""

    path: str
    size: int  #: the member's full size
    data: bytes
    truncated: bool


@dataclass(frozen=True, slots=True)
class Segment:
    """One stretch of the initrd file: an uncompressed cpio run or a compressed segment."""

    offset: int
    compression: str  #: ``none``, ``gzip``, ``xz``, ``lzma``, ``zstd``, ``lz4``, ``bzip2``
    stored_bytes: int  #: bytes of the initrd file it occupies
    members: int


@dataclass(frozen=True, slots=True)
class InitrdContents:
    """The facts read from one initrd."""

    members: tuple[Member, ...]
    segments: tuple[Segment, ...]
    kernel_versions: tuple[str, ...]
    modules: frozenset[str]  #: normalised module names (``-`` becomes ``_``), all versions
    modules_by_version: Mapping[str, frozenset[str]]
    builtin_modules: frozenset[str]  #: from ``lib/modules/<ver>/modules.builtin`` inside
    kept: Mapping[str, KeptFile]
    problems: tuple[str, ...]
    unpacked_bytes: int

    def has(self, path: str) -> bool:
        """Whether a member named ``path`` (leading ``/`` ignored) is present."""
        wanted = _normal(path)
        return any(m.path == wanted for m in self.members)


def _normal(path: str) -> str:
    while path.startswith(("./", "/")):
        path = path[2:] if path.startswith("./") else path[1:]
    return "." if path in ("", ".") else path


def module_name(filename: str) -> str:
    """``virtio-blk.ko.xz`` -> ``virtio_blk`` (the kernel treats ``-`` and ``_`` alike)."""
    base = filename.rsplit("/", 1)[-1]
    for suffix in (".xz", ".zst", ".gz"):
        base = base.removesuffix(suffix)
    return base.removesuffix(".ko").replace("-", "_")


def parse_modules_builtin(text: str) -> frozenset[str]:
    """Module names from ``modules.builtin`` lines (``kernel/drivers/block/virtio_blk.ko``)."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line.endswith(".ko") and not line.startswith("#"):
            names.add(module_name(line))
    return frozenset(names)


def parse_kernel_config(text: str) -> dict[str, str]:
    """``CONFIG_*`` settings of a kernel ``.config``: ``y``, ``m``, a value, or ``n`` for
    ``# CONFIG_X is not set``. Later lines win, as in Kconfig."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            config[line[2 : -len(" is not set")]] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            config[key] = value
    return config


def _leading_zeros(data: bytes) -> int:
    """How many zero bytes ``data`` starts with (memcmp for the all-zero case: lstrip is slow)."""
    if len(data) <= len(_ZEROS) and data == _ZEROS[: len(data)]:
        return len(data)
    return len(data) - len(data.lstrip(b"\x00"))


class _Budget:
    """Unpacked bytes so far, against the cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise LimitExceededError(
                f"initrd unpacks to more than {self.limit} bytes (a decompression bomb?)"
            )


class _DeviceStream:
    """The initrd file itself from an offset (uncompressed cpio)."""

    def __init__(self, dev: BlockDevice, pos: int) -> None:
        self.dev = dev
        self.pos = pos

    def read(self, n: int) -> bytes:
        data = self.dev.read(self.pos, max(0, min(n, self.dev.size - self.pos)))
        self.pos += len(data)
        return data

    def skip(self, n: int) -> int:
        k = max(0, min(n, self.dev.size - self.pos))
        self.pos += k
        return k

    def peek(self, n: int) -> bytes:
        return self.dev.read(self.pos, max(0, min(n, self.dev.size - self.pos)))

    def skip_zeros(self) -> None:
        while self.pos < self.dev.size:
            chunk = self.peek(_SCAN)
            zeros = _leading_zeros(chunk)
            self.pos += zeros
            if zeros < len(chunk) or not chunk:
                return


class _DecodedStream:
    """The decompressed bytes of one compressed segment (same-format frames that directly
    follow one another continue it, as zstd and xz tools may write several)."""

    def __init__(self, dev: BlockDevice, start: int, kind: str, budget: _Budget) -> None:
        self._dev, self._kind, self._budget = dev, kind, budget
        self._decoder: Decoder = decoder_for(kind, dev, start)
        self._buf = b""
        self._off = 0
        self.eof = False
        self.end = start

    def _fill(self) -> bool:
        """Make the buffer non-empty; False at the end of the segment."""
        while self._off >= len(self._buf):
            if self.eof:
                return False
            chunk = self._decoder.step()
            if chunk:
                self._budget.spend(len(chunk))
                self._buf, self._off = chunk, 0
                continue
            nxt = self._decoder.start + self._decoder.consumed
            if compression_of(self._dev.read(nxt, 8)) == self._kind:
                self._decoder = decoder_for(self._kind, self._dev, nxt)
                continue
            self.end, self.eof = nxt, True
            return False
        return True

    def read(self, n: int) -> bytes:
        parts = []
        while n > 0 and self._fill():
            piece = self._buf[self._off : self._off + n]
            self._off += len(piece)
            n -= len(piece)
            parts.append(piece)
        return b"".join(parts)

    def skip(self, n: int) -> int:
        done = 0
        while done < n and self._fill():
            k = min(n - done, len(self._buf) - self._off)
            self._off += k
            done += k
        return done

    def peek(self, n: int) -> bytes:
        while len(self._buf) - self._off < n and not self.eof:
            head = self._buf[self._off :]
            self._buf, self._off = b"", 0
            if not self._fill():
                self._buf = head
                break
            self._buf = head + self._buf  # _fill left _off at 0
        return self._buf[self._off : self._off + n]

    def skip_zeros(self) -> None:
        while self._fill():
            rest = self._buf[self._off :] if self._off else self._buf
            zeros = _leading_zeros(rest)
            self._off += zeros
            if zeros < len(rest):
                return

    def drain(self) -> None:
        """Decode to the segment's end (to find where it ends), counting against the budget."""
        while self._fill():
            self._off = len(self._buf)


@dataclass
class _Walk:
    """Mutable state of one walk over an initrd."""

    keep: tuple[str, ...]
    max_members: int
    max_kept: int = MAX_KEPT_BYTES
    members: list[Member] = field(default_factory=list)
    kept: dict[str, KeptFile] = field(default_factory=dict)

    def wants(self, path: str) -> bool:
        return bool(_BUILTIN.match(path)) or any(fnmatch.fnmatchcase(path, p) for p in self.keep)

    def archives(self, stream: _DeviceStream | _DecodedStream) -> int:
        """Read cpio archives (with zero padding between) until other data or the end."""
        count = 0
        while True:
            stream.skip_zeros()
            if not is_cpio_magic(stream.peek(6)):
                return count
            count += self.archive(stream)

    def archive(self, stream: ByteStream) -> int:
        """Read one archive up to and including its trailer; return its member count."""
        count = 0
        while True:
            hdr, raw = read_header(stream)
            name = decode_name(raw)
            if name == TRAILER:
                if stream.skip(hdr.filesize + hdr.data_padding) != hdr.filesize + hdr.data_padding:
                    raise CorruptImageError("cpio: trailer data is cut short")
                return count
            if len(self.members) >= self.max_members:
                raise LimitExceededError(f"initrd has more than {self.max_members} members")
            path = _normal(name)
            kind = _FILE_TYPES.get(hdr.mode & 0o170000, FileType.UNKNOWN)
            target = None
            left = hdr.filesize
            if kind is FileType.SYMLINK and left <= MAX_LINK_BYTES:
                data = stream.read(left)
                left -= len(data)
                target = decode_name(data)
            elif kind is FileType.REGULAR and self.wants(path):
                data = stream.read(min(left, self.max_kept))
                left -= len(data)
                self.kept[path] = KeptFile(path, hdr.filesize, data, hdr.filesize > len(data))
            if stream.skip(left + hdr.data_padding) != left + hdr.data_padding:
                raise CorruptImageError(f"cpio: data of {path!r} is cut short")
            self.members.append(Member(path, kind, hdr.filesize, hdr.mode & 0o7777, target))
            count += 1


def read_initrd(
    source: BlockDevice | bytes,
    *,
    keep: Iterable[str] = (),
    max_unpacked: int = MAX_UNPACKED_BYTES,
    max_members: int = MAX_MEMBERS,
    max_kept: int = MAX_KEPT_BYTES,
) -> InitrdContents:
    """Walk the initrd in ``source`` (its bytes, or a device-like lazy reader of them).

    ``keep`` holds glob patterns (``fnmatch``, ``*`` crosses ``/``) of member paths whose
    contents to return, e.g. ``("etc/udev/rules.d/70-persistent-net.rules", "conf/*")``, each
    at most ``max_kept`` bytes.
    """
    dev: BlockDevice = BytesDevice(source) if isinstance(source, bytes) else source
    walk = _Walk(tuple(_normal(p) for p in keep), max_members, max_kept)
    budget = _Budget(max_unpacked)
    segments: list[Segment] = []
    problems: list[str] = []
    pos = 0
    while True:
        plain = _DeviceStream(dev, pos)
        plain.skip_zeros()
        pos = plain.pos
        if pos >= dev.size:
            break
        head = plain.peek(8)
        kind = "none" if is_cpio_magic(head) else compression_of(head)
        if kind is None:
            problems.append(f"unrecognised data at offset {pos} of the initrd ({head.hex()})")
            break
        before = len(walk.members)
        try:
            if kind == "none":
                walk.archives(plain)
                end = plain.pos
            else:
                unpacked = _DecodedStream(dev, pos, kind, budget)
                walk.archives(unpacked)
                if unpacked.peek(1):
                    problems.append(f"{kind} segment at offset {pos}: data after its archives")
                    break
                unpacked.drain()
                end = unpacked.end
        except LimitExceededError:
            raise
        except CorruptImageError as exc:
            problems.append(f"{kind} segment at offset {pos}: {exc}")
            break
        segments.append(Segment(pos, kind, end - pos, len(walk.members) - before))
        if end <= pos:
            problems.append(f"segment at offset {pos} is empty")
            break
        pos = end
    if not walk.members:
        raise CorruptImageError(
            "not an initrd: " + (problems[0] if problems else "no cpio archive found")
        )
    return _contents(walk, segments, problems, budget.used)


def _contents(
    walk: _Walk, segments: list[Segment], problems: list[str], unpacked: int
) -> InitrdContents:
    versions: set[str] = set()
    by_version: dict[str, set[str]] = {}
    for m in walk.members:
        found = _MODULES_DIR.match(m.path)
        if found:
            versions.add(found.group(1))
        mod = _MODULE.match(m.path)
        if mod and m.type in (FileType.REGULAR, FileType.SYMLINK):
            by_version.setdefault(mod.group(1), set()).add(module_name(mod.group(2) + ".ko"))
    builtin: set[str] = set()
    for path, kept in walk.kept.items():
        if _BUILTIN.match(path):
            builtin |= parse_modules_builtin(kept.data.decode("utf-8", "replace"))
    return InitrdContents(
        members=tuple(walk.members),
        segments=tuple(segments),
        kernel_versions=tuple(sorted(versions)),
        modules=frozenset(n for names in by_version.values() for n in names),
        modules_by_version={v: frozenset(n) for v, n in sorted(by_version.items())},
        builtin_modules=frozenset(builtin),
        kept=dict(walk.kept),
        problems=tuple(problems),
        unpacked_bytes=unpacked,
    )
