"""``imageport optimize IN OUT``: fix an image file offline (automatic configuration), print
exactly what changed, then check the result.

The input is never written. ``--dry-run`` prints the plan and writes nothing. Exit status as
``check`` on the result (on the input for a dry run): 0 passed, 1 a rule failed, 2 the file
cannot be read or configured, or the command is misused. The work lives in
:mod:`imageport.service.tools.optimize`; docs/configuration.md lists the fixes.
"""

from __future__ import annotations

import argparse
import json
import sys

EXIT_OK = 0
EXIT_RULES = 1
EXIT_UNUSABLE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``optimize`` to ``sub``; it sets ``func`` (args -> exit status)."""
    p = sub.add_parser(
        "optimize",
        help="fix an image offline (automatic configuration) and check the result",
        description="Fix what the rules report that can be fixed offline (network rules and "
        "DHCP, fstab, the serial console, cloud-init's datasource, other hypervisors' tools, "
        "virtio drivers in the initrd), in a copy of the image edited inside libguestfs' "
        "appliance; print every change (file, rule, lines removed and added), record it in "
        "the guest's /var/log/imageport-configuration.log, and check the result.",
    )
    p.add_argument("input", help="the image file (never written)")
    p.add_argument("output", nargs="?", help="the configured image (not needed with --dry-run)")
    p.add_argument(
        "-O",
        dest="output_format",
        choices=["raw", "qcow2", "zvhd", "zvhd2"],
        help="output format (default: from OUTPUT's extension)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    p.add_argument(
        "--only",
        metavar="RULE,...",
        help="run only the fixes for these rules (e.g. IMG-NET-RULES,IMG-CONSOLE)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("-p", "--progress", action="store_true", help="show copy progress")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imageport.adapters.guestfs.editor import GuestfishEditor
    from imageport.adapters.image_worker import QemuImgQcow2Writer
    from imageport.configure.plan import selected_fixes
    from imageport.configure.record import plan_document
    from imageport.reports.configuration_report import render_configuration
    from imageport.reports.json_report import report_document
    from imageport.reports.text_report import render_text
    from imageport.service.tools import convert as cf
    from imageport.service.tools.optimize import OptimizeOptions, optimize_image
    from imageport.service.tools.to_raw import ImageRefusedError

    only = None
    if args.only:
        only = frozenset(r.strip().upper() for r in args.only.split(",") if r.strip())
        try:
            selected_fixes(only)
        except KeyError as exc:
            sys.stderr.write(f"imageport: no fix for {exc.args[0]} (see imageport rules)\n")
            return EXIT_UNUSABLE
    if args.output is None and not args.dry_run:
        sys.stderr.write("imageport: give OUTPUT, or --dry-run to only print the plan\n")
        return EXIT_UNUSABLE
    fmt = args.output_format or (cf.format_for_path(args.output) if args.output else "raw")
    if fmt is None:
        sys.stderr.write(
            f"imageport: cannot tell the output format from {args.output!r}; "
            "give -O raw|qcow2|zvhd|zvhd2\n"
        )
        return EXIT_UNUSABLE

    def progress(done: int, total: int) -> None:
        pct = 100.0 * done / total if total else 100.0
        sys.stderr.write(f"\r    ({pct:6.2f}/100%)")
        if done >= total:
            sys.stderr.write("\n")

    def say(what: str) -> None:
        sys.stderr.write(f"imageport: {what}\n")

    try:
        result = optimize_image(
            args.input,
            None if args.dry_run else args.output,
            fmt,
            OptimizeOptions(only=only, dry_run=args.dry_run),
            editor=GuestfishEditor(),
            qcow2=QemuImgQcow2Writer(),
            progress=progress if args.progress else None,
            phase=None if args.json else say,
        )
    except ImageRefusedError as exc:
        sys.stderr.write(render_text(exc.report))
        sys.stderr.write(f"imageport: {exc.report.path} cannot be configured\n")
        return EXIT_RULES
    record = plan_document(result.plan.changes, result.plan.notes, applied=not args.dry_run)
    final = result.after or result.before
    if args.json:
        doc = {
            "configuration": record,
            "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
            "appliance": None
            if result.edit is None
            else {
                "launch_seconds": round(result.edit.launch_seconds, 3),
                "seconds": round(result.edit.seconds, 3),
                "files_written": result.edit.files_written,
            },
            "before": report_document(result.before),
            "after": None if result.after is None else report_document(result.after),
        }
        print(json.dumps(doc, indent=2))
    else:
        sys.stdout.write(render_configuration(record, dry_run=args.dry_run))
        if result.edit is not None:
            sys.stdout.write(
                f"edited in the appliance in {result.edit.seconds:.1f} s "
                f"(launch {result.edit.launch_seconds:.1f} s), "
                f"{result.edit.files_written} file(s) written\n"
            )
        if result.after is not None:
            sys.stdout.write(f"\nwrote {args.output} ({fmt}); its check:\n")
        sys.stdout.write(render_text(final))
    return EXIT_OK if final.passed else EXIT_RULES
