"""``imageport image export``: write an image to a bucket through the running service.

::

    imageport image export IMAGE_ID BUCKET/KEY|BUCKET:KEY
                           [--format qcow2|vmdk|vhd|zvhd|zvhd2|raw] [--quick]
                           [--wait [--timeout S]] [--json]

Calls ``POST /v1/cloudimages/{image_id}/file`` (the vendor's ExportImage); ``--quick`` writes
the stored file as it is (no conversion, no ``--format``). Exit status as the other client
commands (:mod:`imageport.cli.client_setup`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from imageport.cli.client_setup import EXIT_ERROR, EXIT_OK, err, guarded, ims_client, print_json
from imageport.cli.job_commands import wait_for

#: ``--format`` values (the service's :data:`imageport.service.jobs.export_request.EXPORT_FORMATS`).
FORMATS = ("qcow2", "vmdk", "vhd", "zvhd", "zvhd2", "raw")


def add_parser(
    icmd: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Sequence[argparse.ArgumentParser],
) -> None:
    """Add ``export`` to the ``image`` actions."""
    exp = icmd.add_parser(
        "export", parents=list(common), help="export an active image to a bucket (a new object)"
    )
    exp.add_argument("id", metavar="IMAGE_ID")
    exp.add_argument(
        "target",
        metavar="BUCKET/KEY",
        help="the object to write (BUCKET:KEY works too); an object there is replaced",
    )
    exp.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="file format (default qcow2; vmdk is streamOptimized, vhd dynamic)",
    )
    exp.add_argument(
        "--quick",
        action="store_true",
        help="write the stored file as it is, in its own format (no conversion)",
    )
    exp.add_argument("--wait", action="store_true", help="wait for the export job to finish")
    exp.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="with --wait: give up after S seconds (default 3600)",
    )
    exp.add_argument("--json", action="store_true")
    exp.set_defaults(func=_image_export)


def bucket_url(target: str) -> str | None:
    """``bucket:key`` from ``bucket/key`` or ``bucket:key``; None when either part is empty."""
    sep = ":" if ":" in target else "/"
    bucket, found, key = target.partition(sep)
    return f"{bucket}:{key}" if bucket and found and key else None


@guarded
def _image_export(args: argparse.Namespace) -> int:
    url = bucket_url(args.target)
    if url is None:
        err(f"target {args.target!r} is not BUCKET/KEY or BUCKET:KEY")
        return EXIT_ERROR
    if args.quick and args.format is not None:
        err("--quick writes the stored file in its own format; drop --format")
        return EXIT_ERROR
    fmt = None if args.quick else (args.format or "qcow2")
    with ims_client(args) as ims:
        job_id = ims.export_image(args.id, url, fmt, args.quick)
        if not args.wait:
            if args.json:
                print_json({"job_id": job_id, "image_id": args.id, "bucket_url": url})
            else:
                print(f"job {job_id} (export of image {args.id} to {url})")
            return EXIT_OK
        return wait_for(ims, job_id, args.timeout, 1.0, args.json)
