"""Convert an image to raw, qcow2, ZVHD or ZVHD2, always through imageport's own readers.

The input is probed first and must be safe to read (accepted format, no hazards, no damage,
not encrypted); otherwise the full check runs to say why and :class:`ImageRefusedError` is
raised, as :func:`~imageport.service.tools.to_raw.convert_to_raw` does. Then:

* ``zvhd2`` / ``zvhd``: our writer (:mod:`imageport.fastimport.zvhd_writer`) reads the opened
  virtual disk directly (parallel compression, holes skipped).
* ``raw``: :func:`~imageport.service.tools.to_raw.convert_to_raw` (sparse output).
* ``qcow2``: the :class:`~imageport.service.ports.Qcow2Writer` the caller passes (qemu-img)
  writes it, from raw bytes that our reader produced: the input itself when it is a raw file
  (raw has no structure to misread), else a sparse raw temporary file next to the output
  (deleted afterwards). The writer reads them as raw, so it never interprets the input's
  container; ``--compression`` asks it for compressed clusters.

Every output appears only when complete (:func:`imageport.durable.atomic_output`: temporary
file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from imageport.durable import atomic_output, temp_path
from imageport.errors import ImageportError
from imageport.service.ports import Qcow2Writer
from imageport.service.tools.to_raw import Progress, convert_to_raw, open_checked

OutputFormat = Literal["raw", "qcow2", "zvhd", "zvhd2"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
#: File name extensions that name an output format when ``-O`` is not given.
EXTENSIONS: dict[str, OutputFormat] = {
    ".zvhd2": "zvhd2",
    ".zvhd": "zvhd",
    ".raw": "raw",
    ".img": "raw",
    ".qcow2": "qcow2",
}


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """``compression``: ``zstd`` or ``zlib`` (zvhd2: default zstd; zvhd: zlib only; qcow2:
    compressed clusters of that type, default uncompressed; raw: none). ``block_size`` in
    bytes applies to zvhd2 only."""

    compression: str | None = None
    block_size: int | None = None
    workers: int | None = None


@dataclass(frozen=True, slots=True)
class Converted:
    """What a conversion wrote."""

    format: OutputFormat
    virtual_size: int
    file_size: int
    #: Bytes of data in the output: data bytes written (raw), stored blocks x block size
    #: (zvhd, zvhd2), or the file's allocated bytes (qcow2).
    data_bytes: int
    detail: str = ""


def format_for_path(path: str | os.PathLike[str]) -> OutputFormat | None:
    """The output format named by ``path``'s extension, or None."""
    return EXTENSIONS.get(os.path.splitext(os.fspath(path))[1].lower())


def refuse_same_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    if os.path.exists(dst) and os.path.samefile(dst, src):
        raise ImageportError("the output file is the input file")


def convert_image(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    fmt: OutputFormat,
    options: ConvertOptions | None = None,
    progress: Progress | None = None,
    *,
    qcow2: Qcow2Writer | None = None,
) -> Converted:
    """Convert ``src_path`` to ``fmt`` at ``dst_path``; ``qcow2`` writes qcow2 output (the
    caller picks the implementation: :class:`imageport.adapters.image_worker.QemuImgQcow2Writer`),
    and is needed for that format only."""
    opts = options or ConvertOptions()
    if fmt not in OUTPUT_FORMATS:
        raise ImageportError(f"unknown output format {fmt!r}")
    _check_options(fmt, opts)
    refuse_same_file(src_path, dst_path)
    if fmt == "raw":
        result = convert_to_raw(src_path, dst_path, progress)
        return Converted(
            "raw", result.virtual_size, os.path.getsize(dst_path), result.bytes_written
        )
    if fmt == "qcow2":
        return _to_qcow2(src_path, dst_path, opts, progress, qcow2)
    return _to_zvhd(src_path, dst_path, fmt, opts, progress)


def _check_options(fmt: OutputFormat, opts: ConvertOptions) -> None:
    if opts.compression not in (None, "zstd", "zlib"):
        raise ImageportError(f"unknown compression {opts.compression!r} (zstd or zlib)")
    if opts.compression is not None and (
        fmt == "raw" or (fmt == "zvhd" and opts.compression != "zlib")
    ):
        raise ImageportError(
            f"{fmt} output does not take --compression {opts.compression}"
            + (" (zvhd is always zlib)" if fmt == "zvhd" else "")
        )
    if opts.block_size is not None and fmt != "zvhd2":
        raise ImageportError(f"{fmt} output has no selectable block size (zvhd2 only)")


def _to_zvhd(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    fmt: OutputFormat,
    opts: ConvertOptions,
    progress: Progress | None,
) -> Converted:
    from imageport.fastimport import zvhd_writer as zw

    method: zw.Method = "zlib" if opts.compression == "zlib" else "zstd"
    writer_opts = zw.WriterOptions(
        method=method, block_size=opts.block_size or zw.DEFAULT_BLOCK_SIZE, workers=opts.workers
    ).checked()
    with open_checked(src_path) as (_container, disk):
        if fmt == "zvhd2":
            done = zw.write_zvhd2(disk, dst_path, writer_opts, progress)
            detail = f"{method}, {writer_opts.block_size >> 20} MiB blocks"
            block = writer_opts.block_size
        else:
            done = zw.write_zvhd(disk, dst_path, writer_opts, progress)
            detail, block = "zlib, 2 MiB blocks", 2 << 20
    return Converted(
        fmt, done.virtual_size, done.file_size, min(done.blocks * block, done.virtual_size), detail
    )


def _to_qcow2(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    opts: ConvertOptions,
    progress: Progress | None,
    writer: Qcow2Writer | None,
) -> Converted:
    if writer is None:
        raise ImageportError("qcow2 output needs a qcow2 writer (none was given)")
    writer.ready()
    directory = os.path.dirname(os.path.abspath(dst_path))
    with open_checked(src_path) as (container, disk):
        virtual_size = disk.virtual_size
        is_raw = container.format == "raw"
    with contextlib.ExitStack() as stack:
        if is_raw:
            raw_path = Path(src_path)
            if progress is not None:
                progress(virtual_size, virtual_size)
        else:
            raw_path = stack.enter_context(temp_path(directory, ".raw"))
            convert_to_raw(src_path, raw_path, progress)
        with atomic_output(dst_path, ".qcow2") as out:
            writer.write_qcow2(raw_path, Path(out.tmp), compression=opts.compression)
    st = os.stat(dst_path)
    return Converted(
        "qcow2",
        virtual_size,
        st.st_size,
        st.st_blocks * 512,
        f"via qemu-img{', ' + opts.compression if opts.compression else ''}",
    )
