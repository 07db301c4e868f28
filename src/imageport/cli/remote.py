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
                             [--wait [--timeout S]] [--json]
    imageport image ls [--json] | show ID [--json] | rm ID
    imageport image export ID BUCKET/KEY [--format F | --quick] [--wait]   # (cli/export.py)
    imageport job show ID [--json] | wait ID [--timeout S] [--interval S]

Every command takes ``--endpoint``, ``--s3-endpoint``, ``--access-key``, ``--secret-key``,
``--project-id`` and ``--config``; see :mod:`imageport.client.config` for the environment
variables and the config file. Exit status: 0 success; 1 the job failed or the image is
``killed``; 2 usage, configuration, connection or server errors, with a one-line message.
Network libraries are imported inside the commands so ``imageport check`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imageport.client.config import ClientConfig
    from imageport.client.ims import ImsClient
    from imageport.client.s3 import S3Client

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2

_DISK_FORMATS = ("qcow2", "vmdk", "vhd", "vhdx", "qed", "vdi", "qcow", "zvhd2", "zvhd", "raw")


# ---------------------------------------------------------------------------- wiring


def _client_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("service and credentials (else environment, else config)")
    group.add_argument("--endpoint", metavar="URL", help="image API ($IMAGEPORT_ENDPOINT)")
    group.add_argument("--s3-endpoint", metavar="URL", help="bucket API ($IMAGEPORT_S3_ENDPOINT)")
    group.add_argument("--access-key", metavar="AK", help="($IMAGEPORT_ACCESS_KEY)")
    group.add_argument("--secret-key", metavar="SK", help="($IMAGEPORT_SECRET_KEY)")
    group.add_argument("--project-id", metavar="ID", help="($IMAGEPORT_PROJECT_ID)")
    group.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file ($IMAGEPORT_CONFIG, default ~/.config/imageport/client.toml)",
    )
    return flags


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bucket``, ``upload``, ``image`` and ``job``; each leaf sets ``func``."""
    common = [_client_flags()]

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

    image = sub.add_parser("image", help="register, list, show and delete images")
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
    reg.add_argument("--wait", action="store_true", help="wait for the import job to finish")
    reg.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="with --wait: give up after S seconds (default 3600)",
    )
    reg.add_argument("--json", action="store_true")
    reg.set_defaults(func=_image_register)
    ils = icmd.add_parser("ls", parents=common, help="list the project's private images")
    ils.add_argument("--json", action="store_true")
    ils.set_defaults(func=_image_ls)
    show = icmd.add_parser("show", parents=common, help="show an image (exit 1 if killed)")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_image_show)
    irm = icmd.add_parser("rm", parents=common, help="delete an image")
    irm.add_argument("id")
    irm.set_defaults(func=_image_rm)
    from imageport.cli import export

    export.add_parser(icmd, common)

    job = sub.add_parser("job", help="show or wait for an import job")
    jcmd = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    jshow = jcmd.add_parser("show", parents=common, help="show a job (exit 1 if it failed)")
    jshow.add_argument("id")
    jshow.add_argument("--json", action="store_true")
    jshow.set_defaults(func=_job_show)
    jwait = jcmd.add_parser(
        "wait", parents=common, help="wait for a job; exit 0 on SUCCESS, 1 on FAIL"
    )
    jwait.add_argument("id")
    jwait.add_argument("--timeout", type=float, default=3600.0, metavar="S")
    jwait.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between polls (default 1)"
    )
    jwait.add_argument("--json", action="store_true", help="print the final job as JSON")
    jwait.set_defaults(func=_job_wait)


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a ClientError into a one-line message and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        from imageport.client.errors import ClientError

        try:
            return command(args)
        except ClientError as exc:
            _err(str(exc))
            return EXIT_ERROR

    run.__doc__ = command.__doc__
    return run


def _err(message: str) -> None:
    sys.stderr.write(f"imageport: {message}\n")


def _config(args: argparse.Namespace, *needed: str) -> ClientConfig:
    from imageport.client.config import SETTINGS, load_config

    flags = {name: getattr(args, name, None) for name in SETTINGS}
    config = load_config(flags, config_path=args.config)
    config.require(*needed)
    return config


def _s3(args: argparse.Namespace, pool: int = 8) -> S3Client:
    from imageport.client.s3 import S3Client

    c = _config(args, "s3_endpoint", "access_key", "secret_key")
    return S3Client(c.s3_endpoint, c.credentials, region=c.region, pool=pool)


def _ims(args: argparse.Namespace) -> ImsClient:
    from imageport.client.ims import ImsClient

    c = _config(args, "endpoint", "access_key", "secret_key", "project_id")
    return ImsClient(c.endpoint, c.credentials)


def _print_json(doc: object) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------- buckets


@_guarded
def _bucket_create(args: argparse.Namespace) -> int:
    with _s3(args) as s3:
        s3.create_bucket(args.name, args.storage_class)
    print(f"created bucket {args.name} ({args.storage_class})")
    return EXIT_OK


@_guarded
def _bucket_ls(args: argparse.Namespace) -> int:
    with _s3(args) as s3:
        if args.name is None:
            buckets = s3.list_buckets()
            if args.json:
                _print_json([{"name": b.name, "created": b.created} for b in buckets])
            for b in [] if args.json else buckets:
                print(f"{b.created:<26} {b.name}")
            return EXIT_OK
        objects = list(s3.list_objects(args.name))
    if args.json:
        _print_json(
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


@_guarded
def _bucket_rm(args: argparse.Namespace) -> int:
    with _s3(args) as s3:
        s3.delete_bucket(args.name)
    print(f"removed bucket {args.name}")
    return EXIT_OK


# ---------------------------------------------------------------------------- upload


@_guarded
def _upload(args: argparse.Namespace) -> int:
    from imageport.client.errors import ClientError
    from imageport.client.upload import MiB, Uploader

    bucket, slash, key = args.target.partition("/")
    if not bucket or not slash or not key:
        _err(f"target {args.target!r} is not BUCKET/KEY")
        return EXIT_ERROR
    if not os.path.isfile(args.file):
        _err(f"{args.file} is not a readable file")
        return EXIT_ERROR
    if args.part_size < 5:
        _err("--part-size must be at least 5 (MiB)")
        return EXIT_ERROR
    if args.bitmap:
        from imageport.client.fast import local_format

        fmt = local_format(args.file)
        if fmt != "raw":
            _err(
                f"--bitmap: {args.file} is {fmt}, not RAW; only a RAW image has a bitmap "
                "file (a ZVHD2 needs none)"
            )
            return EXIT_ERROR
    tty = sys.stderr.isatty()
    shown = tty or args.progress
    with _s3(args, pool=max(2, args.parallel + 1)) as s3:
        uploader = Uploader(
            s3,
            part_size=args.part_size * MiB,
            parallel=args.parallel,
            progress_stream=sys.stderr if shown else None,
            tty=tty,
            log=_err,
        )
        try:
            result = uploader.upload(args.file, bucket, key)
        except ClientError as exc:
            raise ClientError(
                f"{exc}; the parts already sent are kept: run the same command again to resume"
            ) from exc
        bitmap = None
        if args.bitmap:
            from imageport.client.fast import upload_bitmap

            bitmap = upload_bitmap(s3, args.file, bucket, key)
    if args.json:
        _print_json(
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


# ---------------------------------------------------------------------------- images


def _glance_body(args: argparse.Namespace, key: str) -> dict[str, object]:
    """The ``POST /v2/images`` body of the uninitialized path (format guessed from the key's
    extension when it names one; the job detects the real format anyway)."""
    body: dict[str, object] = {
        "name": args.name,
        "container_format": "bare",
        "visibility": "private",
        "min_disk": args.min_disk,
        "protected": False,
        "architecture": args.architecture,
    }
    ext = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    if ext in _DISK_FORMATS or ext == "img":
        body["disk_format"] = "raw" if ext == "img" else ext
    if args.os_version:
        body["__os_version"] = args.os_version
    if args.firmware:
        body["hw_firmware_type"] = args.firmware
    if args.description:
        body["__description"] = args.description
    return body


@_guarded
def _image_register(args: argparse.Namespace) -> int:
    bucket, colon, key = args.image_url.partition(":")
    if not bucket or not colon or not key:
        _err(f"source {args.image_url!r} is not BUCKET:KEY")
        return EXIT_ERROR
    if args.source and not args.fast:
        _err("--source FILE goes with --fast (it makes the RAW image's bitmap)")
        return EXIT_ERROR
    if args.fast:
        if args.uninitialized:
            _err("--fast and --uninitialized cannot be combined")
            return EXIT_ERROR
        if not args.os_version:
            _err(
                "--fast needs --os-version (fast import requires it), e.g. "
                '--os-version "Debian GNU/Linux 12.0.0 64bit"'
            )
            return EXIT_ERROR
        _prepare_fast(args, bucket, key)
    if args.min_disk is None:
        args.min_disk = 40
        if args.source:
            from imageport.client.fast import min_disk_for

            args.min_disk = min_disk_for(args.source)
            if args.min_disk > 40:
                print(
                    f"imageport: --min-disk {args.min_disk} (the virtual size of "
                    f"{args.source}, rounded up)",
                    file=sys.stderr,
                )
    with _ims(args) as ims:
        image_id = ""
        if args.uninitialized:
            image = ims.create_glance_image(_glance_body(args, key))
            image_id = str(image.get("id", ""))
            if not image_id:
                _err("the image API did not return the new image's id")
                return EXIT_ERROR
            job_id = ims.upload_image(image_id, args.image_url)
        else:
            body: dict[str, object] = {
                "name": args.name,
                "image_url": args.image_url,
                "min_disk": args.min_disk,
                "architecture": args.architecture,
                "type": "ECS",
            }
            if not args.fast:
                body.update(is_config=False, is_quick_import=False)
            for field, value in (
                ("os_version", args.os_version),
                ("hw_firmware_type", args.firmware),
                ("description", args.description),
            ):
                if value:
                    body[field] = value
            job_id = ims.quick_import(body) if args.fast else ims.create_image(body)
        if not args.wait:
            if args.json:
                _print_json({"job_id": job_id, "image_id": image_id or None})
            else:
                print(f"job {job_id}" + (f" (image {image_id})" if image_id else ""))
            return EXIT_OK
        return _wait_for(ims, job_id, args.timeout, 1.0, args.json)


def _prepare_fast(args: argparse.Namespace, bucket: str, key: str) -> None:
    """Fast import: make sure the bitmap of a RAW image is in the bucket (see
    :func:`imageport.client.fast.ensure_bitmap`); warn when the import will likely fail."""
    from imageport.client.fast import ensure_bitmap

    with _s3(args) as s3:
        outcome = ensure_bitmap(s3, bucket, key, args.source)
    if outcome.warning:
        _err(f"warning: {outcome.message}")
    elif not args.json:
        print(outcome.message)


def _image_line(image: Mapping[str, Any]) -> str:
    size = image.get("size")
    return (
        f"{image.get('id', '')!s:<36}  {image.get('status', '')!s:<7}  "
        f"{image.get('disk_format') or '-'!s:<6}  {size if size is not None else '-'!s:>12}  "
        f"{image.get('min_disk', '-')!s:>4}  {image.get('created_at', '')!s:<24}  "
        f"{image.get('name', '')}"
    )


@_guarded
def _image_ls(args: argparse.Namespace) -> int:
    with _ims(args) as ims:
        images = list(ims.list_images())
    if args.json:
        _print_json(images)
    else:
        print(
            f"{'ID':<36}  {'STATUS':<7}  {'FORMAT':<6}  {'SIZE':>12}  {'DISK':>4}  "
            f"{'CREATED':<24}  NAME"
        )
        for image in images:
            print(_image_line(image))
    return EXIT_OK


@_guarded
def _image_show(args: argparse.Namespace) -> int:
    with _ims(args) as ims:
        image = ims.show_image(args.id)
    if args.json:
        _print_json(image)
    else:
        for name in sorted(image):
            value = image[name]
            shown = value if isinstance(value, str) else json.dumps(value)
            print(f"{name}: {shown}")
    return EXIT_FAILED if image.get("status") == "killed" else EXIT_OK


@_guarded
def _image_rm(args: argparse.Namespace) -> int:
    with _ims(args) as ims:
        ims.delete_image(args.id)
    print(f"deleted image {args.id}")
    return EXIT_OK


# ---------------------------------------------------------------------------- jobs


def _entities(job: Mapping[str, Any]) -> Mapping[str, Any]:
    ent = job.get("entities")
    return ent if isinstance(ent, dict) else {}


def _percent(job: Mapping[str, Any]) -> float:
    """The job's progress 0..100 (``entities.process_percent`` is 0..1)."""
    raw = _entities(job).get("process_percent", job.get("process_percent"))
    try:
        value = float(raw) if raw is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, min(100.0, value * 100.0 if value <= 1.0 else value))


def job_line(job: Mapping[str, Any]) -> str:
    """``job ID: RUNNING convert 45%`` — the progress line ``job wait`` draws."""
    phase = _entities(job).get("current_task") or job.get("phase") or "-"
    return f"job {job.get('job_id', '')}: {job.get('status', '?')} {phase} {_percent(job):.0f}%"


def _report_final(job: Mapping[str, Any], as_json: bool) -> int:
    status = job.get("status")
    if as_json:
        _print_json(job)
    if status == "FAIL":
        _err(f"job {job.get('job_id', '')} failed: {job.get('error_code') or '?'}")
        for line in str(job.get("fail_reason") or "").splitlines():
            sys.stderr.write(f"  {line}\n")
        return EXIT_FAILED
    if not as_json:
        image_id = _entities(job).get("image_id")
        print(f"job {job.get('job_id', '')} {status}" + (f": image {image_id}" if image_id else ""))
    return EXIT_OK


def _wait_for(ims: ImsClient, job_id: str, timeout: float, interval: float, as_json: bool) -> int:
    tty = sys.stderr.isatty()
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        job = ims.job_progress(job_id)
        line = job_line(job)
        if line != last:
            sys.stderr.write(f"\r{line}\x1b[K" if tty else line + "\n")
            sys.stderr.flush()
            last = line
        if job.get("status") in ("SUCCESS", "FAIL"):
            if tty:
                sys.stderr.write("\n")
            return _report_final(ims.show_job(job_id), as_json)
        if time.monotonic() >= deadline:
            if tty:
                sys.stderr.write("\n")
            _err(f"timed out after {timeout:g} s; job {job_id} is still {job.get('status', '?')}")
            return EXIT_ERROR
        time.sleep(max(0.05, min(interval, deadline - time.monotonic())))


@_guarded
def _job_show(args: argparse.Namespace) -> int:
    with _ims(args) as ims:
        job = ims.show_job(args.id)
    if args.json:
        _print_json(job)
    else:
        print(job_line(job))
        for name in ("job_type", "begin_time", "end_time", "error_code", "fail_reason"):
            if job.get(name):
                print(f"{name}: {job[name]}")
        for name, value in sorted(_entities(job).items()):
            if value is not None:
                print(f"entities.{name}: {value}")
    return EXIT_FAILED if job.get("status") == "FAIL" else EXIT_OK


@_guarded
def _job_wait(args: argparse.Namespace) -> int:
    with _ims(args) as ims:
        return _wait_for(ims, args.id, args.timeout, args.interval, args.json)
