"""Client commands that talk to a running ``imageport serve`` and sign their requests.

::

    imageport bucket create NAME [--storage-class STANDARD|WARM|COLD]
    imageport bucket ls [NAME] [--json]          # buckets, or the objects of bucket NAME
    imageport bucket rm NAME
    imageport upload FILE BUCKET/KEY [--part-size MiB] [--parallel N] [--progress]   # resumes
                     [--bitmap]                  # RAW: also make and upload BUCKET/<base>.mf
    imageport image register NAME BUCKET:KEY [--uninitialized | --fast [--source FILE]]
                             [--min-disk N] [--os-version V]
                             [--architecture x86|arm] [--firmware bios|uefi] [--description D]
                             [--tags K=V[,K=V...]]... [--type ECS|FusionCompute|...]
                             [--boot-test | --no-boot-test] [--wait [--timeout S]] [--json]
    imageport image ls [--status S] [--name N] [--tag K=V]... [--os V]
                       [--sort KEY] [--desc] [--shared [--member-status S]] [--json]
    imageport image show ID [--json] | rm ID
    imageport image update ID [--name N] [--description D] [--min-ram MB] [--max-ram MB]
                       [--config-init|--no-config-init] [--firmware F]   # (image_update_commands)
    imageport image copy ID --name NEW [--description D] [--wait]        # (image_update_commands)
    imageport image tag add ID K=V... | rm ID KEY... | ls ID             # (tag_commands)
    imageport image share ID --project P... | unshare ID --project P... | members ID
    imageport image accept ID | reject ID                                # (member_commands)
    imageport image export ID BUCKET/KEY [--format F | --quick] [--wait]   # (cli/export.py)
    imageport image boot-test ID [--bios|--uefi|--both] [--timeout S] [--wait]
                       [--screenshots DIR]                    # (cli/boot_test_commands.py)
    imageport job show ID [--json] | wait ID [--timeout S] [--interval S] | cancel ID [--json]
    imageport server create|ls|show|start|stop|reboot|rm|log|ssh ...    # (server_commands)
    imageport flavor ls                                                  # (server_commands)
    imageport keypair create NAME [--public-key FILE | --private-key-out FILE] [--json]
    imageport keypair ls [--json] | show NAME [--json] | rm NAME      # (keypair_commands)
    imageport server console NAME_OR_ID      # Ctrl-] detaches        (cli/console_commands.py)

Every command takes ``--endpoint``, ``--s3-endpoint``, ``--access-key``, ``--secret-key``,
``--project-id`` and ``--config``; see :mod:`imageport.client.config` for the environment
variables and the config file. Exit status: 0 success; 1 the job failed or the image is
``killed``; 2 usage, configuration, connection or server errors, with a one-line message
(:mod:`imageport.cli.client_setup`). Network libraries are imported inside the commands so
``imageport check`` starts fast.

This module declares the commands and runs ``bucket`` and ``upload``; ``image`` runs in
:mod:`imageport.cli.image_commands` (and :mod:`imageport.cli.export`,
:mod:`imageport.cli.image_update_commands`, :mod:`imageport.cli.tag_commands`,
:mod:`imageport.cli.member_commands`, which declare their own actions), ``job`` in
:mod:`imageport.cli.job_commands`, ``keypair`` in :mod:`imageport.cli.keypair_commands` (which
declares its own actions), ``server`` and ``flavor`` in :mod:`imageport.cli.server_commands`
(``server console`` in :mod:`imageport.cli.console_commands`). ``docs/client.md`` describes
them all.
"""

from __future__ import annotations

import argparse
import os
import sys

