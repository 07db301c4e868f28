"""Read a kmod binary index back into ``{key: [(priority, value), ...]}`` for the tests: an
independent decoder of the format (``libkmod/libkmod-index.c`` describes it), used to compare our
indexes with the ones the real depmod wrote. Trusted input only (test files)."""

from __future__ import annotations

import struct

MAGIC = 0xB007F457
PREFIX, VALUES, CHILDS, MASK = 0x80000000, 0x40000000, 0x20000000, 0x0FFFFFFF


def _cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\0", pos)
    return data[pos:end].decode("utf-8"), end + 1


def dump_index(data: bytes) -> dict[str, list[tuple[int, str]]]:
    magic, version, root = struct.unpack_from(">III", data, 0)
    assert magic == MAGIC and version >> 16 == 2, (hex(magic), hex(version))
    out: dict[str, list[tuple[int, str]]] = {}
    stack = [(root, "")]
    while stack:
        offset, key = stack.pop()
        pos = offset & MASK
        if offset & PREFIX:
            prefix, pos = _cstring(data, pos)
            key += prefix
        if offset & CHILDS:
            first, last = data[pos], data[pos + 1]
            pos += 2
            for i in range(last - first + 1):
                (child,) = struct.unpack_from(">I", data, pos + 4 * i)
                if child & MASK:
                    stack.append((child, key + chr(first + i)))
            pos += 4 * (last - first + 1)
        if offset & VALUES:
            (count,) = struct.unpack_from(">I", data, pos)
            pos += 4
            values = []
            for _ in range(count):
                (priority,) = struct.unpack_from(">I", data, pos)
                value, pos = _cstring(data, pos + 4)
                values.append((priority, value))
            out[key] = values
    return out
