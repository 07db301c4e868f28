"""``imageport`` command line.

Exit status: 0 when the image passes (no error findings), 1 when a rule reports an error,
2 when the file cannot be read or the command is used wrongly.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence

from imageport import __version__
from imageport.cli import admin, bitmap, boot, optimize, remote, serve
from imageport.cli.client_setup import client_flags
from imageport.errors import ImageportError, SourceError
from imageport.reports.terminal import terminal_safe

# Each command imports what it needs when it runs, so that `imageport bitmap`, `serve`, `admin`
# and the client commands do not pay for loading the whole check pipeline.

EXIT_OK = 0
EXIT_RULES = 1
EXIT_UNREADABLE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imageport",
        description="Check disk images before importing them as private cloud images.",
    )
    p.add_argument("--version", action="version", version=f"imageport {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check", parents=[client_flags()], help="check an image file against the import rules"
    )
    check.add_argument(
        "file",
        help="the image file (any format; detected from its content), or BUCKET:KEY to have "
        "the service check an object already uploaded (nothing is stored)",
    )
    check.add_argument("--json", action="store_true", help="print the JSON document")
    check.add_argument(
        "--fast-import",
        action="store_true",
        help="the image is meant for fast import (RAW with bitmap, or ZVHD2)",
    )
    check.add_argument(
        "--bitmap",
        metavar="FILE.mf",
        help="with --fast-import: the RAW image's bitmap file, checked against "
        "it (default: the .mf of the same base name beside the image, if any)",
    )
    check.add_argument(
        "--min-disk",
        type=int,
        metavar="GIB",
        help="the min_disk (GiB) the image will be registered with",
    )
    check.add_argument(
        "--uefi",
        action="store_true",
        help="the platform supports UEFI boot (UEFI-only images pass)",
    )
    check.add_argument(
        "--architecture",
        choices=("x86", "arm"),
        help="the architecture the image will be registered with; its programs must be built "
        "for it (rule IMG-ARCH; not checked when not given)",
    )
    check.add_argument(
        "--uninitialized",
        action="store_true",
        help="the image will be registered as uninitialized (fixed after boot)",
    )
    check.add_argument(
        "--type",
        choices=("ECS", "DataImage", "IsoImage"),
        help="what the file will be registered as: a system disk (ECS, the default), a data "
        "disk or an ISO; only the rules that judge it run (a data disk has no system to check)",
    )
    check.add_argument(
        "--password-env",
        metavar="VAR",
        help="check the image's initial password, read from environment variable VAR",
    )
    check.add_argument(
        "--password",
        action="store_true",
        dest="ask_password",
        help="prompt for the image's initial password and check it",
    )
    check.add_argument(
        "--all-passwords",
        action="store_true",
        help="compare stored password hashes with the whole list of common passwords, "
        "without the quarter-second time budget (still at most 10 minutes)",
    )

    conv = sub.add_parser(
        "convert",
        help="write the virtual disk of an image as raw, qcow2, zvhd or zvhd2",
        description="Convert an image (any accepted format, read by imageport's own readers "
        "after the safety checks) to raw, qcow2 (written by qemu-img from raw), zvhd or zvhd2.",
    )
    conv.add_argument("input")
    conv.add_argument("output")
    conv.add_argument(
        "-O",
        dest="output_format",
        choices=["raw", "qcow2", "zvhd", "zvhd2"],
        help="output format (default: from OUTPUT's extension: .zvhd2, .zvhd, .raw/.img, .qcow2)",
    )
    conv.add_argument(
        "--compression",
        choices=["zstd", "zlib"],
        help="zvhd2: zstd (default) or zlib; qcow2: compress clusters with it",
    )
    conv.add_argument(
        "--block-size",
        type=int,
        metavar="MIB",
        help="zvhd2 block size in MiB: 1, 2 (default), 4, 8, 16 or 32",
    )
    conv.add_argument("-p", "--progress", action="store_true", help="show progress")

    fmts = sub.add_parser("formats", help="list the formats imageport recognises")
    fmts.add_argument("--json", action="store_true")
    rules = sub.add_parser("rules", help="list the rules imageport checks")
    rules.add_argument("--json", action="store_true")
    rules.add_argument("--markdown", action="store_true", help="print docs/rules.md")

    # the service: `serve`, `admin`, and the client commands that talk to a running service
    for module in (serve, admin, remote, bitmap, boot, optimize):
        module.register(sub)
    return p


def _cmd_check(args: argparse.Namespace) -> int:
    from imageport.cli import report_commands
    from imageport.reports.json_report import report_document
    from imageport.reports.text_report import render_text
    from imageport.rules.base import CheckOptions
    from imageport.service.images.import_request import disk_kind_of
    from imageport.service.tools.check import check_image

    if report_commands.names_an_object(args.file):
        return report_commands.check_object(args)
    if args.bitmap is not None and not args.fast_import:
        sys.stderr.write("imageport: --bitmap is for fast import; add --fast-import\n")
        return EXIT_UNREADABLE
    bitmap, origin = args.bitmap, "given"
    if args.fast_import and bitmap is None:
        from imageport.fastimport.bitmap import default_output

        beside = default_output(args.file)
        if beside != args.file and os.path.isfile(beside):
            bitmap, origin = beside, "beside"
    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            sys.stderr.write(f"imageport: environment variable {args.password_env} is not set\n")
            return EXIT_UNREADABLE
    elif args.ask_password:
        password = getpass.getpass("Image password: ")
    options = CheckOptions(
        disk_kind=disk_kind_of(args.type or "ECS"),
        fast_import=args.fast_import,
        min_disk_gib=args.min_disk,
        uefi=args.uefi,
        uninitialized=args.uninitialized,
        password=password,
        bitmap_path=bitmap,
        architecture=args.architecture,
        all_passwords=args.all_passwords,
    )
    report = check_image(args.file, options, bitmap_origin=origin)
    if args.json:
        print(json.dumps(report_document(report), indent=2))
    else:
        sys.stdout.write(render_text(report))
    return EXIT_OK if report.passed else EXIT_RULES


def _cmd_convert(args: argparse.Namespace) -> int:
    from imageport.adapters.image_worker import QemuImgQcow2Writer
    from imageport.reports.sizes import human_size
    from imageport.service.tools import convert as cf
    from imageport.service.tools.to_raw import ImageRefusedError

    def progress(done: int, total: int) -> None:
        pct = 100.0 * done / total if total else 100.0
        sys.stderr.write(f"\r    ({pct:6.2f}/100%)")
        if done >= total:
            sys.stderr.write("\n")

    fmt = args.output_format or cf.format_for_path(args.output)
    if fmt is None:
        sys.stderr.write(
            f"imageport: cannot tell the output format from {args.output!r}; "
            "give -O raw|qcow2|zvhd|zvhd2\n"
        )
        return EXIT_UNREADABLE
    block = None
    if args.block_size is not None:
        if not 1 <= args.block_size <= 32:
            sys.stderr.write("imageport: --block-size is in MiB: 1, 2, 4, 8, 16 or 32\n")
            return EXIT_UNREADABLE
        block = args.block_size << 20
    options = cf.ConvertOptions(compression=args.compression, block_size=block)
    try:
        result = cf.convert_image(
            args.input,
            args.output,
            fmt,
            options,
            progress if args.progress else None,
            qcow2=QemuImgQcow2Writer(),
        )
    except ImageRefusedError as exc:
        from imageport.reports.text_report import render_text

        sys.stderr.write(render_text(exc.report))
        sys.stderr.write(f"imageport: {terminal_safe(str(exc), lines=True)}\n")
        return EXIT_RULES
    detail = f" ({result.detail})" if result.detail else ""
    print(
        f"wrote {args.output}: {result.format}{detail}, virtual size "
        f"{human_size(result.virtual_size)}, {human_size(result.data_bytes)} of data, "
        f"file {human_size(result.file_size)}"
    )
    return EXIT_OK


def _cmd_formats(args: argparse.Namespace) -> int:
    from imageport.formats.registry import FORMATS

    rows = [("raw", "raw disk image (no container)", True)]
    rows += [(s.name, s.description, s.accepted) for s in FORMATS]
    if args.json:
        print(
            json.dumps([{"name": n, "description": d, "accepted": a} for n, d, a in rows], indent=2)
        )
    else:
        for name, desc, accepted in rows:
            print(f"{name:<12} {'accepted' if accepted else 'refused ':<9} {desc}")
    return EXIT_OK


def _cmd_rules(args: argparse.Namespace) -> int:
    from imageport.rules.catalogue import RULES
    from imageport.rules.docs import rules_markdown

    if args.markdown:
        sys.stdout.write(rules_markdown())
    elif args.json:
        print(
            json.dumps(
                [
                    {"id": r.id, "severity": r.severity.value, "title": r.title, "docs": r.docs()}
                    for r in RULES
                ],
                indent=2,
            )
        )
    else:
        for r in RULES:
            print(f"{r.id:<22} {r.severity.value:<8} {r.title}")
    return EXIT_OK


_COMMANDS = {
    "check": _cmd_check,
    "convert": _cmd_convert,
    "formats": _cmd_formats,
    "rules": _cmd_rules,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        command = _COMMANDS.get(args.command) or args.func
        return int(command(args))
    except SourceError as exc:  # its message may quote the image: shown escaped
        sys.stderr.write(f"imageport: {terminal_safe(str(exc), lines=True)}\n")
        return EXIT_UNREADABLE
    except ImageportError as exc:
        sys.stderr.write(f"imageport: {terminal_safe(str(exc), lines=True)}\n")
        return EXIT_UNREADABLE


if __name__ == "__main__":
    sys.exit(main())
