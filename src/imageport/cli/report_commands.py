"""The check report of an image or job, as ``imageport check`` prints it: ``imageport image
report ID`` and ``imageport job report ID`` (``--json``: the ``imageport.check/1`` document),
the report that ``image show`` and ``job show`` print after the image or job, and
``imageport check BUCKET:KEY``, which checks an object through the service."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
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
from imageport.client.errors import ClientError
from imageport.client.ims import ImsClient
from imageport.reports.text_report import render_document
from imageport.service import codes


def stored_report(fetch: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The report ``fetch`` gets, or None when there is none (yet): ``IMG.NO_REPORT``."""
    try:
        return fetch()
    except ClientError as error:
        if error.code == codes.NO_REPORT:
            return None
        raise


def print_report(doc: dict[str, Any] | None) -> None:
    """The report as text, or a line saying there is none yet."""
    print()
    if doc is None:
        print("check report: none yet (no check has run on the file)")
    else:
        print(render_document(doc), end="")


def _report(args: argparse.Namespace, fetch: Callable[[ImsClient], dict[str, Any]]) -> int:
    with ims_client(args) as ims:
        doc = fetch(ims)
    if args.json:
        print_json(doc)
    else:
        print(render_document(doc), end="")
    verdict = (doc.get("summary") or {}).get("verdict")
    return EXIT_OK if verdict == "pass" else EXIT_FAILED


@guarded
def image_report(args: argparse.Namespace) -> int:
    """``image report ID``: exit 0 when the check passed, 1 when it failed."""
    return _report(args, lambda ims: ims.image_report(args.id))


@guarded
def job_report(args: argparse.Namespace) -> int:
    """``job report ID``: exit 0 when the check passed, 1 when it failed."""
    return _report(args, lambda ims: ims.job_report(args.id))


#: ``bucket:key`` as ``imageport check`` takes it for an object (a bucket name, a colon).
_OBJECT = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]:[^:/].*")
#: ``imageport check`` options that need the file itself, not offered for an object.
_LOCAL_ONLY = {
    "fast_import": "--fast-import",
    "bitmap": "--bitmap",
    "password_env": "--password-env",
    "ask_password": "--password",
    "all_passwords": "--all-passwords",
}


def names_an_object(argument: str) -> bool:
    """``argument`` is ``BUCKET:KEY`` and no local file of that name exists."""
    return _OBJECT.fullmatch(argument) is not None and not os.path.exists(argument)


@guarded
def check_object(args: argparse.Namespace) -> int:
    """``imageport check BUCKET:KEY``: the object checked by the service's checker (the same
    rules and report as a local check; nothing stored). Exit 0 pass, 1 fail, 2 error."""
    local = [flag for name, flag in _LOCAL_ONLY.items() if getattr(args, name, None)]
    if local:
        err(f"{', '.join(local)}: only for a local file, not for an object checked by the service")
        return EXIT_ERROR
    body: dict[str, object] = {"image_url": args.file, "uninitialized": args.uninitialized}
    if args.min_disk is not None:
        body["min_disk"] = args.min_disk
    if args.uefi:
        body["hw_firmware_type"] = "uefi"
    if args.architecture is not None:
        body["architecture"] = args.architecture
    if args.type is not None:
        body["type"] = args.type
    return _report(args, lambda ims: ims.check_object(body))
