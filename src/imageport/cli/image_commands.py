"""``imageport image register|ls|show|rm``: images registered from objects in a bucket.

``register`` creates an image from ``BUCKET:KEY`` (``POST /v2/cloudimages/action``), or with
``--uninitialized`` the Glance way (``POST /v2/images`` and an upload), with ``--data-image``
as a data image (``POST /v1/cloudimages/dataimages/action``), or with ``--fast`` by fast import
(``POST /v2/cloudimages/quickimport/action``, after making sure a RAW image's bitmap is in the
bucket); ``--boot-test`` (``--no-boot-test``) sends ``boot_test`` (ours: end the import with a
boot test, or not even when the server does so by default); ``--wait`` follows the job
(:mod:`imageport.cli.job_commands`). Its ``--tags`` are sent as the vendor's ``image_tags``
(``tags: ["k=v"]`` on the Glance path), its ``--type`` as ``type`` (the server says which
types it offers).

``ls`` sends its filters as the vendor's list parameters: ``--status`` ``status``, ``--name``
``name`` (exact), ``--tag K=V`` ``tag=K=V`` (repeatable: every tag must be there), ``--os``
``__os_version``; ``--sort KEY`` and ``--desc`` are ``sort_key`` and ``sort_dir`` (without
either the server's order: newest first).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from imageport.cli.client_setup import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    err,
    guarded,
    ims_client,
    print_json,
    s3_client,
)
from imageport.cli.job_commands import wait_for
from imageport.cli.report_commands import print_report, stored_report
from imageport.cli.tag_commands import parse_tags
from imageport.reports.terminal import terminal_safe
from imageport.service.statuses import ImageStatus

SORT_KEYS = (
    "created_at",
    "updated_at",
    "name",
    "id",
    "status",
    "min_disk",
    "min_ram",
    "size",
    "disk_format",
    "container_format",
    "__os_version",
    "__platform",
    "__os_type",
)
"""``image ls --sort`` values: the server's ``sort_key`` values (a test keeps them equal)."""

_DISK_FORMATS = ("qcow2", "vmdk", "vhd", "vhdx", "qed", "vdi", "qcow", "zvhd2", "zvhd", "raw")


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
    if args.tag_pairs:
        body["tags"] = [f"{k}={v}" for k, v in args.tag_pairs]
    return body


