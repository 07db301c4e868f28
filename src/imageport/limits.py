"""Every cap on numbers that come from untrusted image bytes.

A number read from an image is checked against one of these before it sizes a buffer, bounds
a loop or positions a seek. Use :func:`cap` so that the error names what was too big.
"""

from __future__ import annotations

from imageport.errors import LimitExceededError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

#: Bytes read from the start and from the end of a file to decide its format.
PROBE_HEAD_BYTES = 64 * KiB
PROBE_TAIL_BYTES = 4 * KiB

#: Largest virtual disk any reader accepts (the product itself allows 1 TiB; larger images are
#: still parsed so the size rules can name the size).
MAX_VIRTUAL_SIZE = 64 * TiB

#: Largest single metadata table read into memory at once (qcow2 L1, VHD BAT, VHDX BAT, VDI
#: block map, VMDK grain directory ...). qemu uses the same 32 MiB bound for the qcow2 L1 table.
MAX_TABLE_BYTES = 64 * MiB

#: Largest number of entries in a table that is walked entry by entry.
MAX_TABLE_ENTRIES = MAX_TABLE_BYTES // 4

#: Largest cluster / grain / block unit a reader will hold in memory (VHDX allows 256 MiB).
MAX_BLOCK_BYTES = 256 * MiB

#: Largest compressed unit decoded in one piece, and its largest decoded size.
MAX_COMPRESSED_BYTES = 64 * MiB

#: Largest text descriptor or header region (VMDK descriptor, VDI header ...).
MAX_DESCRIPTOR_BYTES = 1 * MiB

#: Largest number of extents a VMDK descriptor may list.
MAX_EXTENTS = 4096

#: Total bytes of metadata tables a reader may cache (L2 tables, grain tables, BAT pages).
MAX_METADATA_CACHE_BYTES = 64 * MiB

#: Total bytes of decoded compressed units (clusters, grains, blocks) a reader keeps.
MAX_DECODED_CACHE_BYTES = 64 * MiB

#: Largest single ``read()`` a caller may ask a virtual disk for.
MAX_READ_BYTES = 256 * MiB

#: Largest aggregate expansion of an image's packed units (compressed clusters, grains,
#: blocks): guest bytes they decode to per file byte they occupy. A policy, not a property of
#: compression (deflate reaches 1032:1, zstd far more on constant data): a real system disk's
#: data compresses 2-10:1, so past the floor below more than 256:1 is refused; it caps what a
#: small upload can become (256 GiB from 1 GiB) before the storage quota does.
MAX_PACKED_RATIO = 256

#: Guest bytes of packed units accepted whatever their ratio, so that a small image holding a
#: few constant clusters (zstd turns 2 MiB of one byte into ~70) is not refused.
PACKED_RATIO_FLOOR = 256 * MiB

#: Host ranges (data runs, packed units) the storage audit keeps to look for sharing when the
#: tables do not place guest data in ascending file order (an ascending walk needs none).
MAX_AUDIT_INTERVALS = 1 << 20


def cap(value: int, limit: int, what: str, *, minimum: int = 0) -> int:
    """Return ``value`` if ``minimum <= value <= limit``, else raise :class:`LimitExceededError`."""
    if value < minimum or value > limit:
        raise LimitExceededError(f"{what} is {value}, outside the allowed range {minimum}..{limit}")
    return value
