"""Block devices: anything with a size and positioned reads (a disk, a partition, a volume)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from imageport.errors import CorruptImageError, ImageportError, TruncatedImageError


@runtime_checkable
class BlockDevice(Protocol):
    """A read-only device. :class:`~imageport.disk.base.VirtualDisk` is one."""

    @property
    def size(self) -> int:
        """Size in bytes."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``, clipped at the end of the device."""
        ...


def read_exact_dev(dev: BlockDevice, offset: int, length: int, what: str) -> bytes:
    """Exactly ``length`` bytes at ``offset`` of ``dev``, or :class:`TruncatedImageError`."""
    if offset < 0 or length < 0 or offset + length > dev.size:
        raise TruncatedImageError(
            f"{what} ({length} bytes at offset {offset}) lies beyond the end of the device "
            f"({dev.size} bytes)"
        )
    data = dev.read(offset, length)
    if len(data) != length:
        raise TruncatedImageError(f"short read of {what} at offset {offset}")
    return data


def clipped_end(offset: int, length: int, size: int) -> int:
    """The end of a read of ``length`` at ``offset`` on a device of ``size`` bytes (reads stop
    at the end); raises for negative arguments."""
    if offset < 0 or length < 0:
        raise ImageportError(f"invalid read at {offset} length {length}")
    return min(offset + length, size)


class SliceDevice:
    """The range ``[offset, offset + size)`` of another device (a partition, say)."""

    def __init__(self, parent: BlockDevice, offset: int, size: int, name: str = "") -> None:
        if offset < 0 or size < 0 or offset + size > parent.size:
            raise CorruptImageError(
                f"{name or 'slice'} at {offset}+{size} lies outside its device "
                f"({parent.size} bytes)"
            )
        self.parent = parent
        self.offset = offset
        self._size = size
        self.name = name

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        end = clipped_end(offset, length, self._size)
        if offset >= end:
            return b""
        return self.parent.read(self.offset + offset, end - offset)


class BytesDevice:
    """An in-memory device: the unit-test and fuzzing seam."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ImageportError(f"invalid read at {offset} length {length}")
        return self._data[offset : offset + length]