from imageport.cli import (
    image_commands,
    job_commands,
    keypair_commands,
    member_commands,
    report_commands,
    server_commands,
)
from imageport.cli.client_setup import (
    EXIT_ERROR,
    EXIT_OK,
    client_flags,
    err,
    guarded,
    print_json,
    s3_client,
)
from imageport.service.statuses import ImageStatus, MemberStatus


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bucket``, ``upload``, ``image``, ``job`` and ``keypair``; each leaf sets
    ``func``."""
    common = [client_flags()]

    bucket = sub.add_parser("bucket", help="create, list and remove buckets")
    bcmd = bucket.add_subparsers(dest="bucket_command", required=True, metavar="ACTION")
    create = bcmd.add_parser("create", parents=common, help="create a bucket")
    create.add_argument("name")
    create.add_argument(
        "--storage-class",
        choices=("STANDARD", "WARM", "COLD"),
        default="STANDARD",
        help="default class of its objects (only STANDARD objects can be registered as images)",
    )
    create.set_defaults(func=_bucket_create)
    ls = bcmd.add_parser("ls", parents=common, help="list buckets, or the objects of NAME")
    ls.add_argument("name", nargs="?")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_bucket_ls)
    rm = bcmd.add_parser("rm", parents=common, help="remove an empty bucket")
    rm.add_argument("name")
    rm.set_defaults(func=_bucket_rm)

    upload = sub.add_parser(
        "upload", parents=common, help="upload a file into a bucket (parallel parts; resumes)"
    )
    upload.add_argument("file")
    upload.add_argument("target", metavar="BUCKET/KEY")
    upload.add_argument(
        "--part-size",
        type=int,
        default=64,
        metavar="MiB",
        help="part size in MiB (default 64, at least 5; raised so that the "
        "file needs at most 10000 parts)",
    )
    upload.add_argument(
        "--parallel", type=int, default=4, metavar="N", help="parts in flight at once (default 4)"
    )
    upload.add_argument(
        "--progress", action="store_true", help="show progress even when stderr is not a terminal"
    )
    upload.add_argument("--json", action="store_true", help="print the result as JSON")
    upload.add_argument(
        "--bitmap",
        action="store_true",
        help="the file is RAW: also make its bitmap file and upload it beside "
        "it as <base>.mf, for fast import",
    )
    upload.set_defaults(func=_upload)

    image = sub.add_parser(
        "image", help="register, list, show, update, tag, copy, export and delete images"
    )
    icmd = image.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    reg = icmd.add_parser(
        "register", parents=common, help="register an uploaded file as a private image"
    )
    reg.add_argument("name")
    reg.add_argument("image_url", metavar="BUCKET:KEY")
    reg.add_argument(
        "--uninitialized",
        action="store_true",
        help="register as uninitialized (POST /v2/images + upload): fix it after "
        "booting a server from it",
    )
    reg.add_argument(
        "--data-image",
        action="store_true",
        help="register a data disk as a data image (POST /v1/cloudimages/dataimages/action, "
        "or with --fast a quick import of type DataImage): checked only by the rules about "
        "the file, --min-disk 40-2048 (1-2048 with --fast)",
    )
    reg.add_argument(
        "--os-type",
        choices=("Linux", "Windows"),
        help="with --data-image: the system of the servers the data disk is for (default Linux)",
    )
    reg.add_argument(
        "--fast",
        action="store_true",
        help="fast import (RAW with a bitmap, or ZVHD2; up to 1 TiB; stored as "
        "it is): needs --os-version and a --min-disk that holds the disk",
    )
    reg.add_argument(
        "--source",
        metavar="FILE",
        help="with --fast: the local file that was uploaded; a RAW gets its "
        "bitmap made and uploaded as <base>.mf when the bucket has none",
    )
    reg.add_argument(
        "--min-disk",
        type=int,
        metavar="GIB",
        help="system disk size of servers from this image (default: 40, or with "
        "--source the file's virtual size rounded up to GiB when larger)",
    )
    reg.add_argument("--os-version", metavar="V", help='e.g. "Ubuntu 22.04 server 64bit"')
    reg.add_argument("--architecture", choices=("x86", "arm"), default="x86")
    reg.add_argument("--firmware", choices=("bios", "uefi"))
    reg.add_argument("--description", default="")
    reg.add_argument(
        "--tags",
        action="append",
        metavar="K=V",
        help="tag the image (repeatable, or a comma list k1=v1,k2=v2; at most 10)",
    )
    reg.add_argument(
        "--type",
        metavar="TYPE",
        help="image type (ECS, the default; FusionCompute, BMS, IsoImage, DataImage...: the "
        "server refuses those it does not offer)",
    )
    reg.add_argument(
        "--boot-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="end the import with a boot test of the image (its verdict joins the report; a "
        "boot that reaches no kernel fails the import); --no-boot-test: not even when the "
        "server does it by default",
    )
    reg.add_argument("--wait", action="store_true", help="wait for the import job to finish")
    reg.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="with --wait: give up after S seconds (default 3600)",
    )
    reg.add_argument("--json", action="store_true")
    reg.set_defaults(func=image_commands.image_register)
    ils = icmd.add_parser("ls", parents=common, help="list the project's private images")
    ils.add_argument(
        "--status", choices=[str(s) for s in ImageStatus], help="only images in this status"
    )
    ils.add_argument("--name", help="only the image with exactly this name")
    ils.add_argument(
        "--tag", action="append", metavar="K=V", help="only images with this tag (repeatable)"
    )
    ils.add_argument(
        "--os", metavar="V", help='only this __os_version, e.g. "Ubuntu 22.04 server 64bit"'
    )
    ils.add_argument(
        "--sort",
        choices=image_commands.SORT_KEYS,
        metavar="KEY",
        help=f"sort by KEY ({', '.join(image_commands.SORT_KEYS)}); ascending unless --desc",
    )
    ils.add_argument("--desc", action="store_true", help="descending order (alone: by created_at)")
    ils.add_argument(
        "--shared",
        action="store_true",
        help="list the images other projects share with this one instead (accepted ones)",
    )
    ils.add_argument(
        "--member-status",
        choices=[str(s) for s in MemberStatus],
        help="with --shared: the shares in this status (pending: waiting for an answer)",
    )
    ils.add_argument("--json", action="store_true")
    ils.set_defaults(func=image_commands.image_ls)
    show = icmd.add_parser("show", parents=common, help="show an image (exit 1 if killed)")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=image_commands.image_show)
    ireport = icmd.add_parser(
        "report",
        parents=common,
        help="the image's check report, as imageport check prints it (exit 1 if it failed)",
    )
    ireport.add_argument("id")
    ireport.add_argument("--json", action="store_true", help="the imageport.check/1 document")
    ireport.set_defaults(func=report_commands.image_report)
    irm = icmd.add_parser("rm", parents=common, help="delete an image")
    irm.add_argument("id")
    irm.set_defaults(func=image_commands.image_rm)
    from imageport.cli import boot_test_commands, export, image_update_commands, tag_commands

    export.add_parser(icmd, common)
    boot_test_commands.add_parser(icmd, common)
    image_update_commands.add_parser(icmd, common)
    tag_commands.add_parser(icmd, common)
    member_commands.add_parsers(icmd, common)

    job = sub.add_parser("job", help="show, wait for or cancel a job")
    jcmd = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    jshow = jcmd.add_parser("show", parents=common, help="show a job (exit 1 if it failed)")
    jshow.add_argument("id")
    jshow.add_argument("--json", action="store_true")
    jshow.set_defaults(func=job_commands.job_show)
    jreport = jcmd.add_parser(
        "report",
        parents=common,
        help="the check report of the image the job made (exit 1 if the check failed)",
    )
    jreport.add_argument("id")
    jreport.add_argument("--json", action="store_true", help="the imageport.check/1 document")
    jreport.set_defaults(func=report_commands.job_report)
    jwait = jcmd.add_parser(
        "wait", parents=common, help="wait for a job; exit 0 on SUCCESS, 1 on FAIL"
    )
    jwait.add_argument("id")
    jwait.add_argument("--timeout", type=float, default=3600.0, metavar="S")
    jwait.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between polls (default 1)"
    )
    jwait.add_argument("--json", action="store_true", help="print the final job as JSON")
    jwait.set_defaults(func=job_commands.job_wait)
    jcancel = jcmd.add_parser(
        "cancel",
        parents=common,
        help="cancel a job: one not started ends at once, a running one at its next step",
    )
    jcancel.add_argument("id")
    jcancel.add_argument("--json", action="store_true", help="print the job as JSON")
    jcancel.set_defaults(func=job_commands.job_cancel)

    server_commands.register(sub)
    keypair_commands.add_parser(sub, common)


# ---------------------------------------------------------------------------- buckets


@guarded
def _bucket_create(args: argparse.Namespace) -> int:
    with s3_client(args) as s3:
        s3.create_bucket(args.name, args.storage_class)
    print(f"created bucket {args.name} ({args.storage_class})")
    return EXIT_OK


@guarded
def _bucket_ls(args: argparse.Namespace) -> int:
    with s3_client(args) as s3:
        if args.name is None:
            buckets = s3.list_buckets()
            if args.json:
                print_json([{"name": b.name, "created": b.created} for b in buckets])
            for b in [] if args.json else buckets:
                print(f"{b.created:<26} {b.name}")
            return EXIT_OK
        objects = list(s3.list_objects(args.name))
    if args.json:
        print_json(
            [
                {
                    "key": o.key,
                    "size": o.size,
                    "etag": o.etag,
                    "last_modified": o.last_modified,
                    "storage_class": o.storage_class,
                }
                for o in objects
            ]
        )
    else:
        for o in objects:
            print(f"{o.last_modified:<26} {o.size:>14} {o.storage_class:<9} {o.key}")
    return EXIT_OK


@guarded
def _bucket_rm(args: argparse.Namespace) -> int:
    with s3_client(args) as s3:
        s3.delete_bucket(args.name)
    print(f"removed bucket {args.name}")
    return EXIT_OK


# ---------------------------------------------------------------------------- upload


@guarded
def _upload(args: argparse.Namespace) -> int:
    from imageport.client.errors import ClientError
    from imageport.client.upload import MiB, Uploader

    bucket, slash, key = args.target.partition("/")
    if not bucket or not slash or not key:
        err(f"target {args.target!r} is not BUCKET/KEY")
        return EXIT_ERROR
    if not os.path.isfile(args.file):
        err(f"{args.file} is not a readable file")
        return EXIT_ERROR
    if args.part_size < 5:
        err("--part-size must be at least 5 (MiB)")
        return EXIT_ERROR
    if args.bitmap:
        from imageport.client.fast import local_format

        fmt = local_format(args.file)
        if fmt != "raw":
            err(
                f"--bitmap: {args.file} is {fmt}, not RAW; only a RAW image has a bitmap "
                "file (a ZVHD2 needs none)"
            )
            return EXIT_ERROR
    tty = sys.stderr.isatty()
    shown = tty or args.progress
    with s3_client(args, pool=max(2, args.parallel + 1)) as s3:
        uploader = Uploader(
            s3,
            part_size=args.part_size * MiB,
            parallel=args.parallel,
            progress_stream=sys.stderr if shown else None,
            tty=tty,
            log=err,
        )
        try:
            result = uploader.upload(args.file, bucket, key)
        except ClientError as exc:
            if exc.code == "NoSuchBucket":  # nothing was sent, and resuming will not help
                raise ClientError(
                    f"{exc}; bucket {bucket!r} does not exist: create it with "
                    f"`imageport bucket create {bucket}` (or name another bucket)"
                ) from exc
            raise ClientError(
                f"{exc}; the parts already sent are kept: run the same command again to resume"
            ) from exc
        bitmap = None
        if args.bitmap:
            from imageport.client.fast import upload_bitmap

            bitmap = upload_bitmap(s3, args.file, bucket, key)
    if args.json:
        print_json(
            {
                "bucket": result.bucket,
                "key": result.key,
                "size": result.size,
                "etag": result.etag,
                "part_size": result.part_size,
                "parts_total": result.parts_total,
                "parts_sent": result.parts_sent,
                "bytes_sent": result.bytes_sent,
                "resumed_upload_id": result.resumed,
                "bitmap_key": bitmap.bitmap_key if bitmap else None,
            }
        )
    else:
        resumed = (
            f", resumed: {result.parts_sent} of {result.parts_total} parts sent"
            if result.resumed
            else f", {result.parts_total} part(s)"
        )
        print(
            f"uploaded {args.file} to {bucket}/{key}: {result.size} bytes{resumed}, "
            f"etag {result.etag}"
        )
        if bitmap is not None:
            print(bitmap.message)
    return EXIT_OK
