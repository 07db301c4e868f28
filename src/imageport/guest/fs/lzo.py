"""A bounded, pure-Python LZO1X decompressor (the raw stream, no container).

Written for imageport from the stream description in the Linux kernel's
``Documentation/staging/lzo.rst`` ("LZO stream format as understood by Linux's LZO
decompressor"); no LZO source code was used. Btrfs stores LZO-compressed extents as LZO1X
streams made by ``lzo1x_1_compress`` (version 0, no LZO-RLE), wrapped in its own framing,
which :mod:`imageport.guest.fs.btrfs_extents` unwraps.

The stream is a series of instructions. Each instruction is either a run of literals or a copy
from the output already produced (a distance back and a length), and most carry in their low
two bits ``S`` the number (0..3) of literal bytes that follow them directly; that number, the
*state*, changes the meaning of the next instruction when its top nibble is zero::

    first byte 18..255  copy (byte - 17) literals; state = that count, or 4 when it is >= 4
    0000LLLL, state 0   literal run of 3 + len(L, 4 bits) bytes; state = 4
    0000DDSS, state 1-3 copy 2 bytes from distance (H << 2) + D + 1            (+1 byte H)
    0000DDSS, state 4   copy 3 bytes from distance (H << 2) + D + 2049         (+1 byte H)
    0001HLLL            copy 2 + len(L, 3 bits) from 16384 + (H << 14) + (LE16 >> 2);
                        distance 16384 exactly ends the stream                 (+LE16)
    001LLLLL            copy 2 + len(L, 5 bits) from (LE16 >> 2) + 1           (+LE16)
    01LDDDSS            copy 3 + L from (H << 3) + D + 1                       (+1 byte H)
    1LLDDDSS            copy 5 + L from (H << 3) + D + 1                       (+1 byte H)

where ``len(L, n)`` is ``L`` when non-zero, else ``2**n - 1`` plus 255 for every zero byte that
follows plus the first non-zero byte. The LE16 operands carry ``S`` in their low two bits.

Every input byte is hostile: reads past the input, distances before the start of the output,
and output beyond ``max_output`` raise :class:`~imageport.errors.CorruptImageError` (or
:class:`~imageport.errors.LimitExceededError`); the output never grows past ``max_output``.
"""

from __future__ import annotations

from imageport.errors import CorruptImageError, LimitExceededError

__all__ = ["decompress"]

#: Zero bytes accepted in one variable-length count (each adds 255): bounds the loop and the
#: number long before ``max_output`` would.
_MAX_ZERO_RUN = 1 << 16


class _Input:
    """A cursor over the compressed bytes that fails closed at the end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise CorruptImageError("LZO stream ends in the middle of an instruction")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def le16(self) -> int:
        low = self.byte()
        return low | (self.byte() << 8)

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise CorruptImageError("LZO literal run extends past the end of the stream")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def length(self, low_bits: int, mask: int) -> int:
        """The variable-length count: ``low_bits`` if non-zero, else ``mask`` + 255s + a byte."""
        if low_bits:
            return low_bits
        total = mask
        zeros = 0
        while True:
            value = self.byte()
            if value:
                return total + value
            zeros += 1
            if zeros > _MAX_ZERO_RUN:
                raise LimitExceededError("LZO length uses too many continuation bytes")
            total += 255


def _copy_match(out: bytearray, distance: int, length: int, max_output: int) -> None:
    """Append ``length`` bytes copied from ``distance`` back (the copy may overlap itself)."""
    start = len(out) - distance
    if distance <= 0 or start < 0:
        raise CorruptImageError(f"LZO match distance {distance} reaches before the output start")
    if len(out) + length > max_output:
        raise LimitExceededError(f"LZO output exceeds {max_output} bytes")
    if distance >= length:
        out += out[start : start + length]
        return
    # Overlapping copy: the pattern of ``distance`` bytes repeats.
    pattern = bytes(out[start:])
    reps, rest = divmod(length, distance)
    out += pattern * reps + pattern[:rest]


def _literals(out: bytearray, src: _Input, count: int, max_output: int) -> None:
    if len(out) + count > max_output:
        raise LimitExceededError(f"LZO output exceeds {max_output} bytes")
    out += src.take(count)


def decompress(data: bytes, max_output: int) -> bytes:
    """Decode one LZO1X stream; its output must not exceed ``max_output`` bytes."""
    src = _Input(bytes(data))
    out = bytearray()
    state = 0
    if src.data and src.data[0] > 17:
        count = src.byte() - 17
        _literals(out, src, count, max_output)
        state = min(count, 4)
    while True:
        inst = src.byte()
        if inst < 16:
            if state == 0:
                count = 3 + src.length(inst & 0x0F, 15)
                _literals(out, src, count, max_output)
                state = 4
                continue
            follow = inst & 3
            high = src.byte()
            if state == 4:
                _copy_match(out, (high << 2) + ((inst >> 2) & 3) + 2049, 3, max_output)
            else:
                _copy_match(out, (high << 2) + ((inst >> 2) & 3) + 1, 2, max_output)
        elif inst < 32:
            length = 2 + src.length(inst & 7, 7)
            operand = src.le16()
            distance = 16384 + ((inst & 8) << 11) + (operand >> 2)
            if distance == 16384:
                return bytes(out)  # the end marker; trailing padding is the caller's business
            follow = operand & 3
            _copy_match(out, distance, length, max_output)
        elif inst < 64:
            length = 2 + src.length(inst & 31, 31)
            operand = src.le16()
            follow = operand & 3
            _copy_match(out, (operand >> 2) + 1, length, max_output)
        else:
            high = src.byte()
            distance = (high << 3) + ((inst >> 2) & 7) + 1
            length = 3 + ((inst >> 5) & 1) if inst < 128 else 5 + ((inst >> 5) & 3)
            follow = inst & 3
            _copy_match(out, distance, length, max_output)
        _literals(out, src, follow, max_output)
        state = follow
