"""``imageport image boot-test``: boot a stored image through the running service.

::

    imageport image boot-test IMAGE_ID [--bios | --uefi | --both] [--timeout S]
                              [--wait [--wait-timeout S] [--screenshots DIR]] [--json]

Calls ``POST /v1/cloudimages/{image_id}/boot-test`` (ours): the service boots the image's
stored file in a throw-away QEMU machine under each firmware the image claims (or the one
asked), and the verdicts join the image's check report (``imageport image report ID`` shows
them). ``--timeout`` is in seconds per firmware (the server caps it). With ``--wait`` the job
is followed to its end and the verdicts are printed as ``imageport boot`` prints them;
``--screenshots DIR`` also saves each firmware's screenshot there
(``<image id>.<firmware>.png``). Exit status: 0 when every firmware booted reached a login
prompt (or, without ``--wait``, the job was created), 1 when one did not or the job failed, 2
on usage, configuration, connection or server errors.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from imageport.cli.client_setup import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    err,
    guarded,
    ims_client,
    print_json,
)
from imageport.cli.job_commands import wait_for
from imageport.reports.boot_report import boot_section_lines
from imageport.reports.terminal import terminal_safe


def add_parser(
    icmd: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Sequence[argparse.ArgumentParser],
) -> None:
    """Add ``boot-test`` to the ``image`` actions."""
    p = icmd.add_parser(
        "boot-test",
        parents=list(common),
        help="boot a stored image in the service (QEMU, no network) and say whether it starts",
        description="Boot the image's stored file in a throw-away machine under each firmware "
        "it claims; the verdicts join the image's check report.",
    )
    p.add_argument("id", metavar="IMAGE_ID")
    fw = p.add_mutually_exclusive_group()
    for name, help_text in (
        ("bios", "boot under BIOS (SeaBIOS) only"),
        ("uefi", "boot under UEFI (OVMF) only"),
        ("both", "boot under BIOS and UEFI, whatever the image claims"),
    ):
        fw.add_argument(
            f"--{name}", action="store_const", const=name, dest="firmware", help=help_text
        )
    p.add_argument(
        "--timeout",
        type=int,
        metavar="S",
        help="seconds each boot may take (10 to the server's cap; default: the server's, 300)",
    )
    p.add_argument("--wait", action="store_true", help="wait for the boot test and show it")
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=7200.0,
        metavar="S",
        help="with --wait: give up after S seconds (default 7200: the test may wait its turn)",
    )
    p.add_argument(
        "--screenshots",
        metavar="DIR",
        help="with --wait: save each firmware's screenshot in DIR as IMAGE_ID.FIRMWARE.png",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_boot_test)


def _boot_section(report: Mapping[str, Any], job_id: str) -> dict[str, Any]:
    """The image report's ``boot`` member, with only the boots ``job_id`` made."""
    section = report.get("boot")
    doc = dict(section) if isinstance(section, Mapping) else {}
    boots = doc.get("boots")
    mine = (
        [b for b in boots if isinstance(b, dict) and b.get("job_id") == job_id]
        if isinstance(boots, list)
        else []
    )
    doc["boots"] = mine
    doc["passed"] = bool(mine) and all(b.get("passed") is True for b in mine)
    return doc


@guarded
def _boot_test(args: argparse.Namespace) -> int:
    if not args.wait and args.screenshots:
        err("--screenshots goes with --wait")
        return EXIT_ERROR
    body: dict[str, object] = {}
    if args.firmware:
        body["firmware"] = args.firmware
    if args.timeout is not None:
        body["timeout"] = args.timeout
    with ims_client(args) as ims:
        job_id = ims.boot_test_image(args.id, body)
        if not args.wait:
            if args.json:
                print_json({"job_id": job_id, "image_id": args.id})
            else:
                print(f"job {job_id} (boot test of image {args.id})")
            return EXIT_OK
        status = wait_for(ims, job_id, args.wait_timeout, 2.0, args.json, announce=False)
        if status != EXIT_OK:
            return status
        section = _boot_section(ims.image_report(args.id), job_id)
        saved = []
        if args.screenshots:
            saved = _save_screenshots(ims, args.id, section, Path(args.screenshots))
    if args.json:
        doc = {"job_id": job_id, "image_id": args.id, "boot": section}
        print_json({**doc, "screenshots": [str(p) for p in saved]})
    else:
        print("\n".join(terminal_safe(line) for line in boot_section_lines(section)), end="")
        for path in saved:
            print(terminal_safe(f"screenshot saved: {path}"))
    return EXIT_OK if section["passed"] else EXIT_FAILED


def _save_screenshots(
    ims: Any, image_id: str, section: Mapping[str, Any], folder: Path
) -> list[Path]:
    """Save the screenshot of each boot in ``section`` in ``folder``; the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for boot in section.get("boots") or ():
        firmware = boot.get("firmware")
        if not boot.get("screenshot") or firmware not in ("bios", "uefi"):
            continue
        target = folder / f"{os.path.basename(image_id)}.{firmware}.png"
        target.write_bytes(ims.boot_screenshot(image_id, firmware))
        saved.append(target)
    return saved
