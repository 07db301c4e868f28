"""The checksums of on-disk structures that more than one format shares.

* CRC-32C (Castagnoli), used by VHDX, ext4 (metadata_csum) and Btrfs: pure Python and
  table-driven; runs of trailing zero bytes are fed through precomputed GF(2)-linear operators,
  so a 64 KiB mostly-empty block costs little more than its data.
* The VHD checksum (:func:`vhd_checksum`), the one's complement of a byte sum, used by the VHD
  footer and dynamic header and by the ZVHD / ZVHD2 footers.
"""

from __future__ import annotations


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def _apply(operator: tuple[int, ...], state: int) -> int:
    """Apply a GF(2)-linear map on 32-bit CRC registers, given as the images of the 32 bits."""
    out = 0
    bit = 0
    while state:
        if state & 1:
            out ^= operator[bit]
        state >>= 1
        bit += 1
    return out


def _zero_operators() -> tuple[tuple[int, ...], ...]:
    """Maps that feed 1, 2, 4 ... 2**16 zero bytes through the CRC register.

    Feeding a zero byte is linear on the register (the table maps 0 to 0), so ``n`` zeros are
    applied in ``log2(n)`` steps; VHDX checksummed blocks are mostly zero padding.
    """
    one = tuple(_CRC32C_TABLE[(1 << i) & 0xFF] ^ ((1 << i) >> 8) for i in range(32))
    ops = [one]
    for _ in range(16):
        last = ops[-1]
        ops.append(tuple(_apply(last, image) for image in last))
    return tuple(ops)


_ZERO_OPERATORS = _zero_operators()


def crc32c_update(crc: int, data: bytes) -> int:
    """The CRC-32C register after feeding ``data`` into register ``crc`` (no inversions).

    Table-driven over the bytes up to the last non-zero one; trailing zeros are applied with
    precomputed operators (checksummed blocks are often mostly zero padding).
    """
    body = data.rstrip(b"\0")
    table = _CRC32C_TABLE
    for byte in body:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    zeros = len(data) - len(body)
    top = len(_ZERO_OPERATORS) - 1
    while zeros >> top:  # runs longer than the largest operator
        crc = _apply(_ZERO_OPERATORS[top], crc)
        zeros -= 1 << top
    power = 0
    while zeros:
        if zeros & 1:
            crc = _apply(_ZERO_OPERATORS[power], crc)
        zeros >>= 1
        power += 1
    return crc


def crc32c(data: bytes) -> int:
    """The standard CRC-32C of ``data`` (initial register all ones, final inversion)."""
    return crc32c_update(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def vhd_checksum(data: bytes, field_offset: int) -> int:
    """One's complement of the byte sum of ``data``, the 4 bytes at ``field_offset`` (the
    checksum field itself) counted as zero."""
    total = sum(data) - sum(data[field_offset : field_offset + 4])
    return ~total & 0xFFFFFFFF
