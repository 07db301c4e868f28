"""``imageport image update|copy``: change an image's attributes, or copy it in the region.

::

    imageport image update IMAGE_ID [--name N] [--description D] [--min-ram MB] [--max-ram MB]
                           [--config-init | --no-config-init] [--firmware bios|uefi] [--json]
    imageport image copy IMAGE_ID --name NEW [--description D] [--wait [--timeout S]] [--json]

``update`` sends the vendor's JSON patch (``PATCH /v2/cloudimages/{id}``, one ``replace`` an
option: ``/name``, ``/__description``, ``/min_ram``, ``/max_ram``, ``/__is_config_init``,
``/hw_firmware_type``), all applied or none, and prints the updated image; only an ``active``
image can be updated. ``copy`` is the in-region copy (``POST /v1/cloudimages/{id}/copy``): a new
private image with the source's file and attributes, made by an ``imsCopyImageInRegionJob``
job whose id it prints (``--wait`` follows it, as ``image register --wait`` does). The server
checks every value and refuses with the vendor's code (``IMG.0001``, ``IMG.0009``, ``IMG.0055``,
``IMG.0141``...).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from imageport.cli.client_setup import EXIT_ERROR, EXIT_OK, err, guarded, ims_client, print_json
from imageport.cli.image_commands import print_image
from imageport.cli.job_commands import wait_for

#: option (its ``args`` name) -> the attribute the patch replaces
_PATCHED = (
    ("name", "/name"),
    ("description", "/__description"),
    ("min_ram", "/min_ram"),
    ("max_ram", "/max_ram"),
    ("config_init", "/__is_config_init"),
    ("firmware", "/hw_firmware_type"),
)


def add_parser(
    icmd: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Sequence[argparse.ArgumentParser],
) -> None:
    """Add ``update`` and ``copy`` to the ``image`` actions."""
    upd = icmd.add_parser(
        "update",
        parents=list(common),
        help="change an active image's name, description, RAM bounds, firmware or "
        "config-init flag; prints the updated image",
    )
    upd.add_argument("id", metavar="IMAGE_ID")
    upd.add_argument("--name", help="a new name (unique among the project's images)")
    upd.add_argument("--description", help="a new description ('' clears it)")
    upd.add_argument("--min-ram", type=int, metavar="MB", help="least memory of a server")
    upd.add_argument("--max-ram", type=int, metavar="MB", help="most memory of a server")
    upd.add_argument(
        "--config-init",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the image's initial configuration is done (__is_config_init)",
    )
    upd.add_argument(
        "--firmware", choices=("bios", "uefi"), help="boot firmware (hw_firmware_type)"
    )
    upd.add_argument("--json", action="store_true", help="print the updated image as JSON")
    upd.set_defaults(func=_image_update)

    cp = icmd.add_parser(
        "copy", parents=list(common), help="copy an active image to a new private image"
    )
    cp.add_argument("id", metavar="IMAGE_ID")
    cp.add_argument("--name", required=True, help="the new image's name")
    cp.add_argument("--description", help="the new image's description (default: empty)")
    cp.add_argument("--wait", action="store_true", help="wait for the copy job to finish")
    cp.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="with --wait: give up after S seconds (default 3600)",
    )
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=_image_copy)


def patch_ops(args: argparse.Namespace) -> list[dict[str, object]]:
    """One ``replace`` for each option given, in a fixed order."""
    ops: list[dict[str, object]] = []
    for name, path in _PATCHED:
        value = getattr(args, name)
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"  # the property is a string, as the vendor's
        ops.append({"op": "replace", "path": path, "value": value})
    return ops


@guarded
def _image_update(args: argparse.Namespace) -> int:
    ops = patch_ops(args)
    if not ops:
        err(
            "nothing to update: give --name, --description, --min-ram, --max-ram, "
            "--config-init/--no-config-init or --firmware"
        )
        return EXIT_ERROR
    with ims_client(args) as ims:
        image = ims.update_image(args.id, ops)
    if args.json:
        print_json(image)
    else:
        print_image(image)
    return EXIT_OK


@guarded
def _image_copy(args: argparse.Namespace) -> int:
    body: dict[str, object] = {"name": args.name}
    if args.description is not None:
        body["description"] = args.description
    with ims_client(args) as ims:
        job_id = ims.copy_image(args.id, body)
        if not args.wait:
            if args.json:
                print_json({"job_id": job_id, "source_image_id": args.id})
            else:
                print(f"job {job_id} (copy of image {args.id} as {args.name!r})")
            return EXIT_OK
        return wait_for(ims, job_id, args.timeout, 1.0, args.json)
