"""kmod's module indexes: the text files depmod writes, parsed, and the binary indexes made
from them, which are all that libkmod (modprobe, udev's module loading) reads.

What libkmod reads, learned from kmod's ``libkmod/libkmod-index.c`` (reader) and
``tools/depmod.c`` (writer): ``modules.dep.bin`` maps a module name to its ``modules.dep`` line
(``kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko ...``);
``modules.alias.bin`` maps each alias pattern (``virtio:d00000002v*``) to module names, and is
searched with the patterns matched by ``fnmatch``; ``modules.symbols.bin`` maps
``symbol:<name>`` to the module exporting it. Without ``modules.dep.bin`` kmod finds no module
at all: the text files are for people and for depmod.

The binary format ("BOOTFAST"): three big-endian 32-bit words, the magic ``0xB007F457``, the
version ``0x00020001`` (kmod refuses another major) and the offset of the root node; then the
nodes of a radix trie ("Patricia trie": a node with one child and no value is merged into it).
A node is found by an offset whose top nibble says which parts it has: ``0x80000000`` a
NUL-terminated prefix (the characters after the arc that leads to it), ``0x20000000`` the first
and last child characters (one byte each) and one child offset per character in between
(0 for none), ``0x40000000`` a value count and that many (priority, NUL-terminated value)
pairs, sorted by priority. Keys are ASCII (the reader holds the child range in a ``char``).
As depmod does, children are written before their parent, the root node last, the root has no
prefix, and an alias key has ``-`` turned into ``_`` outside ``[...]`` (the form modprobe looks
up). Priorities order the values of one key; depmod uses its internal module number, here the
module's line in ``modules.dep``.

Everything parsed is capped (lines, line length, key length); module paths are checked as
relative, normalised ``.ko`` paths before anything is built from them.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from imageport.guest.boot.initrd import module_name

INDEX_MAGIC = 0xB007F457
INDEX_VERSION = 0x00020001
NODE_PREFIX = 0x80000000
NODE_VALUES = 0x40000000
NODE_CHILDS = 0x20000000
NODE_MASK = 0x0FFFFFFF

#: Lines read from one text index (a full modules.alias has some 30,000).
MAX_LINES = 200_000
#: Longest line, key (depmod's own alias buffer is 1 KiB) and module path accepted.
MAX_LINE_BYTES = 64 * 1024
MAX_KEY_BYTES = 512
MAX_PATH_BYTES = 255
#: Dependencies of one module.
MAX_DEPS = 256

_MODULE_PATH = re.compile(r"[A-Za-z0-9_.+,@=~-]+(?:/[A-Za-z0-9_.+,@=~-]+)*\.ko(?:\.(?:xz|zst|gz))?")
_MODULE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KEY = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class DepLine:
    """One ``modules.dep`` line: a module's path (relative to ``lib/modules/<version>``) and
    the paths of every module it needs, in load order (the last loads first)."""

    path: str
    deps: tuple[str, ...]

    @property
    def name(self) -> str:
        return module_name(self.path)

    def text(self) -> str:
        return f"{self.path}:" + "".join(f" {d}" for d in self.deps)


def module_path(path: str) -> str:
    """``path`` checked as a relative, normalised module path ending in ``.ko`` (optionally
    compressed); ValueError otherwise."""
    if (
        len(path) > MAX_PATH_BYTES
        or not _MODULE_PATH.fullmatch(path)
        or any(part in (".", "..") for part in path.split("/"))
    ):
        raise ValueError(f"{path[:80]!r} is not a relative module path")
    return path


def _lines(text: str, what: str) -> list[str]:
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise ValueError(f"{what} has more than {MAX_LINES} lines")
    for line in lines:
        if len(line) > MAX_LINE_BYTES:
            raise ValueError(f"{what} has a line longer than {MAX_LINE_BYTES} bytes")
    return lines


def parse_modules_dep(text: str) -> list[DepLine]:
    """The lines of a ``modules.dep`` (blank lines skipped), every path checked."""
    found = []
    for line in _lines(text, "modules.dep"):
        if not line.strip():
            continue
        head, sep, rest = line.partition(":")
        deps = rest.split()
        if not sep or len(deps) > MAX_DEPS:
            raise ValueError(f"modules.dep: not a dependency line: {line[:80]!r}")
        found.append(DepLine(module_path(head.strip()), tuple(module_path(d) for d in deps)))
    return found


def parse_aliases(text: str, what: str = "modules.alias") -> list[tuple[str, str]]:
    """``(pattern, module)`` from ``alias <pattern> <module>`` lines (``modules.alias``,
    ``modules.symbols``); comments and blank lines skipped."""
    found = []
    for line in _lines(text, what):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if (
            len(words) != 3
            or words[0] != "alias"
            or len(words[1]) > MAX_KEY_BYTES
            or not _KEY.fullmatch(words[1])
            or not _MODULE_NAME.fullmatch(words[2])
        ):
            raise ValueError(f"{what}: not an alias line: {line[:80]!r}")
        found.append((words[1], words[2]))
    return found


def alias_key(alias: str) -> str:
    """The key an alias is stored under: ``-`` as ``_`` except inside ``[...]`` (depmod's
    ``underscores``; modprobe normalises what it looks up the same way)."""
    out = []
    in_brackets = False
    for ch in alias:
        if ch == "[":
            in_brackets = True
        elif ch == "]":
            in_brackets = False
        out.append("_" if ch == "-" and not in_brackets else ch)
    return "".join(out)


class _Node:
    __slots__ = ("children", "prefix", "values")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.children: dict[str, _Node] = {}
        self.values: list[tuple[int, str]] = []


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def _build(items: Sequence[tuple[str, int, str]], prefix_len: int) -> _Node:
    """The node for ``items`` (sorted by key; all keys equal up to ``prefix_len``, which is
    where this node's prefix starts)."""
    first, last = items[0][0], items[-1][0]
    prefix = _common_prefix(first[prefix_len:], last[prefix_len:])
    node = _Node(prefix)
    end = prefix_len + len(prefix)
    group: list[tuple[str, int, str]] = []
    for item in items:
        key = item[0]
        if len(key) == end:
            node.values.append((item[1], item[2]))
            continue
        if group and group[0][0][end] != key[end]:
            node.children[group[0][0][end]] = _build(group, end + 1)
            group = []
        group.append(item)
    if group:
        node.children[group[0][0][end]] = _build(group, end + 1)
    node.values.sort(key=lambda v: v[0])
    return node


def _write(node: _Node, out: bytearray) -> int:
    """Write ``node`` after its children; return its offset with the flags."""
    child_offsets: dict[int, int] = {
        ord(ch): _write(child, out) for ch, child in sorted(node.children.items())
    }
    offset = len(out)
    if offset > NODE_MASK:
        raise ValueError("index larger than the format's 256 MiB")
    flags = 0
    if node.prefix:
        out += node.prefix.encode("ascii") + b"\0"
        flags |= NODE_PREFIX
    if child_offsets:
        lo, hi = min(child_offsets), max(child_offsets)
        out += bytes((lo, hi))
        out += b"".join(struct.pack(">I", child_offsets.get(c, 0)) for c in range(lo, hi + 1))
        flags |= NODE_CHILDS
    if node.values:
        out += struct.pack(">I", len(node.values))
        for priority, value in node.values:
            out += struct.pack(">I", priority) + value.encode("utf-8") + b"\0"
        flags |= NODE_VALUES
    return offset | flags


def write_index(entries: Iterable[tuple[str, str, int]]) -> bytes:
    """The binary index of ``(key, value, priority)`` entries (a key may have several values)."""
    items = []
    for key, value, priority in entries:
        if not key or len(key) > MAX_KEY_BYTES or not _KEY.fullmatch(key):
            raise ValueError(f"index key {key[:80]!r} is not printable ASCII of a sane length")
        if "\0" in value or "\n" in value or not 0 <= priority <= 0xFFFFFFFF:
            raise ValueError(f"index value for {key!r} is not a single line")
        items.append((key, priority, value))
    items.sort(key=lambda item: item[0])
    out = bytearray(struct.pack(">III", INDEX_MAGIC, INDEX_VERSION, 0))
    root = _Node("")
    if items:
        root = _build(items, 0)
        if root.prefix:  # depmod's root has no prefix: its first characters become one arc
            arc, rest = root.prefix[0], root.prefix[1:]
            child, root = root, _Node("")
            child.prefix = rest
            root.children[arc] = child
    struct.pack_into(">I", out, 8, _write(root, out))
    return bytes(out)


def dep_index(lines: Sequence[DepLine]) -> bytes:
    """``modules.dep.bin`` for ``lines`` (each module's priority is its line number)."""
    return write_index((line.name, line.text(), i) for i, line in enumerate(lines))


def alias_index(aliases: Iterable[tuple[str, str]], priority: Mapping[str, int]) -> bytes:
    """``modules.alias.bin`` / ``modules.symbols.bin`` for ``(pattern, module)`` pairs; a
    module's priority is its line in modules.dep (``priority``), unknown modules last."""
    last = len(priority)
    return write_index(
        (alias_key(alias), name, priority.get(name, last)) for alias, name in aliases
    )


def format_modules_dep(lines: Iterable[DepLine]) -> str:
    return "".join(line.text() + "\n" for line in lines)


def format_aliases(aliases: Iterable[tuple[str, str]], header: str = "") -> str:
    return header + "".join(f"alias {alias} {name}\n" for alias, name in aliases)