@guarded
def image_register(args: argparse.Namespace) -> int:
    bucket, colon, key = args.image_url.partition(":")
    if not bucket or not colon or not key:
        err(f"source {args.image_url!r} is not BUCKET:KEY")
        return EXIT_ERROR
    if args.source and not args.fast:
        err("--source FILE goes with --fast (it makes the RAW image's bitmap)")
        return EXIT_ERROR
    problem = _data_image_conflict(args)
    if problem:
        err(problem)
        return EXIT_ERROR
    args.tag_pairs = parse_tags(args.tags or (), "--tags")
    if args.uninitialized and args.type is not None:
        err("--type goes with the normal or fast registration, not --uninitialized (Glance)")
        return EXIT_ERROR
    if args.fast:
        if args.uninitialized:
            err("--fast and --uninitialized cannot be combined")
            return EXIT_ERROR
        if not args.os_version and not args.data_image:
            err(
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
    with ims_client(args) as ims:
        image_id = ""
        if args.uninitialized:
            image = ims.create_glance_image(_glance_body(args, key))
            image_id = str(image.get("id", ""))
            if not image_id:
                err("the image API did not return the new image's id")
                return EXIT_ERROR
            job_id = ims.upload_image(image_id, args.image_url, args.boot_test)
        elif args.data_image:
            job_id = _register_data_image(ims, args)
        else:
            body: dict[str, object] = {
                "name": args.name,
                "image_url": args.image_url,
                "min_disk": args.min_disk,
                "architecture": args.architecture,
                "type": args.type or "ECS",
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
            if args.tag_pairs:
                body["image_tags"] = [{"key": k, "value": v} for k, v in args.tag_pairs]
            if args.boot_test is not None:
                body["boot_test"] = args.boot_test
            job_id = ims.quick_import(body) if args.fast else ims.create_image(body)
        if not args.wait:
            if args.json:
                print_json({"job_id": job_id, "image_id": image_id or None})
            else:
                print(f"job {job_id}" + (f" (image {image_id})" if image_id else ""))
            return EXIT_OK
        return wait_for(ims, job_id, args.timeout, 1.0, args.json)


def _data_image_conflict(args: argparse.Namespace) -> str | None:
    """Why the options cannot go together (``--data-image`` takes none of a system disk's),
    or None; ``--os-type`` goes only with ``--data-image``."""
    if not args.data_image:
        return "--os-type goes with --data-image" if args.os_type else None
    for given, option in (
        (args.uninitialized, "--uninitialized"),
        (args.os_version, "--os-version"),
        (args.firmware, "--firmware"),
        (args.architecture != "x86", "--architecture"),
        (args.type is not None, "--type"),
        (args.boot_test, "--boot-test"),
    ):
        if given:
            return f"--data-image registers a data disk, which has no system: drop {option}"
    return None


def _register_data_image(ims: Any, args: argparse.Namespace) -> str:
    """A data image: the data-image route, or with ``--fast`` a quick import of type
    ``DataImage``; the job id."""
    body: dict[str, object] = {
        "name": args.name,
        "image_url": args.image_url,
        "min_disk": args.min_disk,
        "os_type": args.os_type or "Linux",
    }
    if args.description:
        body["description"] = args.description
    if args.tag_pairs:
        body["image_tags"] = [{"key": k, "value": v} for k, v in args.tag_pairs]
    if args.fast:
        return str(ims.quick_import({**body, "type": "DataImage"}))
    return str(ims.create_data_image(body))


def _prepare_fast(args: argparse.Namespace, bucket: str, key: str) -> None:
    """Fast import: make sure the bitmap of a RAW image is in the bucket (see
    :func:`imageport.client.fast.ensure_bitmap`); warn when the import will likely fail."""
    from imageport.client.fast import ensure_bitmap

    with s3_client(args) as s3:
        outcome = ensure_bitmap(s3, bucket, key, args.source)
    if outcome.warning:
        err(f"warning: {outcome.message}")
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


def list_filters(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The list parameters of ``image ls``'s filter options (ClientError for a ``--tag`` that
    is not ``KEY=VALUE``)."""
    filters: list[tuple[str, str]] = []
    for param, value in (("status", args.status), ("name", args.name), ("__os_version", args.os)):
        if value is not None:
            filters.append((param, value))
    filters += [("tag", f"{k}={v}") for k, v in parse_tags(args.tag or (), "--tag")]
    return filters


@guarded
def image_ls(args: argparse.Namespace) -> int:
    if args.member_status and not args.shared:
        err("--member-status goes with --shared")
        return EXIT_ERROR
    filters = list_filters(args)
    paging: dict[str, str] = {}
    if args.sort or args.desc:
        paging = {"sort_key": args.sort or "created_at", "sort_dir": "desc" if args.desc else "asc"}
    if args.shared:  # the images other projects share with this one, not its own
        paging["__imagetype"] = "shared"
        if args.member_status:
            filters.append(("member_status", args.member_status))
    with ims_client(args) as ims:
        images = list(ims.list_images(filters, **paging))
    if args.json:
        print_json(images)
    else:
        print(
            f"{'ID':<36}  {'STATUS':<7}  {'FORMAT':<6}  {'SIZE':>12}  {'DISK':>4}  "
            f"{'CREATED':<24}  NAME"
        )
        for image in images:
            print(terminal_safe(_image_line(image)))
    return EXIT_OK


def print_image(image: Mapping[str, Any]) -> None:
    """``name: value`` lines, sorted by name (values other than strings as JSON)."""
    for name in sorted(image):
        value = image[name]
        shown = value if isinstance(value, str) else json.dumps(value)
        print(terminal_safe(f"{name}: {shown}", lines=True))


@guarded
def image_show(args: argparse.Namespace) -> int:
    with ims_client(args) as ims:
        image = ims.show_image(args.id)
        report = None if args.json else stored_report(lambda: ims.image_report(args.id))
    if args.json:
        print_json(image)
    else:
        print_image(image)
        print_report(report)
    return EXIT_FAILED if image.get("status") == ImageStatus.KILLED else EXIT_OK


@guarded
def image_rm(args: argparse.Namespace) -> int:
    with ims_client(args) as ims:
        ims.delete_image(args.id)
    print(f"deleted image {args.id}")
    return EXIT_OK
