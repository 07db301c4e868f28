"""ZVHD / ZVHD2 files for the reader tests, made by the production writer.

The writer lives in :mod:`imageport.fastimport.zvhd_writer` (layout packing in
:mod:`imageport.fastimport.zvhd_packing`); this module keeps the small API the reader tests
were written against: convert a raw file, with a fixed UUID and timestamp so that output is
reproducible, and re-export the packing helpers for hand-made hostile files.
"""

from __future__ import annotations

from pathlib import Path

from imageport.disk.raw import RawDisk
from imageport.disk.zvhd_layout import FOOTER_AREA
from imageport.fastimport.zvhd_packing import (
    FooterFields,
    footer_area,
    pack_footer,
    pack_record,
    with_checksum,
)
from imageport.fastimport.zvhd_writer import Method, WriterOptions
from imageport.fastimport.zvhd_writer import write_zvhd as _write_zvhd
from imageport.fastimport.zvhd_writer import write_zvhd2 as _write_zvhd2
from imageport.source import FileSource

__all__ = [
    "FOOTER_AREA",
    "FooterFields",
    "footer_area",
    "pack_footer",
    "pack_record",
    "with_checksum",
    "write_zvhd",
    "write_zvhd2",
]

MiB = 1 << 20
FIXED_UUID = bytes(range(16))


def write_zvhd(raw: Path, out: Path) -> Path:
    """Convert the raw disk ``raw`` to ZVHD at ``out``."""
    with FileSource(raw) as src:
        _write_zvhd(RawDisk(src), out, WriterOptions(timestamp=0, uuid=FIXED_UUID))
    return out


def write_zvhd2(
    raw: Path,
    out: Path,
    *,
    block_size: int = 2 * MiB,
    method: Method = "zstd",
    index_contains_zero_blk: bool = False,
) -> Path:
    """Convert the raw disk ``raw`` to ZVHD2 at ``out``."""
    opts = WriterOptions(
        method=method,
        block_size=block_size,
        timestamp=0,
        uuid=FIXED_UUID,
        index_contains_zero_blk=index_contains_zero_blk,
    )
    with FileSource(raw) as src:
        _write_zvhd2(RawDisk(src), out, opts)
    return out
