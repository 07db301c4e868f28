"""``imageport boot FILE``: boot a local image file in a throw-away QEMU machine and say what
happened, under each firmware the image claims (``--bios``/``--uefi``: that one only).

The file is never written (the machine's disk is an overlay on it); the machine has no network
and listens on no port. Exit status: 0 when every firmware booted reached a login prompt, 1 when
one did not, 2 when the file cannot be read or booted at all, or the command is misused. The
work lives in :mod:`imageport.service.tools.boot_test`; docs/boot.md explains the verdicts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``boot`` to ``sub``; it sets ``func`` (args -> exit status)."""
    p = sub.add_parser(
        "boot",
        help="boot an image file in QEMU (no network) and say whether it starts",
        description="Boot a local image file in a QEMU virtual machine (the file is never "
        "written; no network; no listening port) under each firmware it claims, and report "
        "the stages it reached with the serial console lines that prove them, and a PNG "
        "screenshot of its display.",
    )
    p.add_argument("file", help="the image file (any format QEMU reads; detected from content)")
    fw = p.add_mutually_exclusive_group()
    fw.add_argument(
        "--bios",
        action="store_const",
        const="bios",
        dest="firmware",
        help="boot under BIOS (SeaBIOS) only",
    )
    fw.add_argument(
        "--uefi",
        action="store_const",
        const="uefi",
        dest="firmware",
        help="boot under UEFI (OVMF) only",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds each boot may take (10-3600, default 300)",
    )
    p.add_argument("--json", action="store_true", help="print the imageport.boot/1 document")
    p.add_argument(
        "--screenshot",
        metavar="PATH.png",
        help="where to save the display (default: FILE's name + .boot.png in the "
        "current directory; -bios/-uefi is added when both are booted)",
    )
    p.add_argument("--no-screenshot", action="store_true", help="take no screenshot")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imageport.adapters.qemu.boot_runner import QemuBootRunner
    from imageport.reports.boot_report import boot_document, render_boot_text
    from imageport.service.tools.boot_test import MAX_TIMEOUT, MIN_TIMEOUT, boot_test
    from imageport.service.tools.to_raw import ImageRefusedError

    if not MIN_TIMEOUT <= args.timeout <= MAX_TIMEOUT:
        sys.stderr.write(
            f"imageport: --timeout is in seconds, {MIN_TIMEOUT:.0f} to {MAX_TIMEOUT:.0f}\n"
        )
        return EXIT_UNUSABLE
    if args.no_screenshot and args.screenshot:
        sys.stderr.write("imageport: --screenshot and --no-screenshot contradict each other\n")
        return EXIT_UNUSABLE
    shot = None
    if not args.no_screenshot:
        shot = Path(args.screenshot or Path(args.file).name + ".boot.png")
    try:
        report = boot_test(
            args.file,
            QemuBootRunner(),
            firmware=args.firmware,
            timeout=args.timeout,
            screenshot=shot,
        )
    except ImageRefusedError as exc:
        from imageport.reports.text_report import render_text

        sys.stderr.write(render_text(exc.report))
        sys.stderr.write(f"imageport: {args.file} is not safe to boot: see the check above\n")
        return EXIT_UNUSABLE
    if args.json:
        print(json.dumps(boot_document(report), indent=2))
    else:
        sys.stdout.write(render_boot_text(report))
    return EXIT_OK if report.passed else EXIT_FAILED
