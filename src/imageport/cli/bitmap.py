"""``imageport bitmap``: write or verify the ``.mf`` bitmap file of a RAW image (fast import).

``imageport bitmap disk.raw [-o disk.mf] [--block-size SIZE] [-p]`` writes the bitmap;
``imageport bitmap --verify disk.raw disk.mf [--samples N] [--seed S] [--full]`` checks one.
Exit status: 0 done / matches, 1 the bitmap does not match the RAW or is invalid (rule
IMG-FAST-RAW), 2 a file cannot be read, the input is not RAW, or the command is misused.
The work lives in :mod:`imageport.fastimport.bitmap`, imported only when the command runs.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_UNUSABLE = 2

_SIZE = re.compile(r"(?i)^\s*(\d+)\s*([km]?)(?:i?b)?\s*$")


def _block_size(text: str) -> int:
    """``2`` or ``2M`` -> 2 MiB, ``64K`` -> 64 KiB (a bare number is MiB)."""
    m = _SIZE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 2, 2M, 512K)")
    unit = {"k": 1 << 10, "m": 1 << 20, "": 1 << 20}[m.group(2).lower()]
    return int(m.group(1)) * unit


def _size(n: int) -> str:
    """``n`` bytes, short: ``2 MiB``, ``1.5 TiB``, ``4.0 KiB``, ``12 bytes``."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value.is_integer() else f"{value:.1f} {unit}"
    return f"{n} bytes"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to ``sub``; each sets ``func`` (args -> exit status)."""
    p = sub.add_parser(
        "bitmap",
        help="write (or --verify) the .mf bitmap file a RAW image needs for fast import",
        description="Write the bitmap file that marks which blocks of a RAW image hold data "
        "(imageport's documented .mf format, docs/bitmap-format.md), or verify one against "
        "its RAW. Only the allocated bytes of the RAW are read.",
    )
    p.add_argument("raw", help="the RAW image")
    p.add_argument("mf", nargs="?", help="with --verify: the bitmap file to check")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write the bitmap (default: the RAW's name with .mf)",
    )
    p.add_argument(
        "--block-size",
        type=_block_size,
        metavar="SIZE",
        help="block size, a power of two from 64K to 64M (bare number = MiB; default 2)",
    )
    p.add_argument("-p", "--progress", action="store_true", help="show progress")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check the bitmap file MF against RAW instead of writing one",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        metavar="N",
        help="with --verify: blocks drawn at random to check (default 64), besides "
        "the first, the last and blocks marked empty that the file system stores",
    )
    p.add_argument("--seed", type=int, default=0, help="with --verify: sampling seed")
    p.add_argument(
        "--full",
        action="store_true",
        help="with --verify: check every block (reads all allocated bytes)",
    )
    p.set_defaults(func=_run, bitmap_parser=p)


def _run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.bitmap_parser
    if args.verify:
        if args.mf is None:
            parser.error("--verify needs the RAW image and the bitmap file: --verify RAW MF")
        if args.output is not None or args.block_size is not None:
            parser.error("--verify takes no -o or --block-size")
        return _verify(args)
    if args.mf is not None:
        parser.error(f"unexpected argument {args.mf!r}: name the output with -o")
    if args.samples is not None or args.full:
        parser.error("--samples and --full go with --verify")
    return _build(args)


class _ProgressLine:
    """Writes ``(xx.xx/100%)`` to stderr at most ten times a second."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        pct = 100.0 * done / total if total else 100.0
        sys.stderr.write(f"\r    ({pct:6.2f}/100%)")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _build(args: argparse.Namespace) -> int:
    from imageport.fastimport import bitmap as mf
    from imageport.fastimport.bitmap_layout import DEFAULT_BLOCK_SIZE, check_block_size

    block_size = check_block_size(args.block_size or DEFAULT_BLOCK_SIZE)
    mf.ensure_raw(args.raw)
    output = args.output or mf.default_output(args.raw)
    result = mf.scan_raw(args.raw, block_size, _ProgressLine() if args.progress else None)
    mf.write_bitmap(result.bitmap, output, not_over=args.raw)
    bm = result.bitmap
    print(
        f"wrote {output}: {bm.block_count} blocks of {_size(bm.block_size)}, "
        f"{bm.set_bits} with data; read {_size(result.bytes_read)} of "
        f"{_size(bm.image_size)} in {result.seconds:.2f} s"
    )
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from imageport.fastimport import bitmap as mf

    mf.ensure_raw(args.raw)
    samples = mf.DEFAULT_SAMPLES if args.samples is None else args.samples
    result = mf.verify_bitmap(args.raw, args.mf, samples, args.seed, full=args.full)
    for warning in result.warnings:
        print(f"warning: {warning}")
    bm = result.bitmap
    if not result.ok or bm is None:
        for problem in result.problems:
            sys.stderr.write(f"imageport: {problem}\n")
        sys.stderr.write(
            f"imageport: {args.mf} does not match {args.raw}: fast import of "
            "this RAW would fail (IMG-FAST-RAW)\n"
        )
        return EXIT_MISMATCH
    print(
        f"{args.mf} matches {args.raw}: {bm.block_count} blocks of "
        f"{_size(bm.block_size)}, {bm.set_bits} with data; checked "
        f"{result.blocks_checked} blocks, read {_size(result.bytes_read)}"
    )
    return EXIT_OK
