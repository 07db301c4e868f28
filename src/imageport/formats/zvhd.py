"""ZVHD and ZVHD2, the vendor's compressed image formats: probing and inspection.

Layout: described in detail in :mod:`imageport.disk.zvhd_layout` (learned by reading the
third-party qemu driver opnmind/ims-qemu-img, ``src/zvhd.c`` and ``src/zvhd2.c``; no code
copied). Upstream qemu-img cannot read either format, so the reads
are checked against the raw disk the test writer (``tests/support/zvhd_writer.py``) started from.

* ``zvhd``: cookie ``"stream"`` at offset 0; its records are indexed by walking their headers
  (one 48-byte read per record, never the data) up to the footer copy that must end the file.
* ``zvhd2``: cookie ``"z2strm"`` at offset 0; the final footer in the last 4 KiB gives the index
  and bitmap, which are read and cross-checked. Variants ``zvhd2 (zstd)`` and ``zvhd2 (zlib)``.

Footer checksums are verified; a wrong one is damage.

**Virtual size.** The footer holds ``orig_size`` (the size of the disk that was converted, in
bytes) and ``curr_size`` (the same rounded up to a whole GiB). The public qemu-img-hw driver
sets the block device's length from ``curr_size``, so ``qemu-img-hw info`` would most likely
report the GiB-rounded size; its writer never writes past ``orig_size``, so the bytes between
the two are always zeros. We report ``orig_size`` as the virtual size: it is the true disk
(the one a byte-exact comparison with the source raw file matches), and the size rules round
the virtual size up to whole GiB anyway (IMG-DISK-SIZE), which gives ``curr_size`` back. The
footer's ``curr_size`` is shown as the property ``qemu-img-hw virtual size``.

No ZVHD feature can name another file, so these formats have no hazards; damage, unsupported
versions and compression methods are reported as such.
"""

from __future__ import annotations

import functools

from imageport.disk.zvhd import (
    Zvhd2Disk,
    ZvhdDisk,
    check_zvhd2_footer,
    read_zvhd2_index,
    scan_records,
)
from imageport.disk.zvhd_layout import (
    COMPRESSION_NAMES,
    FOOTER_AREA,
    FOOTER_BYTES,
    ZVHD2_COOKIE,
    ZVHD_BLOCK_SIZE,
    ZVHD_COOKIE,
    Footer,
)
from imageport.errors import CorruptImageError
from imageport.formats.base import Container, FormatSpec, ProbeWindow
from imageport.source import ByteSource, read_exact


def _matches_zvhd(window: ProbeWindow) -> bool:
    return window.head_at(0, len(ZVHD_COOKIE)) == ZVHD_COOKIE


def _matches_zvhd2(window: ProbeWindow) -> bool:
    return window.head_at(0, len(ZVHD2_COOKIE)) == ZVHD2_COOKIE


def _common_properties(footer: Footer) -> dict[str, str]:
    return {
        "qemu-img-hw virtual size": str(footer.curr_size),
        "creator": footer.creator_app.rstrip(b"\0").decode("ascii", errors="replace"),
        "creator version": f"{footer.creator_version >> 16}.{footer.creator_version & 0xFFFF}",
    }


def _inspect_zvhd(source: ByteSource, window: ProbeWindow) -> Container:
    footer = Footer.from_bytes(read_exact(source, 0, FOOTER_BYTES, "zvhd footer"))
    footer.check(ZVHD_COOKIE, "zvhd")
    index = scan_records(source, footer)
    properties = _common_properties(footer)
    properties.update(
        {
            "compression": "zlib (one stream)",
            "block size": str(ZVHD_BLOCK_SIZE),
            "non-zero blocks": str(len(index.blocks)),
        }
    )
    return Container(
        format="zvhd",
        variant="zvhd",
        accepted=True,
        file_size=source.size,
        virtual_size=footer.orig_size,
        properties=properties,
        opener=functools.partial(ZvhdDisk, footer=footer, index=index),
    )


def _inspect_zvhd2(source: ByteSource, window: ProbeWindow) -> Container:
    head = Footer.from_bytes(read_exact(source, 0, FOOTER_BYTES, "zvhd2 header"))
    head.check(ZVHD2_COOKIE, "zvhd2 header")
    if source.size < 2 * FOOTER_AREA:
        raise CorruptImageError(f"zvhd2: file of {source.size} bytes has no final footer")
    footer = Footer.from_bytes(
        read_exact(source, source.size - FOOTER_AREA, FOOTER_BYTES, "zvhd2 final footer")
    )
    check_zvhd2_footer(footer, source.size)
    if head.orig_size != footer.orig_size:
        raise CorruptImageError(
            f"zvhd2: header disk size {head.orig_size} differs from the "
            f"final footer's {footer.orig_size}"
        )
    index = read_zvhd2_index(source, footer)
    method = COMPRESSION_NAMES[footer.compress_method]
    properties = _common_properties(footer)
    properties.update(
        {
            "compression": method,
            "block size": str(footer.block_size),
            "non-zero blocks": str(len(index.blocks)),
            "zvhd2 version": str(footer.zvhd2_version),
        }
    )
    return Container(
        format="zvhd2",
        variant=f"zvhd2 ({method})",
        accepted=True,
        file_size=source.size,
        virtual_size=footer.orig_size,
        properties=properties,
        opener=functools.partial(Zvhd2Disk, footer=footer, index=index),
    )


SPECS: tuple[FormatSpec, ...] = (
    FormatSpec(
        name="zvhd",
        description="ZVHD (zlib-compressed stream, read sequentially)",
        accepted=True,
        matches=_matches_zvhd,
        inspect=_inspect_zvhd,
    ),
    FormatSpec(
        name="zvhd2",
        description="ZVHD2 (zstd or zlib blocks with an index, lazy-loadable)",
        accepted=True,
        matches=_matches_zvhd2,
        inspect=_inspect_zvhd2,
    ),
)
