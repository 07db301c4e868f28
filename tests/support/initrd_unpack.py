"""Unpack an initrd the way the kernel does, with the real tools: each segment in order
(``cpio -i`` for an uncompressed archive, the real decompressor piped into ``cpio -i`` for a
compressed one), later files replacing earlier ones (``cpio -u``). Our reader only says where
the segments start; the bytes are read by cpio, zstd, xz, gzip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imageport.guest.boot.initrd import read_initrd

DECOMPRESSORS = {
    "zstd": ["zstd", "-q", "-d", "-c"],
    "xz": ["xz", "-d", "-c"],
    "gzip": ["gzip", "-d", "-c"],
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; the initrd is unpacked with it")
    return path


def unpack_initrd(data: bytes, dest: Path) -> list[str]:
    """Unpack ``data`` into ``dest``; the compression of each segment, in order."""
    dest.mkdir(parents=True, exist_ok=True)
    kinds = []
    for segment in read_initrd(data).segments:
        piece = data[segment.offset : segment.offset + segment.stored_bytes]
        if segment.compression != "none":
            tool = DECOMPRESSORS[segment.compression]
            piece = subprocess.run(
                [_tool(tool[0]), *tool[1:]], input=piece, capture_output=True, check=True
            ).stdout
        subprocess.run(
            [_tool("cpio"), "-i", "-d", "-u", "--quiet", "--no-absolute-filenames"],
            input=piece,
            cwd=dest,
            capture_output=True,
            check=True,
        )
        kinds.append(segment.compression)
    return kinds
